"""A real SSH server for tests: Debian's ``openssh-server`` (``/usr/sbin/sshd``) on 127.0.0.1.

Each server gets its own folder: an Ed25519 host key and a client key made by ``ssh-keygen``, an
``authorized_keys`` with the client's public key, a ``known_hosts`` with the server's host key for
``[127.0.0.1]:PORT``, and an ``sshd_config`` of its own (never the packaged one, which listens on every
interface): ``ListenAddress 127.0.0.1``, a free port, public keys only. ``sshd -D -e -f CONFIG`` runs as a
child process; it is ready when a TCP connection gets its ``SSH-2.0`` banner, and is stopped when the test
ends. The client side is what a device overlay's ``remote.ssh_options`` would name: the key, the
known_hosts file, ``IdentitiesOnly``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.registry import free_port, stop_process

SSHD = "/usr/sbin/sshd"


@dataclass
class LoopbackSshd:
    """A running sshd: ``port`` on 127.0.0.1, ``folder`` its keys, config and log."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"{getpass.getuser()}@127.0.0.1"

    @property
    def ssh_options(self) -> dict[str, str]:
        """Client options for this server: its key, its known_hosts (host keys are checked), no agent keys."""
        return {
            "IdentityFile": str(self.folder / "client_ed25519"),
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(self.folder / "known_hosts"),
            "GlobalKnownHostsFile": "/dev/null",
        }

    def remote(self, **fields: Any) -> dict[str, Any]:
        """A device overlay's ``remote:`` mapping for this server (``fields`` added or replacing)."""
        return {"host": self.host, "port": self.port, "ssh_options": self.ssh_options, **fields}

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else Path(f"{path}.pub").read_text().strip()


def start_sshd(folder: Path, timeout: float = 20.0) -> LoopbackSshd:
    """Make keys and a config under ``folder``, start ``sshd`` with them and wait for its banner."""
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    host_key = _keygen(folder / "host_ed25519")
    client_key = _keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text(client_key + "\n")
    port = free_port()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key.split()[:2])}\n")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_ed25519'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nX11Forwarding no\nAllowTcpForwarding no\n"
        "PrintMotd no\nLogLevel VERBOSE\nMaxSessions 64\nMaxStartups 64\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    with open(folder / "sshd.log", "wb") as sink:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=sink, stderr=subprocess.STDOUT)
    server = LoopbackSshd(port, folder, process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                if probe.recv(64).startswith(b"SSH-2.0"):
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"sshd did not start: {server.log()}")
        time.sleep(0.05)

"""Commands and files to and from a builder device, through the OpenSSH client (``ssh``).

Why the OpenSSH client and not an SSH library (Paramiko, AsyncSSH): a fleet's engineers already have
``~/.ssh/config`` host aliases, keys in an agent, ``ProxyJump`` bastions and ``known_hosts`` set up for
``ssh``; the client honours all of them, and trtbuild adds nothing to learn. It is on every workstation
and CI image, needs no Python dependency, and its connection sharing (``ControlMaster``, ssh_config(5))
gives one authenticated connection per device per run however many commands run over it.

Security defaults (ssh_config(5)): ``BatchMode=yes`` (a build never waits on a password or passphrase
prompt: keys or an agent only), host keys checked as the user's configuration says —
``StrictHostKeyChecking`` is never turned off by trtbuild; a device must be in ``known_hosts`` —, and
``ConnectTimeout`` so a device that does not answer fails in seconds. A device's ``ssh_options`` may set
other client options (``IdentityFile``, ``UserKnownHostsFile``, ...), each as ``-o Name=value``.

Remote commands run through the device's login shell: every word is quoted with ``shlex.quote``, and the
device's ``env`` is passed as ``env NAME=value ...`` in front of the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from trtbuild.errors import BuildError

#: Exit status of ``ssh`` itself failing (connection, authentication, host key), ssh(1).
SSH_FAILED = 255
CHUNK = 1 << 20
#: ``sh -c`` script running ``"$@"`` (stdin /dev/null; in a process group of its own where ``setsid`` is
#: there, so what it starts stops with it) and sending it SIGTERM as soon as the script's own stdin closes
#: (``Connection.stream``); exits with the command's status. The watcher holds no stdout or stderr, so the
#: session ends with the command.
STOP_WITH_STDIN = (
    "exec 3<&0; group=; "
    'if command -v setsid >/dev/null 2>&1; then setsid "$@" 3<&- </dev/null & group=-$!; '
    'else "$@" 3<&- </dev/null & fi; child=$!; '
    '{ cat <&3; kill -TERM $group "$child"; } >/dev/null 2>&1 & watcher=$!; exec 3<&-; '
    'wait "$child"; code=$?; kill "$watcher" 2>/dev/null; exit "$code"'
)


class DeviceError(BuildError):
    """The device did not answer, refused the connection or authentication, or a transfer failed.

    The message is one line naming the device (``nano-lab-01: ssh: connect to host ... Connection refused``).
    """


@dataclass(frozen=True)
class Connection:
    """How to reach one builder device.

    Attributes:
        host: the ssh destination (``jetson@nano-lab-01``, a ``~/.ssh/config`` alias).
        port: the TCP port, or ``None`` for ssh's own choice (22, or the config's ``Port``).
        options: extra client options, ``{Name: value}`` -> ``-o Name=value``.
        connect_timeout: seconds before a device that does not answer fails (``ConnectTimeout``).
        control_path: the shared connection's socket (``ControlPath``), or ``None`` for a connection per
            command.
        env: environment variables for every remote command.
    """

    host: str
    port: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    connect_timeout: int = 10
    control_path: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def ssh_argv(self, *extra: str) -> list[str]:
        """``ssh`` and its options (``extra`` before the destination), without a remote command."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        for name, value in sorted(self.options.items()):
            argv += ["-o", f"{name}={value}"]
        if self.control_path is not None:
            argv += ["-o", f"ControlPath={self.control_path}", "-o", "ControlMaster=no"]
        return [*argv, *extra, "--", self.host]

    def command_line(self, words: Sequence[str]) -> str:
        """The remote shell's command line for ``words``, quoted, with the device's ``env`` in front."""
        prefix = ["env", *(f"{name}={value}" for name, value in sorted(self.env.items()))] if self.env else []
        return " ".join(shlex.quote(word) for word in [*prefix, *words])

    def argv(self, words: Sequence[str]) -> list[str]:
        """The local argv running ``words`` on the device."""
        return [*self.ssh_argv(), self.command_line(words)]

    def failure(self, stderr: bytes | str, what: str) -> DeviceError:
        """One line naming the device: ssh's own last error line, or ``what`` failed with the remote's."""
        text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else "no message"
        if what == "ssh" and last.startswith("ssh:"):
            return DeviceError(f"{self.host}: {last}")
        return DeviceError(f"{self.host}: {what}: {last}")

    def run(self, words: Sequence[str], *, data: bytes | None = None, timeout: float | None = 120) -> bytes:
        """Run ``words`` on the device; returns its stdout.

        Raises:
            DeviceError: ssh failed (exit 255: no answer, refused, host key, authentication) or the
                command exited non-zero; the message names the device and the last error line.
        """
        return self._run(self.argv(words), data, timeout, " ".join(words[:1]))

    def run_script(
        self, script: str, *, args: Sequence[str] = (), data: bytes | None = None, timeout: float | None = 120
    ) -> bytes:
        """``run`` for a POSIX ``sh`` script with positional arguments ``args`` (``$1``...).

        Raises:
            DeviceError: as ``run``.
        """
        return self._run(self.argv(["sh", "-c", script, "sh", *args]), data, timeout, "sh")

    def _run(self, argv: list[str], data: bytes | None, timeout: float | None, what: str) -> bytes:
        try:
            done = subprocess.run(argv, input=data if data is not None else b"", capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.host}: no answer within {timeout:.0f} s") from None
        except OSError as exc:
            raise DeviceError(f"{self.host}: cannot run ssh: {exc.strerror or exc}") from None
        if done.returncode == SSH_FAILED:
            raise self.failure(done.stderr, "ssh")
        if done.returncode != 0:
            raise self.failure(done.stderr, f"{what} exited with code {done.returncode}")
        return done.stdout

    def upload(self, local: Path | bytes, remote: str, *, sha256: str) -> None:
        """Copy ``local`` (a file, or bytes) to the device's ``remote`` path through a temporary file beside
        it, renamed only after the device's ``sha256sum`` of the bytes it received equals ``sha256``.

        Raises:
            DeviceError: the transfer failed, or the device received other bytes (nothing is left at
                ``remote``).
        """
        folder, name = remote.rsplit("/", 1) if "/" in remote else (".", remote)
        partial = f"{folder}/.{name}.partial"
        script = (
            'set -e; mkdir -p "$1"; cat > "$2"; set -- "$@" "$(sha256sum "$2" | cut -d" " -f1)"; '
            'if [ "$4" = "$5" ]; then mv -f "$2" "$3"; else rm -f "$2"; echo "received sha256 $5" >&2; exit 3; fi'
        )
        argv = self.argv(["sh", "-c", script, "upload", folder, partial, remote, sha256])
        if isinstance(local, bytes):
            done = subprocess.run(argv, input=local, capture_output=True, timeout=None)
        else:
            with open(local, "rb") as reader:
                done = subprocess.run(argv, stdin=reader, capture_output=True, timeout=None)
        if done.returncode == SSH_FAILED:
            raise self.failure(done.stderr, "ssh")
        if done.returncode != 0:
            raise self.failure(done.stderr, f"upload to {remote} failed")

    def download(self, remote: str, writer: IO[bytes]) -> tuple[str, int]:
        """Stream the device's ``remote`` file into ``writer``; returns (sha256 hex, bytes) of what arrived.

        Raises:
            DeviceError: ssh or ``cat`` failed.
        """
        digest, size = hashlib.sha256(), 0
        with subprocess.Popen(
            self.argv(["cat", remote]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            while chunk := process.stdout.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
            stderr = process.stderr.read()
            code = process.wait()
        if code == SSH_FAILED:
            raise self.failure(stderr, "ssh")
        if code != 0:
            raise self.failure(stderr, f"download of {remote} failed")
        return digest.hexdigest(), size

    def stream(self, words: Sequence[str], log: IO[Any]) -> int:
        """Run ``words`` on the device with its stdout and stderr going to ``log``; returns its exit status
        (255: ssh failed, see the log).

        Without a terminal, nothing tells a remote command that ssh went away (an interrupted or killed run):
        a builder that prints nothing for minutes would go on building on the device, and the next run's
        build would run beside it. So ``words`` run under ``STOP_WITH_STDIN``: the remote stdin is a pipe
        this process holds open until the command ends; when ssh or this process dies it closes, and the
        device's shell sends the builder SIGTERM.
        """
        argv = self.argv(["sh", "-c", STOP_WITH_STDIN, "trtbuild-build", *words])
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT) as process:
            return process.wait()


@contextlib.contextmanager
def shared_connection(connection: Connection, socket_dir: Path) -> Iterator[Connection]:
    """Open one master connection to the device (``ssh -M -N -f``, ``ControlPath`` in ``socket_dir``) and
    yield a ``Connection`` whose commands all go through it; closed (``ssh -O exit``) on leaving.

    ``socket_dir`` must be private (mode 0700) and short: a Unix socket path is at most 107 bytes.

    Raises:
        DeviceError: the device did not answer, or refused the connection or authentication.
    """
    path = str(socket_dir / "%C")  # %C: a hash of host, port and user, always short
    master = Connection(connection.host, connection.port, connection.options, connection.connect_timeout, None)
    argv = master.ssh_argv("-M", "-N", "-f", "-o", f"ControlPath={path}", "-o", "ControlPersist=yes")
    # stderr goes to a file, not a pipe: the master that ``-f`` sends to the background keeps it open
    with tempfile.TemporaryFile() as errors:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                timeout=connection.connect_timeout + 30,
            )
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{connection.host}: ssh: no answer within {connection.connect_timeout + 30} s") from None
        except OSError as exc:
            raise DeviceError(f"{connection.host}: cannot run ssh: {exc.strerror or exc}") from None
        if done.returncode != 0:
            errors.seek(0)
            raise connection.failure(errors.read(), "ssh")
    shared = Connection(
        connection.host, connection.port, connection.options, connection.connect_timeout, path, connection.env
    )
    try:
        yield shared
    finally:
        subprocess.run(
            [*master.ssh_argv("-O", "exit", "-o", f"ControlPath={path}")],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )


def missing_files(connection: Connection, files: Sequence[tuple[str, str]]) -> list[str]:
    """Of ``files`` (``(remote path, sha256)``), those the device lacks or holds with other bytes
    (``sha256sum`` on the device), in order; one command for all.

    Raises:
        DeviceError: ssh failed.
    """
    if not files:
        return []
    script = (
        'while [ "$#" -gt 1 ]; do '
        'if [ "$(sha256sum < "$1" 2>/dev/null | cut -c1-64)" != "$2" ]; then printf "%s\\n" "$1"; fi; '
        "shift 2; done"
    )
    words = ["sh", "-c", script, "check"] + [part for pair in files for part in pair]
    return connection.run(words).decode().splitlines()


def ensure_files(connection: Connection, files: Sequence[tuple[Path | bytes, str, str]]) -> list[str]:
    """Content-addressed upload: copy each ``(local, remote path, sha256)`` the device lacks
    (``missing_files``), verified on arrival (``Connection.upload``). Returns the remote paths sent.

    Raises:
        DeviceError: ssh or a transfer failed.
    """
    by_remote = {remote: (local, sha256) for local, remote, sha256 in files}
    sent = missing_files(connection, [(remote, sha256) for _, remote, sha256 in files])
    for remote in sent:
        local, sha256 = by_remote[remote]
        connection.upload(local, remote, sha256=sha256)
    return sent

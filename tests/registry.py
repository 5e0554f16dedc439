"""A real OCI registry for tests: CNCF distribution (Debian's ``docker-registry``) on 127.0.0.1.

Each registry gets its own config in a temporary folder (never the packaged default, which listens on
every interface): filesystem storage in that folder, ``http.addr`` on a free loopback port, optionally
htpasswd (bcrypt) authentication. ``docker-registry serve CONFIG`` runs as a child process; it is ready
when ``GET /v2/`` answers (200, or 401 with authentication) and is stopped when the test ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARY = "docker-registry"


@dataclass
class LocalRegistry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``, ``storage`` its filesystem root."""

    host: str
    storage: Path
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, repo: str = "fleet") -> str:
        return f"oci+http://{self.host}/{repo}"

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes."""
        hex_digest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: a test's server is gone when this returns."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_registry(folder: Path, htpasswd: Path | None = None, timeout: float = 20.0) -> LocalRegistry:
    """Write a config under ``folder``, start ``docker-registry serve`` with it and wait until it answers."""
    if shutil.which(BINARY) is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = f"auth:\n  htpasswd:\n    realm: trtbuild-test\n    path: {htpasswd}\n" if htpasswd else ""
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    log = folder / "registry.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([BINARY, "serve", str(config)], stdout=sink, stderr=subprocess.STDOUT)
    registry = LocalRegistry(f"127.0.0.1:{port}", storage, process, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return registry
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return registry
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """An open registry (no authentication) on 127.0.0.1, stopped after the test."""
    running = start_registry(tmp_path / "registry")
    try:
        yield running
    finally:
        running.stop()


USER, PASSWORD = "fleet-builder", "s3cret-Pa55word"


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry that wants ``USER`` / ``PASSWORD`` (htpasswd, bcrypt), stopped after the test."""
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd is not installed (apt-get install apache2-utils)")
    folder = tmp_path / "auth-registry"
    folder.mkdir()
    line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True).stdout
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(line.strip() + "\n")
    running = start_registry(folder, htpasswd)
    try:
        yield running
    finally:
        running.stop()

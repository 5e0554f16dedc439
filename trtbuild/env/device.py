"""A builder device reached over SSH (a device overlay's ``remote:``): its connection for the run, and its
environment fingerprint, probed on the device.

The probe is one POSIX ``sh`` script run on the device (no Python needed: JetPack 4.6 ships 3.6): it prints
each file of ``env.fingerprint.PROBED_FILES`` under the device's root (``TRTBUILD_SYSROOT`` from
``remote.env``, default ``/``), the TensorRT library names, ``nvidia-smi``'s answer where there is one,
and the TensorRT / CUDA / cuDNN packages from ``dpkg-query``. ``env.fingerprint.assemble`` turns that into
the same fingerprint a probe on the device itself gives, so the engines' keys hold the *device's* facts.
``builder: polygraphy`` asks the device's Python which TensorRT it has, with trtbuild's own
``builder.compat`` from the zip ``ssh.bundle`` sends. Where the files do not say (no
``/usr/local/cuda/version.json``, no cuDNN header, no ``libnvinfer.so.X.Y.Z``), the packages do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtbuild.env.fingerprint import NVINFER_GLOBS, PROBED_FILES, SMI_QUERY, assemble, nvinfer_version, parse_smi
from trtbuild.ssh.bundle import remote_bundle
from trtbuild.ssh.transport import Connection, DeviceError, ensure_files, shared_connection

_MARK = "@@trtbuild"
#: Debian packages that name TensorRT, CUDA and cuDNN versions on JetPack (``dpkg-query -W``).
PACKAGES = re.compile(
    r"^(tensorrt|nvidia-tensorrt|libnvinfer-bin|libnvinfer\d+|cuda-cudart-\d+-\d+|libcudnn\d+|nvidia-l4t-core)$"
)


_PYTHON_PROBE = (
    "import json\n"
    "from trtbuild.builder import compat\n"
    "flavour = compat.select_flavour()\n"
    "found = compat.distribution_of(flavour)\n"
    "cuda = compat.cuda_of_distribution(found[0]) if found else None\n"
    "print(json.dumps([flavour, found[1] if found else None, cuda]))\n"
)


def probe_script(python: tuple[str, str, str] | None = None) -> str:
    """The device's probe: sections ``@@trtbuild file PATH``, ``@@trtbuild glob``, ``@@trtbuild smi``,
    ``@@trtbuild dpkg``, each followed by what it found (absent files print nothing); with ``python``
    (``(python, bundle path, bundle sha256)``, ``builder: polygraphy``) a last section ``@@trtbuild python``:
    the device Python's answer to ``_PYTHON_PROBE`` when the bundle is there with that sha256, else
    ``nobundle``."""
    files = " ".join(PROBED_FILES)
    globs = " ".join(f'"$R"/{pattern}' for pattern in NVINFER_GLOBS)
    smi = " ".join(SMI_QUERY)
    script = (
        'R="${TRTBUILD_SYSROOT:-/}"; '
        f"for f in {files}; do "
        f'if [ -r "$R/$f" ]; then printf "\\n{_MARK} file %s\\n" "$f"; tr -d "\\000" < "$R/$f"; fi; done; '
        f'printf "\\n{_MARK} glob\\n"; for f in {globs}; do [ -e "$f" ] && printf "%s\\n" "$f"; done; '
        f'if [ -z "$TRTBUILD_SYSROOT" ] && command -v nvidia-smi >/dev/null 2>&1; then '
        f'printf "\\n{_MARK} smi\\n"; nvidia-smi {smi} 2>/dev/null; fi; '
        f'printf "\\n{_MARK} dpkg\\n"; '
        'dpkg-query --admindir="$R/var/lib/dpkg" -W -f "\\${Package}\\t\\${Version}\\n" 2>/dev/null; '
    )
    if python is not None:
        binary, bundle, digest = (shlex.quote(part) for part in python)
        script += (
            f'printf "\\n{_MARK} python\\n"; '
            f'if [ "$(sha256sum < {bundle} 2>/dev/null | cut -c1-64)" = {digest} ]; then '
            f"PYTHONPATH={bundle} {binary} -c {shlex.quote(_PYTHON_PROBE)} 2>&1; else echo nobundle; fi; "
        )
    return script + "true"


def parse_probe(text: str) -> dict[str, Any]:
    """The probe's output -> ``{"files": {path: text}, "libraries": [...], "smi": {...}, "packages":
    {name: version}}`` (only ``PACKAGES``)."""
    found: dict[str, Any] = {"files": {}, "libraries": [], "smi": {}, "packages": {}}
    for section in text.split(f"\n{_MARK} ")[1:]:
        head, _, body = section.partition("\n")
        if head.startswith("file "):
            found["files"][head[5:]] = body.strip()
        elif head == "glob":
            found["libraries"] = body.split()
        elif head == "smi":
            found["smi"] = parse_smi(body)
        elif head == "python":
            found["python"] = body.strip()
        elif head == "dpkg":
            for line in body.splitlines():
                name, _, version = line.partition("\t")
                if PACKAGES.match(name) and version:
                    found["packages"][name] = version
    return found


def upstream_version(debian: str) -> str:
    """A Debian package version's upstream part: ``8.2.1-1+cuda10.2`` -> ``8.2.1`` (epoch and revision off)."""
    version = debian.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def _package(packages: dict[str, str], pattern: str) -> str | None:
    names = sorted(name for name in packages if re.fullmatch(pattern, name))
    return upstream_version(packages[names[-1]]) if names else None


def device_fingerprint(
    probed: dict[str, Any], flavour: str, version: str | None, wheel_cuda: str | None
) -> dict[str, Any]:
    """The fingerprint of a device from its probe (``parse_probe``) and its builder's flavour, version (the
    Python distribution's, else ``None``) and wheel CUDA major; see the module docstring for the fallbacks."""
    packages = probed["packages"]
    version = (
        version
        or nvinfer_version(probed["libraries"])
        or _package(packages, r"libnvinfer-bin|tensorrt|nvidia-tensorrt|libnvinfer\d+")
    )
    files = probed["files"]
    fingerprint = assemble(flavour, version, wheel_cuda, files.get, probed["smi"])
    if fingerprint["cuda"] is None:
        cudart = sorted(name for name in packages if name.startswith("cuda-cudart-"))
        fingerprint["cuda"] = upstream_version(packages[cudart[-1]]) if cudart else None
    if fingerprint["cudnn"] is None:
        fingerprint["cudnn"] = _package(packages, r"libcudnn\d+")
    return fingerprint


@dataclass
class BuilderDevice:
    """The device a project's engines are built on, for one run.

    Attributes:
        name: the device overlay (``nano-lab``): names its timing cache on the device.
        host: the ssh destination, for messages.
        builder: ``trtexec`` or ``polygraphy``.
        spec: the overlay's ``remote:`` mapping, validated (``manifest.schema.RemoteBuilder``).
        connection: commands go through the run's shared connection.
        slot: held while a step builds on the device: one build at a time (small Jetsons run out of
            memory with two).
    """

    name: str
    host: str
    builder: str
    spec: dict[str, Any]
    connection: Connection
    slot: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> str:
        """``trtexec on jetson@nano-lab-01``."""
        return f"{self.builder} on {self.host}"

    def probe(self) -> dict[str, Any]:
        """The device's fingerprint now (see the module docstring).

        Raises:
            DeviceError: the device did not answer or a command failed on it, ``builder: trtexec`` on a
                device whose TensorRT version cannot be read, or a device Python whose answer is not the
                probe's: a device that cannot build fails its own models only (``ops.build.build``).
        """
        if self.builder == "trtexec":
            probed = parse_probe(self.connection.run_script(probe_script()).decode(errors="replace"))
            fingerprint = device_fingerprint(probed, "tensorrt", None, None)
            if fingerprint["builder_version"] is None:
                raise DeviceError(
                    f"{self.host}: no TensorRT found (no libnvinfer.so.X.Y.Z, no libnvinfer package): "
                    "trtexec needs JetPack's TensorRT"
                )
            return fingerprint
        data, code, digest = remote_bundle(self.spec["workdir"])
        script = probe_script((self.spec["python"], code, digest))
        probed = parse_probe(self.connection.run_script(script).decode(errors="replace"))
        if probed.get("python") == "nobundle":  # the first probe of this trtbuild version: send the zip once
            ensure_files(self.connection, [(data, code, digest)])
            probed = parse_probe(self.connection.run_script(script).decode(errors="replace"))
        lines = probed.get("python", "").splitlines()
        try:
            flavour, version, wheel_cuda = json.loads(lines[-1])
            if not isinstance(flavour, str):
                raise ValueError(flavour)
        except (IndexError, ValueError, TypeError):
            last = lines[-1][:200] if lines else "nothing"
            raise DeviceError(
                f"{self.host}: {self.spec['python']} did not answer trtbuild's probe (it printed {last!r})"
            ) from None
        return device_fingerprint(probed, flavour, version, wheel_cuda)

    def request(self) -> dict[str, Any]:
        """What the device build child (``ssh.child``) needs to reach the device and build there."""
        connection = self.connection
        return {
            "connection": {
                "host": connection.host,
                "port": connection.port,
                "options": connection.options,
                "connect_timeout": connection.connect_timeout,
                "control_path": connection.control_path,
                "env": connection.env,
            },
            "builder": self.builder,
            "trtexec": self.spec["trtexec"],
            "python": self.spec["python"],
            "workdir": self.spec["workdir"],
            "device": self.name,
        }


#: The longest temporary folder the shared connection's socket goes under: ssh's socket path is that, then
#: ``/trtbuild-ssh-XXXXXXXX/`` and ``%C`` (40) and, while the master starts, ``.`` and 16 more characters;
#: a Unix socket path has at most 103 bytes on macOS, 107 on Linux.
SOCKET_BASE_MAX = 20


def _socket_base() -> str | None:
    """The temporary folder (``TMPDIR``) for the socket folder, or ``/tmp`` where that is too long for a
    socket path (macOS's ``/var/folders/.../T/``, a CI job's deep ``TMPDIR``)."""
    base = tempfile.gettempdir()
    if len(base) > SOCKET_BASE_MAX and os.access("/tmp", os.W_OK | os.X_OK):
        return "/tmp"
    return None


@contextlib.contextmanager
def open_device(name: str, spec: dict[str, Any]) -> Iterator[BuilderDevice]:
    """Connect to the device of ``spec`` (a validated ``remote:`` mapping) once for the run (``ssh -M``, the
    socket in a private temporary folder removed on leaving) and yield it.

    Raises:
        DeviceError: the device did not answer, or refused the connection or authentication.
    """
    connection = Connection(
        spec["host"], spec.get("port"), dict(spec["ssh_options"]), spec["connect_timeout"], None, dict(spec["env"])
    )
    sockets = Path(tempfile.mkdtemp(prefix="trtbuild-ssh-", dir=_socket_base()))
    try:
        with shared_connection(connection, sockets) as shared:
            yield BuilderDevice(name, spec["host"], spec["builder"], spec, shared)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)

"""trtbuild's file-system primitives, each defined once: crash-safe writes confined to the project, the
containment rule and content hashes (stat signatures and git's racily-clean window: ``statsig``).

Standard library only and cheap to import (no ``secrets``, ``threading`` or ``hashlib`` at import). A child
uses only ``sha256_file`` and ``pin_mismatch`` (the one pin check); it writes through the descriptor it
inherited (``childside``).

Crash-safe replacement: write a temporary file in the target's folder, fsync, rename. ``os.replace`` is
atomic on POSIX within one file system, so a reader sees either the old file or the complete new one;
never a prefix. A power loss before the rename leaves only a ``.partial`` file, which no reader takes for
the real thing.

Confinement: a loaded project registers its folder (``confine``). From then on every file or folder this
module creates lexically under that folder must really be under it, symlinks resolved, at the moment it
is written: the target's folder is resolved, checked with ``inside_project`` and opened component by
component with ``O_NOFOLLOW`` from the project's real root, and the partial file is created and renamed
relative to that folder's descriptor. A symlink swapped in afterwards changes nothing: the descriptor
still names the folder that was checked, which is checked once more right before the rename. Children
write their output through ``/proc/self/fd/N`` (``child_fd``), never through a path an attacker can
redirect. The source cache (``locate.cache_root``: ``~/.cache/trtbuild``, ``TRTBUILD_CACHE``) lives
outside projects by design and is never confined.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from trtbuild.errors import StateError
from trtbuild.locate import cache_root

PARTIAL_SUFFIX = ".partial"
CHUNK = 4 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Where a process sees its own descriptors as paths (Linux); elsewhere partial files are named by path.
_PROC_FD = "/proc/self/fd"
_HAS_PROC_FD = os.path.isdir(_PROC_FD)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process umask, read once at import (``os.umask`` can only be read by setting it, so not in threads).
UMASK = _read_umask()


class OutsideProjectError(StateError):
    """A file trtbuild was about to write in the project resolves outside it (a symlink on the way), or a
    folder on its way changed while it was written. Exit code 2 for state files; a step turns it into its
    own failure (``isolation.run_isolated``)."""


#: Project folders (absolute, normalised) whose writes are confined; see ``confine``.
_ROOTS: set[str] = set()


def _normal(path: Path | str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _lexically_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def confine(root: Path) -> None:
    """Register ``root`` (a project folder): from now on, in this process, every file or folder written
    through this module whose path lies under ``root`` must resolve (symlinks followed) under ``root``'s
    real path too, or ``OutsideProjectError`` is raised instead of writing."""
    _ROOTS.add(_normal(root))


def inside_project(root: Path | str, path: Path | str) -> bool:
    """Whether ``path``, every symlink resolved (missing components kept as written), is ``root`` or under
    it, ``root`` resolved the same way. The one containment rule of trtbuild: the manifest's checks and
    every write use it."""
    return _lexically_under(os.path.realpath(path), os.path.realpath(root))


def _confining_root(path: str) -> str | None:
    """The innermost registered project folder ``path`` lies under, unless ``path`` is in the source cache."""
    if _lexically_under(path, _normal(cache_root())):
        return None
    roots = [root for root in _ROOTS if _lexically_under(path, root)]
    return max(roots, key=len) if roots else None


def _outside(path: Path | str, real: str, root: str) -> OutsideProjectError:
    return OutsideProjectError(
        f"refusing to write {path}: it resolves to {real}, outside the project folder {root} "
        "(a symlink points out of the project)"
    )


def _open_folder(folder: Path, create: bool, shown: Path) -> int:
    """An ``O_DIRECTORY`` descriptor of ``folder``, missing components created when ``create``; errors
    name ``shown`` (the file about to be written there).

    Under a confined project the folder must resolve inside it, and it is opened from the project's real
    root one component at a time with ``O_NOFOLLOW``, so a component swapped for a symlink after the check
    is refused rather than followed.

    Raises:
        OutsideProjectError: the folder resolves outside its project, or changed while being opened.
        FileNotFoundError: it does not exist and ``create`` is false.
    """
    normal = _normal(folder)
    root = _confining_root(normal)
    if root is None:
        if create:
            os.makedirs(normal, exist_ok=True)
        return os.open(normal, _DIR_FLAGS)
    real_root, real = os.path.realpath(root), os.path.realpath(normal)
    if not _lexically_under(real, real_root):
        raise _outside(shown, real, root)
    fd = os.open(real_root, _DIR_FLAGS)
    try:
        walked = real_root
        for part in Path(os.path.relpath(real, real_root)).parts if real != real_root else ():
            walked = os.path.join(walked, part)
            try:
                child = _open_component(part, fd, create)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutsideProjectError(
                        f"refusing to write {shown}: {walked} is a symlink or not a folder "
                        "(it changed while trtbuild was writing)"
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_component(part: str, parent_fd: int, create: bool) -> int:
    flags = _DIR_FLAGS | os.O_NOFOLLOW
    try:
        return os.open(part, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, 0o777, dir_fd=parent_fd)
    return os.open(part, flags, dir_fd=parent_fd)


def _check_still_inside(dir_fd: int, shown: Path) -> None:
    """Right before a rename: the opened folder must still be inside its project (not moved out, not deleted)."""
    root = _confining_root(_normal(shown))
    if root is None or not _HAS_PROC_FD:
        return
    now = os.readlink(f"{_PROC_FD}/{dir_fd}")
    if now.endswith(" (deleted)") or not _lexically_under(now, os.path.realpath(root)):
        raise _outside(shown, now, root)


def fsync_dir(folder: Path) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class _Partial:
    folder: str
    dir_fd: int
    name: str
    fd: int
    published: bool = False


_PARTIALS: dict[str, _Partial] = {}
_PARTIALS_LOCK = (
    _thread.allocate_lock()
)  # threading.Lock without importing threading (the fast path imports this module)


@contextlib.contextmanager
def partial_path(target: Path) -> Iterator[Path]:
    """A new, empty, unique ``.<name>.<random>.partial`` file beside ``target``; removed again unless
    published. The target's folder is created if missing.

    Yields the path to write it through: ``/proc/self/fd/N`` on Linux (it names this very file whatever
    happens to the folders on the way; a child given it with ``pass_fds=[child_fd(path)]`` writes the same
    file), else the file's real path. Use ``publish(partial, target)`` to put it in place.

    Raises:
        OutsideProjectError: ``target`` lies in a confined project but its folder resolves outside it.
    """
    dir_fd = _open_folder(target.parent, True, target)
    try:
        while True:
            name = f".{target.name}.{os.urandom(4).hex()}{PARTIAL_SUFFIX}"  # secrets.token_hex(4), without its imports
            try:
                fd = os.open(
                    name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
                )
                break
            except FileExistsError:
                continue
    except BaseException:
        os.close(dir_fd)
        raise
    handle = _Partial(_normal(target.parent), dir_fd, name, fd)
    partial = Path(f"{_PROC_FD}/{fd}") if _HAS_PROC_FD else Path(os.path.realpath(target.parent)) / name
    with _PARTIALS_LOCK:
        _PARTIALS[str(partial)] = handle
    try:
        yield partial
    finally:
        with _PARTIALS_LOCK:
            _PARTIALS.pop(str(partial), None)
        if not handle.published:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
        os.close(fd)
        os.close(dir_fd)


def child_fd(partial: Path) -> int | None:
    """The descriptor a child process must inherit (``pass_fds``) to write ``partial`` by its path, or
    ``None`` where partial files are named by path."""
    handle = _PARTIALS.get(str(partial))
    return handle.fd if handle is not None and _HAS_PROC_FD else None


def publish(partial: Path, target: Path) -> None:
    """fsync ``partial`` (from ``partial_path(target)``), give it the mode a plain ``open`` would
    (``0o666`` less the umask: it was made 0600, which a service running as another user cannot read),
    rename it to ``target`` within the folder that was checked and opened, and fsync the folder.

    Raises:
        OutsideProjectError: the folder was moved out of the project (or deleted) since it was opened.
        ValueError: ``partial`` does not come from ``partial_path(target)``.
    """
    handle = _PARTIALS.get(str(partial))
    if handle is None or handle.folder != _normal(target.parent):
        raise ValueError(f"{partial} is not a partial file of {target}")
    os.fchmod(handle.fd, 0o666 & ~UMASK)
    os.fsync(handle.fd)
    _check_still_inside(handle.dir_fd, target)
    os.replace(handle.name, target.name, src_dir_fd=handle.dir_fd, dst_dir_fd=handle.dir_fd)
    handle.published = True
    with contextlib.suppress(OSError):
        os.fsync(handle.dir_fd)


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically (temporary file, fsync, rename), confined as
    ``partial_path`` says.

    Raises:
        OutsideProjectError: ``target`` lies in a confined project but resolves outside it.
    """
    with partial_path(target) as partial:
        handle = _PARTIALS[str(partial)]
        view = memoryview(data)
        while view:
            view = view[os.write(handle.fd, view) :]
        publish(partial, target)


@contextlib.contextmanager
def open_for_writing(target: Path) -> Iterator[IO[bytes]]:
    """``target`` opened for writing in place, truncated (for logs), confined as ``partial_path`` says; a
    symlink at ``target`` itself is refused too.

    Raises:
        OutsideProjectError: ``target`` lies in a confined project but resolves outside it.
    """
    dir_fd = _open_folder(target.parent, True, target)
    try:
        try:
            fd = os.open(
                target.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP and _confining_root(_normal(target)) is not None:
                raise OutsideProjectError(f"refusing to write {target}: it is a symlink") from None
            raise
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "wb") as handle:
        yield handle


def remove_partials(folder: Path, name: str) -> int:
    """Delete ``.partial`` files an interrupted run left for ``name`` in ``folder``; returns how many.

    Raises:
        OutsideProjectError: ``folder`` lies in a confined project but resolves outside it.
    """
    try:
        dir_fd = _open_folder(folder, False, folder / name)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    try:
        for leftover in fnmatch.filter(os.listdir(dir_fd), f".{_escape(name)}.*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover, dir_fd=dir_fd)
                removed += 1
    finally:
        os.close(dir_fd)
    return removed


def _escape(name: str) -> str:
    """``name`` with ``fnmatch``'s special characters taken literally."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes (``hashlib.file_digest``; read in 4 MiB chunks on Python 3.10)."""
    import hashlib  # not at import: the no-op fast path never hashes

    with open(path, "rb") as handle:
        if hasattr(hashlib, "file_digest"):
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def pin_mismatch(actual: str, pin: str | None, name: object, refusal: str = "") -> str | None:
    """The one pin check: ``None`` when there is no ``pin`` or the bytes' sha256 ``actual`` is it, else the
    message. Two wordings, one per moment: a manifest check before anything runs (``NAME has sha256 A, not
    the pinned P``, the caller prefixes ``file:line: field``), and a refusal at the moment of use, which
    says what was not done (``NAME: sha256 A is not the pinned P; REFUSAL``, e.g. ``source X`` and ``not
    loaded``).
    """
    if pin is None or actual == pin:
        return None
    if refusal:
        return f"{name}: sha256 {actual} is not the pinned {pin}; {refusal}"
    return f"{name} has sha256 {actual}, not the pinned {pin}"

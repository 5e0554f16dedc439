"""``trtbuild clean``: delete engines and forget their models in the lock."""

from __future__ import annotations

from trtbuild.files import remove_partials
from trtbuild.manifest.target import Project
from trtbuild.ops.project import check_names, run_lock
from trtbuild.state.freshstamp import remove_stamps
from trtbuild.state.lockfile import LockFile


def clean(project: Project, names: list[str] | None, wait_seconds: float = 0) -> list[str]:
    """Delete the engines (and leftover partial files) of ``names`` (all models when ``None``) and forget
    every lock entry of those models (export, conversions, report, engine).

    Returns:
        the engine paths removed, relative to the project.

    Raises:
        ManifestError: an unknown model name.
        BusyError: another run holds the project for longer than ``wait_seconds``.
    """
    names = names or list(project.models)
    check_names(project, names)
    removed = []
    with run_lock(project, wait_seconds):
        remove_stamps(project)
        lock = LockFile(project.lock_path)
        for name in names:
            engine = project.models[name].engine
            remove_partials(engine.parent, engine.name)
            if engine.is_file():
                engine.unlink()
                removed.append(project.relative(engine))
            lock.remove_model(name)
        lock.save()
    return removed

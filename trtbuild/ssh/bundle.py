"""The builder's code as one zip, run on a device that has TensorRT and Polygraphy but not trtbuild.

``builder: polygraphy`` builds on the device with the very modules a local build runs
(``trtbuild.builder.child`` and what it imports), so a device build and a local build are the same build.
Python imports packages from a zip on ``PYTHONPATH`` (``zipimport``): the device runs
``PYTHONPATH=<zip> python -m trtbuild.builder.child REQUEST.json``. The zip is deterministic (sorted
members, fixed timestamps), so its sha256 names it in the device's content-addressed work folder and it is
sent once per trtbuild version.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from functools import cache
from pathlib import Path

#: The modules the builder child imports, directly or not (``tests/test_device_builds.py`` checks the list
#: against the child's imports), relative to the ``trtbuild`` package.
MEMBERS = (
    "__init__.py",
    "errors.py",
    "childside.py",
    "child_requests.py",
    "files.py",
    "locate.py",
    "builder/__init__.py",
    "builder/child.py",
    "builder/compat.py",
    "builder/summary.py",
)
#: Where the zip's members get their time stamp (zip's epoch): equal code, equal bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


@cache
def builder_bundle() -> tuple[bytes, str]:
    """(the zip's bytes, its sha256 hex): ``trtbuild/<member>`` for every ``MEMBERS`` entry."""
    package = Path(__file__).resolve().parents[1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in MEMBERS:
            info = zipfile.ZipInfo(f"trtbuild/{member}", _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (package / member).read_bytes())
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def remote_bundle(workdir: str) -> tuple[bytes, str, str]:
    """(the zip's bytes, where it goes in the device's work folder: ``<workdir>/code/<sha256>.zip``, its
    sha256)."""
    data, digest = builder_bundle()
    return data, f"{workdir}/code/{digest}.zip", digest

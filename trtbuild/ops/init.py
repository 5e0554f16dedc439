"""``trtbuild init``: a starter fleet repository.

Writes ``builds.yaml`` (defaults and a commented model), ``devices/<this machine>.yaml`` and a
``.gitignore`` that keeps what docs/devices.md says to commit — manifests, device overlays, project
recipes and the per-device locks (the record of which engine came from what) — and leaves out what
each device builds for itself: engines, exports, reports and ``.trtbuild/``. Existing files are never
overwritten.
"""

from __future__ import annotations

from pathlib import Path

from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import device_of
from trtbuild.errors import ManifestError
from trtbuild.files import write_atomic

MANIFEST = """\
# trtbuild manifest: every model of the fleet, how it becomes ONNX, and how its engine is built.
# docs/manifest.md lists every field; `trtbuild schema` prints the JSON Schema for editors.
defaults:
  precision: fp16              # fp32, fp16 or int8 (int8 needs calibration: and validation: images)
  workspace: 1GiB              # the builder's workspace memory-pool limit
  builder_optimization_level: 3

models: {}
# models:
#   detector:
#     source: models/detector.onnx        # or {pypi: NAME==VERSION, member: PATH, sha256: ...}
#     inputs:                             # one optimization profile: min / opt / max per input
#       images: {min: [1, 3, 640, 640], opt: [1, 3, 640, 640], max: [4, 3, 640, 640]}
"""

DEVICE = """\
# Overrides of builds.yaml for {device} (any field, under defaults: or per model).
# trtbuild detects this device; each device keeps locks/{device}.lock, engines/{device}/ and exports/{device}/.
defaults: {{}}
"""

GITIGNORE = """\
# trtbuild: each device builds these for itself (or pulls them); they are never committed.
engines/
exports/
reports/
.trtbuild/
*.partial
# Committed: builds.yaml, devices/, recipes/ and locks/ — the locks record which engine came from what.
"""


def init(root: Path) -> list[Path]:
    """Write the starter files into ``root`` for this machine, detected as a device (``env.jetson``). A
    device tree trtbuild does not know writes no ``devices/`` overlay: a project without one is single-device
    (``builds.lock``), where a ``devices/None.yaml`` would make every command ask for ``--device``.

    Returns:
        the files written, in order.

    Raises:
        ManifestError: ``root`` already has a ``builds.yaml`` (nothing is written).
    """
    device = device_of(fingerprint())
    files = {root / "builds.yaml": MANIFEST}
    if device is not None:
        files[root / "devices" / f"{device}.yaml"] = DEVICE.format(device=device)
    files[root / ".gitignore"] = GITIGNORE
    if (root / "builds.yaml").exists():
        raise ManifestError(f"{root / 'builds.yaml'} already exists; trtbuild init writes a new project only")
    written = []
    for path, text in files.items():
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())
        written.append(path)
    return written

"""Calibration and validation images: real photos, varied only by deterministic crops and resizes.

An image sample (``manifest.schema.Sample`` with ``images``) is the sorted list of files matching its glob — in the
project, or inside an installed package such as scikit-image's ``data/*.png`` — each cut into a fixed
sequence of crops, the first ``count`` kept. The same files always give the same tensors, so the
calibration's key is the files' sha256s plus the settings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from trtbuild.errors import ManifestError

#: (left, top, right, bottom) as fractions of the image: whole, centre 80 %, then the four corners at 80 %.
CROPS = (
    (0.0, 0.0, 1.0, 1.0),
    (0.1, 0.1, 0.9, 0.9),
    (0.0, 0.0, 0.8, 0.8),
    (0.2, 0.0, 1.0, 0.8),
    (0.0, 0.2, 0.8, 1.0),
    (0.2, 0.2, 1.0, 1.0),
)
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
#: Import name -> (pip package, trtbuild extra that installs it) of the packages whose photos are used.
IMAGE_PACKAGES = {"skimage": ("scikit-image", "int8"), "ultralytics": ("ultralytics", "ultralytics")}


def image_files(images: Any, root: Path) -> list[Path]:
    """The files of an ``ImageSet``, sorted.

    Raises:
        ManifestError: the package is not installed, or nothing matches.
    """
    base = root
    if images.package:
        spec = importlib.util.find_spec(images.package)
        if spec is None or not spec.submodule_search_locations:
            pip, extra = IMAGE_PACKAGES.get(images.package, (images.package, None))
            hint = f"pip install {pip}" + (f" (or pip install 'trtbuild[{extra}]')" if extra else "")
            raise ManifestError(f"images: package {images.package!r} is not installed; {hint}")
        base = Path(list(spec.submodule_search_locations)[0])
    patterns = [images.glob] if isinstance(images.glob, str) else images.glob
    files = sorted({path for pattern in patterns for path in base.glob(pattern) if path.suffix.lower() in SUFFIXES})
    if not files:
        raise ManifestError(f"images: nothing matches {images.glob!r} in {base}")
    return files


def sample_plan(sample: Any, root: Path) -> list[tuple[Path, int]]:
    """(file, crop index) pairs of a sample, in order: every file's first crop, then second, ..."""
    files = image_files(sample.images, root)
    plan = [(path, crop) for crop in range(sample.crops) for path in files]
    return plan[: sample.count]


def _resize(image: Any, size: tuple[int, int], mode: str) -> Any:
    from PIL import Image

    height, width = size
    if mode == "stretch":
        return image.resize((width, height), Image.Resampling.BILINEAR)
    ratio = min(width / image.width, height / image.height)
    scaled = image.resize(
        (max(1, round(image.width * ratio)), max(1, round(image.height * ratio))), Image.Resampling.BILINEAR
    )
    canvas = Image.new(image.mode, (width, height), (114,) * len(image.getbands()))
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def tensor(path: Path, crop: int, preprocess: Any, shape: list[int]) -> Any:
    """One image as a float32 array of ``shape`` with batch 1 (``[1, C, H, W]`` or ``[1, H, W, C]``)."""
    import numpy as np
    from PIL import Image

    nchw = preprocess.layout == "nchw"
    height, width = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    image = Image.open(path).convert("L" if preprocess.color == "gray" else "RGB")
    left, top, right, bottom = CROPS[crop]
    image = image.crop(
        (round(left * image.width), round(top * image.height), round(right * image.width), round(bottom * image.height))
    )
    array = np.asarray(_resize(image, (height, width), preprocess.resize), dtype=np.float32)
    array = array[:, :, None] if array.ndim == 2 else array
    if preprocess.color == "bgr":
        array = array[:, :, ::-1]
    array = (array * preprocess.scale - np.asarray(preprocess.mean, np.float32)) / np.asarray(
        preprocess.std, np.float32
    )
    array = array.transpose(2, 0, 1) if nchw else array
    return np.ascontiguousarray(array[None], dtype=np.float32)


def batches(plan: list[tuple[Path, int]], preprocess: Any, input_name: str, shape: list[int]) -> list[dict[str, Any]]:
    """A sample (``sample_plan``: its (file, crop) pairs) as ONNX Runtime feeds: ``[{input_name: array of
    shape}, ...]``.

    ``shape[0]`` is the batch the model takes (``steps.precision.feed_inputs``: the ONNX's static batch,
    else 1): each feed holds that many consecutive images of the sample, in ``sample_plan`` order, so
    ``ceil(count / batch)`` feeds. A remainder is completed by repeating the sample's first images
    (``count`` 5 at batch 2: images 0-1, 2-3, 4-0), so every feed has the shape the engine takes;
    ``real_images`` says which rows are the sample's own. A sample smaller than the batch repeats itself
    to fill the one feed.
    """
    import numpy as np

    batch = max(1, shape[0]) if shape else 1
    single = [1, *shape[1:]]
    images = [tensor(path, crop, preprocess, single) for path, crop in plan]
    feeds = []
    for start in range(0, len(images), batch):
        rows = [images[(start + offset) % len(images)] for offset in range(batch)]
        feeds.append({input_name: rows[0] if batch == 1 else np.ascontiguousarray(np.concatenate(rows))})
    return feeds


def real_images(count: int, batch: int) -> list[int]:
    """Per feed of ``batches`` (``count`` images, ``batch`` per feed), how many leading rows are the
    sample's own images; the rest of the last feed repeats the first ones."""
    batch = max(1, batch)
    return [min(batch, count - start) for start in range(0, count, batch)]

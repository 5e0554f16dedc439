"""Real photos shipped inside packages (scikit-image, Ultralytics), prepared for each model's input."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def astronaut() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins), RGB uint8 [512, 512, 3]."""
    from skimage import data

    return data.astronaut()


def astronaut_face() -> np.ndarray:
    """A crop around the astronaut's face, RGB uint8 [192, 192, 3]."""
    from skimage.transform import resize

    crop = astronaut()[20:240, 120:340]
    return (resize(crop, (192, 192), anti_aliasing=True) * 255).astype(np.uint8)


def bus() -> np.ndarray:
    """Ultralytics' bus.jpg (people and a bus), RGB uint8."""
    import ultralytics
    from skimage.io import imread

    return imread(Path(ultralytics.__file__).parent / "assets" / "bus.jpg")


def nchw01(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size``, scale to [0, 1], HWC -> [1, 3, size, size] float32."""
    from skimage.transform import resize

    resized = resize(image, (size, size), anti_aliasing=True).astype(np.float32)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None])


def gray64(image: np.ndarray) -> np.ndarray:
    """The fer preprocessing: grayscale 64x64 in [-1, 1], [1, 64, 64, 1] float32."""
    from skimage.color import rgb2gray
    from skimage.transform import resize

    gray = resize(rgb2gray(image), (64, 64), anti_aliasing=True).astype(np.float32)
    return (gray * 2.0 - 1.0)[None, :, :, None]

"""Pure image corruptions for robustness checks: noise, blur, whole-image and per-object shifts, JPEG.

Every function takes an (H, W, 3) uint8 image (or a scene) and returns a new uint8 image; the input is never
modified. Random ones take a numpy Generator so a seed reproduces them.
"""

from __future__ import annotations

import io
import math

import numpy as np
from scipy import ndimage

from .geometry import shape_mask
from .scenes import Scene, canvas_scale
from .vocab import BACKGROUND, PALETTE


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add i.i.d. N(0, sigma^2) noise (in 0..255 units) to every channel, then round and clip."""
    if sigma <= 0:
        return image.copy()
    return _to_uint8(image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32))


def _box_kernel(radius: float) -> np.ndarray:
    """PIL's BoxBlur kernel: weight 1 within the integer radius, the fractional part on the two next taps."""
    whole = int(math.floor(radius))
    frac = radius - whole
    taps = np.ones(2 * whole + 3, dtype=np.float64)
    taps[0] = taps[-1] = frac
    return taps / taps.sum()


def box_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Separable box blur of (fractional) `radius` pixels, edges replicated (PIL's BoxBlur semantics)."""
    if radius <= 0:
        return image.copy()
    kernel = _box_kernel(radius)
    out = image.astype(np.float64)
    for axis in (0, 1):
        out = ndimage.convolve1d(out, kernel, axis=axis, mode="nearest")
    return _to_uint8(out)


def gaussian_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur with standard deviation `radius` pixels per spatial axis, edges replicated."""
    if radius <= 0:
        return image.copy()
    out = ndimage.gaussian_filter(image.astype(np.float64), sigma=(radius, radius, 0), mode="nearest")
    return _to_uint8(out)


def blur(image: np.ndarray, radius: float, kind: str = "gaussian") -> np.ndarray:
    if kind == "gaussian":
        return gaussian_blur(image, radius)
    if kind == "box":
        return box_blur(image, radius)
    raise ValueError(f"unknown blur kind {kind!r}; choose gaussian or box")


def shift(image: np.ndarray, dx: int, dy: int, fill: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """Translate the whole image by (dx, dy) pixels (right / down positive); uncovered pixels take `fill`."""
    h, w = image.shape[:2]
    out = np.empty_like(image)
    out[:] = fill
    src_y, dst_y = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    src_x, dst_x = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    if src_y.start < src_y.stop and src_x.start < src_x.stop:
        out[dst_y, dst_x] = image[src_y, src_x]
    return out


def random_offset(pixels: int, rng: np.random.Generator) -> tuple[int, int]:
    """(dx, dy) with each component in {-pixels, 0, pixels}, not both zero (a move of exactly `pixels` per axis)."""
    if pixels <= 0:
        return 0, 0
    choices = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    dx, dy = choices[rng.integers(len(choices))]
    return dx * pixels, dy * pixels


def random_shift(image: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Whole-image shift by `pixels` in one of the eight directions."""
    dx, dy = random_offset(pixels, rng)
    return shift(image, dx, dy)


def render_with_offsets(scene: Scene, offsets: list[tuple[int, int]], size: int = 32) -> np.ndarray:
    """Render `scene` with object i moved by offsets[i] canvas pixels (off the token grid); clipped at the edges.

    Objects are painted in scene order, so a moved object may cover part of an earlier one, as in the renderer.
    """
    if len(offsets) != len(scene.objects):
        raise ValueError(f"{len(offsets)} offsets for {len(scene.objects)} objects")
    s = canvas_scale(size)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for obj, (dx, dy) in zip(scene.objects, offsets, strict=True):
        cell = shape_mask(obj.cls, s)
        y0, x0 = obj.y * s + dy, obj.x * s + dx
        ys, xs = np.nonzero(cell)
        ys, xs = ys + y0, xs + x0
        inside = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
        image[ys[inside], xs[inside]] = PALETTE[obj.color]
    return image


def shift_objects(scene: Scene, pixels: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render `scene` with every object moved independently by `pixels` in one of eight random directions."""
    offsets = [random_offset(pixels, rng) for _ in scene.objects]
    return render_with_offsets(scene, offsets, size)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through an in-memory JPEG at `quality` (1-95); lossy block quantisation and chroma subsampling."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def quantize(image: np.ndarray, levels: int) -> np.ndarray:
    """Posterise each channel to `levels` evenly spaced values (2..256)."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in 2..256, got {levels}")
    step = 255.0 / (levels - 1)
    return _to_uint8(np.rint(image.astype(np.float32) / step) * step)


__all__ = [
    "blur",
    "box_blur",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "quantize",
    "random_offset",
    "random_shift",
    "render_with_offsets",
    "shift",
    "shift_objects",
]

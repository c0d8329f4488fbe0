"""Shapes detector: regions by colour, then shape by template overlap, with a confidence.

Pixels take the nearest palette colour (or background / unknown when too far from every colour); each 4-connected
region of one colour is compared with every shape template at a few sub-cell shifts. The best template's IoU
sets the class and the confidence, so a blob that is no clear shape gets no detection or a low-confidence one,
as a real detector would.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from ...geneval.rules import Detection, Detections
from .geometry import shape_mask
from .vocab import BACKGROUND, COLORS, OBJECTS, PALETTE

_REFERENCE = np.array([PALETTE[c] for c in COLORS] + [BACKGROUND], dtype=np.float32)  # (11, 3)
MAX_COLOR_DISTANCE = 90.0  # RGB distance beyond which a pixel is "no colour"
MIN_IOU = 0.5  # below this overlap with every template, a region is no detection
_SHIFTS = (-1, 0, 1)


def confidence_from_iou(iou: float) -> float:
    """IoU 0.5 -> 0, IoU 1 -> 1, linear: a perfect shape scores 1, one wrong pixel in 20 scores 0.9."""
    return float(np.clip((iou - MIN_IOU) / (1.0 - MIN_IOU), 0.0, 1.0))


def _labels_of(pixels: np.ndarray) -> np.ndarray:
    dist = np.linalg.norm(pixels[..., None, :] - _REFERENCE, axis=-1)  # (..., 11)
    labels = dist.argmin(-1)
    labels[dist.min(-1) > MAX_COLOR_DISTANCE] = -1
    return labels


def pixel_labels(image: np.ndarray) -> np.ndarray:
    """(H, W) int: colour index 0..9, 10 for background, -1 for pixels near no reference colour."""
    if image.dtype != np.uint8:
        return _labels_of(image[..., :3].astype(np.float32))
    # Rendered and generated images hold few distinct colours: label each distinct colour once, then map back
    # (the same per-pixel arithmetic, so the same labels as labelling every pixel).
    rgb = image[..., :3].astype(np.int32)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    pixels = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=-1).astype(np.float32)
    return _labels_of(pixels)[inverse.reshape(-1)].reshape(keys.shape)


@lru_cache(maxsize=8)
def _tight_templates(scale: int) -> dict[str, np.ndarray]:
    out = {}
    for name in OBJECTS:
        mask = shape_mask(name, scale)
        rows, cols = np.nonzero(mask)
        out[name] = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return out


def _centred(mask: np.ndarray, size: int, dy: int = 0, dx: int = 0) -> np.ndarray:
    canvas = np.zeros((size, size), dtype=bool)
    y0, x0 = (size - mask.shape[0]) // 2 + dy, (size - mask.shape[1]) // 2 + dx
    canvas[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
    return canvas


@lru_cache(maxsize=128)
def _placed_templates(scale: int, size: int) -> np.ndarray:
    """(templates x shifts, size, size) bool: every template at every centring shift, in classify_shape's order."""
    stack = np.stack(
        [
            _centred(template, size, dy * scale, dx * scale)
            for template in _tight_templates(scale).values()
            for dy in _SHIFTS
            for dx in _SHIFTS
        ]
    )
    stack.setflags(write=False)
    return stack


def classify_shape(region: np.ndarray, scale: int) -> tuple[str, float]:
    """Best template and its IoU for a tight-cropped region mask, over small centring shifts."""
    templates = _tight_templates(scale)
    size = max(max(region.shape), max(t.shape[0] for t in templates.values())) + 2 * scale + 2
    placed = _centred(region, size)
    stack = _placed_templates(scale, size)
    inter = (stack & placed).sum(axis=(1, 2))
    union = (stack | placed).sum(axis=(1, 2))
    ious = inter / union
    best = int(ious.argmax())  # the first maximum, as a strict '>' scan in the same order keeps
    if not ious[best] > 0.0:
        return OBJECTS[0], 0.0
    return tuple(templates)[best // len(_SHIFTS) ** 2], float(ious[best])


class ShapesDetector:
    """Detector protocol for shapes images of any supported canvas size (32 or 64)."""

    classes = OBJECTS

    def detect(self, image: np.ndarray) -> Detections:
        scale = max(1, image.shape[0] // 32)
        min_area = 10 * scale * scale
        labels = pixel_labels(image)
        present = np.bincount(labels.ravel() + 1, minlength=len(COLORS) + 2)[1 : len(COLORS) + 1]
        found: Detections = {}
        for color_index, color in enumerate(COLORS):
            if present[color_index] < min_area:  # no region of this colour can be large enough
                continue
            regions, count = ndimage.label(labels == color_index)
            if count == 0:
                continue
            for index, window in enumerate(ndimage.find_objects(regions), start=1):
                region = regions[window] == index
                if region.sum() < min_area:
                    continue
                name, iou = classify_shape(region, scale)
                if iou < MIN_IOU:
                    continue
                y, x = window
                full = regions == index
                box = (float(x.start), float(y.start), float(x.stop), float(y.stop))
                found.setdefault(name, []).append(Detection(box, confidence_from_iou(iou), full, color))
        return found

    def classify_colors(self, image: np.ndarray, detections: list[Detection], classname: str) -> list[str]:
        """A shapes region is one palette colour by construction; fall back to the mask's majority colour."""
        colors = []
        for det in detections:
            if det.color is not None:
                colors.append(det.color)
                continue
            labels = pixel_labels(image)[det.mask]
            labels = labels[(labels >= 0) & (labels < len(COLORS))]
            colors.append(COLORS[np.bincount(labels, minlength=len(COLORS)).argmax()] if labels.size else "black")
        return colors

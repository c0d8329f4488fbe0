"""The detector protocol the GenEval rule engine runs on: one per world (shapes, Mask2Former + CLIP)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .rules import Detection, Detections


class Detector(Protocol):
    classes: tuple[str, ...]

    def detect(self, image: np.ndarray) -> Detections:
        """All detections per class name for one (H, W, 3) uint8 image, unfiltered."""
        ...

    def classify_colors(self, image: np.ndarray, detections: list[Detection], classname: str) -> list[str]:
        """One of GenEval's ten colour names per detection."""
        ...

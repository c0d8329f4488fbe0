"""In-memory GenEval judgment of one image: the detector, GenEval's filtering, then the rule engine."""

from __future__ import annotations

import numpy as np

from .detector import Detector
from .rules import Detections, evaluate, keep_confident
from .spec import Metadata


def judge(meta: Metadata, image: np.ndarray, detector: Detector) -> tuple[bool, str, Detections]:
    """(correct, reason, kept detections) for an (H, W, 3) uint8 image under one metadata line."""
    kept = keep_confident(detector.detect(image), meta["tag"])
    correct, reason = evaluate(meta, kept, image, detector.classify_colors)
    return correct, reason, kept


def tag_accuracies(tags: list[str], correct: list[bool]) -> dict[str, float]:
    """Per-tag mean correctness (tags in order of first appearance) and `overall`, their unweighted mean."""
    scores: dict[str, list[bool]] = {}
    for tag, ok in zip(tags, correct, strict=True):
        scores.setdefault(tag, []).append(bool(ok))
    out = {tag: float(np.mean(v)) for tag, v in scores.items()}
    out["overall"] = float(np.mean(list(out.values()))) if out else 0.0
    return out

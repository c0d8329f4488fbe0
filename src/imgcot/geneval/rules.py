"""GenEval's rules on detections, world-independent (Ghosh et al. 2023; shared/method.md section 6).

Constants and semantics follow the official evaluator: detections above 0.3 confidence (0.9 for counting),
at most 16 per class sorted by confidence, include clauses take the top-`count` detections, colour needs at least
`count` crops of the target colour, position compares every kept A with every kept B with margin 0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .spec import COLORS, Metadata

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
POSITION_THRESHOLD = 0.1

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    box: Box  # x1, y1, x2, y2 in pixels, y grows downward
    score: float
    mask: np.ndarray | None = None  # (H, W) bool, optional
    color: str | None = None  # a detector that already knows the colour may fill this


Detections = dict[str, list[Detection]]
# (image, detections of one class, class name) -> one colour name per detection
ColorClassifier = Callable[[object, list[Detection], str], list[str]]


def keep_confident(raw: Detections, tag: str) -> Detections:
    """Threshold (strictly above), sort by confidence, cap at MAX_OBJECTS per class; drop empty classes."""
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    kept = {}
    for cls, dets in raw.items():
        ordered = sorted((d for d in dets if d.score > threshold), key=lambda d: -d.score)[:MAX_OBJECTS]
        if ordered:
            kept[cls] = ordered
    return kept


def relative_position(box_a: Box, box_b: Box) -> set[str]:
    """Relations of A to B: offsets shrunk by 0.1 x (size_A + size_B) per axis, then normalised by |offset|."""
    a, b = np.asarray(box_a, dtype=float), np.asarray(box_b, dtype=float)
    centre_a, centre_b = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    size_a, size_b = a[2:] - a[:2], b[2:] - b[:2]
    offset = centre_a - centre_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (size_a + size_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def _color_reason(wanted: str, cls: str, count: int, colors: list[str]) -> str:
    found = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
    return f"expected {wanted} {cls}>={count}, found {colors.count(wanted)} {wanted}; and {found}"


def evaluate(
    meta: Metadata, detected: Detections, image: object, classify_colors: ColorClassifier
) -> tuple[bool, str]:
    """Apply one metadata line to kept detections; returns (correct, reason) with GenEval's reason strings."""
    correct = True
    reasons: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    for req in meta["include"]:
        cls, count = req["class"], req["count"]
        found = detected.get(cls, [])[:count]
        matched = True
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = classify_colors(image, found, cls)
                if colors.count(req["color"]) < count:
                    correct = matched = False
                    reasons.append(_color_reason(req["color"], cls, count, colors))
            if "position" in req and matched:
                relation, target = req["position"]
                if matched_groups[target] is None:  # the target clause failed, so this one fails too
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    bad = _first_bad_relation(found, matched_groups[target], relation)
                    if bad is not None:
                        correct = matched = False
                        reasons.append(f"expected {cls} {relation} target, found {' and '.join(sorted(bad))} target")
        matched_groups.append(found if matched else None)
    for req in meta.get("exclude", []):
        cls = req["class"]
        if len(detected.get(cls, [])) >= req["count"]:
            correct = False
            reasons.append(f"expected {cls}<{req['count']}, found {len(detected[cls])}")
    return correct, "\n".join(reasons)


def _first_bad_relation(objs: list[Detection], targets: list[Detection], relation: str) -> set[str] | None:
    """The relation set of the first (A, B) pair that lacks `relation`, or None when every pair holds it."""
    for obj in objs:
        for target in targets:
            rels = relative_position(obj.box, target.box)
            if relation not in rels:
                return rels
    return None

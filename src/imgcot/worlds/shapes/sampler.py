"""Seeded scene sampler: a scene that satisfies a GenEval metadata line, with margin on positions."""

from __future__ import annotations

import numpy as np

from ...geneval.rules import POSITION_THRESHOLD
from ...geneval.spec import Metadata
from .scenes import Scene, SceneObject, cell_corners, cells_overlap
from .vocab import COLORS, OBJECTS, check_color, check_object

MAX_OBJECTS_IN_SCENE = 4
POSITION_MARGIN = 0.15  # a sampled relation clears GenEval's 0.5 cut by this much
_MAX_TRIES = 2000


class UnsatisfiableError(ValueError):
    """No shapes scene can satisfy this metadata line."""


def relation_strength(box_a, box_b, relation: str) -> float:
    """GenEval's normalised, margin-revised offset of A from B along `relation` (> 0.5 means it holds)."""
    a, b = np.asarray(box_a, float), np.asarray(box_b, float)
    offset = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * ((a[2:] - a[:2]) + (b[2:] - b[:2])), 0)
    revised = revised * np.sign(offset) / max(np.linalg.norm(offset), 1e-9)
    dx, dy = revised
    return {"left of": -dx, "right of": dx, "above": -dy, "below": dy}[relation]


def _objects_to_place(meta: Metadata, rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """(include-clause index, class, colour) per object; unspecified colours are drawn at random."""
    wanted = []
    for group, clause in enumerate(meta["include"]):
        cls = check_object(clause["class"])
        color = check_color(clause["color"]) if "color" in clause else None
        for _ in range(clause["count"]):
            wanted.append((group, cls, color or COLORS[rng.integers(len(COLORS))]))
    for clause in meta.get("exclude", []):
        check_object(clause["class"])
        present = sum(1 for _, cls, _ in wanted if cls == clause["class"])
        if present >= clause["count"]:
            raise UnsatisfiableError(
                f"{meta['prompt']!r}: include asks for {present} {clause['class']}, exclude forbids {clause['count']}"
            )
    if len(wanted) > MAX_OBJECTS_IN_SCENE:
        raise UnsatisfiableError(f"{meta['prompt']!r}: {len(wanted)} objects; at most {MAX_OBJECTS_IN_SCENE} fit")
    return wanted


def _random_cells(n: int, rng: np.random.Generator) -> list[tuple[int, int]] | None:
    corners = cell_corners()
    cells: list[tuple[int, int]] = []
    for _ in range(n):
        free = [(x, y) for x in corners for y in corners if not any(cells_overlap((x, y), c) for c in cells)]
        if not free:
            return None
        cells.append(free[rng.integers(len(free))])
    return cells


def _positions_hold(meta: Metadata, objects: list[SceneObject], groups: list[int]) -> bool:
    for index, clause in enumerate(meta["include"]):
        if "position" not in clause:
            continue
        relation, target = clause["position"]
        for a, ga in zip(objects, groups, strict=True):
            for b, gb in zip(objects, groups, strict=True):
                if (
                    ga == index
                    and gb == target
                    and relation_strength(a.box(), b.box(), relation) < 0.5 + POSITION_MARGIN
                ):
                    return False
    return True


def sample_scene(meta: Metadata, rng: np.random.Generator | int) -> Scene:
    """A random scene satisfying `meta`: exact counts, requested colours, relations with margin."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    wanted = _objects_to_place(meta, rng)
    groups = [g for g, _, _ in wanted]
    for _ in range(_MAX_TRIES):
        cells = _random_cells(len(wanted), rng)
        if cells is None:
            continue
        objects = [SceneObject(cls, color, x, y) for (_, cls, color), (x, y) in zip(wanted, cells, strict=True)]
        if _positions_hold(meta, objects, groups):
            return Scene(tuple(objects))
    raise UnsatisfiableError(f"{meta['prompt']!r}: no placement satisfies its positions")


def random_metadata(tag: str, rng: np.random.Generator) -> Metadata:
    """A random metadata line of one tag, drawn like GenEval's generator (distinct classes / colours in pairs)."""
    from .prompts import parse_prompt, prompt_text  # local: prompts imports nothing from here

    a, b = (OBJECTS[i] for i in rng.choice(len(OBJECTS), 2, replace=False))
    c1, c2 = (COLORS[i] for i in rng.choice(len(COLORS), 2, replace=False))
    include: list[dict]
    if tag == "single_object":
        include = [{"class": a, "count": 1}]
    elif tag == "two_object":
        include = [{"class": a, "count": 1}, {"class": b, "count": 1}]
    elif tag == "counting":
        include = [{"class": a, "count": int(rng.integers(2, 5))}]
    elif tag == "colors":
        include = [{"class": a, "count": 1, "color": c1}]
    elif tag == "position":
        relation = ("left of", "right of", "above", "below")[rng.integers(4)]
        include = [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [relation, 0]}]
    elif tag == "color_attr":
        include = [{"class": a, "count": 1, "color": c1}, {"class": b, "count": 1, "color": c2}]
    else:
        raise ValueError(f"unknown tag {tag!r}")
    return parse_prompt(prompt_text({"tag": tag, "include": include}))

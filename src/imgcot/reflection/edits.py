"""Bad variants of ground-truth scenes: the edited half of the self-correction groups (and extra reflection rows).

A scene sampled for a prompt satisfies it; one edit breaks one requirement the way generators do: an object
recoloured, two colours swapped, an object dropped or drawn as another shape, one object too many (counting), an
object moved so its relation fails (position). `edit_scene` returns the bad scene; the good one is the original.
"""

from __future__ import annotations

import numpy as np

from ..geneval.spec import Metadata
from ..worlds.shapes.sampler import relation_strength
from ..worlds.shapes.scenes import Scene, SceneObject, cell_corners, cells_overlap
from ..worlds.shapes.vocab import COLORS, OBJECTS

EDITS: dict[str, tuple[str, ...]] = {
    "single_object": ("drop", "reshape"),
    "two_object": ("drop", "reshape"),
    "counting": ("drop", "extra", "reshape"),
    "colors": ("recolour", "drop", "reshape"),
    "position": ("move", "drop", "reshape"),
    "color_attr": ("recolour", "swap colours", "drop", "reshape"),
}
RELATION_FAIL = 0.35  # a moved object's relation strength stays this far below GenEval's 0.5 cut


def _with(scene: Scene, index: int, obj: SceneObject | None) -> Scene:
    objects = list(scene.objects)
    if obj is None:
        objects.pop(index)
    else:
        objects[index] = obj
    return Scene(tuple(objects))


def _free_cells(scene: Scene, skip: int | None = None) -> list[tuple[int, int]]:
    taken = [(o.x, o.y) for i, o in enumerate(scene.objects) if i != skip]
    corners = cell_corners()
    return [(x, y) for x in corners for y in corners if not any(cells_overlap((x, y), c) for c in taken)]


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))] if items else None


def _recolour(meta: Metadata, scene: Scene, rng: np.random.Generator) -> Scene | None:
    coloured = [i for i, o in enumerate(scene.objects) if any(c.get("color") == o.color for c in meta["include"])]
    i = _pick(rng, coloured)
    if i is None:
        return None
    o = scene.objects[i]
    return _with(scene, i, SceneObject(o.cls, _pick(rng, [c for c in COLORS if c != o.color]), o.x, o.y))


def _swap(meta: Metadata, scene: Scene, rng: np.random.Generator) -> Scene | None:
    if len(scene.objects) != 2 or scene.objects[0].color == scene.objects[1].color:
        return None
    a, b = scene.objects
    return Scene((SceneObject(a.cls, b.color, a.x, a.y), SceneObject(b.cls, a.color, b.x, b.y)))


def _drop(meta: Metadata, scene: Scene, rng: np.random.Generator) -> Scene | None:
    return _with(scene, int(rng.integers(len(scene.objects))), None) if scene.objects else None


def _reshape(meta: Metadata, scene: Scene, rng: np.random.Generator) -> Scene | None:
    named = {c["class"] for c in meta["include"]}
    i = int(rng.integers(len(scene.objects)))
    o = scene.objects[i]
    return _with(scene, i, SceneObject(_pick(rng, [c for c in OBJECTS if c not in named]), o.color, o.x, o.y))


def _extra(meta: Metadata, scene: Scene, rng: np.random.Generator) -> Scene | None:
    cell = _pick(rng, _free_cells(scene))
    if cell is None:
        return None
    obj = SceneObject(meta["include"][0]["class"], _pick(rng, list(COLORS)), *cell)
    return Scene((*scene.objects, obj))


def _move(meta: Metadata, scene: Scene, rng: np.random.Generator) -> Scene | None:
    clause = meta["include"][1]
    relation = clause["position"][0]
    i = next(k for k, o in enumerate(scene.objects) if o.cls == clause["class"])
    target = next(o for o in scene.objects if o.cls == meta["include"][0]["class"])
    a = scene.objects[i]
    cells = [
        (x, y)
        for x, y in _free_cells(scene, skip=i)
        if relation_strength(SceneObject(a.cls, a.color, x, y).box(), target.box(), relation) < RELATION_FAIL
    ]
    cell = _pick(rng, cells)
    return None if cell is None else _with(scene, i, SceneObject(a.cls, a.color, *cell))


_EDITORS = {"recolour": _recolour, "swap colours": _swap, "drop": _drop, "reshape": _reshape, "extra": _extra,
            "move": _move}  # fmt: skip


def edit_scene(meta: Metadata, scene: Scene, kind: str, rng: np.random.Generator) -> Scene | None:
    """The bad scene of one edit kind, or None when the kind cannot apply to this scene."""
    if kind not in _EDITORS:
        raise ValueError(f"unknown edit {kind!r}; known: {', '.join(_EDITORS)}")
    return _EDITORS[kind](meta, scene, rng)


def random_edit(meta: Metadata, scene: Scene, rng: np.random.Generator) -> tuple[str, Scene] | None:
    """One applicable edit of the tag's kinds, drawn uniformly (None when none applies)."""
    kinds = list(EDITS[meta["tag"]])
    for k in rng.permutation(len(kinds)):
        bad = edit_scene(meta, scene, kinds[k], rng)
        if bad is not None:
            return kinds[k], bad
    return None

"""Which image tokens a critique implicates: the part of the previous image the generator redraws.

Pure functions of the failed clauses and a per-patch reading of the image ((grid, grid) object index, 0 for none,
1..6 for OBJECTS; from the reflector's patch head at test time, from the evaluator's detector for training data):

- ``colour``: the object's patches (dilated by one patch, so its outline goes too);
- ``extra``: the surplus instances, the last ones in raster order (so a raster AR model keeps the most rows);
- ``missing``, ``count``, ``relation``: everything except the named objects that are fine (dilated), so the
  generator has room to add or move an object while what is right stays;
- nothing to go on (no clause, no reading, or an empty region): everything.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core import Clause
from ..geneval.spec import Metadata
from ..worlds.shapes.vocab import OBJECTS

_CROSS = ndimage.generate_binary_structure(2, 2)  # 8-neighbourhood: a one-patch ring all round


def dilate(region: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(region, structure=_CROSS) if region.any() else region.copy()


def object_region(patches: np.ndarray, obj: str) -> np.ndarray:
    """(grid, grid) bool: patches read as `obj`."""
    return patches == 1 + OBJECTS.index(obj)


def surplus_region(patches: np.ndarray, obj: str, surplus: int) -> np.ndarray:
    """The last `surplus` connected instances of `obj` in raster order (by each instance's first patch)."""
    labels, count = ndimage.label(object_region(patches, obj))
    if count == 0 or surplus <= 0:
        return np.zeros_like(labels, dtype=bool)
    first = [int(np.flatnonzero(labels.reshape(-1) == k)[0]) for k in range(1, count + 1)]
    last = [k + 1 for k in np.argsort(first)[-surplus:]]
    return np.isin(labels, last)


def redraw_region(
    meta: Metadata, clauses: tuple[Clause, ...], patches: np.ndarray | None, grid: int = 8
) -> np.ndarray:
    """(grid, grid) bool: the tokens to redraw; all True when the critique gives nothing to localise."""
    if patches is None or not clauses:
        return np.ones((grid, grid), dtype=bool)
    redraw = np.zeros(patches.shape, dtype=bool)
    for c in clauses:
        if c.kind == "colour":
            redraw |= dilate(object_region(patches, c.obj))
        elif c.kind == "extra":
            redraw |= dilate(surplus_region(patches, c.obj, (c.found_count or c.count + 1) - c.count))
    if any(c.kind in ("missing", "count", "relation") for c in clauses):
        implicated = {c.obj for c in clauses if c.kind != "count"}
        fine = [k["class"] for k in meta["include"] if k["class"] not in implicated and k["class"] in OBJECTS]
        keep = np.zeros(patches.shape, dtype=bool)
        for obj in fine:
            keep |= dilate(object_region(patches, obj))
        redraw |= ~keep
    return redraw if redraw.any() else np.ones(patches.shape, dtype=bool)

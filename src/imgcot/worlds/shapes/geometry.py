"""Binary shape masks: the pixel truth every render and the detector share.

Each shape is a hand-drawn 10x10 bitmap placed in a 12x12 cell (1-pixel margin) on the 32x32 canvas; larger
canvases scale the cell by an integer factor with nearest-neighbour, so every canvas shows the same shapes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BASE_CELL = 12  # cell size on the 32x32 canvas

_BITMAPS: dict[str, str] = {
    "circle": """
        ...####...
        .########.
        .########.
        ##########
        ##########
        ##########
        ##########
        .########.
        .########.
        ...####...""",
    "square": """
        ..........
        .########.
        .########.
        .########.
        .########.
        .########.
        .########.
        .########.
        .########.
        ..........""",
    "triangle": """
        ....##....
        ....##....
        ...####...
        ...####...
        ..######..
        ..######..
        .########.
        .########.
        ##########
        ##########""",
    "star": """
        ....##....
        ....##....
        ...####...
        ##########
        .########.
        ..######..
        ..######..
        .###..###.
        .##....##.
        ..........""",
    "heart": """
        ..........
        .###..###.
        ##########
        ##########
        ##########
        .########.
        ..######..
        ...####...
        ....##....
        ..........""",
    "cross": """
        ...####...
        ...####...
        ...####...
        ##########
        ##########
        ##########
        ##########
        ...####...
        ...####...
        ...####...""",
}


def _parse(bitmap: str) -> np.ndarray:
    rows = [line.strip() for line in bitmap.strip().splitlines()]
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


@lru_cache(maxsize=64)
def shape_mask(name: str, scale: int = 1) -> np.ndarray:
    """(12*scale, 12*scale) bool mask of a shape centred in its cell; read-only."""
    mask = np.zeros((BASE_CELL, BASE_CELL), dtype=bool)
    mask[1:11, 1:11] = _parse(_BITMAPS[name])
    mask = np.kron(mask, np.ones((scale, scale), dtype=bool)) if scale > 1 else mask
    mask.setflags(write=False)
    return mask

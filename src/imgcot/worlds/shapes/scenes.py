"""Scenes (ground truth) and the deterministic renderer.

Objects sit in 12-pixel cells whose corners lie on the 4-pixel token grid of the 32x32 canvas (the grid-aligned
design of shared/shapes-world.md); a 64x64 canvas doubles every length. Four cells fit without overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import BASE_CELL, shape_mask
from .vocab import BACKGROUND, PALETTE, check_color, check_object

BASE_SIZE = 32
GRID = 4  # token patch size on the 32x32 canvas
SIZES = (32, 64)


def canvas_scale(size: int) -> int:
    if size not in SIZES:
        raise ValueError(f"unsupported canvas size {size}; choose one of {SIZES}")
    return size // BASE_SIZE


def cell_corners() -> list[int]:
    """Allowed top-left coordinates (32x32 units) of an object's cell: 0, 4, ..., 20."""
    return list(range(0, BASE_SIZE - BASE_CELL + 1, GRID))


@dataclass(frozen=True)
class SceneObject:
    cls: str
    color: str
    x: int  # cell top-left, 32x32 units
    y: int

    def box(self, size: int = BASE_SIZE) -> tuple[float, float, float, float]:
        """Tight box (x1, y1, x2, y2) of the drawn pixels, x2/y2 exclusive, in pixels of a `size` canvas."""
        s = canvas_scale(size)
        mask = shape_mask(self.cls, s)
        rows, cols = np.nonzero(mask)
        return (
            float(self.x * s + cols.min()),
            float(self.y * s + rows.min()),
            float(self.x * s + cols.max() + 1),
            float(self.y * s + rows.max() + 1),
        )

    def mask(self, size: int = BASE_SIZE) -> np.ndarray:
        s = canvas_scale(size)
        full = np.zeros((size, size), dtype=bool)
        cell = shape_mask(self.cls, s)
        full[self.y * s : self.y * s + cell.shape[0], self.x * s : self.x * s + cell.shape[1]] = cell
        return full


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for obj in self.objects:
            check_object(obj.cls)
            check_color(obj.color)
            if obj.x not in cell_corners() or obj.y not in cell_corners():
                raise ValueError(f"object cell ({obj.x}, {obj.y}) is off the grid {cell_corners()}")
        for i, a in enumerate(self.objects):
            for b in self.objects[i + 1 :]:
                if cells_overlap((a.x, a.y), (b.x, b.y)):
                    raise ValueError(f"objects at ({a.x}, {a.y}) and ({b.x}, {b.y}) overlap")


def cells_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] - b[0]) < BASE_CELL and abs(a[1] - b[1]) < BASE_CELL


def render(scene: Scene, size: int = BASE_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 image: flat background, flat-filled shapes. Deterministic."""
    canvas_scale(size)  # an unsupported size is an error even for an empty scene
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for obj in scene.objects:
        image[obj.mask(size)] = PALETTE[obj.color]
    return image

"""The shapes world's fixed vocabulary (shared/shapes-world.md): six objects, GenEval's ten colours."""

from __future__ import annotations

OBJECTS: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "cross")
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")

# Flat fill colours (RGB). The background is a neutral grey that is none of the ten colours.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 10),
    "yellow": (245, 225, 40),
    "green": (30, 160, 60),
    "blue": (30, 80, 230),
    "purple": (130, 40, 180),
    "pink": (250, 140, 200),
    "brown": (115, 65, 25),
    "black": (15, 15, 15),
    "white": (250, 250, 250),
}
BACKGROUND: tuple[int, int, int] = (128, 128, 128)


def plural(name: str) -> str:
    """GenEval's plural rule: "es" after a final "s", else "s" (so "cross" -> "crosses")."""
    return name + ("es" if name.endswith("s") else "s")


def article(word: str) -> str:
    """GenEval's article rule: "an" before a vowel."""
    return "an" if word[0] in "aeiou" else "a"


class UnknownWordError(ValueError):
    """A prompt or metadata line names something outside the shapes world."""


def check_object(name: str) -> str:
    if name not in OBJECTS:
        raise UnknownWordError(f"unknown object {name!r}; the shapes world knows: {', '.join(OBJECTS)}")
    return name


def check_color(name: str) -> str:
    if name not in COLORS:
        raise UnknownWordError(f"unknown colour {name!r}; the shapes world knows: {', '.join(COLORS)}")
    return name

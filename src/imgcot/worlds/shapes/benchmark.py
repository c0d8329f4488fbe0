"""The shipped shapes benchmark, built the way GenEval built its prompt file, and ground-truth renders of it.

GenEval (prompts/create_prompts.py) enumerates every class for single_object, draws a fixed number of candidates
per other tag from one seeded generator, and drops duplicates keeping the first occurrence. Here: all six objects
in vocabulary order, then GenEval's per-tag candidate counts (the tag sizes of its released file), seed 43
(GenEval's default). With six objects many candidates repeat, so the file is smaller than GenEval's 553 lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np

from ...geneval.layout import write_prompt_folder
from ...geneval.spec import TAGS, Metadata, dumps, read_metadata, unknown_classes
from .prompts import parse_prompt, prompt_text
from .sampler import random_metadata, sample_scene
from .scenes import render
from .vocab import OBJECTS, UnknownWordError

SEED = 43
MAX_NAMED = 10  # unknown classes named in an error
CANDIDATES: dict[str, int] = {"two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}


def _single_object(cls: str) -> Metadata:
    return parse_prompt(prompt_text({"tag": "single_object", "include": [{"class": cls, "count": 1}]}))


def _candidates(seed: int) -> list[Metadata]:
    rng = np.random.default_rng(seed)
    drawn: list[Metadata] = []
    for tag in TAGS:
        if tag == "single_object":
            drawn.extend(_single_object(cls) for cls in OBJECTS)
        else:
            drawn.extend(random_metadata(tag, rng) for _ in range(CANDIDATES[tag]))
    return drawn


def dedupe(entries: Iterable[Metadata]) -> list[Metadata]:
    """Drop repeated metadata lines, keeping the first occurrence."""
    seen: set[str] = set()
    unique = []
    for meta in entries:
        line = dumps(meta)
        if line not in seen:
            seen.add(line)
            unique.append(meta)
    return unique


def build_benchmark(seed: int = SEED) -> list[Metadata]:
    return dedupe(_candidates(seed))


def benchmark_text(entries: Iterable[Metadata]) -> str:
    """The file's exact bytes (as text): one metadata line per prompt, newline-terminated."""
    return "".join(dumps(meta) + "\n" for meta in entries)


def benchmark_path() -> Path:
    return Path(str(files("imgcot.worlds.shapes") / "data" / "benchmark.jsonl"))


def load_benchmark() -> list[Metadata]:
    return read_metadata(benchmark_path())


DEV_SEED = 7


def dev_prompts(per_tag: int = 40, seed: int = DEV_SEED) -> list[Metadata]:
    """A second prompt set of our own (never the benchmark's draws): `per_tag` draws per tag from `seed`, repeats
    dropped (240 draws give 151 prompts). Verification tables use it to confirm the benchmark's ordering."""
    rng = np.random.default_rng(seed)
    return dedupe(random_metadata(tag, rng) for tag in TAGS for _ in range(per_tag))


def read_shapes_metadata(path: str | Path) -> list[Metadata]:
    """A metadata file whose classes are all shapes objects (colours are GenEval's ten, checked by the format)."""
    entries = read_metadata(path)
    unknown = unknown_classes(entries, OBJECTS)
    if unknown:
        more = len(unknown) - MAX_NAMED
        named = ", ".join(unknown[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")
        raise UnknownWordError(f"{path}: classes unknown to the shapes world: {named}; it knows: {', '.join(OBJECTS)}")
    return entries


def subset(entries: Sequence[Metadata], per_tag: int) -> list[Metadata]:
    """The first `per_tag` prompts of each tag, in file order."""
    taken: dict[str, int] = {}
    chosen = []
    for meta in entries:
        if taken.get(meta["tag"], 0) < per_tag:
            taken[meta["tag"]] = taken.get(meta["tag"], 0) + 1
            chosen.append(meta)
    return chosen


def render_images(meta: Metadata, prompt_index: int, n_images: int, seed: int, size: int) -> list[np.ndarray]:
    """Ground-truth images of one prompt; image j's scene comes from rng([seed, prompt_index, j])."""
    rngs = (np.random.default_rng([seed, prompt_index, j]) for j in range(n_images))
    return [render(sample_scene(meta, rng), size) for rng in rngs]


def check_renderable(entries: Sequence[Metadata], seed: int = 0) -> None:
    """Raise (UnsatisfiableError, UnknownWordError) before anything is written if some prompt cannot be drawn."""
    for index, meta in enumerate(entries):
        sample_scene(meta, np.random.default_rng([seed, index, 0]))


def render_ground_truth(
    entries: Sequence[Metadata],
    out: str | Path,
    seed: int = 0,
    images_per_prompt: int = 4,
    size: int = 32,
    progress: Callable[[Sequence[int]], Iterable[int]] | None = None,
) -> Path:
    """Write ground-truth renders of every prompt in GenEval's layout under `out`; returns `out`."""
    check_renderable(entries, seed)
    indices = list(range(len(entries)))
    for index in progress(indices) if progress else indices:
        images = render_images(entries[index], index, images_per_prompt, seed, size)
        write_prompt_folder(out, index, entries[index], images)
    return Path(out)

"""Reflection training data: (prompt, image) rows labelled with the evaluator's failed clauses.

Rows come from the generators' own final samples (what PARM++ reflects on at test time) and from ground-truth
renders, plain (aligned) and edited (reflection/edits.py: one requirement broken, so every clause kind is well
represented). Every label is the evaluator's: GenEval's reason lines -> clauses (reflection/clauses.py) ->
the network's targets, NaN where a question does not apply. Prompts are drawn with `seed` (never the benchmark's);
a row's randomness derives from (seed, prompt, candidate), so nothing depends on batching.

The rows are stored as a `VerifierData` folder (data.safetensors + data.json) whose label columns are
`clauses.TARGETS` and whose `source` extra says where a row came from (SOURCES, then one per generator).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..generators.run import generate
from ..verifiers.data import Evaluator, VerifierData, draw_prompts, path_seed, shapes_evaluator
from ..worlds.shapes.sampler import sample_scene
from ..worlds.shapes.scenes import render
from .clauses import TARGETS, targets_of, teacher_clauses
from .edits import random_edit

SOURCES = ("render", "edit")  # then "sample:<generator kind>" per generator, in the order given
Progress = Callable[[int, int], None]


class _Rows:
    """Accumulates labelled rows; prompt texts are interned."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.prompt_ids: list[int] = []
        self.targets: list[dict[str, float]] = []
        self.sources: list[int] = []
        self.prompts: dict[str, int] = {}

    def add(self, prompt: str, image: np.ndarray, targets: dict[str, float], source: int) -> None:
        self.prompt_ids.append(self.prompts.setdefault(prompt, len(self.prompts)))
        self.images.append(np.asarray(image, dtype=np.uint8))
        self.targets.append(targets)
        self.sources.append(source)

    def to_data(self, info: dict) -> VerifierData:
        m = len(self.images)
        ones = torch.ones(m, dtype=torch.long)
        labels = {k: torch.tensor([t[k] for t in self.targets], dtype=torch.float32) for k in TARGETS}
        images = torch.from_numpy(np.stack(self.images)) if m else torch.zeros(0, 32, 32, 3, dtype=torch.uint8)
        extras = {"source": torch.tensor(self.sources, dtype=torch.float32)}
        return VerifierData(
            images, torch.tensor(self.prompt_ids), ones, ones.clone(), labels, extras, list(self.prompts), info
        )


def _add(rows: _Rows, meta, image: np.ndarray, evaluate: Evaluator, source: int) -> bool:
    correct, reason, _ = evaluate(meta, image)
    rows.add(meta["prompt"], image, targets_of(meta, teacher_clauses(meta, correct, reason)), source)
    return bool(correct)


def _ground_truth(rows: _Rows, meta, rng: np.random.Generator, renders: int, edits: int, evaluate: Evaluator) -> None:
    for _ in range(renders):
        _add(rows, meta, render(sample_scene(meta, rng)), evaluate, SOURCES.index("render"))
    for _ in range(edits):
        scene = sample_scene(meta, rng)
        edit = random_edit(meta, scene, rng)
        if edit is not None:
            _add(rows, meta, render(edit[1]), evaluate, SOURCES.index("edit"))


def build_reflection_data(
    generators: Sequence,
    n_prompts: int,
    seed: int,
    *,
    images_per_prompt: int = 4,
    renders: int = 1,
    edits: int = 2,
    batch_size: int = 64,
    evaluate: Evaluator | None = None,
    progress: Progress | None = None,
) -> VerifierData:
    """Rows of every generator's samples (images_per_prompt per prompt) plus ground-truth renders and edits."""
    start, evaluate = time.time(), evaluate or shapes_evaluator()
    metas = draw_prompts(n_prompts, seed)
    rows, done, total = _Rows(), 0, n_prompts * (1 + len(generators) * images_per_prompt)
    for i, meta in enumerate(metas):
        _ground_truth(rows, meta, np.random.default_rng([seed, i, 7]), renders, edits, evaluate)
        done += 1
    accuracy = {}
    paths = [(m, i, path_seed(seed, i, k)) for i, m in enumerate(metas) for k in range(images_per_prompt)]
    for g, generator in enumerate(generators):
        correct = 0
        for c in range(0, len(paths), batch_size):
            chunk = paths[c : c + batch_size]
            images, _ = generate(generator, [m["prompt"] for m, _, _ in chunk], [s for _, _, s in chunk], batch_size)
            for (meta, _, _), image in zip(chunk, images.numpy(), strict=True):
                correct += _add(rows, meta, image, evaluate, len(SOURCES) + g)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        accuracy[_kind(generator)] = correct / max(1, len(paths))
    info = {
        "role": "reflection", "seed": seed, "n_prompts": n_prompts, "images_per_prompt": images_per_prompt,
        "renders": renders, "edits": edits, "sources": list(SOURCES) + [f"sample:{_kind(g)}" for g in generators],
        "sample_accuracy": accuracy, "seconds": round(time.time() - start, 2),
    }  # fmt: skip
    return rows.to_data(info)


def _kind(generator) -> str:
    return getattr(generator, "KIND", type(generator).__name__)

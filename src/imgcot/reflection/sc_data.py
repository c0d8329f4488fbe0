"""Self-correction groups (prompt, bad image tokens, critique, tokens to redraw, good image tokens).

The paper fine-tunes its generator on (prompt, bad image, good image, explanation) groups (shared/method.md
section 3). Two sources, both labelled by the evaluator (the critique is the teacher's: GenEval's reason ->
clauses -> sentence; the region to redraw is `correct.region_for` under the corrector's localisation policy, on
the detector's per-patch reading):

- `edit_groups`: ground-truth scenes with one requirement broken (reflection/edits.py); the good image is the
  original scene (for "one too many" the bad scene minus the surplus instance the region covers). Drawn fresh
  every training step. Any token where bad and good differ joins the region, so the kept context is always right.
- `build_generated_groups`: the generator's own failures; the good image is a redraw of the region by the same
  generator (new seeds, no critique) that the evaluator accepts: rejection-sampled corrections, on the model's
  own distribution. Built once (`GroupData`, safetensors + JSON).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..fileio import write_bytes_atomic, write_text_atomic
from ..generators.base import TokenGenerator
from ..generators.run import generate
from ..geneval.spec import TAGS
from ..sampling import row_seed
from ..verifiers.data import Evaluator, draw_prompts, patch_labels, path_seed, shapes_evaluator
from ..worlds.shapes.sampler import random_metadata, sample_scene
from ..worlds.shapes.scenes import Scene, render
from .clauses import critique_words, teacher_clauses
from .correct import redraw_tokens, region_for, restart_key
from .edits import random_edit

DATA_NAME, INFO_NAME = "groups.safetensors", "groups.json"
Progress = Callable[[int, int], None]


@dataclass
class Groups:
    prompts: list[str]
    critiques: list[list[str]]  # critique words (reflection/clauses.py critique_words)
    bad: torch.Tensor  # (M, N) long: the previous image's tokens
    good: torch.Tensor  # (M, N) long: the corrected image's tokens
    redraw: torch.Tensor  # (M, N) bool: tokens to redraw (the rest is kept from `bad`)
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: list[int] | torch.Tensor) -> Groups:
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = idx.tolist()
        return Groups([self.prompts[i] for i in pick], [self.critiques[i] for i in pick], self.bad[idx],
                      self.good[idx], self.redraw[idx], dict(self.info))  # fmt: skip

    @classmethod
    def concat(cls, parts: list[Groups]) -> Groups:
        return cls([p for g in parts for p in g.prompts], [c for g in parts for c in g.critiques],
                   torch.cat([g.bad for g in parts]), torch.cat([g.good for g in parts]),
                   torch.cat([g.redraw for g in parts]), {})  # fmt: skip

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        tensors = {"bad": self.bad, "good": self.good, "redraw": self.redraw.to(torch.uint8)}
        write_bytes_atomic(folder / DATA_NAME, save({k: v.contiguous() for k, v in tensors.items()}))
        meta = {"prompts": self.prompts, "critiques": [" ".join(c) for c in self.critiques], "info": self.info}
        write_text_atomic(folder / INFO_NAME, json.dumps(meta) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Groups:
        folder = Path(folder)
        if not (folder / DATA_NAME).is_file() or not (folder / INFO_NAME).is_file():
            raise FileNotFoundError(f"{folder}: not a self-correction data folder (needs {DATA_NAME}, {INFO_NAME})")
        t = load_file(str(folder / DATA_NAME))
        meta = json.loads((folder / INFO_NAME).read_text())
        critiques = [c.split() for c in meta["critiques"]]
        return cls(meta["prompts"], critiques, t["bad"], t["good"], t["redraw"].bool(), meta["info"])


# --- edited ground truth ------------------------------------------------------------------------------------------
def _drop_covered(scene: Scene, region: np.ndarray, cls: str) -> Scene:
    """`scene` without the instance of `cls` that the (grid, grid) region covers most."""
    grid = region.shape[0]
    cover = [(o.mask().reshape(grid, 32 // grid, grid, 32 // grid).any((1, 3)) & region).sum() if o.cls == cls
             else -1 for o in scene.objects]  # fmt: skip
    drop = int(np.argmax(cover))
    return Scene(tuple(o for i, o in enumerate(scene.objects) if i != drop))


def edit_group(meta, rng: np.random.Generator, evaluate: Evaluator, grid: int = 8, localize: str = "objects"):
    """(prompt, critique words, bad image, good image, region) of one edit, or None when the edit did not break
    the prompt. Images (32, 32, 3) uint8; region (grid, grid) bool."""
    scene = sample_scene(meta, rng)
    edit = random_edit(meta, scene, rng)
    if edit is None:
        return None
    kind, bad_scene = edit
    bad = render(bad_scene)
    correct, reason, _ = evaluate(meta, bad)
    if correct:
        return None
    clauses = teacher_clauses(meta, correct, reason)
    classes, _ = patch_labels(torch.from_numpy(bad)[None])
    region = region_for(meta, clauses, classes[0].view(grid, grid).numpy(), grid, localize)
    good_scene = _drop_covered(bad_scene, region, meta["include"][0]["class"]) if kind == "extra" else scene
    return meta["prompt"], critique_words(clauses), bad, render(good_scene), region


def edit_groups(
    rng: np.random.Generator,
    count: int,
    tokenizer,
    evaluate: Evaluator | None = None,
    consistent: bool = True,
    localize: str = "objects",
) -> Groups:
    """`count` fresh groups from edited ground-truth scenes of random prompts (tags uniform). `consistent`: tokens
    where bad and good differ join the region (training); without it the region is the localisation alone."""
    evaluate = evaluate or shapes_evaluator()
    grid = tokenizer.config.grid
    rows = []
    while len(rows) < count:
        group = edit_group(random_metadata(str(rng.choice(TAGS)), rng), rng, evaluate, grid, localize)
        if group is not None:
            rows.append(group)
    bad = tokenizer.encode(np.stack([r[2] for r in rows]))
    good = tokenizer.encode(np.stack([r[3] for r in rows]))
    region = torch.from_numpy(np.stack([r[4] for r in rows]).reshape(count, -1))
    return Groups(
        [r[0] for r in rows], [r[1] for r in rows], bad, good, region | (bad != good) if consistent else region
    )


# --- the generator's own failures -------------------------------------------------------------------------------
def _failures(generator: TokenGenerator, metas, seeds, evaluate: Evaluator, batch: int, localize: str):
    """(prompt index, tokens, clauses-region, critique words) of every sample the evaluator rejects."""
    images, _ = generate(generator, [m["prompt"] for m in metas], seeds, batch)
    tokens = generator.tokenizer.encode(images)
    classes, _ = patch_labels(images)
    grid = generator.config.tokenizer.grid
    out = []
    for i, (meta, image) in enumerate(zip(metas, images.numpy(), strict=True)):
        correct, reason, _ = evaluate(meta, image)
        if not correct:
            clauses = teacher_clauses(meta, correct, reason)
            region = region_for(meta, clauses, classes[i].view(grid, grid).numpy(), grid, localize)
            out.append((i, tokens[i], region, critique_words(clauses)))
    return out


def _redraw_tries(generator: TokenGenerator, failures, metas, seeds, tries: int, evaluate: Evaluator, batch: int):
    """For each failure, the first of `tries` redraws of its region (new seeds) that the evaluator accepts."""
    good: dict[int, torch.Tensor] = {}
    for t in range(tries):
        todo = [f for f in failures if f[0] not in good]
        groups: dict[int, list] = {}
        for f in todo:
            groups.setdefault(restart_key(generator, f[2]), []).append(f)
        for rows in groups.values():
            for c in range(0, len(rows), batch):
                part = rows[c : c + batch]
                prompts = [metas[f[0]]["prompt"] for f in part]
                new_seeds = [row_seed(seeds[f[0]], t, salt=0xC0DE) % 2**48 for f in part]
                keep = ~torch.from_numpy(np.stack([f[2].reshape(-1) for f in part]))
                state = redraw_tokens(generator, prompts, new_seeds, torch.stack([f[1] for f in part]), keep)
                for f, tokens, image in zip(part, state.tokens, generator.decode(state).numpy(), strict=True):
                    if evaluate(metas[f[0]], image)[0]:
                        good[f[0]] = tokens
    return good


def build_generated_groups(
    generator: TokenGenerator,
    n_prompts: int,
    images_per_prompt: int,
    seed: int,
    *,
    tries: int = 4,
    batch: int = 64,
    localize: str = "objects",
    evaluate: Evaluator | None = None,
    progress: Progress | None = None,
) -> Groups:
    """Groups from the generator's failures on prompts drawn with `seed`, corrected by rejection sampling."""
    start, evaluate = time.time(), evaluate or shapes_evaluator()
    metas = draw_prompts(n_prompts, seed)
    rows = [(m, path_seed(seed, i, k)) for i, m in enumerate(metas) for k in range(images_per_prompt)]
    parts, failed, chunk = [], 0, max(batch, 256)
    for c in range(0, len(rows), chunk):
        part_metas, part_seeds = [m for m, _ in rows[c : c + chunk]], [s for _, s in rows[c : c + chunk]]
        failures = _failures(generator, part_metas, part_seeds, evaluate, batch, localize)
        good = _redraw_tries(generator, failures, part_metas, part_seeds, tries, evaluate, batch)
        failed += len(failures)
        kept = [f for f in failures if f[0] in good]
        if kept:
            parts.append(Groups([part_metas[f[0]]["prompt"] for f in kept], [f[3] for f in kept],
                                torch.stack([f[1] for f in kept]), torch.stack([good[f[0]] for f in kept]),
                                torch.from_numpy(np.stack([f[2].reshape(-1) for f in kept]))))  # fmt: skip
        if progress is not None:
            progress(min(c + chunk, len(rows)), len(rows))
    groups = Groups.concat(parts) if parts else Groups([], [], *(torch.zeros(0, 64, dtype=t) for t in
                                                                 (torch.long, torch.long, torch.bool)))  # fmt: skip
    groups.info = {
        "source": "generated", "generator": getattr(generator, "KIND", "?"), "seed": seed, "n_prompts": n_prompts,
        "images_per_prompt": images_per_prompt, "tries": tries, "localize": localize, "samples": len(rows),
        "failures": failed,
        "corrected": len(groups), "seconds": round(time.time() - start, 1),
    }  # fmt: skip
    return groups

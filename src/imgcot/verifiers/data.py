"""Verifier training data on the shapes world, built the paper's way (shared/method.md section 3).

Every builder is pure and seeded: prompts are drawn with `random_metadata` from `seed` (never the shipped
benchmark's seed), and a row's randomness derives from (seed, prompt index, candidate), so nothing depends on
batching. Labels come from the GenEval evaluator (geneval/judge.py) or from construction; the builders are:

- ``orm-zs`` (zero-shot analogue): ground-truth renders only, never a generated image. Positives: renders of a
  prompt's scene. Negatives: the render paired with a mutated prompt (other class, count +-1, other colour,
  flipped relation, swapped colours) or with an unrelated prompt; the evaluator must agree with the construction
  label, or the pair is dropped. Corruptions of the render (object dropped, added, recoloured, reshaped or moved,
  patches swapped, blur, noise) are labelled by the evaluator.
- ``orm`` (fine-tuned): the generator's own final samples at its default decoding, labelled by the evaluator.
- ``prm``: every step's preview of a sampled path, labelled by roll-outs (Math-Shepherd): from the step's state,
  fork K continuations with new seeds, decode them; the step is positive if any ends correct. The last step's
  label is the path's own final verdict.
- ``parm``: every step's preview of sampled paths plus the final image. Clarity two ways: the paper's fixed rule
  (`fixed_clarity`), and learned from data (`settled`: from this step on, the evaluator reads the same objects
  as in the final image). Potential: clear steps inherit the final image's label (paper). Outcome: final images.
  The final rows also train an ORM: `train_verifier("orm", parm_data)` uses only rows with an outcome label.

A held-out split is a second build with another seed. The shapes world has few prompt texts (the benchmark
already holds all 18 counting and 29 of 30 two-object prompts), so texts repeat across seeds; images do not.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..core import GenState, StepwiseGenerator
from ..fileio import write_bytes_atomic, write_text_atomic
from ..generators.run import run_to_end
from ..geneval.judge import judge
from ..geneval.rules import Detections
from ..geneval.spec import TAGS, Metadata
from ..sampling import row_seed
from ..worlds.shapes import corrupt
from ..worlds.shapes.benchmark import SEED as BENCHMARK_SEED
from ..worlds.shapes.mutate import mutations
from ..worlds.shapes.prompts import parse_prompt
from ..worlds.shapes.sampler import random_metadata, sample_scene
from ..worlds.shapes.scenes import Scene, SceneObject, cell_corners, cells_overlap, render
from ..worlds.shapes.vocab import COLORS, OBJECTS

ROLES = ("orm-zs", "orm", "prm", "parm")
PARM_COLUMNS = ("outcome", "clarity_fixed", "potential_fixed", "clarity_learned", "potential_learned")
SOURCES = ("render", "mutation", "other prompt", "corruption", "sample")
DATA_NAME, INFO_NAME = "data.safetensors", "data.json"
# (meta, image) -> GenEval's (correct, reason, kept detections); default: the shapes detector
Evaluator = Callable[[Metadata, np.ndarray], tuple[bool, str, Detections]]
Progress = Callable[[int, int], None]


def shapes_evaluator() -> Evaluator:
    from ..worlds.shapes.detector import ShapesDetector

    detector = ShapesDetector()
    return lambda meta, image: judge(meta, image, detector)


# --- the dataset ------------------------------------------------------------------------------------------------
@dataclass
class VerifierData:
    """Rows of (prompt, image, step) with per-head label columns (float 0/1, NaN where a row has no label)."""

    images: torch.Tensor  # (M, H, W, 3) uint8
    prompt_id: torch.Tensor  # (M,) long: index into `prompts`
    step: torch.Tensor  # (M,) long, 1..num_steps (num_steps: the final image)
    num_steps: torch.Tensor  # (M,) long
    labels: dict[str, torch.Tensor]  # column -> (M,) float32
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # path_id, source, value_frac, ...
    prompts: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def label(self, column: str) -> torch.Tensor:
        """A label column; all NaN (no labels) when the data has none of that name."""
        return self.labels.get(column, torch.full((len(self),), math.nan))

    def select(self, index: torch.Tensor | Sequence[int]) -> VerifierData:
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero()[:, 0]
        pick = {k: v[idx] for k, v in self.labels.items()}
        extras = {k: v[idx] for k, v in self.extras.items()}
        rows = (self.images[idx], self.prompt_id[idx], self.step[idx], self.num_steps[idx])
        return VerifierData(*rows, pick, extras, list(self.prompts), dict(self.info))

    @classmethod
    def concat(cls, parts: Sequence[VerifierData]) -> VerifierData:
        """Rows of several datasets (e.g. both generators' samples); prompts re-interned, labels NaN where absent."""
        prompts: dict[str, int] = {}
        ids = [
            torch.tensor([prompts.setdefault(p, len(prompts)) for p in d.prompts] or [0])[d.prompt_id] for d in parts
        ]
        names = sorted({k for d in parts for k in d.labels})
        extras = sorted(set.intersection(*(set(d.extras) for d in parts)))
        return cls(
            torch.cat([d.images for d in parts]),
            torch.cat(ids),
            torch.cat([d.step for d in parts]),
            torch.cat([d.num_steps for d in parts]),
            {k: torch.cat([d.label(k) for d in parts]) for k in names},
            {k: torch.cat([d.extras[k] for d in parts]) for k in extras},
            list(prompts),
            {"parts": [d.info for d in parts]},
        )

    def save(self, folder: str | Path) -> Path:
        """data.safetensors (tensors) + data.json (prompts, build info, label counts)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"images": self.images, "prompt_id": self.prompt_id, "step": self.step, "num_steps": self.num_steps}
        tensors.update({f"label.{k}": v for k, v in self.labels.items()})
        tensors.update({f"extra.{k}": v for k, v in self.extras.items()})
        write_bytes_atomic(folder / DATA_NAME, save({k: v.contiguous() for k, v in tensors.items()}))
        meta = {"prompts": self.prompts, "info": self.info, "summary": self.summary()}
        write_text_atomic(folder / INFO_NAME, json.dumps(meta, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VerifierData:
        folder = Path(folder)
        if not (folder / DATA_NAME).is_file() or not (folder / INFO_NAME).is_file():
            raise FileNotFoundError(f"{folder}: not a verifier data folder (needs {DATA_NAME} and {INFO_NAME})")
        t = load_file(str(folder / DATA_NAME))
        meta = json.loads((folder / INFO_NAME).read_text())
        labels = {k[6:]: v for k, v in t.items() if k.startswith("label.")}
        extras = {k[6:]: v for k, v in t.items() if k.startswith("extra.")}
        rows = (t["images"], t["prompt_id"], t["step"], t["num_steps"])
        return cls(*rows, labels, extras, meta["prompts"], meta["info"])

    def summary(self) -> dict:
        """Rows, and per label column the labelled rows and the positive fraction."""
        out: dict = {"rows": len(self), "prompts": len(self.prompts)}
        for name, col in sorted(self.labels.items()):
            known = col[~col.isnan()]
            out[name] = {"n": int(known.numel()), "positive": round(float(known.mean()), 4) if known.numel() else None}
        return out


class RowBuffer:
    """Accumulates verifier training rows; prompts are interned so each text is stored once."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.columns: dict[str, list[float]] = {}
        self.prompt_index: dict[str, int] = {}
        self.n = 0

    def add(self, prompt: str, image: np.ndarray, step: int, num_steps: int, **values: float) -> None:
        pid = self.prompt_index.setdefault(prompt, len(self.prompt_index))
        self.images.append(np.asarray(image, dtype=np.uint8))
        values = {"prompt_id": pid, "step": step, "num_steps": num_steps, **values}
        for key in set(values) | set(self.columns):
            self.columns.setdefault(key, [math.nan] * self.n).append(values.get(key, math.nan))
        self.n += 1

    def to_data(self, label_names: Sequence[str], info: dict) -> VerifierData:
        def col(name: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(self.columns.get(name, [math.nan] * self.n), dtype=dtype)

        fixed = {"prompt_id", "step", "num_steps", *label_names}
        images = torch.from_numpy(np.stack(self.images)) if self.images else torch.zeros(0, 32, 32, 3).byte()
        labels = {name: col(name, torch.float32) for name in label_names}
        extras = {k: col(k, torch.float32) for k in sorted(self.columns) if k not in fixed}
        ids = col("prompt_id", torch.long), col("step", torch.long), col("num_steps", torch.long)
        return VerifierData(images, *ids, labels, extras, list(self.prompt_index), info)


def patch_labels(images: torch.Tensor, patch: int = 4, threshold: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """What the evaluator's detector sees in each patch: (M, P) object (0 none, 1..6) and colour (0 none, 1..10)
    of the detection (confidence > GenEval's 0.3) covering at least half the patch. Auxiliary training targets."""
    from ..worlds.shapes.detector import ShapesDetector

    detector, m, size = ShapesDetector(), images.shape[0], images.shape[1]
    grid = size // patch
    classes = torch.zeros(m, grid * grid, dtype=torch.long)
    colors = torch.zeros(m, grid * grid, dtype=torch.long)
    for i, image in enumerate(images.numpy()):
        for cls, dets in detector.detect(image).items():
            for det in dets:
                if det.score <= threshold or det.mask is None:
                    continue
                covered = det.mask.reshape(grid, patch, grid, patch).mean((1, 3)).reshape(-1) >= 0.5
                classes[i, torch.from_numpy(covered)] = 1 + OBJECTS.index(cls)
                colors[i, torch.from_numpy(covered)] = 1 + COLORS.index(det.color) if det.color in COLORS else 0
    return classes, colors


# --- prompts and seeds ------------------------------------------------------------------------------------------
def draw_prompts(count: int, seed: int, tags: Sequence[str] = TAGS) -> list[Metadata]:
    """`count` metadata lines, `tags` in turn, drawn like the benchmark's but from another seed."""
    if seed == BENCHMARK_SEED:
        raise ValueError(f"seed {seed} is the shipped benchmark's: verifier data must use another seed")
    if not tags or (unknown := set(tags) - set(TAGS)):
        raise ValueError(f"unknown tag(s) {sorted(unknown) if tags else []}; known: {', '.join(TAGS)}")
    rng = np.random.default_rng(seed)
    return [random_metadata(tags[i % len(tags)], rng) for i in range(count)]


def path_seed(seed: int, prompt: int, k: int) -> int:
    """Seed of candidate `k` of prompt `prompt` in a build with `seed`."""
    return row_seed(seed, prompt, salt=1 + k) % 2**48


def rollout_seed(seed: int, step: int, r: int) -> int:
    """Seed of roll-out `r` forked from a row with seed `seed` after step `step` (differs from the row's own)."""
    return row_seed(seed, step, salt=0x0110 + r) % 2**48


def is_template(meta: Metadata) -> bool:
    """A mutated line whose text is one of the six templates (so a prompt can say it)."""
    try:
        back = parse_prompt(meta["prompt"])
    except ValueError:
        return False
    return back["include"] == meta["include"] and back.get("exclude", []) == meta.get("exclude", [])


# --- ORM zero-shot analogue: ground-truth renders with synthetic negatives --------------------------------------
def _free_cell(scene: Scene, rng: np.random.Generator, skip: int | None = None) -> tuple[int, int] | None:
    taken = [(o.x, o.y) for i, o in enumerate(scene.objects) if i != skip]
    free = [(x, y) for x in cell_corners() for y in cell_corners() if not any(cells_overlap((x, y), c) for c in taken)]
    return free[rng.integers(len(free))] if free else None


def _replace(scene: Scene, index: int, obj: SceneObject | None) -> Scene:
    objects = list(scene.objects)
    if obj is None:
        objects.pop(index)
    else:
        objects[index] = obj
    return Scene(tuple(objects))


def _drop_object(scene: Scene, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return render(_replace(scene, int(rng.integers(len(scene.objects))), None), image.shape[0])


def _extra_object(scene: Scene, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cell = _free_cell(scene, rng)
    if cell is None:
        return _recolour(scene, image, rng)
    obj = SceneObject(OBJECTS[rng.integers(len(OBJECTS))], COLORS[rng.integers(len(COLORS))], *cell)
    return render(Scene((*scene.objects, obj)), image.shape[0])


def _recolour(scene: Scene, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    i = int(rng.integers(len(scene.objects)))
    o = scene.objects[i]
    color = [c for c in COLORS if c != o.color][rng.integers(len(COLORS) - 1)]
    return render(_replace(scene, i, SceneObject(o.cls, color, o.x, o.y)), image.shape[0])


def _reshape(scene: Scene, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    i = int(rng.integers(len(scene.objects)))
    o = scene.objects[i]
    cls = [c for c in OBJECTS if c != o.cls][rng.integers(len(OBJECTS) - 1)]
    return render(_replace(scene, i, SceneObject(cls, o.color, o.x, o.y)), image.shape[0])


def _move(scene: Scene, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    i = int(rng.integers(len(scene.objects)))
    o, cell = scene.objects[i], _free_cell(scene, rng, skip=i)
    return render(_replace(scene, i, SceneObject(o.cls, o.color, *cell)), image.shape[0]) if cell else image.copy()


def _patch_swap(scene: Scene, image: np.ndarray, rng: np.random.Generator, patch: int = 4) -> np.ndarray:
    """10-40% of the 4x4 token patches replaced by patches of another scene: what a generator's token errors do."""
    other = render(sample_scene(random_metadata(TAGS[rng.integers(len(TAGS))], rng), rng), image.shape[0])
    grid = image.shape[0] // patch
    hit = rng.random((grid, grid)) < rng.uniform(0.1, 0.4)
    mask = np.kron(hit, np.ones((patch, patch), dtype=bool))[..., None]
    src = np.roll(other, tuple(patch * rng.integers(-2, 3, size=2)), axis=(0, 1))
    return np.where(mask, src, image)


CORRUPTIONS: dict[str, Callable[[Scene, np.ndarray, np.random.Generator], np.ndarray]] = {
    "drop object": _drop_object,
    "extra object": _extra_object,
    "recolour": _recolour,
    "reshape": _reshape,
    "move": _move,
    "patch swap": _patch_swap,
    "blur": lambda s, im, rng: corrupt.gaussian_blur(im, float(rng.uniform(0.5, 1.5))),
    "noise": lambda s, im, rng: corrupt.gaussian_noise(im, float(rng.uniform(10, 50)), rng),
}


def _orm_zs_prompt(
    rows: RowBuffer, meta: Metadata, rng: np.random.Generator, evaluate: Evaluator, counts: dict, size: int, per: dict
) -> None:
    """One prompt's rows: renders, mutated-prompt and other-prompt negatives, corruptions."""
    scenes = [sample_scene(meta, rng) for _ in range(per["renders"])]
    images = [render(s, size) for s in scenes]
    for image in images:
        _add_checked(rows, meta, image, 1.0, "render", evaluate, counts)
    mutated = [m for _, m in mutations(meta, rng) if is_template(m)]
    for j in rng.permutation(len(mutated))[: per["mutations"]]:
        _add_checked(rows, mutated[j], images[0], 0.0, "mutation", evaluate, counts)
    for _ in range(per["other"]):
        other = random_metadata(TAGS[rng.integers(len(TAGS))], rng)
        _add_checked(rows, other, images[-1], 0.0, "other prompt", evaluate, counts)
    names = list(CORRUPTIONS)
    for k in range(per["corruptions"]):
        name = names[rng.integers(len(names))]
        image = CORRUPTIONS[name](scenes[k % len(scenes)], images[k % len(images)], rng)
        correct = evaluate(meta, image)[0]
        rows.add(meta["prompt"], image, 1, 1, outcome=float(correct), source=SOURCES.index("corruption"))


def _add_checked(
    rows: RowBuffer, meta: Metadata, image: np.ndarray, label: float, source: str, evaluate: Evaluator, counts: dict
) -> None:
    """Add a constructed pair only when the evaluator agrees with its construction label."""
    if float(evaluate(meta, image)[0]) != label:
        counts[source] = counts.get(source, 0) + 1
        return
    rows.add(meta["prompt"], image, 1, 1, outcome=label, source=SOURCES.index(source))


def build_orm_zs(
    n_prompts: int,
    seed: int,
    *,
    renders: int = 2,
    mutated: int = 2,
    other: int = 1,
    corruptions: int = 2,
    size: int = 32,
    tags: Sequence[str] = TAGS,
    evaluate: Evaluator | None = None,
    progress: Progress | None = None,
) -> VerifierData:
    """Zero-shot ORM analogue: ground-truth renders, synthetic negatives and corruptions (no generated image)."""
    start, evaluate = time.time(), evaluate or shapes_evaluator()
    per = {"renders": renders, "mutations": mutated, "other": other, "corruptions": corruptions}
    rows, dropped = RowBuffer(), {}
    for i, meta in enumerate(draw_prompts(n_prompts, seed, tags)):
        _orm_zs_prompt(rows, meta, np.random.default_rng([seed, i]), evaluate, dropped, size, per)
        if progress is not None:
            progress(i + 1, n_prompts)
    info = _info("orm-zs", seed, n_prompts, start, per=per, dropped_disagreeing=dropped, sources=list(SOURCES))
    if tuple(tags) != TAGS:
        info["tags"] = list(tags)
    return rows.to_data(["outcome"], info)


# --- generated samples: ORM fine-tuned, PARM ---------------------------------------------------------------------
def sample_paths(
    generator: StepwiseGenerator, prompts: list[str], seeds: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's preview (B, T, H, W, 3) and the final images (B, H, W, 3), uint8, of one batch of paths."""
    state = generator.init(prompts, seeds)
    previews = []
    while not generator.is_done(state):
        state = generator.step(state)
        previews.append(generator.preview(state))
    return torch.stack(previews, 1), generator.decode(state)


def fixed_clarity(step: int, num_steps: int) -> float:
    """The paper's clarity rule generalised from T = 18 ("steps after 11 clear, before 10 unclear"): clear when
    step / T > 11/18, unclear when step / T < 10/18, no label (NaN) in between. Steps count from 1."""
    if 18 * step > 11 * num_steps:
        return 1.0
    if 18 * step < 10 * num_steps:
        return 0.0
    return math.nan


def reading(kept: Detections) -> list[tuple[str, str, float, float]]:
    """What the evaluator reads in an image: (class, colour, centre x, centre y) of every kept detection."""
    out = []
    for cls, dets in kept.items():
        for d in dets:
            out.append((cls, d.color or "?", (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2))
    return sorted(out)


def same_reading(a: list, b: list, tol: float = 2.0) -> bool:
    """Same objects (class and colour, with multiplicity), each matched to one whose centre is within `tol` px."""
    if sorted((c, k) for c, k, _, _ in a) != sorted((c, k) for c, k, _, _ in b):
        return False
    unused = list(b)
    for cls, color, x, y in a:
        near = [
            j for j, (c, k, u, v) in enumerate(unused) if (c, k) == (cls, color) and max(abs(u - x), abs(v - y)) <= tol
        ]
        if not near:
            return False
        unused.pop(near[0])
    return True


def settled(readings: list[list], final: list) -> list[float]:
    """Learned-clarity label per step: 1 when from this step to the end every preview reads as the final image
    does (and the final shows at least one object), else 0. Monotone: once clear, clear until the end."""
    out, still = [], bool(final)
    for r in reversed(readings):
        still = still and same_reading(r, final)
        out.append(float(still))
    return out[::-1]


def _parm_path(
    rows: RowBuffer, meta: Metadata, previews: np.ndarray, final: np.ndarray, evaluate: Evaluator, pid
) -> bool:
    """Rows of one path: every step with clarity/potential labels both ways; the final image with its outcome."""
    total = previews.shape[0]
    correct, _, kept = evaluate(meta, final)
    reads = [reading(evaluate(meta, p)[2]) for p in previews[:-1]] + [reading(kept)]
    learned = settled(reads, reads[-1])
    for t in range(1, total + 1):
        fixed = fixed_clarity(t, total)
        label = {
            "clarity_fixed": fixed,
            "potential_fixed": float(correct) if fixed == 1.0 else math.nan,
            "clarity_learned": learned[t - 1],
            "potential_learned": float(correct) if learned[t - 1] == 1.0 else math.nan,
        }
        if t == total:
            label["outcome"] = float(correct)
        image = final if t == total else previews[t - 1]
        rows.add(meta["prompt"], image, t, total, path_id=pid, final_correct=float(correct), **label)
    return bool(correct)


def _orm_path(rows: RowBuffer, meta: Metadata, previews, final: np.ndarray, evaluate: Evaluator, pid) -> bool:
    correct = evaluate(meta, final)[0]
    total = previews.shape[0]
    rows.add(meta["prompt"], final, total, total, outcome=float(correct), path_id=pid)
    return bool(correct)


def _paths(n_prompts: int, per_prompt: int, seed: int, tags: Sequence[str] = TAGS) -> list[tuple[Metadata, int, int]]:
    """(metadata, path id, path seed) of every candidate, prompt-major."""
    metas = draw_prompts(n_prompts, seed, tags)
    return [(m, i * per_prompt + k, path_seed(seed, i, k)) for i, m in enumerate(metas) for k in range(per_prompt)]


def build_samples(
    role: str,
    generator: StepwiseGenerator,
    n_prompts: int,
    images_per_prompt: int,
    seed: int,
    *,
    batch_size: int = 64,
    tags: Sequence[str] = TAGS,
    evaluate: Evaluator | None = None,
    progress: Progress | None = None,
) -> VerifierData:
    """ORM fine-tuned data (role 'orm': final samples) or PARM data (role 'parm': every step and the final)."""
    start, evaluate = time.time(), evaluate or shapes_evaluator()
    add_path = {"orm": _orm_path, "parm": _parm_path}[role]
    paths, rows, correct = _paths(n_prompts, images_per_prompt, seed, tags), RowBuffer(), 0
    for i in range(0, len(paths), batch_size):
        chunk = paths[i : i + batch_size]
        previews, finals = sample_paths(generator, [m["prompt"] for m, _, _ in chunk], [s for _, _, s in chunk])
        for (meta, pid, _), prev, fin in zip(chunk, previews.numpy(), finals.numpy(), strict=True):
            correct += add_path(rows, meta, prev, fin, evaluate, pid)
        if progress is not None:
            progress(min(i + batch_size, len(paths)), len(paths))
    names = ["outcome"] if role == "orm" else list(PARM_COLUMNS)
    info = _info(role, seed, n_prompts, start, images_per_prompt=images_per_prompt, generator=_describe(generator))
    info["final_accuracy"] = correct / max(1, len(paths))
    if tuple(tags) != TAGS:
        info["tags"] = list(tags)
    return rows.to_data(names, info)


# --- PRM: roll-out labels -----------------------------------------------------------------------------------------
def rollout_correct(
    generator: StepwiseGenerator, state: GenState, metas: list[Metadata], rollouts: int, evaluate: Evaluator
) -> torch.Tensor:
    """(B, rollouts) bool: does each of `rollouts` continuations of each row (new seeds) end correct?"""
    index = [i for i in range(state.batch) for _ in range(rollouts)]
    seeds = [rollout_seed(state.seeds[i], state.step, r) for i in range(state.batch) for r in range(rollouts)]
    images = generator.decode(run_to_end(generator, state.fork(index, seeds))).numpy()
    ok = [evaluate(metas[i], image)[0] for i, image in zip(index, images, strict=True)]
    return torch.tensor(ok, dtype=torch.bool).view(state.batch, rollouts)


def _prm_batch(
    rows: RowBuffer, generator: StepwiseGenerator, chunk: list, rollouts: int, every: int, evaluate: Evaluator
) -> int:
    """Sample one batch of paths; label each step by its roll-outs (the last step by the path's own verdict)."""
    metas = [m for m, _, _ in chunk]
    state = generator.init([m["prompt"] for m in metas], [s for _, _, s in chunk])
    total = generator.num_steps
    while not generator.is_done(state):
        state = generator.step(state)
        t, previews = state.step, generator.preview(state).numpy()
        if generator.is_done(state):
            finals = generator.decode(state).numpy()
            ok = torch.tensor([[evaluate(m, im)[0]] for m, im in zip(metas, finals, strict=True)])
            previews = finals
        elif t % every == 0:
            ok = rollout_correct(generator, state, metas, rollouts, evaluate)
        else:
            continue
        for (meta, pid, _), image, row in zip(chunk, previews, ok, strict=True):
            frac = float(row.float().mean())
            rows.add(meta["prompt"], image, t, total, value=float(row.any()), value_frac=frac, path_id=pid)
    return int(ok.sum())


def build_prm(
    generator: StepwiseGenerator,
    n_prompts: int,
    paths_per_prompt: int,
    seed: int,
    *,
    rollouts: int = 4,
    label_every: int = 1,
    batch_size: int = 64,
    tags: Sequence[str] = TAGS,
    evaluate: Evaluator | None = None,
    progress: Progress | None = None,
) -> VerifierData:
    """PRM data: each step of each path labelled positive if any of `rollouts` continuations ends correct
    (Math-Shepherd's hard estimate; `value_frac` keeps the soft one). `label_every` > 1 labels every k-th step
    only (the last step always), to save roll-out compute: ~rollouts x T / 2 decodes per labelled path."""
    start, evaluate = time.time(), evaluate or shapes_evaluator()
    paths, rows, correct = _paths(n_prompts, paths_per_prompt, seed, tags), RowBuffer(), 0
    per_batch = max(1, batch_size // rollouts)  # roll-outs of a batch run together: batch_size rows
    for i in range(0, len(paths), per_batch):
        correct += _prm_batch(rows, generator, paths[i : i + per_batch], rollouts, label_every, evaluate)
        if progress is not None:
            progress(min(i + per_batch, len(paths)), len(paths))
    per = {"paths_per_prompt": paths_per_prompt, "rollouts": rollouts, "label_every": label_every}
    info = _info("prm", seed, n_prompts, start, generator=_describe(generator), **per)
    info["final_accuracy"] = correct / max(1, len(paths))
    return rows.to_data(["value"], info)


# --- entry point ------------------------------------------------------------------------------------------------
def build_data(
    role: str,
    generator: StepwiseGenerator | None,
    n_prompts: int,
    seed: int,
    *,
    images_per_prompt: int = 4,
    rollouts: int = 4,
    label_every: int = 1,
    batch_size: int = 64,
    tags: Sequence[str] = TAGS,
    progress: Progress | None = None,
) -> VerifierData:
    """Training data for one verifier role ('orm-zs' needs no generator), prompts of `tags` in turn (default: all
    six); see the module docstring."""
    if role not in ROLES:
        raise ValueError(f"unknown verifier role {role!r}; known: {', '.join(ROLES)}")
    if role == "orm-zs":
        return build_orm_zs(n_prompts, seed, tags=tags, progress=progress)
    if generator is None:
        raise ValueError(f"role {role!r} labels the generator's own samples: pass a generator")
    if role == "prm":
        return build_prm(
            generator, n_prompts, images_per_prompt, seed, rollouts=rollouts, label_every=label_every,
            batch_size=batch_size, tags=tags, progress=progress,
        )  # fmt: skip
    return build_samples(
        role, generator, n_prompts, images_per_prompt, seed, batch_size=batch_size, tags=tags, progress=progress
    )


def _describe(generator: StepwiseGenerator) -> dict:
    config = getattr(generator, "config", None)
    decoding = getattr(config, "decoding", None)
    out = {"kind": getattr(generator, "KIND", type(generator).__name__), "num_steps": generator.num_steps}
    if decoding is not None:
        from dataclasses import asdict

        out["decoding"] = asdict(decoding)
    return out


def _info(role: str, seed: int, n_prompts: int, start: float, **extra) -> dict:
    return {"role": role, "seed": seed, "n_prompts": n_prompts, "seconds": round(time.time() - start, 2), **extra}

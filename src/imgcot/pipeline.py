"""Generate-and-score runs: single prompts with step images, and GenEval-layout evaluations that resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from .core import StepwiseGenerator
from .fileio import save_png, write_text_atomic
from .geneval.layout import prompt_dir
from .geneval.spec import Metadata, dumps
from .search import candidate_seeds, run_strategy, total_compute


def image_seed(seed: int, prompt_index: int, image_index: int) -> int:
    """The seed of one image: fixed by (run seed, prompt, image), never by batch or resume."""
    return seed * 1_000_000 + prompt_index * 1_000 + image_index


@torch.no_grad()
def generate_with_steps(
    generator: StepwiseGenerator, prompt: str, seeds: list[int]
) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """Final images, every step's preview (list over steps of (B, H, W, 3)) and per-row forward passes."""
    state = generator.init([prompt] * len(seeds), seeds)
    previews = []
    while not generator.is_done(state):
        state = generator.step(state)
        previews.append(generator.preview(state))
    return generator.decode(state), previews, state.forwards


def finished(folder: Path, images_per_prompt: int) -> bool:
    return (folder / "metadata.jsonl").is_file() and all(
        (folder / "samples" / f"{k:04d}.png").is_file() for k in range(images_per_prompt)
    )


def _load_compute(root: Path) -> dict:
    path = root / "compute.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"generator_forwards": 0, "verifier_calls": 0, "wall_seconds": 0.0}


def _save_compute(root: Path, compute: dict) -> None:
    write_text_atomic(root / "compute.json", json.dumps(compute))


def run_settings(
    strategy: str, n: int, seed: int, images_per_prompt: int, options: dict | None, describe: dict | None
) -> dict:
    """What decides a run's images (not the batch size: results do not depend on it), as run.json records it."""
    settings = {"strategy": strategy, "n": n, "seed": seed, "images_per_prompt": images_per_prompt}
    return {**settings, "options": options or {}, **(describe or {})}


def claim_run(root: Path, settings: dict) -> None:
    """Record what a run generates with (run.json); refuse to resume it with other settings, which would mix images
    made two ways in one folder. A folder from before run.json existed is claimed as it is."""
    path = root / "run.json"
    if path.is_file() and json.loads(path.read_text()) != settings:
        raise ValueError(f"{root} holds a run made with other settings ({path}); rerun with them or use another --out")
    write_text_atomic(path, json.dumps(settings, indent=1) + "\n")


def eval_generate(
    generator: StepwiseGenerator,
    metas: list[Metadata],
    root: Path,
    images_per_prompt: int = 4,
    seed: int = 0,
    batch_size: int = 64,
    strategy: str = "baseline",
    n: int = 1,
    verifier: object | None = None,
    on_progress: Callable[[int], None] | None = None,
    options: dict | None = None,
    describe: dict | None = None,
) -> dict:
    """Generate into GenEval layout with a search strategy, skipping prompts already finished.

    Image k of prompt i is the strategy's choice among the N candidates `candidate_seeds(image_seed(seed, i, k), N)`;
    candidates of several prompts share each batch (about `batch_size` rows); `options` go to the strategy (parm:
    keep). A rerun resumes only with the same settings (the ones above but the batch size, plus `describe`, e.g.
    the model and verifier names). Returns the accumulated compute.
    """
    root.mkdir(parents=True, exist_ok=True)
    claim_run(root, run_settings(strategy, n, seed, images_per_prompt, options, describe))
    compute = _load_compute(root)
    todo = [i for i in range(len(metas)) if not finished(prompt_dir(root, i), images_per_prompt)]
    if on_progress:
        on_progress(len(metas) - len(todo))
    per_chunk = max(1, batch_size // (images_per_prompt * n))
    for start in range(0, len(todo), per_chunk):
        chunk = todo[start : start + per_chunk]
        prompts = [metas[i]["prompt"] for i in chunk for _ in range(images_per_prompt)]
        seeds = [candidate_seeds(image_seed(seed, i, k), n) for i in chunk for k in range(images_per_prompt)]
        results = run_strategy(strategy, generator, prompts, seeds, verifier, options=options)
        for j, i in enumerate(chunk):
            folder = prompt_dir(root, i)
            for k in range(images_per_prompt):
                save_png(results[j * images_per_prompt + k].image, folder / "samples" / f"{k:04d}.png")
            write_text_atomic(folder / "metadata.jsonl", dumps(metas[i]) + "\n")  # last: marks the prompt finished
        spent = total_compute(results)
        compute["generator_forwards"] += spent.generator_forwards
        compute["verifier_calls"] += spent.verifier_calls
        compute["wall_seconds"] += spent.wall_seconds
        _save_compute(root, compute)
        if on_progress:
            on_progress(len(chunk))
    return compute

"""Iterative DPO and verifier-guided iterative DPO (shared/method.md section 4).

Round r: sample K images per prompt with the round's start model on the same training prompts (fresh image seeds
each round), label them, pair, and train from the start model. Reference: by default the round's start model
(`reference="round"`: each round is one DPO step away from its own start, as in iterative / online DPO); with
`reference="base"` every round is anchored to the base model instead.

Verifier-guided (`guide` given): every round's on-policy pairs are re-ranked by the guiding verifier (PARM's
outcome question): the accepted image it scores highest against the rejected image it scores lowest; and its
score gap enters the loss as a per-pair weight (`DPOConfig.weighting = "gap"`) and optional margin. Unlike the
reference code's guidance term, a constant without gradient, both change the policy's gradient.

Layout of `out`: round1/ .. roundK/ (pairs.parquet and the round's DPO run folder model/), iterate.json (settings
and per-round statistics) and, once all rounds are done, the final generator itself (its save_pretrained files),
so `--model out` works (`--model hf-janus:out` / `hf-showo:out` for a real model: registry.saved_model_name);
each round's model is reloaded the same way. Rerunning the same command resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from ..core import OutcomeVerifier
from ..fileio import write_text_atomic
from ..generators.base import TokenGenerator
from ..generators.registry import load_generator, saved_model_name
from .config import DPOConfig, IterateConfig, PairConfig
from .pairs import Pairs, Progress, build_pairs, read_pairs, write_pairs
from .train import RUN_FILE, ProgressFn, train_dpo

STATE_FILE = "iterate.json"
ROUND_SEED_STRIDE = 1000  # round r samples with image_seed(sample_seed + 1000 r, i, k): new images every round


def round_configs(config: IterateConfig, r: int) -> tuple[PairConfig, DPOConfig]:
    """Round r's (0-based) sampling and training settings: new image seeds and a new data order every round."""
    pairs = replace(config.pairs, sample_seed=config.pairs.sample_seed + ROUND_SEED_STRIDE * r)
    return pairs, replace(config.dpo, seed=config.dpo.seed + r)


def same_run(saved: dict, settings: dict) -> bool:
    """Equal settings but perhaps the number of rounds: a round's settings do not depend on how many follow
    (round_configs), so asking for more rounds extends a finished run exactly."""
    drop = lambda d: {**d, "config": {k: v for k, v in d["config"].items() if k != "rounds"}}  # noqa: E731
    return drop(saved) == drop(settings)


def with_defaults(saved: dict, defaults: dict) -> dict:
    """`saved` with the keys it lacks filled from `defaults` (nested): a run written before a setting existed
    resumes when the new setting keeps its default."""
    filled = dict(saved)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value
        elif isinstance(value, dict) and isinstance(filled[key], dict):
            filled[key] = with_defaults(filled[key], value)
    return filled


def iterate_dpo(
    base: str | Path,
    prompts: list[str],
    out: str | Path,
    config: IterateConfig,
    labeler: OutcomeVerifier,
    guide: OutcomeVerifier | None = None,
    describe: dict | None = None,
    on_pairs: Progress | None = None,
    on_train: ProgressFn | None = None,
    on_round: Callable[[int, dict], None] | None = None,
    placement=None,
) -> TokenGenerator:
    """Run `config.rounds` rounds from the generator `base` (name or folder, `hf-janus:` / `hf-showo:` ones too,
    on `placement`, an imgcot.hf.devices.Placement); resumes a partly done `out`."""
    out = Path(out)
    settings = {"base": str(base), "config": asdict(config), "guided": guide is not None, **(describe or {})}
    settings["prompts"] = len(prompts)
    state_path = out / STATE_FILE
    rounds: list[dict] = []
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if not same_run(with_defaults(saved["settings"], {"config": asdict(IterateConfig())}), settings):
            raise ValueError(f"{out} holds an iterative DPO run with other settings; choose another --out")
        rounds = saved["rounds"]
        if len(rounds) > config.rounds:
            raise ValueError(f"{out} already holds {len(rounds)} rounds; ask for --rounds >= {len(rounds)}")
    done = len(rounds)  # rounds finished earlier: resume from the last one's model
    base_model = load_generator(str(base), placement) if done == 0 or config.reference == "base" else None
    current = base_model
    if done:
        current = load_generator(saved_model_name(str(base), out / f"round{done}" / "model"), placement)
    for r in range(done, config.rounds):
        folder = out / f"round{r + 1}"
        pair_cfg, dpo_cfg = round_configs(config, r)
        pairs_path = folder / "pairs.parquet"
        if pairs_path.is_file():
            pairs = read_pairs(pairs_path, images=False)
        else:
            pairs = build_pairs(current, prompts, pair_cfg, labeler, guide, on_pairs)
            pairs.info.update({"round": r + 1, "iterate": settings})
            write_pairs(pairs, pairs_path)
        reference = current if config.reference == "round" else base_model
        source = {"round": r + 1, "reference": config.reference, "pairs": str(pairs_path)}
        current = train_dpo(current, pairs, folder / "model", dpo_cfg, reference, True, on_train, source)
        run = json.loads((folder / "model" / RUN_FILE).read_text())
        rounds.append({"round": r + 1, "pairs": pairs.info.get("stats", {"pairs": len(pairs)}), "train": run})
        write_text_atomic(state_path, json.dumps({"settings": settings, "rounds": rounds}, indent=2) + "\n")
        if on_round is not None:
            on_round(r + 1, rounds[-1])
    current.save_pretrained(out)
    return current


def round_pairs(out: str | Path, r: int) -> Pairs:
    """The pairs of round r (1-based) of an iterative run."""
    return read_pairs(Path(out) / f"round{r}" / "pairs.parquet")

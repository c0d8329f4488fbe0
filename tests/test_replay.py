"""Replayed selection (generate once, select many) must equal the live strategies: choices, forwards, calls."""

from __future__ import annotations

import pytest
import torch

from imgcot.core import StepScore
from imgcot.search import run_strategy
from imgcot.search.registry import candidate_seeds
from imgcot.search.replay import choose_baseline, choose_best_of_n, choose_parm, record_slots
from imgcot.verifiers import OracleVerifier
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.prompts import parse_prompt
from tiny import tiny_generator

PROMPTS = ["a photo of a red star", "a photo of three hearts", "a photo of a cross below a square"]


def _hash(images: torch.Tensor, salt: int) -> torch.Tensor:
    """A deterministic pseudo-random probability per image, from its pixels."""
    total = images.long().flatten(1).mul(torch.arange(1, images[0].numel() + 1)).sum(1)
    return ((total * salt) % 1009).double() / 1008


class ScriptedParm:
    def judge(self, prompts, previews, step, num_steps):
        return StepScore(_hash(previews, 7), _hash(previews, 13), _hash(previews, 17))

    def score(self, prompts, images):
        return _hash(images, 29)


class LateParm(ScriptedParm):
    """Asks clarity only from step 3 on (as a PARM trained on the paper's fixed rule does from 10/18 of T)."""

    def first_clarity_step(self, num_steps):
        return 3


@pytest.fixture(params=["maskgit", "ar"], scope="module")
def generator(request, tmp_path_factory):
    return tiny_generator(request.param, tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("n", [1, 3, 6])
def test_replay_equals_live_strategies(generator, n):
    metas = [parse_prompt(p) for p in PROMPTS]
    bases = [1000 + i for i in range(len(PROMPTS))]
    parm, late, oracle = ScriptedParm(), LateParm(), OracleVerifier()
    slots = record_slots(generator, metas, bases, 6, {"parm": parm}, {"parm": parm}, ShapesDetector())
    seeds = [candidate_seeds(b, n) for b in bases]
    for name, verifier, choose in (
        ("parm", parm, lambda s: choose_parm(s, n, "parm", s.outcome["parm"])),
        ("parm", late, lambda s: choose_parm(s, n, "parm", s.outcome["parm"], first_step=3)),
        ("parm-keep1", parm, lambda s: choose_parm(s, n, "parm", s.outcome["parm"], keep=1)),
        ("parm-keep2", late, lambda s: choose_parm(s, n, "parm", s.outcome["parm"], first_step=3, keep=2)),
        ("orm", parm, lambda s: choose_best_of_n(s, n, s.outcome["parm"])),
        ("oracle", oracle, lambda s: choose_best_of_n(s, n, s.correct.astype(float))),
        ("baseline", None, choose_baseline),
    ):
        keep = {"keep": int(name[-1])} if "keep" in name else {}
        live = run_strategy(name.split("-")[0], generator, PROMPTS, seeds, verifier, options=keep)
        for result, slot in zip(live, slots, strict=True):
            replayed = choose(slot)
            assert replayed.index == result.chosen, name
            assert (slot.finals[replayed.index] == result.image).all(), name
            assert replayed.generator_forwards == result.compute.generator_forwards, name
            assert replayed.verifier_calls == result.compute.verifier_calls, name


def test_scripted_case_exercises_pruning_and_survival(generator):
    """The equality above is only meaningful if the scripted answers both prune and keep paths."""
    metas = [parse_prompt(p) for p in PROMPTS]
    slots = record_slots(generator, metas, [1000, 1001, 1002], 6, {"p": ScriptedParm()}, {}, ShapesDetector())
    verdicts = []
    for slot in slots:
        for clarity, potential in zip(slot.clarity["p"], slot.potential["p"], strict=True):
            clear = (clarity >= 0.5).nonzero()[0]
            if len(clear):
                verdicts.append(bool(potential[clear[0]] >= 0.5))
    assert any(verdicts) and not all(verdicts)
    assert max(promising_at_first_clear(slot) for slot in slots) > 2  # keep=1 and keep=2 truncate promising paths


def promising_at_first_clear(slot) -> int:
    clear = [(c >= 0.5).nonzero()[0] for c in slot.clarity["p"]]
    return sum(bool(len(c)) and bool(p[c[0]] >= 0.5) for c, p in zip(clear, slot.potential["p"], strict=True))

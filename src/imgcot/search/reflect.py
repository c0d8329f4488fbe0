"""PARM++: PARM, then reflect and self-correct (shared/method.md section 3).

After PARM picks an image, the reflector judges it: aligned (stop) or a critique built from the failed clauses.
The generator then regenerates from the prompt, its previous image and the critique (reflection/correct.py);
repeat until the reflector says aligned or `max_rounds` corrections were made (default 3). The last corrected
image is the answer (the paper's loop; it is not judged again, since nothing would follow). What a correction
redraws is the verifier bundle's `localize` policy: by default ("objects") a wrong colour or a surplus instance is
redrawn in place, the rest of the image kept; a missing object, a wrong count or relation redraws the whole image
from the critique (on the shapes generators' own failures that fixed more than redrawing in place: 0.28-0.30 vs
0.22 of failures with the evaluator's critique, reflection/correct.py).

Who says "aligned or not" is the bundle's `judge_with`: the reflection model (default), or PARM's outcome question
("parm": the verifier that picked the image; the reflector still writes the critique). With `select="best"` the
answer is the round that judge finds most aligned, so a correction that breaks what was right is not kept.

"Without reflection" (the Table 5 ablation) keeps the loop and the judge but drops the reflection's content: the
reflector only says aligned or not, and a rejected image is redrawn from scratch by the same self-correcting
generator with no critique and no region (a new seed per round): sequential resampling with an early stop.

Compute: PARM's, plus every correction's generator forward passes and one reflector call per reflection.
Round r's seed derives from the chosen candidate's seed and r, so results do not depend on batching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core import OutcomeVerifier, Reflection, Reflector, SelfCorrector, StepScore, StepwiseGenerator
from ..sampling import row_seed
from .parm import THRESHOLD, ParmVerifier, parm
from .result import RoundTrace, SearchResult

MAX_ROUNDS = 3
SELECT = ("last", "best")
JUDGES = ("reflector", "parm")  # who answers "aligned or not": the reflection model, or PARM's outcome question


@dataclass
class JudgedReflector:
    """A reflector whose aligned-or-not answer comes from an outcome verifier (PARM's outcome question, the same one
    that picked the image); the failed clauses and the critique stay the reflector's. Two verifier calls an image."""

    reflector: Reflector
    judge: OutcomeVerifier
    threshold: float = THRESHOLD  # PARM's yes/no cut
    calls_per_reflection: int = 2

    def reflect(self, prompts: list[str], images: torch.Tensor) -> list[Reflection]:
        answers = self.reflector.reflect(prompts, images)
        scores = self.judge.score(prompts, images).float().cpu().tolist()
        return [replace(a, aligned=float(s), threshold=self.threshold) for a, s in zip(answers, scores, strict=True)]


@dataclass
class ParmPlusPlusVerifier:
    """What PARM++ is handed: PARM's questions (judge, score), a reflector, and the round limit."""

    parm: ParmVerifier
    reflector: Reflector
    max_rounds: int = MAX_ROUNDS
    localize: str = "objects"  # what a correction redraws (reflection/correct.py LOCALIZE)
    select: str = "last"  # the answer: the last image (paper) or the round the judge finds most aligned
    judge_with: str = "reflector"  # JUDGES: who says aligned or not (the critique is always the reflector's)

    def __post_init__(self) -> None:
        if self.judge_with not in JUDGES:
            raise ValueError(f"unknown reflection judge {self.judge_with!r}; known: {', '.join(JUDGES)}")

    @property
    def calls_per_reflection(self) -> int:
        return calls_per_reflection(self._reflector())

    def _reflector(self) -> Reflector:
        """Who answers `reflect`: the reflector, or the reflector with PARM's outcome question as the judge."""
        return JudgedReflector(self.reflector, self.parm) if self.judge_with == "parm" else self.reflector

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore:
        return self.parm.judge(prompts, previews, step, num_steps)

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        return self.parm.score(prompts, images)

    def reflect(self, prompts: list[str], images: torch.Tensor) -> list:
        return self._reflector().reflect(prompts, images)


def as_corrector(generator: StepwiseGenerator, localize: str = "objects") -> SelfCorrector:
    """The generator itself when it implements `correct`, else the critique corrector around it."""
    if hasattr(generator, "correct"):
        return generator
    from ..reflection.correct import CritiqueCorrector

    return CritiqueCorrector(generator, localize=localize)


def round_seed(seed: int, rnd: int) -> int:
    return row_seed(seed, rnd, salt=0xC0DE) % 2**48


def _record(trace: RoundTrace, answer: Reflection, reflection: bool) -> None:
    from ..reflection.clauses import clause_dict

    trace.aligned = float(answer.aligned)
    if reflection:
        trace.critique = answer.critique
        trace.clauses = [clause_dict(c) for c in answer.clauses]
    else:
        trace.critique = "aligned" if answer.ok else "not aligned"


def reflect_and_correct(
    corrector: SelfCorrector,
    results: list[SearchResult],
    seeds: list[list[int]],
    reflector: Reflector,
    max_rounds: int = MAX_ROUNDS,
    reflection: bool = True,
    select: str = "last",
) -> list[SearchResult]:
    """Run the loop on strategy results (their images are round 0); rounds, images and compute are updated.
    `select`: the answer is the last image (the paper), or ("best") the round the reflector finds most aligned,
    which costs one more reflection of the last image (ties: the earliest round)."""
    if select not in SELECT:
        raise ValueError(f"unknown selection {select!r}; known: {', '.join(SELECT)}")
    began = time.perf_counter()
    for r in results:
        r.rounds = [RoundTrace(0, r.image)]
    active = list(range(len(results)))
    for rnd in range(max_rounds):
        if not active:
            break
        images = torch.as_tensor(np.stack([results[p].image for p in active]))
        answers = reflector.reflect([results[p].prompt for p in active], images)
        for p, answer in zip(active, answers, strict=True):
            results[p].compute.verifier_calls += calls_per_reflection(reflector)
            _record(results[p].rounds[-1], answer, reflection)
        todo = [(i, p) for i, (p, a) in enumerate(zip(active, answers, strict=True)) if not a.ok]
        if not todo:
            break
        given = [answers[i] if reflection else Reflection(answers[i].aligned, threshold=answers[i].threshold)
                 for i, _ in todo]  # fmt: skip
        new, forwards, redrawn = corrector.correct(
            [results[p].prompt for _, p in todo],
            [round_seed(seeds[p][results[p].chosen], rnd + 1) for _, p in todo],
            images[[i for i, _ in todo]],
            given,
        )
        for (_, p), image, spent, count in zip(todo, np.asarray(new), forwards, redrawn, strict=True):
            results[p].rounds.append(RoundTrace(rnd + 1, image, int(spent), int(count)))
            results[p].image = image
            results[p].compute.generator_forwards += int(spent)
        active = [p for _, p in todo]
    if select == "best":
        _judge_last(results, reflector, reflection)
    for r in results:
        pick = best_round(r.rounds) if select == "best" else r.rounds[-1]
        pick.chosen, r.image = True, pick.image
    share = (time.perf_counter() - began) / max(1, len(results))
    for r in results:
        r.compute.wall_seconds += share
    return results


def calls_per_reflection(reflector: Reflector) -> int:
    return int(getattr(reflector, "calls_per_reflection", 1))


def _judge_last(results: list[SearchResult], reflector: Reflector, reflection: bool) -> None:
    """Reflect on every last image that was corrected and not judged yet (one call each)."""
    open_ = [p for p, r in enumerate(results) if len(r.rounds) > 1 and r.rounds[-1].aligned is None]
    if not open_:
        return
    images = torch.as_tensor(np.stack([results[p].rounds[-1].image for p in open_]))
    for p, answer in zip(open_, reflector.reflect([results[p].prompt for p in open_], images), strict=True):
        results[p].compute.verifier_calls += calls_per_reflection(reflector)
        _record(results[p].rounds[-1], answer, reflection)


def best_round(rounds: list[RoundTrace]) -> RoundTrace:
    """The round judged most aligned (ties: the earliest; an unjudged round counts as -1)."""
    return max(rounds, key=lambda t: (t.aligned if t.aligned is not None else -1.0, -t.index))


def _parm_then_rounds(generator, prompts, seeds, verifier, record_previews: bool, reflection: bool):
    """PARM, then up to `verifier.max_rounds` rounds: with reflection the critique picks what is redrawn (the
    verifier's `localize` policy); without it a rejected image is redrawn from scratch."""
    results = parm(generator, prompts, seeds, verifier, record_previews=record_previews)
    rounds = getattr(verifier, "max_rounds", MAX_ROUNDS)
    policy = getattr(verifier, "localize", "objects") if reflection else "none"
    corrector, select = as_corrector(generator, policy), getattr(verifier, "select", "last")
    return reflect_and_correct(corrector, results, seeds, verifier, rounds, reflection=reflection, select=select)


def parm_plus_plus(
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: ParmPlusPlusVerifier,
    *,
    record_previews: bool = False,
) -> list[SearchResult]:
    """PARM, then up to `verifier.max_rounds` rounds of reflection (critique) and self-correction."""
    return _parm_then_rounds(generator, prompts, seeds, verifier, record_previews, reflection=True)


def parm_plus_plus_judge_only(
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: ParmPlusPlusVerifier,
    *,
    record_previews: bool = False,
) -> list[SearchResult]:
    """PARM++ without reflection: the reflector only judges; a rejected image is redrawn from scratch."""
    return _parm_then_rounds(generator, prompts, seeds, verifier, record_previews, reflection=False)

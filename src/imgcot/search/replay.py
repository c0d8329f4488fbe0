"""Generate once, select many: decode every candidate to the end once, record what each verifier would say, and
replay best-of-N, PARM and the oracle at any N <= the recorded N with their exact compute.

Decoding is per-row deterministic (a row's noise depends on its seed and step only, never on its batch), so a
candidate's previews, final image and forward passes are the same whether it decodes alone, in a large batch or in a
PARM batch that prunes its neighbours. Replaying the strategies' rules on the recorded answers therefore gives the
choices and the compute a live run would (tests/test_replay.py checks this against the live strategies). PRM forks
from the path it follows, so it has no replay: it runs live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core import StepwiseGenerator
from ..geneval.judge import judge
from ..geneval.spec import Metadata
from .parm import THRESHOLD
from .registry import candidate_seeds


@dataclass
class SlotRecord:
    """Everything the selection rules need about the N candidates of one (prompt, image) slot."""

    meta: Metadata
    finals: np.ndarray  # (N, H, W, 3) uint8
    correct: np.ndarray  # (N,) bool: the evaluator's verdict on each final image
    clarity: dict[str, np.ndarray]  # step judge name -> (N, T - 1) clarity after steps 1 .. T-1
    potential: dict[str, np.ndarray]  # step judge name -> (N, T - 1) potential after steps 1 .. T-1
    forwards: np.ndarray  # (N, T + 1) cumulative forward passes after init and after each step
    outcome: dict[str, np.ndarray]  # verifier name -> (N,) outcome score of each final image


@dataclass
class Choice:
    index: int
    correct: bool
    generator_forwards: int
    verifier_calls: int


@torch.no_grad()
def record_slots(
    generator: StepwiseGenerator,
    metas: list[Metadata],
    slot_seeds: list[int],
    n: int,
    judges: dict,
    outcomes: dict,
    detector,
) -> list[SlotRecord]:
    """Decode the N candidates of every slot together, asking each step judge's questions after every step."""
    seeds = [candidate_seeds(base, n) for base in slot_seeds]
    prompts = [m["prompt"] for m in metas for _ in range(n)]
    state = generator.init(prompts, [s for row in seeds for s in row])
    forwards = [list(state.forwards)]
    clarity: dict[str, list] = {name: [] for name in judges}
    potential: dict[str, list] = {name: [] for name in judges}
    steps = generator.num_steps
    while not generator.is_done(state):
        state = generator.step(state)
        forwards.append(list(state.forwards))
        if state.step < steps:
            previews = generator.preview(state)
            for name, step_judge in judges.items():
                score = step_judge.judge(prompts, previews, state.step, steps)
                clarity[name].append(score.clarity.double().numpy())
                potential[name].append(score.potential.double().numpy())
    finals = generator.decode(state)
    scores = {name: v.score(prompts, finals).double().numpy() for name, v in outcomes.items()}
    finals = finals.numpy()
    correct = np.array([judge(m, im, detector)[0] for m, im in zip([m for m in metas for _ in range(n)], finals,
                                                                     strict=True)])  # fmt: skip
    fw = np.array(forwards).T  # (rows, T + 1)
    cl = {k: np.array(v).T.reshape(len(prompts), -1) for k, v in clarity.items()}
    po = {k: np.array(v).T.reshape(len(prompts), -1) for k, v in potential.items()}
    out = []
    for i, meta in enumerate(metas):
        rows = slice(i * n, (i + 1) * n)
        out.append(
            SlotRecord(
                meta,
                finals[rows],
                correct[rows],
                {k: v[rows] for k, v in cl.items()},
                {k: v[rows] for k, v in po.items()},
                fw[rows],
                {k: v[rows] for k, v in scores.items()},
            )
        )
    return out


def _argmax(scores: np.ndarray) -> int:
    return int(np.argmax(scores))  # the first maximum: ties go to the lowest index, as in the live strategies


def choose_baseline(slot: SlotRecord) -> Choice:
    return Choice(0, bool(slot.correct[0]), int(slot.forwards[0, -1]), 0)


def choose_best_of_n(slot: SlotRecord, n: int, scores: np.ndarray) -> Choice:
    """Best-of-N on the first n candidates; one question per image when there is a choice to make."""
    k = _argmax(scores[:n]) if n > 1 else 0
    return Choice(k, bool(slot.correct[k]), int(slot.forwards[:n, -1].sum()), n if n > 1 else 0)


def choose_parm(
    slot: SlotRecord, n: int, judge_name: str, outcome: np.ndarray, first_step: int = 1, keep: int | None = None
) -> Choice:
    """PARM's rule (search/parm.py) replayed: clarity gate from `first_step` on, potential once, truncate (and,
    with `keep`, truncate promising paths beyond the `keep` highest potentials), best-of-N' on survivors."""
    clarity, potential = slot.clarity[judge_name], slot.potential[judge_name]
    forwards, calls, survivors, pruned = 0, 0, [], {}
    asked = max(0, clarity.shape[1] - first_step + 1)  # steps at which clarity is asked of an unjudged row
    promising: dict[int, list[int]] = {}  # step -> paths judged clear and promising at that step
    for k in range(n):
        clear = np.nonzero(clarity[k, first_step - 1 :] >= THRESHOLD)[0]
        if len(clear) == 0:  # never clear: asked at every step from first_step, decoded to the end
            calls += asked
            survivors.append(k)
            continue
        step = int(clear[0]) + first_step  # steps are 1-based
        calls += step - first_step + 2  # clarity at steps first_step..step, potential once
        if potential[k, step - 1] < THRESHOLD:
            pruned[k] = step
        else:
            promising.setdefault(step, []).append(k)
    kept = 0
    for step in sorted(promising):
        ranked = sorted(promising[step], key=lambda j: (-potential[j, step - 1], j))
        room = len(ranked) if keep is None else max(0, keep - kept)
        survivors += ranked[:room]
        pruned.update({j: step for j in ranked[room:]})
        kept += min(room, len(ranked))
    survivors.sort()
    forwards += sum(int(slot.forwards[k, -1]) for k in survivors)
    forwards += sum(int(slot.forwards[k, step]) for k, step in pruned.items())
    if len(survivors) > 1:
        calls += len(survivors)
        k = survivors[_argmax(outcome[survivors])]
    elif survivors:
        k = survivors[0]
    else:  # none survived: finish the path whose potential had the lowest "no"
        potentials = np.array([potential[j, pruned[j] - 1] for j in sorted(pruned)])
        k = sorted(pruned)[_argmax(potentials)]
        forwards += int(slot.forwards[k, -1] - slot.forwards[k, pruned[k]])
    return Choice(k, bool(slot.correct[k]), forwards, calls)

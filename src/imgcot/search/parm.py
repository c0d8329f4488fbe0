"""PARM: clarity gate -> potential once -> truncate -> best-of-N' (shared/method.md section 3), with real pruning.

All N paths of every prompt decode in one batch. After each step (except the last, where the outcome question
judges the image and truncating saves nothing):
  1. rows not yet judged clear get the clarity question on their preview;
  2. rows judged clear (clarity >= 0.5) get the potential question, once;
  3. rows with potential < 0.5 are truncated: removed from the batch, so they cost no more forward passes.
Before `first_clarity_step(verifier, T)` no clarity question is asked: a verifier whose clarity rule cannot call
those steps clear (the paper's fixed rule: steps before 10 of 18 are unclear) would only answer "no", at a cost.
With `keep` (beyond the paper) at most `keep` promising paths per prompt go on: at each gate the newly promising
rows are ranked by potential and those past the prompt's remaining room are truncated too, which bounds the forward
passes at about g + (1 - g) * keep / N of best-of-N for a gate after fraction g of the steps.
Survivors (rows judged promising, or never judged clear) decode to the end and the outcome question picks the
best of them (best-of-N'; with one survivor there is nothing to ask). A prompt with no survivor returns its
pruned path whose potential had the lowest probability of "no": that path resumes from its snapshot and is
decoded to the end, its extra forward passes counted.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..core import OutcomeVerifier, StepVerifier, StepwiseGenerator
from .result import SearchResult
from .tracker import Key, Rows, Tracker, best, floats

THRESHOLD = 0.5  # a "yes" probability at or above this is a yes


class ParmVerifier(StepVerifier, OutcomeVerifier, Protocol):
    """What PARM needs: step judgments (clarity, potential) and the outcome question."""


def parm(
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: ParmVerifier,
    *,
    record_previews: bool = False,
    keep: int | None = None,
) -> list[SearchResult]:
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1 (or None: every promising path), got {keep}")
    track = Tracker("parm", generator, prompts, seeds, record_previews)
    rows = track.start([(p, k) for p, row in enumerate(seeds) for k in range(len(row))])
    unjudged, pruned = set(rows.keys), []
    room = [keep if keep is not None else len(row) for row in seeds]  # promising paths each prompt may still keep
    first = first_clarity_step(verifier, generator.num_steps)
    while rows.keys and not generator.is_done(rows.state):
        rows = track.step(rows)
        if not generator.is_done(rows.state) and rows.state.step >= first:
            rows, cut = _gate_and_prune(track, verifier, rows, unjudged, room)
            pruned += [cut] if cut.keys else []
    images = track.decode(rows) if rows.keys else None
    chosen, finals = _best_of_survivors(track, verifier, rows, images)
    _finish_fallbacks(track, pruned, chosen, finals)
    return track.finish(chosen, finals)


def first_clarity_step(verifier: object, num_steps: int) -> int:
    """The first step (1-based) at which PARM asks the clarity question; 1 unless the verifier says later."""
    rule = getattr(verifier, "first_clarity_step", None)
    return max(1, int(rule(num_steps))) if rule is not None else 1


def _gate_and_prune(
    track: Tracker, verifier: StepVerifier, rows: Rows, unjudged: set[Key], room: list[int]
) -> tuple[Rows, Rows]:
    """Ask clarity (and, when clear, potential) of unjudged rows; split rows into (kept, truncated). A prompt's
    newly promising rows beyond its `room` (ranked by potential, ties to the lower index) are truncated too."""
    asked = [i for i, key in enumerate(rows.keys) if key in unjudged]
    if not asked:
        return rows, rows.select([])
    sub = rows.select(asked)
    score = track.judge(verifier, sub)
    clarity, potential = floats(score.clarity), floats(score.potential)
    track.ask(sub.keys)  # the clarity question
    hopeless, promising = set(), {}
    for key, c, pot in zip(sub.keys, clarity, potential, strict=True):
        judgment = track.trace(key).judgment(rows.state.step)
        judgment.clarity = float(c)
        if c >= THRESHOLD:  # first clear step: the potential question, asked once per path
            track.ask([key])
            judgment.potential = float(pot)
            unjudged.discard(key)
            if pot < THRESHOLD:
                hopeless.add(key)
            else:
                promising[key] = pot
    for p in {key[0] for key in promising}:
        ranked = sorted((key for key in promising if key[0] == p), key=lambda key: (-promising[key], key[1]))
        hopeless.update(ranked[room[p] :])
        room[p] -= min(room[p], len(ranked))
    for key in hopeless:
        track.trace(key).pruned_at = rows.state.step
    keep = [i for i, key in enumerate(rows.keys) if key not in hopeless]
    cut = [i for i, key in enumerate(rows.keys) if key in hopeless]
    return rows.select(keep), rows.select(cut)


def _best_of_survivors(
    track: Tracker, verifier: OutcomeVerifier, rows: Rows, images: torch.Tensor | None
) -> tuple[list[int | None], list]:
    """Best-of-N' per prompt among the rows that reached the end; None where a prompt has no survivor."""
    chosen: list[int | None] = [None] * len(track.prompts)
    finals: list = [None] * len(track.prompts)
    for p in range(len(track.prompts)):
        row_of = {key[1]: i for i, key in enumerate(rows.keys) if key[0] == p}  # candidate -> batch row
        if len(row_of) > 1:
            scores = track.score(verifier, [(p, k) for k in row_of], images[list(row_of.values())])
            chosen[p] = best(dict(zip(row_of, scores, strict=True)))
        elif row_of:
            chosen[p] = next(iter(row_of))  # one survivor: nothing to ask
        if chosen[p] is not None:
            finals[p] = images[row_of[chosen[p]]].cpu().numpy()
    return chosen, finals


def _finish_fallbacks(track: Tracker, pruned: list[Rows], chosen: list[int | None], finals: list) -> None:
    """For prompts with no survivor: resume the pruned path with the highest potential and decode it to the end."""
    revive = {}
    for p, pick in enumerate(chosen):
        if pick is None:
            potentials = {t.index: t.judgments[-1].potential for t in track.traces[p] if t.pruned_at is not None}
            revive[(p, best(potentials))] = p
    for cut in pruned:  # one snapshot per prune step: revived rows of one step resume together
        index = [i for i, key in enumerate(cut.keys) if key in revive]
        if index:
            rows = track.run_to_end(cut.select(index))
            for key, image in zip(rows.keys, track.decode(rows).cpu().numpy(), strict=True):
                chosen[key[0]], finals[key[0]] = key[1], image

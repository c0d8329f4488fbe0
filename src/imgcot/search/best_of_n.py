"""Plain generation and best-of-N with an outcome verifier (ORM, zero-shot ORM, the GenEval oracle).

shared/method.md section 3: generate N full candidates, ask the outcome question of each final image, return the
best (ties: lowest index). With N = 1 there is nothing to choose, so no question is asked.
"""

from __future__ import annotations

from ..core import OutcomeVerifier, StepwiseGenerator
from .result import SearchResult
from .tracker import Tracker, best


def baseline(
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: object = None,
    *,
    record_previews: bool = False,
) -> list[SearchResult]:
    """Plain generation: candidate 0 of each prompt, one row per prompt, no verifier."""
    track = Tracker("baseline", generator, prompts, seeds, record_previews)
    rows = track.run_to_end(track.start([(p, 0) for p in range(len(prompts))]))
    images = track.decode(rows).cpu().numpy()
    return track.finish([0] * len(prompts), list(images), candidates=1)


def best_of_n(
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: OutcomeVerifier,
    *,
    record_previews: bool = False,
) -> list[SearchResult]:
    """All N candidates of every prompt decode in one batch; the outcome verifier picks one per prompt."""
    track = Tracker("orm", generator, prompts, seeds, record_previews)
    keys = [(p, k) for p, row in enumerate(seeds) for k in range(len(row))]
    rows = track.run_to_end(track.start(keys))
    images = track.decode(rows)
    chosen, finals = [], []
    for p in range(len(prompts)):
        index = [i for i, key in enumerate(rows.keys) if key[0] == p]
        if len(index) > 1:
            scores = track.score(verifier, [rows.keys[i] for i in index], images[index])
            chosen.append(best(dict(enumerate(scores))))
        else:
            chosen.append(0)
        finals.append(images[index[chosen[-1]]].cpu().numpy())
    return track.finish(chosen, finals)

"""PRM step-level search (shared/method.md section 3): follow the most promising path, one step at a time.

One path per prompt. At every step the path forks into N branches; branch k continues with candidate k's seed
(the generators key their noise by (seed, step), so branches differ from each other and from earlier steps, and
branch 0 always taken reproduces plain generation). Each branch takes the step, the step verifier's value
question is asked of its preview, and the best branch (ties: lowest index) becomes the path. The final image is
the path's decode. Cost: N rows per step, N value questions per step.
"""

from __future__ import annotations

from ..core import StepVerifier, StepwiseGenerator
from .result import SearchResult
from .tracker import Tracker, best, floats


def step_search(
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: StepVerifier,
    *,
    record_previews: bool = False,
) -> list[SearchResult]:
    track = Tracker("prm", generator, prompts, seeds, record_previews)
    path = track.start([(p, 0) for p in range(len(prompts))])  # row p is prompt p's path
    while not generator.is_done(path.state):
        keys = [(p, k) for p, row in enumerate(seeds) for k in range(len(row))]
        branches = track.step(track.fork(path, [p for p, _ in keys], keys))
        values = floats(track.judge(verifier, branches).value)
        track.ask(keys)  # the value question, once per branch
        kept = _keep_best(track, branches.keys, values, branches.state.step)
        path = branches.select(kept)
    images = track.decode(path).cpu().numpy()
    return track.finish([k for _, k in path.keys], list(images))


def _keep_best(track: Tracker, keys: list[tuple[int, int]], values: list[float], step: int) -> list[int]:
    """Record each branch's value; the row index of each prompt's best branch, in prompt order."""
    by_prompt: dict[int, dict[int, float]] = {}
    for (p, k), v in zip(keys, values, strict=True):
        judgment = track.trace((p, k)).judgment(step)
        judgment.value, judgment.kept = float(v), False
        by_prompt.setdefault(p, {})[k] = float(v)
    kept = []
    for p in sorted(by_prompt):
        k = best(by_prompt[p])
        track.trace((p, k)).judgment(step).kept = True
        kept.append(keys.index((p, k)))
    return kept

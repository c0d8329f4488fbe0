"""Bookkeeping the strategies share: which candidate each batch row is, what it cost, what was asked about it.

Every row of a batch is a candidate key (prompt index, candidate index); rows of several prompts share one
GenState. Forward passes are charged per row as the difference of `state.forwards` across a generator call, so
forked rows (which inherit their parent's count) and pruned rows (which stop being stepped) are counted exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..core import Compute, GenState, OutcomeVerifier, StepScore, StepVerifier, StepwiseGenerator
from .result import CandidateTrace, SearchResult

Key = tuple[int, int]  # (prompt index, candidate index)


@dataclass
class Rows:
    """A decoding batch and the candidate each of its rows belongs to."""

    state: GenState
    keys: list[Key]
    previews: torch.Tensor | None = None  # (B, H, W, 3) previews of the current step, once computed

    def select(self, index: list[int]) -> Rows:
        previews = None if self.previews is None else self.previews[index]
        return Rows(self.state.select(index), [self.keys[i] for i in index], previews)


def floats(values: torch.Tensor) -> list[float]:
    """A verifier's (B,) answers as Python floats (exact for float32/float64, from any device)."""
    return values.detach().cpu().double().tolist()


def best(scores: dict[int, float]) -> int:
    """Candidate with the highest score; ties go to the lowest index."""
    return max(sorted(scores), key=lambda k: scores[k])


class Tracker:
    def __init__(
        self,
        strategy: str,
        generator: StepwiseGenerator,
        prompts: list[str],
        seeds: list[list[int]],
        record_previews: bool,
    ):
        if len(prompts) != len(seeds) or any(len(s) < 1 for s in seeds):
            raise ValueError("seeds must hold a non-empty list of candidate seeds per prompt")
        self.strategy, self.generator, self.prompts, self.seeds = strategy, generator, prompts, seeds
        self.record = record_previews
        self.traces = [[CandidateTrace(k, s, previews=[] if record_previews else None) for k, s in enumerate(row)]
                       for row in seeds]  # fmt: skip
        self.calls = [0] * len(prompts)
        self.began = time.perf_counter()

    def trace(self, key: Key) -> CandidateTrace:
        return self.traces[key[0]][key[1]]

    # --- generator calls, charged per candidate ---------------------------------------------------------------
    def _charge(self, keys: list[Key], before: list[int], after: list[int]) -> None:
        for key, a, b in zip(keys, before, after, strict=True):
            self.trace(key).forwards += b - a

    def start(self, keys: list[Key]) -> Rows:
        state = self.generator.init([self.prompts[p] for p, _ in keys], [self.seeds[p][k] for p, k in keys])
        self._charge(keys, [0] * len(keys), state.forwards)
        return Rows(state, list(keys))

    def fork(self, rows: Rows, index: list[int], keys: list[Key]) -> Rows:
        """Copies of rows `index` that continue as candidates `keys`, each with its candidate's seed."""
        state = rows.state.fork(index, [self.seeds[p][k] for p, k in keys])
        return Rows(state, list(keys))

    def step(self, rows: Rows) -> Rows:
        state = self.generator.step(rows.state)
        self._charge(rows.keys, rows.state.forwards, state.forwards)
        out = Rows(state, rows.keys)
        if self.record:
            for key, image in zip(rows.keys, self.preview(out).cpu().numpy(), strict=True):
                self.trace(key).previews.append(image)
        return out

    def preview(self, rows: Rows) -> torch.Tensor:
        if rows.previews is None:
            rows.previews = self.generator.preview(rows.state)
        return rows.previews

    def decode(self, rows: Rows) -> torch.Tensor:
        images = self.generator.decode(rows.state)
        if self.record:
            for key, image in zip(rows.keys, images.cpu().numpy(), strict=True):
                self.trace(key).final = image
        return images

    def run_to_end(self, rows: Rows) -> Rows:
        while rows.keys and not self.generator.is_done(rows.state):
            rows = self.step(rows)
        return rows

    # --- verifier calls: each question about one image is one call -------------------------------------------
    def ask(self, keys: list[Key], questions: int = 1) -> None:
        for p, _ in keys:
            self.calls[p] += questions

    def judge(self, verifier: StepVerifier, rows: Rows) -> StepScore:
        """Step judgments of every row's current preview (the caller charges the questions it uses)."""
        prompts = [self.prompts[p] for p, _ in rows.keys]
        return verifier.judge(prompts, self.preview(rows), rows.state.step, self.generator.num_steps)

    def score(self, verifier: OutcomeVerifier, keys: list[Key], images: torch.Tensor) -> list[float]:
        """The outcome question on final images; recorded in the candidates' traces."""
        scores = floats(verifier.score([self.prompts[p] for p, _ in keys], images))
        self.ask(keys)
        for key, s in zip(keys, scores, strict=True):
            self.trace(key).outcome = float(s)
        return scores

    # --- the result --------------------------------------------------------------------------------------------
    def finish(self, chosen: list[int], images: list[np.ndarray], candidates: int | None = None) -> list[SearchResult]:
        """Results per prompt; `candidates` limits the traces to the first ones (baseline decodes only one)."""
        wall = (time.perf_counter() - self.began) / len(self.prompts)
        results = []
        for p, prompt in enumerate(self.prompts):
            traces = self.traces[p][:candidates]
            traces[chosen[p]].chosen = True
            compute = Compute(sum(t.forwards for t in self.traces[p]), self.calls[p], wall)
            n, steps = len(self.seeds[p]), self.generator.num_steps
            results.append(SearchResult(prompt, self.strategy, n, steps, images[p], chosen[p], traces, compute))
        return results

"""What a search strategy returns: the chosen image per prompt, every candidate's trace, and the compute spent."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import Compute


@dataclass
class Judgment:
    """The questions a verifier answered about one step's preview (probabilities of "yes"; None = not asked)."""

    step: int  # steps decoded when the preview was taken: 1 .. num_steps
    clarity: float | None = None
    potential: float | None = None
    value: float | None = None
    kept: bool | None = None  # PRM: this branch became the path


@dataclass
class CandidateTrace:
    """One candidate path: its seed, the judgments made on it, where it was pruned and how it ended."""

    index: int
    seed: int
    judgments: list[Judgment] = field(default_factory=list)
    pruned_at: int | None = None  # step after which the path was truncated (PARM)
    outcome: float | None = None  # final outcome score, when the outcome question was asked
    chosen: bool = False
    forwards: int = 0  # generator forward passes spent on this candidate (CFG counted)
    previews: list[np.ndarray] | None = None  # (H, W, 3) uint8 per decoded step, when recorded
    final: np.ndarray | None = None  # its final image, when previews are recorded and it was decoded to the end

    def judgment(self, step: int) -> Judgment:
        """The judgment record of `step`, created on first use."""
        if not self.judgments or self.judgments[-1].step != step:
            self.judgments.append(Judgment(step))
        return self.judgments[-1]


@dataclass
class RoundTrace:
    """One round of PARM++'s reflect-and-correct loop: the image in hand after `index` corrections (round 0 is
    PARM's choice) and, when it was asked, the reflection on it (whose critique drives round index + 1)."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8
    forwards: int = 0  # generator forward passes of the correction that made this image (0 for round 0)
    redrawn: int | None = None  # image tokens the correction redrew
    aligned: float | None = None  # the reflector's P(aligned) for this image; None: not asked (last round)
    critique: str | None = None
    clauses: list[dict] = field(default_factory=list)  # the failed clauses (reflection/clauses.py clause_dict)
    chosen: bool = False  # this round's image is the answer


@dataclass
class SearchResult:
    """One prompt's outcome. `compute` is this prompt's share: exact forwards and verifier calls, wall time split
    evenly over the prompts of the call, so summing over results gives the call's total (`total_compute`)."""

    prompt: str
    strategy: str
    n: int  # candidates requested per prompt (baseline decodes only candidate 0)
    num_steps: int
    image: np.ndarray  # the chosen final image (H, W, 3) uint8
    chosen: int  # index of the chosen candidate
    candidates: list[CandidateTrace]
    compute: Compute
    rounds: list[RoundTrace] | None = None  # PARM++: reflection and correction rounds (None for other strategies)


def total_compute(results: list[SearchResult]) -> Compute:
    total = Compute()
    for result in results:
        total.add(result.compute)
    return total

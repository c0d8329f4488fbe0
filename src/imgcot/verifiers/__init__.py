"""Verifiers: objects that answer yes/no questions about images (core.OutcomeVerifier, core.StepVerifier)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import OutcomeVerifier, StepScore, StepVerifier
from .oracle import OracleVerifier


@dataclass
class Combined:
    """One object answering both step judgments and the outcome question (what PARM is handed), from two."""

    step: StepVerifier
    outcome: OutcomeVerifier

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore:
        return self.step.judge(prompts, previews, step, num_steps)

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        return self.outcome.score(prompts, images)


__all__ = ["Combined", "OracleVerifier"]

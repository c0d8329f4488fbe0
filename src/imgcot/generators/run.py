"""Run a step-wise generator to the end over many prompts, in batches."""

from __future__ import annotations

import torch

from ..core import GenState, StepwiseGenerator


def run_to_end(generator: StepwiseGenerator, state: GenState) -> GenState:
    while not generator.is_done(state):
        state = generator.step(state)
    return state


def generate(
    generator: StepwiseGenerator, prompts: list[str], seeds: list[int], batch_size: int = 64
) -> tuple[torch.Tensor, list[int]]:
    """Final images (B, H, W, 3) uint8 and per-row forward passes; rows of several prompts share a batch."""
    images, forwards = [], []
    for i in range(0, len(prompts), batch_size):
        state = run_to_end(generator, generator.init(prompts[i : i + batch_size], seeds[i : i + batch_size]))
        images.append(generator.decode(state))
        forwards.extend(state.forwards)
    return torch.cat(images), forwards

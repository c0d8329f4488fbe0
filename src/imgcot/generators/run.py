"""Run a step-wise generator to the end over many prompts, in batches."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core import GenState, StepwiseGenerator
from .base import TokenGenerator


def run_to_end(generator: StepwiseGenerator, state: GenState) -> GenState:
    while not generator.is_done(state):
        state = generator.step(state)
    return state


def run_recording_order(
    generator: TokenGenerator, state: GenState, on_step: Callable[[GenState], None] | None = None
) -> tuple[GenState, torch.Tensor]:
    """Run to the end and return, with the final state, (B, N) the step at which each token was committed: the
    model's own decoding order (-1 where a token was never committed). `on_step` sees the state after every step
    (e.g. to judge its preview)."""
    undecided = generator.undecided
    order = torch.full(tuple(state.tokens.shape), -1, dtype=torch.long)
    while not generator.is_done(state):
        state = generator.step(state)
        fresh = (order < 0) & (state.tokens.cpu() != undecided)
        order[fresh] = state.step - 1
        if on_step is not None:
            on_step(state)
    return state, order


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

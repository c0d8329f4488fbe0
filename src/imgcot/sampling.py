"""Pure sampling helpers: schedules, guidance, per-row seeded noise, MaskGIT's re-masking rule."""

from __future__ import annotations

import math

import torch


def cosine_schedule(step: int, total: int) -> float:
    """Fraction of tokens still masked after step `step` (0-based) of `total`: cos(pi/2 * (step+1)/total)."""
    return math.cos(math.pi / 2 * (step + 1) / total)


def linear_schedule(step: int, total: int) -> float:
    return 1.0 - (step + 1) / total


SCHEDULES = {"cosine": cosine_schedule, "linear": linear_schedule}


def get_schedule(name: str):
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def masked_count(step: int, total: int, num_tokens: int, unknown: int, schedule: str = "cosine") -> int:
    """How many tokens stay masked after this step: at least one fixed, at least one masked, none after the last."""
    if step >= total - 1:
        return 0
    wanted = math.floor(num_tokens * get_schedule(schedule)(step, total))
    return max(1, min(unknown - 1, wanted))


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance as in the paper: (1 + g) * cond - g * uncond."""
    return (1.0 + scale) * cond - scale * uncond


def row_seed(seed: int, step: int, salt: int = 0) -> int:
    """A 63-bit seed derived from (row seed, step, salt): a row's noise never depends on its batch."""
    return (seed * 0x9E3779B1 + step * 0x85EBCA77 + salt * 0xC2B2AE3D + 0x27D4EB2F) % (2**63 - 1)


def row_uniform(seeds: list[int], step: int, shape: tuple[int, ...], salt: int = 0) -> torch.Tensor:
    """(B, *shape) uniforms in (0, 1), one torch.Generator per row seeded by (seed, step, salt)."""
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(row_seed(seed, step, salt))
        out.append(torch.rand(shape, generator=gen))
    return torch.stack(out).clamp_(1e-20, 1.0 - 1e-7)


def gumbel(uniform: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(uniform))


def sample_with_gumbel(logits: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
    """Categorical sample via Gumbel-max; temperature 0 is argmax. logits, noise: (..., V) -> (...)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return (logits / temperature + noise).argmax(-1)


def choice_temperature(base: float, step: int, total: int) -> float:
    """MaskGIT's annealed choice temperature, recomputed each step from the base (never compounded)."""
    return base * (1.0 - (step + 1) / total)


def mask_by_random_topk(confidence: torch.Tensor, noise: torch.Tensor, temperature: float, count: int) -> torch.Tensor:
    """(B, N) bool: the `count` lowest of confidence + temperature * gumbel per row (MaskGIT's rule)."""
    if count <= 0:
        return torch.zeros_like(confidence, dtype=torch.bool)
    scores = confidence + temperature * noise
    lowest = scores.topk(count, dim=-1, largest=False).indices
    return torch.zeros_like(confidence, dtype=torch.bool).scatter_(-1, lowest, True)

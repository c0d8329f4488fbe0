"""Sequence log-probabilities for DPO (shared/method.md section 4).

Raster AR: the exact sequence log-likelihood by teacher forcing (RasterGenerator.log_prob). Masked-token model: the
masked-position estimate, the sum of log p(true token) over masked positions from one forward pass given the
unmasked rest (MaskGITGenerator.log_prob with a mask). One mask per pair is shared by the chosen and the rejected
sample and by the policy and the reference, which cancels most of the estimate's variance in the DPO log-ratio
(the reference code drew the four masks independently). Several draws can be averaged.
"""

from __future__ import annotations

import math

import torch

from ..generators.base import TokenGenerator
from ..sampling import get_schedule

LOGP_KEYS = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")


def bind(generator: TokenGenerator, model: torch.nn.Module) -> TokenGenerator:
    """The same generator (config, tokenizer, decoding rule) around another network, e.g. the policy or reference."""
    return type(generator)(generator.config, model, generator.tokenizer)


def draw_masks(batch: int, num_tokens: int, schedule: str, num_steps: int, gen: torch.Generator) -> torch.Tensor:
    """(B, N) bool masks shaped like the decoder's own states: per row a decoding step s ~ U{0..T-1}, the number of
    tokens still masked at its start from the generator's schedule (all of them at s = 0), uniform positions."""
    fraction = get_schedule(schedule)
    steps = torch.randint(0, num_steps, (batch,), generator=gen).tolist()
    counts = [num_tokens if s == 0 else max(1, math.floor(num_tokens * fraction(s - 1, num_steps))) for s in steps]
    ranks = torch.rand(batch, num_tokens, generator=gen).argsort(-1).argsort(-1)
    return ranks < torch.tensor(counts)[:, None]


def pair_logps(
    policy: TokenGenerator,
    reference: TokenGenerator,
    prompts: list[str],
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    masks: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """(B,) log-probs of chosen and rejected under the policy (with gradient) and the reference (without); each model
    sees chosen and rejected in one 2B-row forward pass with the same `masks` (B, N) for both halves."""
    both_prompts = list(prompts) + list(prompts)
    tokens = torch.cat([chosen, rejected])
    both_masks = None if masks is None else torch.cat([masks, masks])
    policy_logp = policy.log_prob(both_prompts, tokens, both_masks)
    with torch.no_grad():
        ref_logp = reference.log_prob(both_prompts, tokens, both_masks)
    b = len(prompts)
    return {
        "policy_chosen": policy_logp[:b],
        "policy_rejected": policy_logp[b:],
        "ref_chosen": ref_logp[:b],
        "ref_rejected": ref_logp[b:],
    }


def dpo_logps(
    policy: TokenGenerator,
    reference: TokenGenerator,
    prompts: list[str],
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    gen: torch.Generator,
    mask_draws: int = 1,
    ref_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Exact log-likelihoods for a causal generator (reference values from `ref_cache` (chosen, rejected) when
    given: they do not change during training); otherwise the mean over `mask_draws` shared-mask estimates."""
    if policy.causal and ref_cache is not None:
        policy_logp = policy.log_prob(list(prompts) + list(prompts), torch.cat([chosen, rejected]))
        b = len(prompts)
        return {
            "policy_chosen": policy_logp[:b],
            "policy_rejected": policy_logp[b:],
            "ref_chosen": ref_cache[0],
            "ref_rejected": ref_cache[1],
        }
    if policy.causal:
        return pair_logps(policy, reference, prompts, chosen, rejected)
    decoding = policy.config.decoding
    total: dict[str, torch.Tensor] = {}
    for _ in range(mask_draws):
        masks = draw_masks(len(prompts), chosen.shape[1], decoding.schedule, decoding.num_steps, gen)
        part = pair_logps(policy, reference, prompts, chosen, rejected, masks)
        total = {k: total[k] + part[k] for k in LOGP_KEYS} if total else part
    return {k: v / mask_draws for k, v in total.items()}


@torch.no_grad()
def exact_reference_logps(
    reference: TokenGenerator, prompts: list[str], chosen: torch.Tensor, rejected: torch.Tensor, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P,) exact reference log-likelihoods of every chosen and rejected sequence of a causal generator."""
    if not reference.causal:
        raise ValueError("exact reference log-likelihoods need a causal (raster AR) generator")
    out_c, out_r = [], []
    for start in range(0, len(prompts), batch_size):
        part = slice(start, start + batch_size)
        out_c.append(reference.log_prob(prompts[part], chosen[part]))
        out_r.append(reference.log_prob(prompts[part], rejected[part]))
    return torch.cat(out_c), torch.cat(out_r)

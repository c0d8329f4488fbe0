"""Sequence log-probabilities for DPO (shared/method.md section 4).

Raster AR: the exact sequence log-likelihood by teacher forcing (RasterGenerator.log_prob). Masked-token model: the
masked-position estimate, the sum of log p(true token) over masked positions from one forward pass given the
unmasked rest (MaskGITGenerator.log_prob with a mask). One mask per pair is shared by the chosen and the rejected
sample and by the policy and the reference, which cancels most of the estimate's variance in the DPO log-ratio
(the reference code drew the four masks independently). Several draws can be averaged.

Beyond the paper, the masked-token model can also score the sampler's own trajectory (`logp="trajectory"`): the sum
over decoding steps s of log p(tokens committed at s | tokens committed before s), read from the decoding order the
pairs record. Random masks show the model states its sampler never visits (confidence decides what is committed
first); the trajectory scores exactly the decisions that made the chosen and the rejected image.
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
    credit: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """(B,) log-probs of chosen and rejected under the policy (with gradient) and the reference (without); each model
    sees chosen and rejected in one 2B-row forward pass with the same `masks` (B, N) for both halves. A causal
    model given `credit` (B, N) sums the rejected image over those positions only."""
    both_prompts = list(prompts) + list(prompts)
    tokens = torch.cat([chosen, rejected])
    both_masks = None if masks is None else torch.cat([masks, masks])
    if credit is not None:
        both_masks = torch.cat([torch.ones_like(credit), credit])
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


def draw_steps(batch: int, num_steps: int, draws: int, gen: torch.Generator) -> torch.Tensor:
    """(draws, batch) decoding steps: per pair `draws` distinct steps of 0..T-1, uniformly (all T when draws >= T)."""
    return torch.rand(batch, num_steps, generator=gen).argsort(-1)[:, : min(draws, num_steps)].T


def trajectory_logps(
    policy: TokenGenerator,
    reference: TokenGenerator,
    prompts: list[str],
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    orders: tuple[torch.Tensor, torch.Tensor],
    steps: torch.Tensor,
    credit: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """(B,) trajectory log-probs: for each pair the steps in `steps` (K, B), shared by chosen and rejected, policy
    and reference; at step s the input keeps the tokens committed before s and scores those committed at s. The sum
    is scaled by T / K, an unbiased estimate of the whole trajectory's log-probability (exact when K = T).
    With `credit` (B, N) the rejected image scores only those tokens. All K x 2B rows run as one forward pass per
    model."""
    k, b = steps.shape
    step = steps.reshape(-1)[:, None]  # row r = k_i * B + j holds pair j at its k_i-th drawn step

    def rows(tokens: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        order = order.repeat(k, 1)
        return tokens.repeat(k, 1), order >= step, order == step

    (tc, mc, sc), (tr, mr, sr) = rows(chosen, orders[0]), rows(rejected, orders[1])
    if credit is not None:
        sr = sr & credit.repeat(k, 1)
    tokens, masks, scored = torch.cat([tc, tr]), torch.cat([mc, mr]), torch.cat([sc, sr])
    texts = list(prompts) * (2 * k)
    policy_logp = policy.log_prob(texts, tokens, masks, scored)
    with torch.no_grad():
        ref_logp = reference.log_prob(texts, tokens, masks, scored)
    scale = policy.num_steps / k

    def per_pair(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = values.reshape(2, k, b).sum(1) * scale
        return both[0], both[1]

    (pc, pr), (rc, rr) = per_pair(policy_logp), per_pair(ref_logp)
    return {"policy_chosen": pc, "policy_rejected": pr, "ref_chosen": rc, "ref_rejected": rr}


def dpo_logps(
    policy: TokenGenerator,
    reference: TokenGenerator,
    prompts: list[str],
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    gen: torch.Generator,
    mask_draws: int = 1,
    ref_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    orders: tuple[torch.Tensor, torch.Tensor] | None = None,
    trajectory_steps: int = 0,
    credit: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Exact log-likelihoods for a causal generator (reference values from `ref_cache` (chosen, rejected) when
    given: they do not change during training); with `orders` (chosen, rejected decoding orders) the trajectory
    estimate over `trajectory_steps` drawn steps (0: every step); otherwise the mean over `mask_draws` shared-mask
    estimates. `credit` (B, N): the rejected images' tokens to score (causal or trajectory; None: all)."""
    if policy.causal and ref_cache is not None:
        masks = None if credit is None else torch.cat([torch.ones_like(credit), credit])
        policy_logp = policy.log_prob(list(prompts) + list(prompts), torch.cat([chosen, rejected]), masks)
        b = len(prompts)
        return {
            "policy_chosen": policy_logp[:b],
            "policy_rejected": policy_logp[b:],
            "ref_chosen": ref_cache[0],
            "ref_rejected": ref_cache[1],
        }
    if policy.causal:
        return pair_logps(policy, reference, prompts, chosen, rejected, credit=credit)
    if orders is not None:
        steps = draw_steps(len(prompts), policy.num_steps, trajectory_steps or policy.num_steps, gen)
        return trajectory_logps(policy, reference, prompts, chosen, rejected, orders, steps, credit)
    if credit is not None:
        raise ValueError("step credit needs a causal generator or trajectory log-probabilities")
    decoding = policy.config.decoding
    total: dict[str, torch.Tensor] = {}
    for _ in range(mask_draws):
        masks = draw_masks(len(prompts), chosen.shape[1], decoding.schedule, decoding.num_steps, gen)
        part = pair_logps(policy, reference, prompts, chosen, rejected, masks)
        total = {k: total[k] + part[k] for k in LOGP_KEYS} if total else part
    return {k: v / mask_draws for k, v in total.items()}


@torch.no_grad()
def exact_reference_logps(
    reference: TokenGenerator,
    prompts: list[str],
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    credit: torch.Tensor | None = None,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P,) exact reference log-likelihoods of every chosen and rejected sequence of a causal generator (the rejected
    ones over the `credit` positions only, when given)."""
    if not reference.causal:
        raise ValueError("exact reference log-likelihoods need a causal (raster AR) generator")
    out_c, out_r = [], []
    for start in range(0, len(prompts), batch_size):
        part = slice(start, start + batch_size)
        out_c.append(reference.log_prob(prompts[part], chosen[part]))
        out_r.append(reference.log_prob(prompts[part], rejected[part], None if credit is None else credit[part]))
    return torch.cat(out_c), torch.cat(out_r)

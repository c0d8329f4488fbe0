"""DPO-family losses as small pure functions over per-pair sequence log-probabilities (shared/method.md section 4).

Every loss takes the log-ratio difference h = (log pi(w) - log pi(l)) - (log pi_ref(w) - log pi_ref(l)) of each
pair, the temperature beta and an optional per-pair margin m (in reward units, i.e. units of beta * h), and returns
the per-pair losses (B,). The implicit rewards are beta * (log pi - log pi_ref) (Rafailov et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .config import LOSS_NAMES

LossFn = Callable[[torch.Tensor, float, torch.Tensor | float], torch.Tensor]


def sigmoid_loss(h: torch.Tensor, beta: float, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """DPO: -log sigma(beta * h - m); h = 0 gives log 2. A margin m > 0 asks for a larger reward gap (ODPO-style)."""
    return -F.logsigmoid(beta * h - margin)


def ipo_loss(h: torch.Tensor, beta: float, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """IPO (Azar et al. 2023): (h - 1 / (2 beta))^2; with a margin the target reward gap 1/2 becomes 1/2 + m."""
    return (h - (0.5 + margin) / beta) ** 2


def hinge_loss(h: torch.Tensor, beta: float, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """SLiC hinge: max(0, 1 - (beta * h - m))."""
    return torch.relu(1.0 - (beta * h - margin))


LOSSES: dict[str, LossFn] = dict(zip(LOSS_NAMES, (sigmoid_loss, ipo_loss, hinge_loss), strict=True))


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown DPO loss {name!r}; known: {', '.join(LOSSES)}")
    return LOSSES[name]


def log_ratio_gap(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor
) -> torch.Tensor:
    """h per pair: how much more the policy prefers the chosen sample than the reference does."""
    return (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)


def gap_weights(chosen_score: torch.Tensor, rejected_score: torch.Tensor, mean_gap: float) -> torch.Tensor:
    """Verifier-guided pair weights: the verifier's score gap, normalised so the data set's mean weight is 1.

    A pair the verifier separates clearly counts more than one it barely tells apart, and a pair it ranks the other
    way round (gap < 0) counts nothing; the normalisation keeps plain DPO's overall step size. The weights are
    constants w.r.t. the policy that scale each pair's gradient, so the verifier's signal reaches the update.
    """
    gap = (chosen_score - rejected_score).clamp(min=0.0)
    return gap / max(mean_gap, 1e-6)


def blind_spot_weights(rejected_score: torch.Tensor) -> torch.Tensor:
    """Verifier-guided pair weights that follow the verifier's blind spots: the score it gives the rejected image,
    normalised to mean 1. A failure the verifier would accept at test time counts most; one it already rejects
    counts little, since best-of-N with that verifier removes it anyway (shared/method.md section 4, integration).
    """
    score = rejected_score.clamp(min=0.0)
    return score / max(float(score.mean()), 1e-6)


def dpo_objective(
    name: str,
    logps: dict[str, torch.Tensor],
    beta: float,
    weights: torch.Tensor | None = None,
    margins: torch.Tensor | float = 0.0,
    nll_weight: float = 0.0,
    num_tokens: int = 1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean (weighted) loss over pairs and TRL-style metrics; `logps` holds (B,) policy_/ref_ chosen/rejected.

    `nll_weight` > 0 adds alpha * the chosen samples' negative log-likelihood per image token (RPO, Pang et al.
    2024): it keeps DPO from lowering the chosen images' likelihood along with the rejected ones'."""
    pc, pr, rc, rr = (logps[k] for k in ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"))
    gap = log_ratio_gap(pc, pr, rc, rr)
    if isinstance(margins, torch.Tensor):  # the pairs' guidance lives on the CPU, the log-probs on the model's device
        margins = margins.to(gap.device)
    losses = get_loss(name)(gap, beta, margins)
    loss = (losses if weights is None else weights.to(gap.device) * losses).mean()
    if nll_weight:
        loss = loss + nll_weight * (-pc).mean() / num_tokens
    chosen_rewards, rejected_rewards = beta * (pc - rc).detach(), beta * (pr - rr).detach()
    metrics = {
        "loss": float(loss.detach()),
        "rewards/chosen": float(chosen_rewards.mean()),
        "rewards/rejected": float(rejected_rewards.mean()),
        "rewards/margins": float((chosen_rewards - rejected_rewards).mean()),
        "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean()),
        "logps/chosen": float(pc.detach().mean()),
        "logps/rejected": float(pr.detach().mean()),
    }
    return loss, metrics

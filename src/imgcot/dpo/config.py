"""The settings of pair building, DPO training and iterative DPO: frozen dataclasses saved with every run.

Kept free of torch so the command line can show its defaults without loading the numeric stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TRAIN_PROMPT_SEED = 3000  # our training prompts: neither the benchmark's seed (43) nor the dev set's (7)
DEV_SEED = 7
LOSS_NAMES = ("sigmoid", "ipo", "hinge")  # losses.LOSSES holds the functions, in this order
WEIGHTINGS = ("none", "gap", "blind")
GUIDE_RANKS = ("clearest", "blind-spots")
# prompts the labeller leaves without a pair that the guide pairs on its own (see PairConfig.guide_fill)
GUIDE_FILLS = ("none", "failed", "passed", "both")
REFERENCES = ("round", "base")
# which tokens of a rejected image DPO pushes down (see DPOConfig.credit)
CREDITS = ("all", "until-failure", "failure-preview")
LOGPS = ("masked", "trajectory")  # masked-token model: random shared masks, or the sampler's own decoding order


@dataclass(frozen=True)
class PairConfig:
    n_prompts: int = 800
    images_per_prompt: int = 8
    prompt_seed: int = TRAIN_PROMPT_SEED
    sample_seed: int = TRAIN_PROMPT_SEED  # image k of prompt i uses image_seed(sample_seed, i, k)
    batch_size: int = 64
    threshold: float = 0.5  # a labeller score >= threshold is a "yes"
    pairs_per_prompt: int = 1  # disjoint (yes, no) pairs per prompt; 1 is the paper's recipe
    exclude_benchmark: bool = False  # drop prompts whose text occurs in the shipped benchmark
    # with a guide: "clearest" pairs its best-scored yes with its worst-scored no; "blind-spots" pairs its best yes
    # with the no it scores highest, the failures that test-time verification by the same verifier would let through
    guide_rank: str = "clearest"
    judge_steps: bool = False  # the guide also judges every step's preview of every sample (credit="until-failure")
    # with judge_steps: keep the guide's potential of previews it does not judge clear too (PARM's clarity gate off),
    # so a path can fail before its preview is clear (beyond the paper)
    judge_unclear: bool = False
    # with a guide, beyond the paper: a prompt whose K samples the labeller all rejects ("failed") or all accepts
    # ("passed") gives plain DPO no pair; the guide pairs its best-scored sample with its worst-scored one there
    # (one pair per prompt) when its scores differ by at least guide_fill_gap, so its graded judgment of
    # "less wrong" (or "clearer") is the only signal such a pair carries
    guide_fill: str = "none"
    guide_fill_gap: float = 0.2

    def __post_init__(self) -> None:
        if self.guide_fill not in GUIDE_FILLS:
            raise ValueError(f"unknown guide fill {self.guide_fill!r}; known: {', '.join(GUIDE_FILLS)}")
        if not 0.0 < self.guide_fill_gap <= 1.0:
            raise ValueError(f"guide_fill_gap must be in (0, 1], got {self.guide_fill_gap}")
        if self.judge_unclear and not self.judge_steps:
            raise ValueError("judge_unclear needs judge_steps (it changes how the steps are judged)")
        for name in ("n_prompts", "batch_size", "pairs_per_prompt"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.images_per_prompt < 2:
            raise ValueError(f"images per prompt must be >= 2 to form pairs, got {self.images_per_prompt}")
        if self.guide_rank not in GUIDE_RANKS:
            raise ValueError(f"unknown guide rank {self.guide_rank!r}; known: {', '.join(GUIDE_RANKS)}")


@dataclass(frozen=True)
class DPOConfig:
    loss: str = "sigmoid"
    beta: float = 0.1  # the paper's beta
    lr: float = 1e-4
    steps: int = 0  # 0: `epochs` passes over the pairs
    epochs: float = 4.0
    batch_size: int = 16
    warmup: int = 10  # linear warm-up steps (capped at a tenth of the run), then cosine decay to 0
    weight_decay: float = 0.0
    clip: float = 1.0
    mask_draws: int = 1  # masked-token generator: shared-mask estimates averaged per log-probability
    logp: str = "masked"  # masked-token generator: "masked" (the paper's estimate) or "trajectory" (beyond it)
    trajectory_steps: int = 0  # "trajectory": decoding steps drawn per pair and update (0: all of them, exact)
    # verifier-guided DPO: "gap" weighs a pair by the verifier's score gap, "blind" by its score of the rejected image
    weighting: str = "none"
    margin: float = 0.0  # per-pair margin = margin * score gap, in reward units (verifier-guided DPO)
    nll_weight: float = 0.0  # RPO: + nll_weight * NLL of the chosen image per token (0: plain DPO)
    # step-credited DPO (beyond the paper): "until-failure" scores a rejected image only over the tokens committed up
    # to the step where the guide's PARM first judged its preview hopeless (pairs built with judge_steps);
    # "failure-preview" also the later tokens whose final value that failing preview already showed
    credit: str = "all"
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"unknown DPO loss {self.loss!r}; known: {', '.join(LOSS_NAMES)}")
        if self.logp not in LOGPS:
            raise ValueError(f"unknown log-probability {self.logp!r}; known: {', '.join(LOGPS)}")
        if self.credit not in CREDITS:
            raise ValueError(f"unknown credit {self.credit!r}; known: {', '.join(CREDITS)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; known: {', '.join(WEIGHTINGS)}")
        for name in ("batch_size", "mask_draws", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.warmup < 0 or self.trajectory_steps < 0 or not self.epochs > 0:
            raise ValueError(
                "steps, warmup and trajectory steps must be >= 0 and epochs > 0, got "
                f"{self.steps}, {self.warmup}, {self.trajectory_steps}, {self.epochs}"
            )
        if not self.beta > 0 or not self.lr > 0:
            raise ValueError(f"beta and lr must be > 0, got beta={self.beta}, lr={self.lr}")

    def total_steps(self, n_pairs: int) -> int:
        return self.steps or max(1, math.ceil(self.epochs * n_pairs / self.batch_size))


@dataclass(frozen=True)
class IterateConfig:
    rounds: int = 3
    reference: str = "round"  # each round's reference: its start model ("round") or the base model ("base")
    pairs: PairConfig = field(default_factory=PairConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.reference not in REFERENCES:
            raise ValueError(f"unknown reference {self.reference!r}; known: {', '.join(REFERENCES)}")

"""Learned shapes-world verifiers: ORM (zero-shot analogue and fine-tuned), PRM and PARM around one network.

A verifier folder is one checkpoint of kind ``shapes-verifier``: config.json (the role, the heads that were
trained, the PARM clarity rule, the network config) + model.safetensors, loaded strictly (nn/io.py). Every
folder holds the full four-head network (nn/verifier.py); only the heads its role trains carry meaning, and
`load_role` refuses a folder whose trained heads do not cover what the role asks:

- ``orm-zs``, ``orm`` -> ShapesORM (trains ``outcome``): score = P(outcome).
- ``prm`` -> ShapesPRM (trains ``value``): judge gives value = potential = P(value) and clarity 1 (a PRM judges
  every step); score = P(value) of a final image.
- ``parm`` -> ShapesPARM (trains ``outcome``, ``clarity``, ``potential``): judge gives clarity and potential
  (value = potential); score = P(outcome), PARM's final best-of-N' question.

Scores are sigmoids of the logits: the analogue of the paper's normalised P("yes") from one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core import StepScore
from ..nn.io import CheckpointError, load_checkpoint, save_checkpoint
from ..nn.verifier import HEADS, VerifierNet, VerifierNetConfig
from ..worlds.shapes.text import encode_prompts
from .data import fixed_clarity

KIND = "shapes-verifier"
ROLE_HEADS: dict[str, tuple[str, ...]] = {
    "orm-zs": ("outcome",),
    "orm": ("outcome",),
    "prm": ("value",),
    "parm": ("outcome", "clarity", "potential"),
}
CLARITY_RULES = ("fixed", "learned")


@dataclass(frozen=True)
class ShapesVerifierConfig:
    role: str = "parm"
    trained_heads: tuple[str, ...] = ROLE_HEADS["parm"]
    clarity_rule: str = "fixed"  # PARM only: which clarity labels trained the clarity/potential heads
    net: VerifierNetConfig = field(default_factory=VerifierNetConfig)

    def __post_init__(self) -> None:
        if self.role not in ROLE_HEADS:
            raise ValueError(f"unknown verifier role {self.role!r}; known: {', '.join(ROLE_HEADS)}")
        if unknown := set(self.trained_heads) - set(HEADS):
            raise ValueError(f"unknown heads {sorted(unknown)}; known: {', '.join(HEADS)}")
        if self.clarity_rule not in CLARITY_RULES:
            raise ValueError(f"unknown clarity rule {self.clarity_rule!r}; known: {', '.join(CLARITY_RULES)}")


class CheckpointedNet:
    """A network built from `config.net`, saved with its config as one checkpoint folder of kind KIND (nn/io.py),
    loaded strictly; shared by the verifiers and the reflection model."""

    KIND: str = KIND
    CONFIG: type = ShapesVerifierConfig
    NET: type[VerifierNet] = VerifierNet

    def __init__(self, config, net: VerifierNet | None = None, batch_size: int = 512):
        self.config = config
        self.net = (net or self.NET(config.net)).eval()
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, folder: str | Path):
        config, tensors = load_checkpoint(folder, cls.CONFIG, cls.KIND)
        net = cls.NET(config.net)
        net.load_state_dict(tensors, strict=True)
        return cls(config, net)

    def save_pretrained(self, folder: str | Path) -> Path:
        return save_checkpoint(folder, self.config, self.net.state_dict(), self.KIND)


class ShapesVerifier(CheckpointedNet):
    """The network plus batching; subclasses expose the role's questions (core.OutcomeVerifier/StepVerifier)."""

    @torch.no_grad()
    def probabilities(self, prompts: list[str], images: torch.Tensor, step: int, num_steps: int) -> torch.Tensor:
        """(B, len(HEADS)) sigmoid of every head for one step (step == num_steps: the final image)."""
        return self.probabilities_at(prompts, images, torch.full((len(prompts),), step), num_steps)

    @torch.no_grad()
    def probabilities_at(
        self, prompts: list[str], images: torch.Tensor, steps: torch.Tensor, num_steps: int | torch.Tensor
    ) -> torch.Tensor:
        """Like `probabilities` with a step (and optionally a step count) per row."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {images.shape[0]} images")
        text = encode_prompts(prompts, self.config.net.text_len)
        total = torch.as_tensor(num_steps).expand(len(prompts)).float()
        frac, final = steps.float() / total, steps >= total
        return run_net(self.net, images, text, frac, final, self.batch_size)


def run_net(
    net: VerifierNet,
    images: torch.Tensor,
    text: torch.Tensor,
    frac: torch.Tensor,
    final: torch.Tensor,
    batch_size: int = 512,
) -> torch.Tensor:
    """Sigmoid of every head, (B, len(HEADS)), in batches of `batch_size` rows; eval mode, no gradients."""
    was_training = net.training
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            part = slice(i, i + batch_size)
            out.append(torch.sigmoid(net(images[part], text[part], frac[part], final[part])))
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, len(HEADS))


def _head(probs: torch.Tensor, name: str) -> torch.Tensor:
    return probs[:, HEADS.index(name)].clone()


class ShapesORM(ShapesVerifier):
    """Outcome reward model: P(the final image matches the prompt)."""

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        return _head(self.probabilities(prompts, images, 1, 1), "outcome")


class ShapesPRM(ShapesVerifier):
    """Process reward model: the value of each row's step. A PRM has no clarity question: every step counts."""

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore:
        value = _head(self.probabilities(prompts, previews, step, num_steps), "value")
        return StepScore(clarity=torch.ones_like(value), potential=value, value=value)

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        return _head(self.probabilities(prompts, images, 1, 1), "value")  # the value of the final step


class ShapesPARM(ShapesVerifier):
    """Potential assessment reward model: clarity and potential of a step; the outcome question for best-of-N'."""

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore:
        probs = self.probabilities(prompts, previews, step, num_steps)
        potential = _head(probs, "potential")
        return StepScore(clarity=_head(probs, "clarity"), potential=potential, value=potential.clone())

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        return _head(self.probabilities(prompts, images, 1, 1), "outcome")

    def first_clarity_step(self, num_steps: int) -> int:
        """Trained on the paper's fixed rule, clarity is "no" before 10/18 of the steps: PARM need not ask there.
        A learned clarity head may call any step clear, so it is asked from step 1."""
        if self.config.clarity_rule != "fixed":
            return 1
        return next(t for t in range(1, num_steps + 1) if fixed_clarity(t, num_steps) != 0.0)


ROLE_CLASSES: dict[str, type[ShapesVerifier]] = {
    "orm-zs": ShapesORM,
    "orm": ShapesORM,
    "prm": ShapesPRM,
    "parm": ShapesPARM,
}


def load_role(role: str, folder: str | Path) -> ShapesVerifier:
    """The verifier object for a strategy's role from a verifier folder; its trained heads must cover the role."""
    if role not in ROLE_CLASSES:
        raise ValueError(f"unknown verifier role {role!r}; known: {', '.join(ROLE_CLASSES)}")
    verifier = ROLE_CLASSES[role].from_pretrained(folder)
    missing = set(ROLE_HEADS[role]) - set(verifier.config.trained_heads)
    if missing:
        raise CheckpointError(
            f"{folder}: a {verifier.config.role!r} verifier has no trained {sorted(missing)} head(s) for role {role!r}"
        )
    return verifier

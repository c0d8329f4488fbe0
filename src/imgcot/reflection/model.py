"""The shapes reflection model: the verifier network (nn/verifier.py) with clause heads instead of yes/no heads.

It stands in for the paper's reflection judge (shared/method.md section 3, PARM++): one forward pass over
[CLS | step | prompt words | patches] gives, from the CLS vector, P(aligned) and the per-slot failure questions
(reflection/clauses.py layout), and from every patch vector what it shows (object, colour; the auxiliary head the
verifiers train), which is where the critique points (reflection/localize.py). A folder is one checkpoint of kind
``shapes-reflector``: config.json + model.safetensors, loaded strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core import Reflection
from ..nn.io import CheckpointError
from ..nn.verifier import PATCH_CLASSES, VerifierNet, VerifierNetConfig
from ..verifiers.shapes import CheckpointedNet
from ..worlds.shapes.prompts import parse_prompt
from ..worlds.shapes.text import encode_prompts
from .clauses import BINARY, CATEGORICAL, NUM_OUTPUTS, clauses_of, critique_text, output_slices

KIND = "shapes-reflector"
SHIPPED = "shapes-reflector"


class ReflectorNet(VerifierNet):
    """VerifierNet whose CLS head answers the reflection questions (NUM_OUTPUTS logits)."""

    def __init__(self, config: VerifierNetConfig):
        super().__init__(config)
        self.head = nn.Linear(config.dim, NUM_OUTPUTS)


@dataclass(frozen=True)
class ShapesReflectorConfig:
    net: VerifierNetConfig = field(default_factory=VerifierNetConfig)
    threshold: float = 0.5  # a probability at or above this is a "yes"


def split_outputs(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, NUM_OUTPUTS) logits -> per question: (B,) sigmoid per binary, (B, K) softmax per categorical."""
    slices = output_slices()
    out = {name: torch.sigmoid(logits[:, slices[name]][:, 0]) for name in BINARY}
    out.update({name: torch.softmax(logits[:, slices[name]], -1) for name in CATEGORICAL})
    return out


class ShapesReflector(CheckpointedNet):
    """core.Reflector over a ReflectorNet; `reflect` decodes clauses with the prompt's own metadata."""

    KIND, CONFIG, NET = KIND, ShapesReflectorConfig, ReflectorNet

    @torch.no_grad()
    def outputs(self, prompts: list[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head logits (B, NUM_OUTPUTS) and per-patch object logits (B, P, PATCH_CLASSES) of final images."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {images.shape[0]} images")
        text = encode_prompts(prompts, self.config.net.text_len)
        was_training = self.net.training
        self.net.eval()
        heads, patches = [], []
        for i in range(0, len(prompts), self.batch_size):
            part = slice(i, i + self.batch_size)
            ones = torch.ones(text[part].shape[0])
            h, p = self.net.with_patches(torch.as_tensor(images[part]), text[part], ones, ones.bool())
            heads.append(h)
            patches.append(p[..., :PATCH_CLASSES])
        self.net.train(was_training)
        return torch.cat(heads), torch.cat(patches)

    def reflect(self, prompts: list[str], images: torch.Tensor) -> list[Reflection]:
        logits, patch_logits = self.outputs(prompts, images)
        probs = {k: v.double().numpy() for k, v in split_outputs(logits).items()}
        grid = self.config.net.image_size // self.config.net.patch
        seen = patch_logits.argmax(-1).view(-1, grid, grid).numpy()
        out = []
        for i, prompt in enumerate(prompts):
            row = {k: v[i] for k, v in probs.items()}
            aligned = float(row["aligned"])
            ok = aligned >= self.config.threshold
            clauses = () if ok else clauses_of(parse_prompt(prompt), row, self.config.threshold)
            critique = critique_text(clauses, ok)
            out.append(Reflection(aligned, clauses, critique, seen[i].astype(np.int64), self.config.threshold))
        return out


def resolve_reflector(name_or_path: str | None = None) -> Path:
    from ..generators.registry import registered_models, weights_root

    name = name_or_path or SHIPPED
    folder = weights_root() / name if name in registered_models() else Path(name)
    if not folder.is_dir():
        raise CheckpointError(
            f"no reflector {name!r}: not shipped and not a folder (train one with `imgcot reflect train`)"
        )
    return folder


def load_reflector(name_or_path: str | None = None) -> ShapesReflector:
    """The shipped reflection model, or a `shapes-reflector` checkpoint folder."""
    return ShapesReflector.from_pretrained(resolve_reflector(name_or_path))

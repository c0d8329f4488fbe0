"""Patch-vocabulary image tokenizer: an honest discrete tokenizer fitted on renders.

Each non-overlapping `patch` x `patch` block of the image becomes the id of its nearest codebook patch (L2 in
RGB). The codebook is fitted by collecting the distinct patches of many rendered scenes, most frequent first
(shared/shapes-world.md: grid-aligned objects need only a few hundred patches and reconstruct exactly).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .io import load_checkpoint, save_checkpoint

KIND = "patch-tokenizer"


@dataclass(frozen=True)
class TokenizerConfig:
    image_size: int = 32
    patch: int = 4
    codebook_size: int = 0

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, H, W, 3) -> (B, N, patch*patch*3), row-major over the patch grid."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, grid: int) -> torch.Tensor:
    """(B, N, patch*patch*3) -> (B, H, W, 3)."""
    b = patches.shape[0]
    x = patches.reshape(b, grid, grid, patch, patch, 3).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, grid * patch, grid * patch, 3)


class PatchTokenizer(torch.nn.Module):
    def __init__(self, config: TokenizerConfig, codebook: torch.Tensor):
        super().__init__()
        if codebook.shape != (config.codebook_size, config.patch * config.patch * 3):
            raise ValueError(f"codebook shape {tuple(codebook.shape)} does not match {config}")
        self.config = config
        self.register_buffer("codebook", codebook.to(torch.uint8))

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    @torch.no_grad()
    def encode(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, N) long token ids (nearest codebook patch)."""
        images = torch.as_tensor(images)
        patches = patchify(images, self.config.patch).float()
        book = self.codebook.float()
        # ||p - c||^2 = ||p||^2 - 2 p.c + ||c||^2 ; ||p||^2 is constant per patch
        dist = book.pow(2).sum(-1) - 2 * patches @ book.T
        return dist.argmin(-1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, H, W, 3) uint8."""
        return unpatchify(self.codebook[tokens], self.config.patch, self.config.grid)

    def save_pretrained(self, folder: str | Path) -> Path:
        return save_checkpoint(folder, self.config, {"codebook": self.codebook}, KIND)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> PatchTokenizer:
        config, tensors = load_checkpoint(folder, TokenizerConfig, KIND)
        return cls(config, tensors["codebook"])

    @classmethod
    def fit(cls, images: np.ndarray, patch: int = 4, max_codes: int = 4096) -> PatchTokenizer:
        """Distinct patches of (B, H, W, 3) uint8 renders, most frequent first (ties by bytes, deterministic)."""
        patches = patchify(torch.as_tensor(images), patch).reshape(-1, patch * patch * 3).numpy()
        counts = Counter(map(bytes, patches))
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_codes]
        book = torch.tensor(np.stack([np.frombuffer(k, dtype=np.uint8) for k, _ in ordered]))
        config = TokenizerConfig(image_size=images.shape[1], patch=patch, codebook_size=len(ordered))
        return cls(config, book)

"""A small pre-LN transformer over [prompt words | image tokens], bidirectional (MaskGIT) or causal (raster AR)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (B, heads, T, head_dim) keys and values


@dataclass(frozen=True)
class TransformerConfig:
    text_vocab: int
    image_vocab: int  # codebook size: the output classes
    text_len: int = 12
    image_len: int = 64
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    causal: bool = False

    @property
    def extra_image_ids(self) -> int:
        return 1  # MASK for MaskGIT, BOS for raster AR: id == image_vocab

    @property
    def seq_len(self) -> int:
        return self.text_len + self.image_len


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, causal: bool, past: tuple | None) -> tuple[torch.Tensor, tuple]:
        q, k, v = self._split_heads(x)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        mask, t = None, x.shape[1]
        if causal and t > 1:  # queries are the last t positions of k
            total = k.shape[2]
            mask = torch.ones(t, total, dtype=torch.bool, device=x.device).tril(diagonal=total - t)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self._finish(x, y), (k, v)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(3, B, heads, T, head dim): queries, keys and values of x (B, T, D)."""
        b, t, d = x.shape
        return self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))

    def forward_in_place(
        self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, position: int
    ) -> torch.Tensor:
        """One new token per row: write its key and value at `position` of preallocated (B, heads, capacity, head)
        buffers and attend over positions 0..position (no re-concatenation of the cache per token)."""
        q, k, v = self._split_heads(x)
        keys[:, :, position : position + 1] = k
        values[:, :, position : position + 1] = v
        if keys.numel() >= FULL_BUFFER_ATTENTION_ELEMENTS:
            y = attend_full_buffer(q, keys, values, position)
        else:
            y = F.scaled_dot_product_attention(q, keys[:, :, : position + 1], values[:, :, : position + 1])
        return self._finish(x, y)


# Buffers of at least this many elements (8 MiB of fp32 keys: 256 rows of the shipped AR model) are attended whole
# and masked. Measured on 2 CPU cores (benchmarks/generation_throughput.py --attention): SDPA over the prefix slice
# is as fast or faster while the buffers sit in the CPU caches (up to 128 rows) and 1.3-2.8x slower once they stream
# from memory (256 and 512 rows), where one product over the contiguous whole buffer runs at the copy bandwidth.
FULL_BUFFER_ATTENTION_ELEMENTS = 2**21


def attend_full_buffer(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, position: int) -> torch.Tensor:
    """Attention of q (B, heads, 1, head) over positions 0..position of whole (B, heads, capacity, head) buffers.
    Positions after `position` get weight exactly 0, so they must hold finite values (zeros, or another branch's)."""
    scores = torch.matmul(q, keys.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores[..., position + 1 :] = float("-inf")
    return torch.matmul(scores.softmax(-1), values)


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        c = config
        self.text_embed = nn.Embedding(c.text_vocab, c.dim)
        self.image_embed = nn.Embedding(c.image_vocab + c.extra_image_ids, c.dim)
        self.pos = nn.Parameter(torch.zeros(1, c.seq_len, c.dim))
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.image_vocab)
        nn.init.normal_(self.pos, std=0.02)
        self.apply(_init_weights)

    def embed(self, text: torch.Tensor | None, image: torch.Tensor | None, start: int) -> torch.Tensor:
        """Token + position embeddings of a slice of the sequence starting at position `start`."""
        parts = []
        if text is not None:
            parts.append(self.text_embed(text))
        if image is not None:
            parts.append(self.image_embed(image))
        x = torch.cat(parts, dim=1)
        return x + self.pos[:, start : start + x.shape[1]]

    def forward(
        self,
        text: torch.Tensor | None,
        image: torch.Tensor | None,
        cache: KVCache | None = None,
        start: int = 0,
    ) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, t_image, image_vocab) at the image positions of the slice, and the updated KV cache."""
        x = self.embed(text, image, start)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, self.config.causal, None if cache is None else cache[i])
            new_cache.append(kv)
        n_text = 0 if text is None else text.shape[1]
        return self.head(self.norm(x[:, n_text:])), new_cache

    def next_token_logits(self, image: torch.Tensor, buffers: KVCache, position: int) -> torch.Tensor:
        """(B, image_vocab) logits after the tokens `image` (B, 1) at `position`, with in-place KV buffers (causal
        decoding; see Block.forward_in_place)."""
        x = self.embed(None, image, position)
        for block, (keys, values) in zip(self.blocks, buffers, strict=True):
            x = block.forward_in_place(x, keys, values, position)
        return self.head(self.norm(x))[:, 0]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)

"""The decoder half of Show-o's MAGVIT-v2 image tokenizer (lookup-free quantisation), in our own code.

A code c in [0, 2^z) is its z bits, most significant first, each mapped to -1 / +1 (LFQ has no codebook table); the
(B, z, h, w) map goes through a VQGAN-style convolutional decoder: 1x1 `post_quant_conv`, `conv_in`, a middle of
two residual blocks around a self-attention block, then per resolution level (lowest first) `num_res_blocks`
residual blocks (attention where the resolution is in `attn_resolutions`) and a nearest x2 upsample with a 3x3 conv,
GroupNorm(32) + swish + `conv_out`. Output pixels are in [-1, 1].

Parameter names follow Show-o's published `showlab/magvitv2` checkpoint (`decoder.conv_in.weight`,
`decoder.mid.block_1.norm1.weight`, `decoder.up.<level>.block.<i>.nin_shortcut.weight`, ...; level 0 is the
full-resolution one), and the defaults are that model's architecture (its config.json stores no sizes). This layout
is our reading of the published code; it has not been checked against the real weights here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MagvitConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)
    attn_resolutions: tuple[int, ...] = (5,)
    z_channels: int = 13  # bits per code: codebook 2^13 = 8192
    out_ch: int = 3
    resolution: int = 256

    @property
    def codebook_size(self) -> int:
        return 2**self.z_channels


def lfq_codes_to_latent(codes: torch.Tensor, bits: int, grid: int) -> torch.Tensor:
    """(B, N) codes -> (B, bits, grid, grid) of -1 / +1, most significant bit first (lookup-free quantisation)."""
    shifts = torch.arange(bits - 1, -1, -1, device=codes.device)
    signs = ((codes[..., None] >> shifts) & 1).float() * 2 - 1  # (B, N, bits)
    return signs.view(codes.shape[0], grid, grid, bits).permute(0, 3, 1, 2).contiguous()


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).view(b, c, h * w).transpose(1, 2) for m in (self.q, self.k, self.v))  # (B, hw, c)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MagvitDecoder(nn.Module):
    def __init__(self, config: MagvitConfig):
        super().__init__()
        self.config = config
        levels = len(config.ch_mult)
        block_in = config.ch * config.ch_mult[-1]
        res = config.resolution // 2 ** (levels - 1)
        self.post_quant_conv = nn.Conv2d(config.z_channels, config.z_channels, 1)
        self.conv_in = nn.Conv2d(config.z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResBlock(block_in, block_in)
        ups = []
        for level in reversed(range(levels)):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            block_out = config.ch * config.ch_mult[level]
            for _ in range(config.num_res_blocks[level]):
                up.block.append(ResBlock(block_in, block_out))
                block_in = block_out
                if res in config.attn_resolutions:
                    up.attn.append(AttnBlock(block_in))
            if level != 0:
                up.upsample = Upsample(block_in)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)  # index = level, 0 = full resolution
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, config.out_ch, 3, padding=1)

    @property
    def grid(self) -> int:
        return self.config.resolution // 2 ** (len(self.config.ch_mult) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z, grid, grid) latent -> (B, 3, H, W) pixels in about [-1, 1]."""
        h = self.conv_in(self.post_quant_conv(z))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[i](h)
            if level != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N) codes -> (B, H, W, 3) pixels in about [-1, 1]."""
        dtype = self.conv_in.weight.dtype
        latent = lfq_codes_to_latent(codes, self.config.z_channels, self.grid).to(dtype)
        return self.forward(latent).permute(0, 2, 3, 1)

"""Pieces the real-model generators share: pixels to uint8, the preview placeholder, loading quietly."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ..generators.base import PLACEHOLDER


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) decoder output in [-1, 1] -> uint8 on the CPU, truncating like the reference samplers."""
    return ((pixels.float() + 1) / 2 * 255).clamp(0, 255).to(torch.uint8).cpu()


def decode_in_chunks(decode, codes: torch.Tensor, chunk: int, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 images of (B, N) codes, `chunk` rows per call of `decode` (codes on `device` -> pixels in
    [-1, 1]). On a GPU every call gets exactly `chunk` rows (the last padded with code 0 and cut off after): the
    convolution kernels a GPU picks depend on the batch shape, and one shape keeps an image's pixels independent
    of how many images are decoded with it (measured on an H200: without it, batch != singles)."""
    fixed_shape = device.type == "cuda"
    parts = []
    with torch.no_grad():
        for start in range(0, codes.shape[0], chunk):
            rows = codes[start : start + chunk]
            parts.append(to_uint8(decode(padded(rows, chunk if fixed_shape else 0).to(device)))[: rows.shape[0]])
    return torch.cat(parts)


def padded(rows: torch.Tensor, size: int) -> torch.Tensor:
    """`rows` with zero rows appended up to `size` rows (unchanged when it has as many or more)."""
    missing = size - rows.shape[0]
    return rows if missing <= 0 else torch.cat([rows, rows.new_zeros((missing, *rows.shape[1:]))])


def paint_placeholder(images: torch.Tensor, undecided: torch.Tensor, grid: int) -> torch.Tensor:
    """Stripe the pixels of token positions that hold no token yet. images (B, H, W, 3) uint8; undecided (B, N)."""
    if not bool(undecided.any()):
        return images
    b, size = images.shape[0], images.shape[1]
    patch = size // grid
    holes = undecided.view(b, grid, 1, grid, 1).expand(b, grid, patch, grid, patch).reshape(b, size, size)
    stripes = ((torch.arange(size)[:, None] + torch.arange(size)[None]) // 2) % 2
    fill = torch.where(stripes.bool(), PLACEHOLDER[0], PLACEHOLDER[1]).to(torch.uint8)
    return torch.where(holes[..., None], fill[None, ..., None].expand_as(images), images)


def quiet_transformers() -> None:
    """No progress bars or load reports from transformers (our CLI has its own progress)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def cache_kwarg(forward) -> str:
    """The KV-cache keyword of a transformers forward: `cache` (transformers >= 5.2x) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def check_ref(name: str, what: str) -> str:
    """`name` itself if it is a folder or looks like a Hub id (owner/name); a missing path is one clear error."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise FileNotFoundError(f"{what} {name!r}: not a folder and not a Hub id (owner/name)")
    return name


def local_or_hub(name: str, what: str) -> Path:
    """A local folder, or a Hub repository id fetched (json/safetensors/tokenizer files only) into the HF cache."""
    name = check_ref(name, what)
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
    return Path(snapshot_download(name, allow_patterns=patterns))


def row_noise(seeds: list[int], step: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Gumbel noise (B, *shape) keyed by (row seed, step) as in `sampling.row_uniform`: on a CPU exactly the shapes
    generators' noise; on a GPU drawn there by one generator per row (reproducible per device, not across devices)."""
    from ..sampling import gumbel, row_seed, row_uniform

    if device.type == "cpu":
        return gumbel(row_uniform(seeds, step, shape))
    out = []
    for seed in seeds:
        gen = torch.Generator(device=device).manual_seed(row_seed(seed, step))
        out.append(torch.rand(shape, generator=gen, device=device))
    return gumbel(torch.stack(out).clamp_(1e-20, 1.0 - 1e-7))

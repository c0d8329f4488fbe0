"""Training state of the reflection runs: modules, AdamW moments, RNG states, step, seconds and config, as
safetensors + JSON, written atomically; a resumed run refuses another config (a longer wall budget excepted)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..train.state import read_state, restore_training, save_training


def save_state(
    folder: Path, modules: dict[str, nn.Module], optimizer, step: int, rng: np.random.Generator, gen, seconds, cfg
) -> None:
    meta = {"step": step, "seconds": seconds, "config": asdict(cfg), "numpy": rng.bit_generator.state,
            "torch": gen.get_state().tolist()}  # fmt: skip
    save_training(folder, modules, optimizer, meta)


def load_state(
    folder: Path, modules: dict[str, nn.Module], optimizer, rng: np.random.Generator, gen, cfg
) -> tuple[int, float]:
    tensors, meta = read_state(folder)
    saved, now = meta["config"], json.loads(json.dumps(asdict(cfg)))
    if {**saved, "minutes": None} != {**now, "minutes": None}:
        raise ValueError(f"{folder}: the checkpoint was trained with another config; use a new output folder")
    restore_training(modules, optimizer, tensors)
    rng.bit_generator.state = meta["numpy"]
    gen.set_state(torch.tensor(meta["torch"], dtype=torch.uint8))
    return meta["step"], meta["seconds"]


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (0.9, 0.98); no decay on biases, norms, embeddings of position and special vectors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("pos") or name == "cls" else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def lr_at(step: int, lr: float, warmup: int, max_steps: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak at max_steps."""
    import math

    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

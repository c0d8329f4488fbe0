"""Training state of the reflection runs: modules, AdamW moments, RNG states, step, seconds and config, as
safetensors + JSON, written atomically; a resumed run refuses another config (a longer wall budget excepted)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

from ..fileio import write_bytes_atomic, write_text_atomic

STATE, META = "state.safetensors", "state.json"


def save_state(
    folder: Path, modules: dict[str, nn.Module], optimizer, step: int, rng: np.random.Generator, gen, seconds, cfg
) -> None:
    tensors = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).reshape(-1) if key == "step" else value
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / STATE, save({k: v.contiguous() for k, v in tensors.items()}))
    meta = {"step": step, "seconds": seconds, "config": asdict(cfg), "numpy": rng.bit_generator.state,
            "torch": gen.get_state().tolist()}  # fmt: skip
    write_text_atomic(folder / META, json.dumps(meta))


def has_state(folder: Path) -> bool:
    return (folder / META).is_file() and (folder / STATE).is_file()


def load_state(
    folder: Path, modules: dict[str, nn.Module], optimizer, rng: np.random.Generator, gen, cfg
) -> tuple[int, float]:
    meta = json.loads((folder / META).read_text())
    saved, now = meta["config"], json.loads(json.dumps(asdict(cfg)))
    if {**saved, "minutes": None} != {**now, "minutes": None}:
        raise ValueError(f"{folder}: the checkpoint was trained with another config; use a new output folder")
    tensors = load_file(str(folder / STATE))
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    opt = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            opt["state"].setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict(opt)
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

"""Training checkpoints shared by every training loop: module weights and AdamW moments in one safetensors file,
counters and config in a JSON file, each written atomically (a run killed mid-write keeps its last checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..fileio import write_bytes_atomic, write_text_atomic

STATE, META = "state.safetensors", "state.json"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat tensors named `opt.<param index>.<field>`."""
    return {
        f"opt.{index}.{key}": torch.as_tensor(value).reshape(-1) if key == "step" else value
        for index, state in optimizer.state_dict()["state"].items()
        for key, value in state.items()
    }


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Load what optimizer_tensors wrote back into `optimizer` (its parameter groups must match the saved run's)."""
    shapes = [p.shape for group in optimizer.param_groups for p in group["params"]]
    opt = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            shape = () if name == "step" else shapes[int(index)]
            opt["state"].setdefault(int(index), {})[name] = value.reshape(shape)
    optimizer.load_state_dict(opt)


def module_tensors(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every module's state dict under `<name>.`."""
    return {f"{name}.{k}": v for name, module in modules.items() for k, v in module.state_dict().items()}


def restore_modules(modules: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor]) -> None:
    """Load each module strictly from the tensors under `<name>.`."""
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)


def write_state(folder: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / STATE, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
    write_text_atomic(folder / META, json.dumps(meta))


def save_training(
    folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, meta: dict
) -> None:
    """A training loop's checkpoint: its modules' weights and the optimizer's moments, with `meta` beside them."""
    write_state(folder, {**module_tensors(modules), **optimizer_tensors(optimizer)}, meta)


def restore_training(
    modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    """Load what save_training wrote (read back by read_state) into the modules and the optimizer."""
    restore_modules(modules, tensors)
    restore_optimizer(optimizer, tensors)


def read_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(str(folder / STATE)), json.loads((folder / META).read_text())


def has_state(folder: Path) -> bool:
    return (folder / META).is_file() and (folder / STATE).is_file()

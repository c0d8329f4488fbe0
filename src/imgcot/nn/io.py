"""Checkpoint folders: `config.json` + `model.safetensors`, loaded strictly (design.md, habit 2)."""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save

from ..fileio import write_bytes_atomic, write_text_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or does not match its config."""


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a (possibly nested) frozen dataclass config from a dict; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise CheckpointError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)  # configs are frozen: JSON lists come back as tuples
        kwargs[name] = value
    return cls(**kwargs)


def save_checkpoint(folder: str | Path, config: Any, state: dict[str, torch.Tensor], kind: str) -> Path:
    """Write config.json (with a `kind` tag) and model.safetensors, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"kind": kind, **(asdict(config) if is_dataclass(config) else config)}
    write_text_atomic(folder / CONFIG_NAME, json.dumps(payload, indent=2) + "\n")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    write_bytes_atomic(folder / WEIGHTS_NAME, save(tensors))
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME} (not a checkpoint folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: malformed JSON ({err.msg})") from None


def load_checkpoint(folder: str | Path, cls: type[T], kind: str) -> tuple[T, dict[str, torch.Tensor]]:
    """Config dataclass and tensors of a checkpoint folder; the `kind` tag must match."""
    folder = Path(folder)
    data = read_config(folder)
    if data.pop("kind", None) != kind:
        raise CheckpointError(f"{folder}: not a {kind} checkpoint")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}")
    return config_from_dict(cls, data), load_file(str(weights))

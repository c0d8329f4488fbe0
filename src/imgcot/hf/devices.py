"""Where a real model runs: `--device auto|cpu|cuda[:N]`, `--dtype fp32|fp16|bf16`, and a memory check.

A `Placement` is resolved once per model, so the generator, the judge and the GenEval detector can each sit on their
own device. Half precision is refused on a CPU (one clear line, not a slow or failing run), and a model whose weights
do not fit in the free memory of its GPU is refused before loading, with the estimate in the message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICES = ("auto", "cpu", "cuda")
HEADROOM = 1.2  # weights x 1.2: activations, the KV cache of a small batch and the allocator's slack
GIB = 2**30


class DeviceError(ValueError):
    """A device or dtype that cannot be used here (the CLI prints it as one `error: ...` line)."""


@dataclass(frozen=True)
class Placement:
    """Device and dtype names as the user typed them; `resolve()` checks them against this machine."""

    device: str = "auto"
    dtype: str = "fp32"

    def resolve(self) -> tuple[torch.device, torch.dtype]:
        device = resolve_device(self.device)
        return device, resolve_dtype(self.dtype, device)


def resolve_device(name: str, cuda_available: bool | None = None) -> torch.device:
    """auto -> cuda when a GPU is visible, else cpu; cuda / cuda:N must exist."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    base = name.split(":", 1)[0]
    if base not in DEVICES or (":" in name and (base != "cuda" or not name.split(":", 1)[1].isdigit())):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if base == "auto":
        return torch.device("cuda" if available else "cpu")
    if base == "cuda":
        if not available:
            raise DeviceError(f"--device {name}: no CUDA GPU is visible on this machine (use --device cpu)")
        index = int(name.split(":", 1)[1]) if ":" in name else None
        if index is not None and cuda_available is None and index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """fp32 anywhere; fp16 / bf16 only on a GPU (CPU half-precision kernels are slow or missing)."""
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; use {', '.join(DTYPES)}")
    if name != "fp32" and device.type != "cuda":
        raise DeviceError(f"--dtype {name} needs a GPU, but the device is {device.type}; use --dtype fp32 on a CPU")
    return DTYPES[name]


def weight_bytes(num_params: int, dtype: torch.dtype) -> int:
    return num_params * torch.empty((), dtype=dtype).element_size()


def memory_error(what: str, num_params: int, dtype: torch.dtype, free_bytes: int, device: str) -> str | None:
    """The refusal message when `num_params` weights (x HEADROOM) exceed `free_bytes`, else None (pure)."""
    need = weight_bytes(num_params, dtype) * HEADROOM
    if need <= free_bytes:
        return None
    name = {v: k for k, v in DTYPES.items()}.get(dtype, str(dtype))
    return (
        f"{what} needs about {need / GIB:.1f} GiB on {device} ({num_params / 1e9:.2f} B parameters in {name}, "
        f"x{HEADROOM} headroom) but only {free_bytes / GIB:.1f} GiB is free; use a smaller --dtype, another "
        f"--device, or free the GPU"
    )


def check_fits(what: str, num_params: int, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse to load a model that cannot fit in the free memory of its GPU (no check on a CPU)."""
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    message = memory_error(what, num_params, dtype, free, str(device))
    if message is not None:
        raise DeviceError(message)


def count_parameters(build) -> int:
    """Parameters of the module `build()` makes, built on the meta device (no memory, no weights read)."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())

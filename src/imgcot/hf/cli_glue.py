"""What the CLI needs to put real models on devices: placements, the real-image detector, the judge's device.

Kept free of typer so the library can use it too. Every error here is a ValueError (one `error:` line in the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

from .devices import DTYPES, Placement, resolve_device

DETECTOR_PREFIX = "hf-mask2former:"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # GenEval's colour classifier: CLIP ViT-L/14, OpenAI weights
REAL_GENERATOR_PREFIXES = ("hf-janus:", "hf-showo:")


def is_real_generator(name: str) -> bool:
    return name.startswith(REAL_GENERATOR_PREFIXES)


def is_real_detector(name: str) -> bool:
    return name.startswith(DETECTOR_PREFIX)


def placement(device: str, dtype: str) -> Placement:
    """Check the names now (the CLI fails before loading anything); resolution against the machine is lazy."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    resolve_device(device)  # unknown names and a missing GPU fail here
    place = Placement(device, dtype)
    place.resolve()  # fp16 / bf16 on a CPU fails here
    return place


def load_detector(name: str, clip: str | None, place: Placement):
    """`hf-mask2former:<hub id or folder>` with CLIP `clip` (default: OpenAI ViT-L/14) on `place`."""
    from .geneval_real import RealImageDetector

    ref = name[len(DETECTOR_PREFIX) :]
    if not ref:
        raise ValueError(f"{name!r}: give a hub id or folder after {DETECTOR_PREFIX}")
    return RealImageDetector.from_pretrained(ref, clip or DEFAULT_CLIP, place)


def judge_loader(device: str, dtype: str) -> Callable[[str, str], object] | None:
    """A loader (role, `hf-vlm:` / `hf-clip:` spec) -> verifier on the judge's own device and dtype, or None when
    both are left at `auto` (the judge's defaults). The judge classes carry device/dtype in their config."""
    if device == "auto" and dtype == "auto":
        return None
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"unknown --judge-dtype {dtype!r}; use auto, {', '.join(DTYPES)}")
    device_name = str(resolve_device(device))
    if dtype in ("fp16", "bf16") and not device_name.startswith("cuda"):
        raise ValueError(f"--judge-dtype {dtype} needs a GPU, but the judge device is {device_name}")

    def load(role: str, spec: str):
        kind, _, ref = spec.partition(":")
        if kind == "hf-vlm":
            from .vlm_judge import VLMJudge, read_judge_config

            return VLMJudge.from_pretrained(ref, role=role, config=_placed(read_judge_config(ref), device, dtype))
        if kind == "hf-clip":
            from .clip_verifier import CLIPVerifier, CLIPVerifierConfig

            return CLIPVerifier.from_pretrained(ref, config=_placed(CLIPVerifierConfig(), device, dtype))
        raise ValueError(f"--judge-device / --judge-dtype apply to hf-vlm: and hf-clip: verifiers, not {spec!r}")

    return load


def _placed(config, device: str, dtype: str):
    names = {f.name for f in fields(config)}
    if not {"device", "dtype"} <= names:
        raise ValueError(f"{type(config).__name__} has no device/dtype settings")
    return replace(config, device=device, dtype=dtype)

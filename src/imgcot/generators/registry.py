"""Generator names -> checkpoint folders, and loading by name or path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..nn.io import CheckpointError, read_config
from .base import TokenGenerator
from .maskgit import MaskGITGenerator
from .raster import RasterGenerator

KINDS: dict[str, type[TokenGenerator]] = {cls.KIND: cls for cls in (MaskGITGenerator, RasterGenerator)}
DEFAULT_MODEL = "shapes-maskgit"


def weights_root() -> Path:
    return Path(str(resources.files("imgcot") / "worlds" / "shapes" / "weights"))


def registered_models() -> list[str]:
    root = weights_root()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def resolve_model(name_or_path: str) -> Path:
    """A registered name (shipped weights) or a checkpoint folder path."""
    if name_or_path in registered_models():
        return weights_root() / name_or_path
    path = Path(name_or_path)
    if path.is_dir():
        return path
    known = ", ".join(registered_models()) or "(none shipped yet)"
    raise CheckpointError(f"unknown model {name_or_path!r}: not a registered name ({known}) nor a folder")


# Real models behind the same contract (imgcot.hf, the [hf] extra): `<prefix><hub id or folder>`.
HF_PREFIXES = ("hf-janus:", "hf-showo:")


def load_hf_generator(name: str, placement=None):
    """`hf-janus:<id>` (Janus-Pro) or `hf-showo:<id>` (Show-o) on `placement` (an imgcot.hf.devices.Placement)."""
    prefix, _, ref = name.partition(":")
    if not ref:
        raise CheckpointError(f"{name!r}: give a hub id or folder after {prefix}:")
    if prefix == "hf-janus":
        from ..hf.janus import JanusGenerator

        return JanusGenerator.from_pretrained(ref, placement)
    from ..hf.showo import ShowoGenerator

    return ShowoGenerator.from_pretrained(ref, placement)


def is_hf_model(name: str) -> bool:
    return str(name).startswith(HF_PREFIXES)


def saved_model_name(model: str, folder: str | Path) -> str:
    """The name that loads a generator which `model` saved to `folder` (e.g. after DPO): `hf-janus:<folder>` /
    `hf-showo:<folder>` for a real model, the folder itself for a shapes model."""
    prefix = next((p for p in HF_PREFIXES if str(model).startswith(p)), "")
    return f"{prefix}{folder}"


def load_generator(name_or_path: str = DEFAULT_MODEL, placement=None) -> TokenGenerator:
    """A shipped name, a shapes checkpoint folder, or a real model (`hf-janus:...`, `hf-showo:...`). `placement`
    (device, dtype) applies to real models; the shapes models run on the CPU in fp32."""
    if name_or_path.startswith(HF_PREFIXES):
        return load_hf_generator(name_or_path, placement)
    if placement is not None and (placement.device not in ("auto", "cpu") or placement.dtype != "fp32"):
        raise CheckpointError(f"{name_or_path}: the shapes models run on the CPU in fp32 (--device cpu --dtype fp32)")
    folder = resolve_model(name_or_path)
    kind = read_config(folder).get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{folder}: kind {kind!r} is not a generator ({', '.join(KINDS)})")
    return KINDS[kind].from_pretrained(folder)

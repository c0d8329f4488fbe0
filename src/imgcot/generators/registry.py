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


def load_generator(name_or_path: str = DEFAULT_MODEL) -> TokenGenerator:
    folder = resolve_model(name_or_path)
    kind = read_config(folder).get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{folder}: kind {kind!r} is not a generator ({', '.join(KINDS)})")
    return KINDS[kind].from_pretrained(folder)

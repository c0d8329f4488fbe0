"""GenEval's folder layout: `DIR/00000/metadata.jsonl` (one line) + `DIR/00000/samples/0000.png`.

Every write goes to a temporary file in the same folder and is moved into place with `os.replace`, so a reader
never sees a half-written file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..fileio import png_bytes, write_bytes_atomic, write_text_atomic
from .spec import Metadata, MetadataError, dumps, read_metadata

METADATA_FILE = "metadata.jsonl"
SAMPLES_DIR = "samples"
_SAMPLE_NAME = re.compile(r"\d+\.png")


def prompt_dir(root: str | Path, index: int) -> Path:
    return Path(root) / f"{index:05d}"


def sample_path(root: str | Path, index: int, image_index: int) -> Path:
    return prompt_dir(root, index) / SAMPLES_DIR / f"{image_index:04d}.png"


def write_prompt_folder(root: str | Path, index: int, meta: Metadata, images: Sequence[np.ndarray]) -> Path:
    """Write one prompt folder (metadata line + numbered samples); returns the folder."""
    folder = prompt_dir(root, index)
    write_text_atomic(folder / METADATA_FILE, dumps(meta) + "\n")
    for image_index, image in enumerate(images):
        write_bytes_atomic(sample_path(root, index, image_index), png_bytes(image))
    return folder


def list_prompt_dirs(root: str | Path) -> list[Path]:
    """Prompt folders (all-digit names, as GenEval takes them) in numeric order."""
    root = Path(root)
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(dirs, key=lambda p: (int(p.name), p.name))


def list_samples(folder: str | Path) -> list[Path]:
    """Sample images (`<digits>.png`) of one prompt folder in numeric order; none when `samples/` is missing."""
    samples = Path(folder) / SAMPLES_DIR
    if not samples.is_dir():
        return []
    files = [p for p in samples.iterdir() if p.is_file() and _SAMPLE_NAME.fullmatch(p.name)]
    return sorted(files, key=lambda p: (int(p.stem), p.name))


def read_prompt_metadata(folder: str | Path) -> Metadata:
    """The one metadata line of a prompt folder; errors name the file and line."""
    path = Path(folder) / METADATA_FILE
    entries = read_metadata(path)
    if len(entries) != 1:
        raise MetadataError(f"{path}: expected one metadata line, found {len(entries)}")
    return entries[0]


def stale_entries(root: str | Path, n_prompts: int, n_images: int) -> list[Path]:
    """Prompt folders or samples under `root` that a write of n_prompts x n_images would not overwrite."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = []
    for folder in list_prompt_dirs(root):
        if int(folder.name) >= n_prompts:
            stale.append(folder)
        else:
            stale.extend(s for s in list_samples(folder) if int(s.stem) >= n_images)
    return stale

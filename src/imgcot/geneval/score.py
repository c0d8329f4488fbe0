"""Score a GenEval-layout folder: one results record per image and GenEval's summary.

Records carry GenEval's fields (`filename, tag, prompt, correct, reason, metadata, details`, with `metadata` and
`details` as JSON strings); the summary follows GenEval's `summary_scores.py`: per-tag accuracy is the mean of
per-image correctness (tags in order of first appearance), the overall score is the unweighted mean of the tag
accuracies, and a prompt (one metadata string) is correct when any of its images is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .detector import Detector
from .judge import judge
from .layout import list_prompt_dirs, list_samples, read_prompt_metadata, write_text_atomic
from .rules import Detections
from .spec import Metadata, dumps

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"

Record = dict[str, Any]
Progress = Callable[[Sequence[tuple[Path, Metadata]]], Iterable[tuple[Path, Metadata]]]


class ScoreError(ValueError):
    """A folder or results set that cannot be scored; the message is one line."""


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB array of an image file."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _details(kept: Detections) -> str:
    return json.dumps({cls: [[*det.box, det.score] for det in dets] for cls, dets in kept.items()})


def _record(path: str | Path, meta: Metadata, correct: bool, reason: str, details: str) -> Record:
    return {
        "filename": str(path),
        "tag": meta["tag"],
        "prompt": meta["prompt"],
        "correct": bool(correct),
        "reason": reason,
        "metadata": dumps(meta),
        "details": details,
    }


def score_image(path: str | Path, meta: Metadata, detector: Detector) -> Record:
    """GenEval's results record for one image; an unreadable file is an incorrect record, not an error."""
    try:
        image = load_image(path)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        return _record(path, meta, False, f"unreadable image: {err or type(err).__name__}", "{}")
    correct, reason, kept = judge(meta, image, detector)
    return _record(path, meta, correct, reason, _details(kept))


def collect(root: str | Path) -> list[tuple[Path, Metadata]]:
    """(image path, metadata) for every sample of every prompt folder, in order; metadata is read up front."""
    root = Path(root)
    if not root.is_dir():
        raise ScoreError(f"{root}: no such folder")
    folders = list_prompt_dirs(root)
    if not folders:
        raise ScoreError(f"{root}: no prompt folders (expected {root / '00000' / 'metadata.jsonl'})")
    items = []
    for folder in folders:
        meta = read_prompt_metadata(folder)
        items.extend((sample, meta) for sample in list_samples(folder))
    if not items:
        raise ScoreError(f"{root}: no sample images (expected {root / '00000' / 'samples' / '0000.png'})")
    return items


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """GenEval's summary of results records (see the module docstring), plus counts."""
    if not records:
        raise ScoreError("no results to summarize")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, bool] = {}
    for record in records:
        correct = bool(record["correct"])
        by_tag.setdefault(record["tag"], []).append(correct)
        by_prompt[record["metadata"]] = by_prompt.get(record["metadata"], False) or correct
    tasks = {tag: float(np.mean(values)) for tag, values in by_tag.items()}
    return {
        "overall": float(np.mean(list(tasks.values()))),
        "tasks": tasks,
        "images": float(np.mean([bool(r["correct"]) for r in records])),
        "prompts": float(np.mean(list(by_prompt.values()))),
        "n_images": len(records),
        "n_prompts": len(by_prompt),
        "task_counts": {tag: {"correct": sum(values), "total": len(values)} for tag, values in by_tag.items()},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The text table GenEval's summary script prints."""
    lines = [
        "Summary",
        "=======",
        f"Total images: {summary['n_images']}",
        f"Total prompts: {summary['n_prompts']}",
        f"% correct images: {summary['images']:.2%}",
        f"% correct prompts: {summary['prompts']:.2%}",
        "",
        "Task breakdown",
        "==============",
    ]
    for tag, accuracy in summary["tasks"].items():
        counts = summary["task_counts"][tag]
        lines.append(f"{tag:<16} = {accuracy:.2%} ({counts['correct']} / {counts['total']})")
    lines += ["", f"Overall score (avg. over tasks): {summary['overall']:.5f}"]
    return "\n".join(lines)


def write_results(records: Iterable[Record], path: str | Path) -> None:
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in records))


def read_results(path: str | Path) -> list[Record]:
    """Results records of a results.jsonl file (as written by `write_results` or GenEval)."""
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{path}: no such file")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ScoreError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
    return records


def score_folder(
    root: str | Path, detector: Detector, out: str | Path | None = None, progress: Progress | None = None
) -> tuple[list[Record], dict[str, Any]]:
    """Score every image under `root`; writes results (default root/results.jsonl) and root/summary.json."""
    root = Path(root)
    items = collect(root)
    records = [score_image(path, meta, detector) for path, meta in (progress(items) if progress else items)]
    summary = summarize(records)
    write_results(records, Path(out) if out is not None else root / RESULTS_FILE)
    write_text_atomic(root / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return records, summary

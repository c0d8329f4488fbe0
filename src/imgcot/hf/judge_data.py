"""Training data for fine-tuning a VLM judge (the paper's fine-tuned ORM, PARM and reflection; method.md section 3).

Source: a generator's samples in GenEval's layout, scored (`imgcot geneval score DIR` -> DIR/results.jsonl), with
the step images of each sample at ``DIR/<prompt>/steps/<sample>/step_<s>.png`` (s = 00 .. T-1, the preview after
step s+1 of T; `write_samples_with_steps` writes both from any step-wise generator).

The data is JSON Lines, one question per line:

    {"image": "00003/samples/0001.png", "prompt": "a photo of a red star", "kind": "orm", "answer": "yes"}

- ``image``: path of a PNG, relative to the JSONL file's folder (or absolute);
- ``kind``: ``orm`` / ``final`` (does the final image match? ``final`` is PARM's best-of-N' question, the same
  wording), ``clarity`` and ``potential`` (about a step image), ``reflection`` (what is wrong);
- ``answer``: ``yes`` / ``no`` for every kind but ``reflection``, whose answer is the critique sentence.

Labels (method.md section 3): orm/final = GenEval's `correct`; clarity = "clear" for steps s+1 > 11/18 of T,
"unclear" for s+1 < 10/18 of T (steps in between are left out, as in the paper's 11-vs-10 rule at T = 18);
potential (clear steps only) = the final image's label; reflection (incorrect images only) = the critique sentence
of the failed GenEval clauses (reflection/clauses.py).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..fileio import save_png, write_text_atomic
from ..geneval.layout import prompt_dir, write_prompt_folder
from ..geneval.score import RESULTS_FILE, load_image, read_results
from ..geneval.spec import Metadata
from .prompts import YES_NO_KINDS

KINDS = ("orm", "final", "clarity", "potential", "reflection")
DEFAULT_KINDS = ("orm", "clarity", "potential", "reflection")
CLEAR_AFTER, UNCLEAR_BEFORE = 11 / 18, 10 / 18
STEPS_DIR = "steps"


def step_path(root: str | Path, prompt_index: int, sample_index: int, step: int) -> Path:
    """Where the preview after step `step` + 1 of sample `sample_index` of prompt `prompt_index` lives."""
    return prompt_dir(root, prompt_index) / STEPS_DIR / f"{sample_index:04d}" / f"step_{step:02d}.png"


def clarity_label(step: int, num_steps: int) -> bool | None:
    """Is the preview after step `step` + 1 of `num_steps` clear (True), unclear (False) or left out (None)?"""
    frac = (step + 1) / num_steps
    return True if frac > CLEAR_AFTER else False if frac < UNCLEAR_BEFORE else None


def write_samples_with_steps(generator, metas: list[Metadata], root: str | Path, images_per_prompt: int = 4,
                             seed: int = 0) -> Path:  # fmt: skip
    """Generate into GenEval's layout plus every sample's step previews; score it next with `score_folder`."""
    import torch

    from ..pipeline import generate_with_steps, image_seed

    root = Path(root)
    for i, meta in enumerate(metas):
        seeds = [image_seed(seed, i, k) for k in range(images_per_prompt)]
        with torch.no_grad():
            finals, previews, _ = generate_with_steps(generator, meta["prompt"], seeds)
        for s, preview in enumerate(previews):
            for k, image in enumerate(preview.cpu().numpy()):
                save_png(image, step_path(root, i, k, s))
        write_prompt_folder(root, i, meta, list(finals.cpu().numpy()))
    return root


def _sample_location(filename: str) -> tuple[int, int]:
    """(prompt index, sample index) from a results filename ending in <prompt>/samples/<sample>.png."""
    parts = Path(filename).parts
    if len(parts) < 3 or parts[-2] != "samples" or not parts[-3].isdigit():
        raise ValueError(f"{filename}: not a GenEval-layout sample path (<prompt>/samples/<sample>.png)")
    return int(parts[-3]), int(Path(parts[-1]).stem)


def _reflection_answer(record: dict) -> str | None:
    from ..reflection.clauses import critique_text, teacher_clauses

    try:
        clauses = teacher_clauses(json.loads(record["metadata"]), False, record["reason"])
    except (ValueError, KeyError):
        return None  # e.g. an unreadable image: nothing to say about its content
    return critique_text(clauses)


def records_for_sample(root: Path, record: dict, kinds: tuple[str, ...]) -> list[dict]:
    """The training questions about one scored sample and its step images (image paths absolute)."""
    p, k = _sample_location(record["filename"])
    image, prompt, correct = prompt_dir(root, p) / "samples" / f"{k:04d}.png", record["prompt"], record["correct"]
    label = "yes" if correct else "no"
    out = [{"image": str(image), "prompt": prompt, "kind": kind, "answer": label} for kind in ("orm", "final")
           if kind in kinds]  # fmt: skip
    steps = sorted((step_path(root, p, k, 0).parent).glob("step_*.png"))
    for s, path in enumerate(steps):
        clear = clarity_label(s, len(steps))
        if clear is not None and "clarity" in kinds:
            out.append({"image": str(path), "prompt": prompt, "kind": "clarity", "answer": "yes" if clear else "no"})
        if clear and "potential" in kinds:
            out.append({"image": str(path), "prompt": prompt, "kind": "potential", "answer": label})
    if not correct and "reflection" in kinds and (text := _reflection_answer(record)):
        out.append({"image": str(image), "prompt": prompt, "kind": "reflection", "answer": text})
    return out


def build_judge_data(root: str | Path, out: str | Path, kinds: tuple[str, ...] = DEFAULT_KINDS,
                     results: str | Path | None = None) -> Counter:  # fmt: skip
    """Write the JSONL of every question about a scored folder; returns the count per (kind, answer yes/no/text)."""
    root, out = Path(root), Path(out)
    if unknown := set(kinds) - set(KINDS):
        raise ValueError(f"unknown question kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    rows = [r for rec in read_results(results or root / RESULTS_FILE) for r in records_for_sample(root, rec, kinds)]
    base = out.resolve().parent
    for row in rows:
        row["image"] = os.path.relpath(Path(row["image"]).resolve(), base)
    write_text_atomic(out, "".join(json.dumps(row) + "\n" for row in rows))
    return Counter((r["kind"], r["answer"] if r["kind"] in YES_NO_KINDS else "text") for r in rows)


def load_judge_data(path: str | Path) -> list[dict]:
    """The records of a judge-data JSONL file, validated; image paths resolved against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: malformed JSON ({err.msg})") from None
        if not isinstance(row, dict) or {"image", "prompt", "kind", "answer"} - set(row):
            raise ValueError(f"{where}: a record needs image, prompt, kind and answer")
        if row["kind"] not in KINDS:
            raise ValueError(f"{where}: unknown kind {row['kind']!r}; known: {', '.join(KINDS)}")
        if row["kind"] in YES_NO_KINDS and row["answer"] not in ("yes", "no"):
            raise ValueError(f"{where}: a {row['kind']} answer is yes or no, not {row['answer']!r}")
        rows.append({**row, "image": str(path.parent / row["image"])})
    if not rows:
        raise ValueError(f"{path}: no records")
    return rows


def load_images(rows: list[dict]) -> list[np.ndarray]:
    return [load_image(r["image"]) for r in rows]

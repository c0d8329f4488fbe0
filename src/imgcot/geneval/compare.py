"""Is a GenEval difference real? A paired, tag-stratified bootstrap over prompts of the overall score.

Each arm is one or more results files over the same prompts (several training seeds of one recipe, say); its score
pools their images, which equals the mean of the runs' overall scores. A resample draws, within each tag, as many
prompts as the tag has, with replacement, the same draw for every arm, and recomputes GenEval's overall score (the
mean over tags of per-image accuracy, geneval/score.py). The spread of the difference between two arms is what a
new draw of prompts in the benchmark's proportions would do to it; training-seed noise is in it only as far as
each arm pools several seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .score import RESULTS_FILE, Record, ScoreError, read_results

PromptKey = tuple[str, str]  # (prompt folder name, metadata JSON)


@dataclass(frozen=True)
class Arm:
    """An arm's per-prompt counts, prompts in one shared order: tags (P,), correct images and images (P,)."""

    name: str
    runs: int
    tags: np.ndarray
    correct: np.ndarray
    images: np.ndarray


def results_path(path: str | Path) -> Path:
    """An eval folder's results file, or the file itself."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def prompt_counts(records: list[Record]) -> dict[PromptKey, tuple[str, int, int]]:
    """(tag, correct images, images) per prompt; a prompt is its folder (`00012`) and its metadata."""
    counts: dict[PromptKey, tuple[str, int, int]] = {}
    for record in records:
        key = (Path(record["filename"]).parent.parent.name, record["metadata"])
        tag, correct, total = counts.get(key, (record["tag"], 0, 0))
        counts[key] = (tag, correct + bool(record["correct"]), total + 1)
    return counts


def _mismatch(a: set, b: set, name_a: str, name_b: str) -> str:
    only = f"{len(a - b)} only in the first, {len(b - a)} only in the second"
    return f"{name_a} and {name_b} score different prompts ({only})"


def _label(name: str, path: Path) -> str:
    return name if name == str(path) else f"{name} ({path})"


def read_counts(path: str | Path) -> dict[PromptKey, tuple[str, int, int]]:
    """`prompt_counts` of a results file (or an eval folder), refusing an empty or malformed one."""
    path = results_path(path)
    try:
        counts = prompt_counts(read_results(path))
    except (KeyError, TypeError) as err:
        raise ScoreError(f"{path}: not GenEval results (a record lacks {err})") from None
    if not counts:
        raise ScoreError(f"{path}: no results")
    return counts


def load_arms(arms: list[tuple[str, list[Path]]]) -> list[Arm]:
    """Arms from (name, results files); every file must score the same prompts."""
    if not arms or not all(paths for _, paths in arms):
        raise ScoreError("every arm needs at least one results file")
    tables = [[read_counts(p) for p in paths] for _, paths in arms]
    keys = sorted(tables[0][0])
    first = _label(arms[0][0], arms[0][1][0])
    out = []
    for (name, paths), runs in zip(arms, tables, strict=True):
        for path, table in zip(paths, runs, strict=True):
            if set(table) != set(keys):
                raise ScoreError(_mismatch(set(keys), set(table), first, _label(name, path)))
        tags = np.array([runs[0][k][0] for k in keys])
        correct = np.array([sum(t[k][1] for t in runs) for k in keys])
        images = np.array([sum(t[k][2] for t in runs) for k in keys])
        out.append(Arm(name, len(runs), tags, correct, images))
    return out


def overall_score(arm: Arm) -> float:
    """GenEval's overall score of the pooled images: the mean over tags of per-image accuracy."""
    return float(np.mean(list(tag_scores(arm).values())))


def tag_order(arm: Arm) -> list[str]:
    return list(dict.fromkeys(arm.tags.tolist()))


def tag_scores(arm: Arm) -> dict[str, float]:
    return {t: float(arm.correct[arm.tags == t].sum() / arm.images[arm.tags == t].sum()) for t in tag_order(arm)}


def bootstrap_overall(arms: list[Arm], resamples: int, seed: int) -> np.ndarray:
    """(arms, resamples) overall scores over paired, tag-stratified resamples of the prompts."""
    rng = np.random.default_rng(seed)
    per_tag = []
    for tag in tag_order(arms[0]):
        rows = np.flatnonzero(arms[0].tags == tag)
        draw = rows[rng.integers(0, len(rows), size=(resamples, len(rows)))]
        per_tag.append([a.correct[draw].sum(1) / a.images[draw].sum(1) for a in arms])
    return np.mean(np.array(per_tag), axis=0)


def compare(arms: list[Arm], resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Per arm: its overall score, and against the first arm the difference, its percentile interval at `level`
    and the share of resamples in which the arm is ahead."""
    if resamples < 1:
        raise ScoreError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ScoreError(f"the interval level must be in (0, 1), got {level}")
    boot = bootstrap_overall(arms, resamples, seed)
    base = overall_score(arms[0])
    tail = (1 - level) / 2 * 100
    rows = []
    for arm, scores in zip(arms, boot, strict=True):
        diff = scores - boot[0]
        low, high = np.percentile(diff, [tail, 100 - tail])
        rows.append({
            "name": arm.name,
            "runs": arm.runs,
            "prompts": len(arm.tags),
            "overall": overall_score(arm),
            "tasks": tag_scores(arm),
            "difference": overall_score(arm) - base,
            "interval": [float(low), float(high)],
            "ahead": float((diff > 0).mean()),
        })  # fmt: skip
    return rows


def format_comparison(rows: list[dict], resamples: int, level: float = 0.95) -> str:
    """A markdown table of `compare`'s rows, then the per-tag scores."""
    pct = f"{level:.0%}"
    lines = [
        f"| arm | runs | overall | difference | {pct} interval | ahead in |",
        "|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(rows):
        if i == 0:
            lines.append(f"| {row['name']} (baseline) | {row['runs']} | {row['overall']:.4f} | | | |")
            continue
        low, high = row["interval"]
        lines.append(f"| {row['name']} | {row['runs']} | {row['overall']:.4f} | {row['difference']:+.4f} | "
                     f"{low:+.4f} .. {high:+.4f} | {row['ahead']:.1%} |")  # fmt: skip
    tags = list(rows[0]["tasks"])
    lines += ["", "| arm | " + " | ".join(tags) + " |", "|---|" + "---|" * len(tags)]
    lines += [f"| {r['name']} | " + " | ".join(f"{r['tasks'][t]:.3f}" for t in tags) + " |" for r in rows]
    lines.append(f"\n({rows[0]['prompts']} prompts; {resamples} paired resamples of the prompts within each tag)")
    return "\n".join(lines)

"""Scoring speed: images/s of scoring a GenEval-layout folder of rendered PNGs end to end, one process.

Writes n prompts x k ground-truth renders as `DIR/00000/metadata.jsonl` + `DIR/00000/samples/0000.png` (with PIL,
independently of imgcot's own layout code), then times, per repeat:

- `inline`: this script's minimal pipeline: list folders, read metadata, PNG decode, detect, GenEval rules,
  results records as JSON lines (written to one file);
- `score_folder`: `imgcot.geneval.score.score_folder`, the code behind `imgcot geneval score` (when present).

Goal: >= 200 images/s on 2 CPU cores.

    .venv/bin/python benchmarks/scoring_speed.py --n 250 --images-per-prompt 4 --seed 0 --size 32
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgcot.geneval.rules import evaluate, keep_confident
from imgcot.geneval.spec import TAGS, dumps
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.sampler import random_metadata, sample_scene
from imgcot.worlds.shapes.scenes import render

GOAL = 200.0


def write_folder(root: Path, n: int, k: int, seed: int, size: int) -> int:
    rng = np.random.default_rng(seed)
    for index in range(n):
        meta = random_metadata(TAGS[index % len(TAGS)], rng)
        folder = root / f"{index:05d}"
        (folder / "samples").mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(dumps(meta) + "\n")
        for j in range(k):
            Image.fromarray(render(sample_scene(meta, rng), size)).save(folder / "samples" / f"{j:04d}.png")
    return n * k


def score_inline(root: Path, out: Path) -> tuple[int, int]:
    """Minimal end-to-end scorer (GenEval's loop); returns (images, correct)."""
    detector = ShapesDetector()
    images = correct = 0
    with open(out, "w") as results:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
            meta = json.loads((folder / "metadata.jsonl").read_text())
            for path in sorted((folder / "samples").glob("*.png")):
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))
                kept = keep_confident(detector.detect(image), meta["tag"])
                ok, reason = evaluate(meta, kept, image, detector.classify_colors)
                record = {
                    "filename": str(path),
                    "tag": meta["tag"],
                    "prompt": meta["prompt"],
                    "correct": ok,
                    "reason": reason,
                    "metadata": json.dumps(meta),
                    "details": json.dumps({c: [[*d.box, d.score] for d in ds] for c, ds in kept.items()}),
                }
                results.write(json.dumps(record) + "\n")
                images += 1
                correct += ok
    return images, correct


def score_package(root: Path, out: Path) -> tuple[int, int] | None:
    try:
        from imgcot.geneval.score import score_folder
    except ImportError:
        return None
    records, _ = score_folder(root, ShapesDetector(), out=out)
    return len(records), sum(bool(r["correct"]) for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=250, help="prompts (tags in turn)")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, choices=(32, 64))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="folder to write (default: a temporary one)")
    args = parser.parse_args(argv)
    print("$ " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "bench"
        if root.exists() and any(root.iterdir()):
            parser.error(f"{root} is not empty")
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        total = write_folder(root, args.n, args.images_per_prompt, args.seed, args.size)
        print(f"\nwrote {total} PNGs ({args.size}x{args.size}) in {time.perf_counter() - start:.1f} s to {root}")
        print(f"cpus: {os.cpu_count()}, load average before timing: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        rows = []
        for name, fn in (("inline", score_inline), ("score_folder", score_package)):
            rates, counted = [], None
            for _ in range(args.repeats):
                start = time.perf_counter()
                counted = fn(root, Path(tmp) / f"results-{name}.jsonl")
                if counted is None:
                    break
                rates.append(counted[0] / (time.perf_counter() - start))
            if counted is None:
                rows.append(f"| {name} | - | - | - | not available |")
                continue
            images, correct = counted
            median = statistics.median(rates)
            rows.append(
                f"| {name} | {images} | {100 * correct / images:.1f}% | {min(rates):.0f} / {median:.0f}"
                f" / {max(rates):.0f} | {'yes' if median >= GOAL else 'NO'} |"
            )
    print(f"\nEnd-to-end scoring, single process, {args.repeats} repeats (images/s min / median / max):\n")
    print(f"| scorer | images | correct | images/s | >= {GOAL:.0f}/s |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plot generators' learning curves (quick-eval overall vs training minutes) from their curve.jsonl files.

    python benchmarks/learning_curve.py runs/train/maskgit runs/train/ar --out benchmarks/results/learning_curve.png

The quick eval runs during training on its own prompt set (8 prompts per tag drawn with seed 999, 2 images each),
never the benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(run: Path) -> list[dict]:
    lines = (run / "curve.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "overall" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_curve.png"))
    parser.add_argument("--hardware", default="2 CPU cores", help="where the runs trained (the x-axis label)")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in args.runs:
        points = read_curve(run)
        ax.plot([p["minutes"] for p in points], [p["overall"] for p in points], marker="o", label=run.name)
        print(f"\n{run.name}\n| step | minutes | overall |\n|---|---|---|")
        for p in points:
            print(f"| {p['step']} | {p['minutes']:.1f} | {p['overall']:.3f} |")
    ax.set_xlabel(f"training minutes ({args.hardware})")
    ax.set_ylabel("quick-eval overall (GenEval rules)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

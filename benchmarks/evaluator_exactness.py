"""Is the shapes evaluator exact? Ground-truth renders must score 100%, the same images under a mutated prompt 0%.

For n random metadata lines (equal share per GenEval tag, seeded), sample a scene, render it, run the shapes
detector once, and apply GenEval's rules to the original line and to each mutation of it (other class, count +-1,
other colour, flipped relation, swapped colours). Prints a markdown table; exits 1 unless every tag is at 100%
and every mutation kind at 0% acceptance.

    .venv/bin/python benchmarks/evaluator_exactness.py --n 6000 --seed 0 --size 32
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter

import numpy as np

from imgcot.geneval.rules import evaluate, keep_confident
from imgcot.geneval.spec import TAGS
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.mutate import KINDS, mutations
from imgcot.worlds.shapes.sampler import random_metadata, sample_scene
from imgcot.worlds.shapes.scenes import render


def run(n: int, seed: int, size: int, show: int) -> tuple[dict, dict, list[str]]:
    detector = ShapesDetector()
    rng = np.random.default_rng(seed)
    per_tag = {t: Counter() for t in TAGS}
    per_kind = {k: Counter() for k in KINDS}
    failures: list[str] = []
    per = n // len(TAGS)
    for tag in TAGS:
        for _ in range(per):
            meta = random_metadata(tag, rng)
            scene = sample_scene(meta, rng)
            image = render(scene, size)
            raw = detector.detect(image)
            ok, reason = evaluate(meta, keep_confident(raw, meta["tag"]), image, detector.classify_colors)
            per_tag[tag]["n"] += 1
            per_tag[tag]["correct"] += ok
            if not ok and len(failures) < show:
                failures.append(f"GT rejected: {meta['prompt']!r} {scene} -> {reason!r}")
            for kind, mutated in mutations(meta, rng):
                accepted, _ = evaluate(mutated, keep_confident(raw, mutated["tag"]), image, detector.classify_colors)
                per_kind[kind]["n"] += 1
                per_kind[kind]["accepted"] += accepted
                per_kind[kind][tag] += 1
                if accepted and len(failures) < show:
                    failures.append(f"{kind} accepted: {mutated['prompt']!r} on {scene}")
    return per_tag, per_kind, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="scenes in all (split equally over the six tags)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, choices=(32, 64))
    parser.add_argument("--show", type=int, default=10, help="failures to print")
    args = parser.parse_args(argv)
    print("$ " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    start = time.perf_counter()
    per_tag, per_kind, failures = run(args.n, args.seed, args.size, args.show)
    elapsed = time.perf_counter() - start
    total = sum(c["n"] for c in per_tag.values())
    print(f"\nGround-truth renders ({args.size}x{args.size}, seed {args.seed}): {total} scenes, {elapsed:.1f} s\n")
    print("| tag | scenes | correct | accuracy |")
    print("|---|---|---|---|")
    for tag in TAGS:
        c = per_tag[tag]
        print(f"| {tag} | {c['n']} | {c['correct']} | {100 * c['correct'] / max(c['n'], 1):.2f}% |")
    overall = np.mean([per_tag[t]["correct"] / max(per_tag[t]["n"], 1) for t in TAGS])
    print(
        f"| **overall** (mean of tags) | {total} | {sum(c['correct'] for c in per_tag.values())} | "
        f"{100 * overall:.2f}% |"
    )
    print("\nSame images under a mutated prompt (must be rejected):\n")
    print("| mutation | tags | mutated lines | accepted | acceptance |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        c = per_kind[kind]
        tags = ", ".join(t for t in TAGS if c[t])
        print(f"| {kind} | {tags} | {c['n']} | {c['accepted']} | {100 * c['accepted'] / max(c['n'], 1):.2f}% |")
    for line in failures:
        print("  " + line)
    exact = all(c["correct"] == c["n"] for c in per_tag.values()) and all(
        c["accepted"] == 0 and c["n"] > 0 for c in per_kind.values()
    )
    print(f"\nexact: {'yes' if exact else 'NO'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())

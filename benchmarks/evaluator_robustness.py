"""How does the shapes evaluator degrade? Accuracy on corrupted ground-truth renders, per tag and overall.

The same n seeded scenes (equal share per GenEval tag) are rendered clean and under Gaussian noise, Gaussian and
box blur, JPEG, whole-image shifts and per-object shifts (which move objects off the 4-pixel token grid, and may
clip them at the border or make two of one colour touch); two last rows score images unrelated to the prompt
(random palette tokens, random blobs) as a chance floor. Accuracy is GenEval's: per tag, then overall = the
unweighted mean of the six tags. Prints a markdown table.

    .venv/bin/python benchmarks/evaluator_robustness.py --n 1200 --seed 0 --size 32
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from imgcot.geneval.rules import evaluate, keep_confident
from imgcot.geneval.spec import TAGS
from imgcot.worlds.shapes import corrupt
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.sampler import random_metadata, sample_scene
from imgcot.worlds.shapes.scenes import Scene, render
from imgcot.worlds.shapes.vocab import BACKGROUND, COLORS, PALETTE

# name -> (image, scene, size, rng) -> corrupted image
Corruption = Callable[[np.ndarray, Scene, int, np.random.Generator], np.ndarray]


def conditions(include_jpeg: bool) -> list[tuple[str, Corruption]]:
    out: list[tuple[str, Corruption]] = [("clean", lambda im, sc, sz, r: im)]
    for sigma in (10, 20, 40, 60):
        out.append((f"noise sigma {sigma}", lambda im, sc, sz, r, s=sigma: corrupt.gaussian_noise(im, s, r)))
    for radius in (0.5, 1.0, 1.5):
        out.append((f"gaussian blur {radius:g}", lambda im, sc, sz, r, b=radius: corrupt.gaussian_blur(im, b)))
    for radius in (0.5, 1.0, 1.5):
        out.append((f"box blur {radius:g}", lambda im, sc, sz, r, b=radius: corrupt.box_blur(im, b)))
    for px in (1, 2, 3):
        out.append((f"image shift {px} px", lambda im, sc, sz, r, p=px: corrupt.random_shift(im, p, r)))
    for px in (1, 2, 3):
        out.append((f"object shift {px} px", lambda im, sc, sz, r, p=px: corrupt.shift_objects(sc, p, r, sz)))
    if include_jpeg:
        for q in (90, 75, 50):
            out.append((f"jpeg quality {q}", lambda im, sc, sz, r, q=q: corrupt.jpeg(im, q)))
    # chance floors: images unrelated to the prompt
    out.append(("unrelated: random palette tokens", lambda im, sc, sz, r: random_tokens(sz, r)))
    out.append(("unrelated: random smooth blob", lambda im, sc, sz, r: random_blob(sz, r)))
    return out


def random_tokens(size: int, rng: np.random.Generator) -> np.ndarray:
    """Each 4x4 token patch (8x8 at 64) a random palette colour, or background with probability 1/2."""
    colors = np.array([PALETTE[c] for c in COLORS] + [BACKGROUND] * len(COLORS), dtype=np.uint8)
    patch = size // 8
    grid = colors[rng.integers(len(colors), size=(8, 8))]
    return grid.repeat(patch, axis=0).repeat(patch, axis=1)


def random_blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """Thresholded smooth noise (20% of the canvas) in one random palette colour: blobs that are no clear shape."""
    field = ndimage.gaussian_filter(rng.normal(size=(32, 32)), 2.5)
    mask = (field > np.quantile(field, 0.8)).repeat(size // 32, axis=0).repeat(size // 32, axis=1)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    image[mask] = PALETTE[COLORS[rng.integers(len(COLORS))]]
    return image


def run(n: int, seed: int, size: int, include_jpeg: bool) -> tuple[list[str], dict[str, dict[str, float]]]:
    detector = ShapesDetector()
    rng = np.random.default_rng(seed)
    per = n // len(TAGS)
    cases = []
    for tag in TAGS:
        for _ in range(per):
            meta = random_metadata(tag, rng)
            scene = sample_scene(meta, rng)
            cases.append((meta, scene, render(scene, size)))
    names, table = [], {}
    for index, (name, fn) in enumerate(conditions(include_jpeg)):
        crng = np.random.default_rng([seed, index])
        correct = {t: 0 for t in TAGS}
        for meta, scene, image in cases:
            img = fn(image, scene, size, crng)
            kept = keep_confident(detector.detect(img), meta["tag"])
            correct[meta["tag"]] += evaluate(meta, kept, img, detector.classify_colors)[0]
        scores = {t: correct[t] / per for t in TAGS}
        scores["overall"] = float(np.mean([scores[t] for t in TAGS]))
        names.append(name)
        table[name] = scores
    return names, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1200, help="scenes per condition (split equally over six tags)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, choices=(32, 64))
    parser.add_argument("--no-jpeg", action="store_true", help="skip the JPEG rows")
    args = parser.parse_args(argv)
    print("$ " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    start = time.perf_counter()
    names, table = run(args.n, args.seed, args.size, not args.no_jpeg)
    per = args.n // len(TAGS)
    print(
        f"\nGeneval accuracy (%) on corrupted ground-truth renders, {args.size}x{args.size}, "
        f"{per} scenes per tag per row, seed {args.seed}, {time.perf_counter() - start:.1f} s\n"
    )
    print("| corruption | " + " | ".join(TAGS) + " | overall |")
    print("|---|" + "---|" * (len(TAGS) + 1))
    for name in names:
        row = table[name]
        print(f"| {name} | " + " | ".join(f"{100 * row[t]:.1f}" for t in [*TAGS, "overall"]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

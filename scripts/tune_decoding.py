"""Choose a generator's decoding settings on a development prompt set (never the benchmark).

    python scripts/tune_decoding.py --model runs/train/maskgit/final --guidance 0.5 1 2 3 --temperature 1.0

Prints a table of quick-eval scores per setting; the shipped config.json records the chosen one.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
import torch

from imgcot.generators.registry import load_generator
from imgcot.generators.run import generate
from imgcot.geneval.judge import judge, tag_accuracies
from imgcot.geneval.spec import TAGS
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.sampler import random_metadata

DEV_SEED = 7  # the development prompt set: neither the benchmark (43) nor the learning-curve set (999)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--per-tag", type=int, default=20)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--guidance", type=float, nargs="+", default=[2.0])
    parser.add_argument("--temperature", type=float, nargs="+", default=[1.0])
    parser.add_argument("--choice-temperature", type=float, nargs="+", default=[4.5])
    parser.add_argument("--steps", type=int, nargs="+", default=[0], help="0 keeps the model's own")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    base = load_generator(args.model)
    rng = np.random.default_rng(DEV_SEED)
    metas = [m for tag in TAGS for m in (random_metadata(tag, rng) for _ in range(args.per_tag))]
    rows = [m for m in metas for _ in range(args.images)]
    detector = ShapesDetector()
    print("command: python " + " ".join(sys.argv))
    print("\n| steps | guidance | temperature | choice temp | " + " | ".join(TAGS) + " | overall |")
    print("|---" * (len(TAGS) + 5) + "|")
    grid = itertools.product(args.steps, args.guidance, args.temperature, args.choice_temperature)
    for steps, guidance, temperature, choice in grid:
        changes = {"guidance": guidance, "temperature": temperature, "choice_temperature": choice}
        if steps:
            changes["num_steps"] = steps
        gen = base.with_decoding(**changes)
        images, _ = generate(gen, [m["prompt"] for m in rows], [50_000 + i for i in range(len(rows))], 128)
        correct = [judge(m, im, detector)[0] for m, im in zip(rows, images.numpy(), strict=True)]
        acc = tag_accuracies([m["tag"] for m in rows], correct)
        cells = " | ".join(f"{acc[t]:.3f}" for t in TAGS)
        head = f"| {gen.num_steps} | {guidance} | {temperature} | {choice} |"
        print(f"{head} {cells} | {acc['overall']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

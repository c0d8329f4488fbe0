"""A quick fixed-prompt evaluation used for learning curves during training."""

from __future__ import annotations

import numpy as np

from ..generators.run import generate
from ..geneval.judge import judge, tag_accuracies
from ..geneval.spec import TAGS
from ..worlds.shapes.detector import ShapesDetector
from ..worlds.shapes.sampler import random_metadata

CURVE_SEED = 999  # a prompt set of its own: neither the benchmark nor training


def curve_prompts(per_tag: int) -> list[dict]:
    rng = np.random.default_rng(CURVE_SEED)
    return [random_metadata(tag, rng) for tag in TAGS for _ in range(per_tag)]


def make_curve_eval(per_tag: int = 8, images_per_prompt: int = 2):
    metas = curve_prompts(per_tag)
    detector = ShapesDetector()

    def evaluate(generator) -> dict:
        rows = [m for m in metas for _ in range(images_per_prompt)]
        seeds = [10_000 + i for i in range(len(rows))]
        images, _ = generate(generator, [m["prompt"] for m in rows], seeds, batch_size=96)
        correct = [judge(m, img, detector)[0] for m, img in zip(rows, images.numpy(), strict=True)]
        return {k: round(v, 4) for k, v in tag_accuracies([m["tag"] for m in rows], correct).items()}

    return evaluate

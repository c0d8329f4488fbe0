"""Fit the shapes patch tokenizer and measure the evaluator on its reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geneval.judge import judge
from ..geneval.spec import TAGS
from ..nn.tokenizer import PatchTokenizer
from ..worlds.shapes.detector import ShapesDetector
from ..worlds.shapes.sampler import random_metadata, sample_scene
from ..worlds.shapes.scenes import render
from .data import random_prompts_and_images


def fit_tokenizer(images: int = 20_000, seed: int = 0, patch: int = 4, size: int = 32) -> PatchTokenizer:
    _, renders = random_prompts_and_images(np.random.default_rng(seed), images, size)
    return PatchTokenizer.fit(renders, patch=patch)


def reconstruction_accuracy(tokenizer: PatchTokenizer, scenes: int = 2_000, seed: int = 1) -> dict[str, float]:
    """Evaluator accuracy on reconstructions of ground-truth renders, and the exact-pixel rate."""
    rng = np.random.default_rng(seed)
    metas = [random_metadata(TAGS[i % len(TAGS)], rng) for i in range(scenes)]
    renders = np.stack([render(sample_scene(m, rng), tokenizer.config.image_size) for m in metas])
    recon = tokenizer.decode(tokenizer.encode(renders)).numpy()
    detector = ShapesDetector()
    correct = [judge(m, img, detector)[0] for m, img in zip(metas, recon, strict=True)]
    exact = (recon == renders).all(axis=(1, 2, 3))
    return {"evaluator_accuracy": float(np.mean(correct)), "pixel_exact": float(exact.mean()), "scenes": scenes}


def train_tokenizer(out: Path, images: int = 20_000, seed: int = 0) -> tuple[PatchTokenizer, dict]:
    tokenizer = fit_tokenizer(images, seed)
    tokenizer.save_pretrained(out)
    return tokenizer, reconstruction_accuracy(tokenizer)

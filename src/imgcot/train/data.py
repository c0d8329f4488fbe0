"""Fresh shapes training data: random prompts of all six tags, their scenes rendered and tokenized."""

from __future__ import annotations

import numpy as np
import torch

from ..geneval.spec import TAGS
from ..nn.tokenizer import PatchTokenizer
from ..worlds.shapes.sampler import random_metadata, sample_scene
from ..worlds.shapes.scenes import render


def random_prompts_and_images(rng: np.random.Generator, count: int, size: int = 32) -> tuple[list[str], np.ndarray]:
    """`count` (prompt, ground-truth render) pairs, tags drawn uniformly."""
    prompts, images = [], []
    for tag in rng.choice(TAGS, size=count):
        meta = random_metadata(str(tag), rng)
        prompts.append(meta["prompt"])
        images.append(render(sample_scene(meta, rng), size))
    return prompts, np.stack(images)


def token_batch(rng: np.random.Generator, count: int, tokenizer: PatchTokenizer) -> tuple[list[str], torch.Tensor]:
    prompts, images = random_prompts_and_images(rng, count, tokenizer.config.image_size)
    return prompts, tokenizer.encode(images)

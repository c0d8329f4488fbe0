"""Tiny random shapes generators built from config objects, saved and loaded like shipped checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imgcot.generators.base import DecodingConfig, GeneratorConfig
from imgcot.generators.maskgit import MaskGITGenerator
from imgcot.generators.raster import RasterGenerator
from imgcot.nn.tokenizer import PatchTokenizer
from imgcot.nn.transformer import TransformerConfig
from imgcot.train.data import random_prompts_and_images
from imgcot.worlds.shapes.text import WORDS


def tiny_tokenizer() -> PatchTokenizer:
    _, images = random_prompts_and_images(np.random.default_rng(0), 200)
    return PatchTokenizer.fit(images)


def tiny_generator(kind: str, folder: Path, steps: int = 4, guidance: float = 1.5):
    """A 2-layer random generator of `kind` saved to `folder` and loaded back through from_pretrained."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    cls = {"maskgit": MaskGITGenerator, "ar": RasterGenerator}[kind]
    decoding = DecodingConfig(num_steps=steps, guidance=guidance, rows_per_step=2)
    transformer = TransformerConfig(len(WORDS), tokenizer.vocab_size, dim=32, depth=2, heads=2, causal=kind == "ar")
    cls.from_config(GeneratorConfig(transformer, tokenizer.config, decoding), tokenizer).save_pretrained(folder)
    return cls.from_pretrained(folder)

"""MaskGIT step against a hand-computed case, and the pure sampling helpers (method.md section 2)."""

from __future__ import annotations

import math

import pytest
import torch

from imgcot.generators.base import DecodingConfig, GeneratorConfig
from imgcot.generators.maskgit import MaskGITGenerator
from imgcot.nn.tokenizer import PatchTokenizer, TokenizerConfig
from imgcot.nn.transformer import TransformerConfig
from imgcot.sampling import choice_temperature, cosine_schedule, guided_logits, masked_count
from imgcot.worlds.shapes.text import WORDS

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.5, 0.0]])


class FixedLogits(torch.nn.Module):
    """A stand-in network that returns the same logits at every image position, whatever the input."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.calls = 0

    def forward(self, text, image, cache=None, start=0):
        self.calls += 1
        return LOGITS.expand(image.shape[0], -1, -1).clone(), []


def _generator(num_steps: int) -> MaskGITGenerator:
    tok_cfg = TokenizerConfig(image_size=8, patch=4, codebook_size=3)
    tokenizer = PatchTokenizer(tok_cfg, torch.arange(3 * 48, dtype=torch.uint8).view(3, 48))
    tcfg = TransformerConfig(len(WORDS), 3, image_len=4)
    decoding = DecodingConfig(num_steps=num_steps, guidance=0.0, temperature=0.0, choice_temperature=0.0)
    return MaskGITGenerator(GeneratorConfig(tcfg, tok_cfg, decoding), FixedLogits(tcfg), tokenizer)


def test_two_step_decode_matches_hand_computation():
    # argmax tokens: [0, 1, 2, 1]; log-softmax confidences:
    #   pos0 2 - log(e^2 + 2) = -0.2395, pos1 3 - log(e^3 + 2) = -0.0949,
    #   pos2 1 - log(e + 2) = -0.5514, pos3 1.5 - log(e + e^1.5 + 1) = -0.6041
    # step 0 of 2 keeps floor(4 cos(pi/4)) = 2 masked: the two least confident, pos3 and pos2.
    gen = _generator(2)
    state = gen.step(gen.init(["a photo of a star"], [0]))
    mask = gen.undecided
    assert state.tokens.tolist() == [[0, 1, mask, mask]]
    assert state.predicted.tolist() == [[0, 1, 2, 1]]  # the step's preview shows the full predicted map
    state = gen.step(state)
    assert state.tokens.tolist() == [[0, 1, 2, 1]] and gen.is_done(state)
    assert state.forwards == [2]  # unguided: one pass per step


def test_schedule_and_masking_bounds():
    assert cosine_schedule(0, 2) == pytest.approx(math.cos(math.pi / 4))
    assert masked_count(0, 18, 256, 256) == math.floor(256 * math.cos(math.pi / 2 / 18))
    assert masked_count(0, 2, 4, 4) == 2
    assert masked_count(0, 100, 4, 4) == 3  # at least one token is fixed
    assert masked_count(5, 10, 64, 2) == 1  # at least one stays masked before the last step
    assert masked_count(9, 10, 64, 5) == 0  # none after the last step


def test_choice_temperature_anneals_without_compounding():
    temps = [choice_temperature(4.5, s, 10) for s in range(10)]
    assert temps == pytest.approx([4.5 * (1 - (s + 1) / 10) for s in range(10)])
    assert choice_temperature(4.5, 0, 10) == choice_temperature(4.5, 0, 10)  # recomputed, not multiplied in place


def test_guidance_formula():
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    assert guided_logits(cond, uncond, 1.75).tolist() == pytest.approx([2.75 * 1.0 - 1.75 * 0.5, 2.75 * 2 - 1.75 * 3])

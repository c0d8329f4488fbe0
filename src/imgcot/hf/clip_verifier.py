"""CLIP score as a cheap outcome verifier (`--verifier hf-clip:<hub id or folder>`), over transformers' CLIPModel.

score = clamp(w * cos(image, prompt), 0, 1) with w = 2.5: CLIPScore's rescaling (Hessel et al. 2021,
"CLIPScore", which uses w * max(cos, 0)), clamped into [0, 1] so it reads as a probability. Matched image-text
pairs of CLIP ViT-B/L sit around cos 0.25-0.35 (score 0.6-0.9), unrelated ones around 0.1-0.2 (0.25-0.5). Only
the ranking matters to best-of-N; thresholded decisions (PARM's potential at 0.5) mean cos >= 0.2.

As a step verifier (roles prm and parm) CLIP has no notion of clarity: judge gives clarity 1 and
value = potential = the score of the step's preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..core import StepScore
from .loading import check_model_type, resolve_device, resolve_dtype
from .vlm_judge import to_pil


@dataclass(frozen=True)
class CLIPVerifierConfig:
    weight: float = 2.5  # CLIPScore's w
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "auto"


def clip_probability(cosine: torch.Tensor, weight: float = 2.5) -> torch.Tensor:
    """Cosine similarity -> [0, 1]: clamp(weight * cos, 0, 1)."""
    return (weight * cosine.float()).clamp(0.0, 1.0)


class CLIPVerifier:
    def __init__(self, model, tokenizer, image_processor, config: CLIPVerifierConfig | None = None):
        self.model, self.tokenizer, self.image_processor = model.eval(), tokenizer, image_processor
        self.tokenizer.padding_side = "right"  # CLIP's text tower has absolute positions and pools at the EOS
        self.config = config or CLIPVerifierConfig()

    @classmethod
    def from_pretrained(cls, path: str | Path, config: CLIPVerifierConfig | None = None) -> CLIPVerifier:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        config = config or CLIPVerifierConfig()
        check_model_type(path, ("clip",), "a CLIP model (use hf-vlm: for a vision-language judge)")
        device = resolve_device(config.device)
        model = CLIPModel.from_pretrained(
            str(path), dtype=resolve_dtype(config.dtype, device), trust_remote_code=False
        ).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        return cls(model, tokenizer, AutoImageProcessor.from_pretrained(str(path), trust_remote_code=False), config)

    @torch.inference_mode()
    def cosine(self, prompts: list[str], images) -> torch.Tensor:
        """(B,) cosine similarity of each image with its prompt."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        device, out = next(self.model.parameters()).device, []
        limit = self.model.config.text_config.max_position_embeddings
        for start in range(0, len(prompts), self.config.batch_size):
            part = slice(start, start + self.config.batch_size)
            text = self.tokenizer(prompts[part], padding=True, truncation=True, max_length=limit, return_tensors="pt")
            pixels = self.image_processor(images=to_pil(images[part]), return_tensors="pt")["pixel_values"]
            result = self.model(
                input_ids=text["input_ids"].to(device),
                attention_mask=text["attention_mask"].to(device),
                pixel_values=pixels.to(device, self.model.dtype),
            )
            image, words = result.image_embeds.float(), result.text_embeds.float()
            out.append(torch.nn.functional.cosine_similarity(image, words, dim=-1))
        return torch.cat(out).cpu() if out else torch.zeros(0)

    def score(self, prompts: list[str], images) -> torch.Tensor:
        return clip_probability(self.cosine(prompts, images), self.config.weight)

    def judge(self, prompts: list[str], previews, step: int, num_steps: int) -> StepScore:
        value = self.score(prompts, previews)
        return StepScore(clarity=torch.ones_like(value), potential=value, value=value.clone())

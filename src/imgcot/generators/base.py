"""What both shapes generators share: a token transformer, the patch tokenizer, prompt ids, guided logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..core import GenState
from ..nn.io import load_checkpoint, save_checkpoint
from ..nn.tokenizer import PatchTokenizer, TokenizerConfig
from ..nn.transformer import Transformer, TransformerConfig
from ..sampling import guided_logits
from ..worlds.shapes.text import encode_prompts, null_prompts

PLACEHOLDER = (100, 156)  # two greys striped where a preview has no token yet; both read as background


@dataclass(frozen=True)
class DecodingConfig:
    num_steps: int = 12  # MaskGIT iterations, or raster chunks
    guidance: float = 2.0  # g in (1 + g) * cond - g * uncond
    temperature: float = 1.0  # token sampling temperature
    choice_temperature: float = 4.5  # MaskGIT re-masking noise at step 0, annealed linearly to 0
    schedule: str = "cosine"
    rows_per_step: int = 1  # raster AR: token rows per verification step


@dataclass(frozen=True)
class GeneratorConfig:
    transformer: TransformerConfig
    tokenizer: TokenizerConfig
    decoding: DecodingConfig = DecodingConfig()


class TokenGenerator:
    """Base of the shapes generators; subclasses implement the step rule. KIND names the checkpoint type."""

    KIND = "token-generator"
    causal = False

    def __init__(self, config: GeneratorConfig, model: Transformer, tokenizer: PatchTokenizer):
        self.config = config
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.undecided = config.transformer.image_vocab  # MASK (MaskGIT) / BOS (AR) id: no token yet

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: GeneratorConfig, tokenizer: PatchTokenizer) -> TokenGenerator:
        return cls(config, Transformer(config.transformer), tokenizer)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TokenGenerator:
        config, tensors = load_checkpoint(folder, GeneratorConfig, cls.KIND)
        tokenizer = PatchTokenizer(config.tokenizer, tensors.pop("tokenizer.codebook"))
        model = Transformer(config.transformer)
        model.load_state_dict({k.removeprefix("transformer."): v for k, v in tensors.items()}, strict=True)
        return cls(config, model, tokenizer)

    def save_pretrained(self, folder: str | Path) -> Path:
        state = {f"transformer.{k}": v for k, v in self.model.state_dict().items()}
        state["tokenizer.codebook"] = self.tokenizer.codebook
        return save_checkpoint(folder, self.config, state, self.KIND)

    def with_decoding(self, **changes) -> TokenGenerator:
        """The same weights with other decoding settings (steps, guidance, temperatures)."""
        from dataclasses import replace

        config = replace(self.config, decoding=replace(self.config.decoding, **changes))
        return type(self)(config, self.model, self.tokenizer)

    # --- shared pieces ------------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.tokenizer.image_size

    @property
    def num_steps(self) -> int:
        return self.config.decoding.num_steps

    @property
    def passes_per_forward(self) -> int:
        """A guided forward costs two passes (cond and uncond rows); unguided costs one."""
        return 2 if self.config.decoding.guidance != 0 else 1

    def prompt_ids(self, prompts: list[str]) -> torch.Tensor:
        return encode_prompts(prompts, self.config.transformer.text_len)

    def guided(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Guided logits at the image positions for full-sequence (non-cached) models: one batched forward."""
        g = self.config.decoding.guidance
        if g == 0:
            return self.model(text, image)[0]
        both = torch.cat([text, null_prompts(text.shape[0], text.shape[1])])
        logits = self.model(both, torch.cat([image, image]))[0]
        cond, uncond = logits.chunk(2)
        return guided_logits(cond, uncond, g)

    def tokens_to_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, H, W, 3) uint8; undecided positions show the striped placeholder."""
        undecided = tokens >= self.tokenizer.vocab_size
        images = self.tokenizer.decode(tokens.clamp(max=self.tokenizer.vocab_size - 1))
        if undecided.any():
            p, grid = self.config.tokenizer.patch, self.config.tokenizer.grid
            holes = undecided.view(-1, grid, 1, grid, 1).expand(-1, grid, p, grid, p).reshape(images.shape[:3])
            size = images.shape[1]
            stripes = ((torch.arange(size)[:, None] + torch.arange(size)[None]) // 2) % 2
            fill = torch.where(stripes.bool(), PLACEHOLDER[0], PLACEHOLDER[1]).to(torch.uint8)
            images = torch.where(holes[..., None], fill[None, ..., None].expand_as(images), images)
        return images

    def preview(self, state: GenState) -> torch.Tensor:
        return self.tokens_to_images(state.predicted)

    def decode(self, state: GenState) -> torch.Tensor:
        return self.tokens_to_images(state.tokens if self.is_done(state) else state.predicted)

    def is_done(self, state: GenState) -> bool:
        return state.step >= self.num_steps

    def _count(self, state: GenState, passes: int) -> None:
        state.forwards = [f + passes for f in state.forwards]

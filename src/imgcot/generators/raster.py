"""Raster-order autoregressive decoding with a KV cache (LlamaGen / Janus-Pro style).

A verification step is a chunk of `rows_per_step` token rows. Each token's noise is keyed by its row of the
token grid, so the image does not depend on the chunk size or the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import GenState
from ..sampling import guided_logits, gumbel, row_uniform, sample_with_gumbel
from ..worlds.shapes.text import null_prompts
from .base import TokenGenerator


class RasterGenerator(TokenGenerator):
    KIND = "shapes-ar"
    causal = True

    @property
    def num_steps(self) -> int:
        return self.config.tokenizer.grid // self.config.decoding.rows_per_step

    def _advance(self, text: torch.Tensor | None, image: torch.Tensor, cache, start: int):
        logits, cache = self.model(text, image, cache, start)
        return logits[:, -1], cache

    @torch.no_grad()
    def init(self, prompts: list[str], seeds: list[int]) -> GenState:
        """Prefill the prompt and BOS (cond and uncond rows) and keep the guided logits of the first token."""
        b, n = len(prompts), self.config.transformer.image_len
        text = self.prompt_ids(prompts)
        bos = torch.full((b, 1), self.undecided, dtype=torch.long)
        empty = torch.full((b, n), self.undecided, dtype=torch.long)
        state = GenState(list(prompts), list(seeds), text, empty, empty.clone(), 0, forwards=[0] * b)
        cond, state.cache = self._advance(text, bos, None, 0)
        state.next_logits = cond
        if self.config.decoding.guidance != 0:
            uncond, state.uncond_cache = self._advance(null_prompts(b, text.shape[1]), bos, None, 0)
            state.next_logits = guided_logits(cond, uncond, self.config.decoding.guidance)
        self._count(state, self.passes_per_forward)
        return state

    @torch.no_grad()
    def step(self, state: GenState) -> GenState:
        """Sample `rows_per_step` token rows, one cached forward pass (x2 with guidance) per token."""
        d, grid = self.config.decoding, self.config.tokenizer.grid
        vocab = self.tokenizer.vocab_size
        new = GenState(
            state.prompts,
            state.seeds,
            state.text,
            state.tokens.clone(),
            state.predicted,
            state.step + 1,
            cache=state.cache,
            uncond_cache=state.uncond_cache,
            next_logits=state.next_logits,
            forwards=list(state.forwards),
        )
        for row in range(state.step * d.rows_per_step, (state.step + 1) * d.rows_per_step):
            noise = gumbel(row_uniform(state.seeds, row, (grid, vocab)))
            for col in range(grid):
                index = row * grid + col
                token = sample_with_gumbel(new.next_logits, noise[:, col], d.temperature)
                new.tokens[:, index] = token
                if index + 1 < self.config.transformer.image_len:
                    position = self.config.transformer.text_len + 1 + index
                    cond, new.cache = self._advance(None, token[:, None], new.cache, position)
                    new.next_logits = self._guide_step(cond, new, token, position)
                    self._count(new, self.passes_per_forward)
        new.predicted = new.tokens
        return new

    def _guide_step(self, cond: torch.Tensor, state: GenState, token: torch.Tensor, position: int) -> torch.Tensor:
        g = self.config.decoding.guidance
        if g == 0:
            return cond
        uncond, state.uncond_cache = self._advance(None, token[:, None], state.uncond_cache, position)
        return guided_logits(cond, uncond, g)

    def revise(self, state: GenState, keep: torch.Tensor) -> GenState:
        """Restart from the first token row that holds a position not kept (raster order cannot skip ahead)."""
        grid = self.config.tokenizer.grid
        bad_rows = (~keep).view(keep.shape[0], grid, grid).any(-1).any(0).nonzero()
        first_row = int(bad_rows.min()) if len(bad_rows) else grid
        restart = first_row // self.config.decoding.rows_per_step
        fresh = self.init(state.prompts, state.seeds)
        fresh.forwards = [f + a for f, a in zip(state.forwards, fresh.forwards, strict=True)]
        while fresh.step < restart:  # replay kept rows through the cache (teacher forcing costs passes too)
            fresh = self._replay_step(fresh, state.tokens)
        return fresh

    @torch.no_grad()
    def _replay_step(self, state: GenState, tokens: torch.Tensor) -> GenState:
        grid, d = self.config.tokenizer.grid, self.config.decoding
        for row in range(state.step * d.rows_per_step, (state.step + 1) * d.rows_per_step):
            for col in range(grid):
                index = row * grid + col
                token = tokens[:, index]
                state.tokens[:, index] = token
                position = self.config.transformer.text_len + 1 + index
                cond, state.cache = self._advance(None, token[:, None], state.cache, position)
                state.next_logits = self._guide_step(cond, state, token, position)
                self._count(state, self.passes_per_forward)
        state.step += 1
        state.predicted = state.tokens
        return state

    def log_prob(self, prompts: list[str], tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact sequence log-likelihood by teacher forcing (optionally summed over `mask` positions only)."""
        bos = torch.full((tokens.shape[0], 1), self.undecided, dtype=torch.long)
        logits = self.model(self.prompt_ids(prompts), torch.cat([bos, tokens[:, :-1]], 1))[0]
        logp = F.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
        return logp.sum(-1) if mask is None else (logp * mask).sum(-1)

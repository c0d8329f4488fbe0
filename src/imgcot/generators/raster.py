"""Raster-order autoregressive decoding with a KV cache (LlamaGen / Janus-Pro style).

A verification step is a chunk of `rows_per_step` token rows. Each token's noise is keyed by its row of the
token grid, so the image does not depend on the chunk size or the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import GenState, KVBuffers
from ..nn.transformer import KVCache
from ..sampling import guided_logits, gumbel, row_uniform, sample_with_gumbel
from ..worlds.shapes.text import null_prompts
from .base import TokenGenerator


class RasterGenerator(TokenGenerator):
    KIND = "shapes-ar"
    causal = True

    @property
    def num_steps(self) -> int:
        return self.config.tokenizer.grid // self.config.decoding.rows_per_step

    @torch.no_grad()
    def init(self, prompts: list[str], seeds: list[int]) -> GenState:
        """Prefill the prompt and BOS (cond and uncond rows in one batch) and keep the guided logits of the first
        token."""
        b, n = len(prompts), self.config.transformer.image_len
        text = self.prompt_ids(prompts)
        empty = torch.full((b, n), self.undecided, dtype=torch.long)
        state = GenState(list(prompts), list(seeds), text, empty, empty.clone(), 0, forwards=[0] * b)
        rows = text if self.passes_per_forward == 1 else torch.cat([text, null_prompts(b, text.shape[1])])
        bos = torch.full((rows.shape[0], 1), self.undecided, dtype=torch.long)
        logits, cache = self.model(rows, bos)
        state.next_logits = self._guide(logits[:, -1])
        state.cache, state.uncond_cache = self._split(cache, b, cache[0][0].shape[2])
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
            next_logits=state.next_logits,
            forwards=list(state.forwards),
        )
        kv = self._buffers(state)
        for row in range(state.step * d.rows_per_step, (state.step + 1) * d.rows_per_step):
            noise = gumbel(row_uniform(state.seeds, row, (grid, vocab)))
            for col in range(grid):
                token = sample_with_gumbel(new.next_logits, noise[:, col], d.temperature)
                self._feed(new, kv.layers, row * grid + col, token)
        self._extend(new, kv)
        new.predicted = new.tokens
        return new

    def _guide(self, logits: torch.Tensor) -> torch.Tensor:
        """Guided logits from a batch of cond rows followed by as many uncond rows (or cond rows only)."""
        if self.passes_per_forward == 1:
            return logits
        cond, uncond = logits.chunk(2)
        return guided_logits(cond, uncond, self.config.decoding.guidance)

    def _cache_length(self, step: int) -> int:
        """Positions held in the KV cache after `step` steps: prompt, BOS and every token but the image's last."""
        c = self.config.transformer
        return (
            c.text_len
            + 1
            + min(step * self.config.decoding.rows_per_step * self.config.tokenizer.grid, c.image_len - 1)
        )

    def _buffers(self, state: GenState) -> KVBuffers:
        """Full-length key/value buffers (cond rows, then uncond rows) holding the state's cache, which a step
        extends in place. They are the state's own buffers when nothing has been written past its cache (the usual
        step after step), else fresh copies, so the state it started from keeps its cache either way."""
        parts = [state.cache] if state.uncond_cache is None else [state.cache, state.uncond_cache]
        length, rows, kv = state.cache[0][0].shape[2], state.batch * len(parts), state.kv_buffers
        views_kv = kv is not None and kv.layers[0][0].data_ptr() == state.cache[0][0].data_ptr()
        if views_kv and (kv.written, kv.layers[0][0].shape[0]) == (length, rows):
            return kv
        capacity = self.config.transformer.seq_len
        buffers = []
        for layer in range(len(state.cache)):
            pair = []
            for i in range(2):
                held = parts[0][layer][i]
                buffer = held.new_zeros((rows, held.shape[1], capacity, held.shape[3]))  # finite past the cache
                for j, part in enumerate(parts):
                    buffer[j * state.batch : (j + 1) * state.batch, :, :length] = part[layer][i]
                pair.append(buffer)
            buffers.append((pair[0], pair[1]))
        return KVBuffers(buffers, length)

    def _extend(self, state: GenState, kv: KVBuffers) -> None:
        """Point `state`'s cache at the positions its step wrote into `kv`, and claim them."""
        kv.written = self._cache_length(state.step)
        state.cache, state.uncond_cache = self._split(kv.layers, state.batch, kv.written)
        state.kv_buffers = kv

    def _split(self, buffers: KVCache, batch: int, length: int) -> tuple[KVCache, KVCache | None]:
        """The first `length` positions of the buffers as (cond cache, uncond cache) of `batch` rows each."""
        cond = [(k[:batch, :, :length], v[:batch, :, :length]) for k, v in buffers]
        if self.passes_per_forward == 1:
            return cond, None
        return cond, [(k[batch:, :, :length], v[batch:, :, :length]) for k, v in buffers]

    def _feed(self, state: GenState, buffers: KVCache, index: int, token: torch.Tensor) -> None:
        """Commit `token` at image position `index` and, unless it is the last, run it through the cache."""
        state.tokens[:, index] = token
        if index + 1 >= self.config.transformer.image_len:
            return
        position = self.config.transformer.text_len + 1 + index
        rows = token[:, None].repeat(self.passes_per_forward, 1)
        state.next_logits = self._guide(self.model.next_token_logits(rows, buffers, position))
        self._count(state, self.passes_per_forward)

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
        kv = self._buffers(state)
        for row in range(state.step * d.rows_per_step, (state.step + 1) * d.rows_per_step):
            for col in range(grid):
                self._feed(state, kv.layers, row * grid + col, tokens[:, row * grid + col])
        state.step += 1
        self._extend(state, kv)
        state.predicted = state.tokens
        return state

    def log_prob(self, prompts: list[str], tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact sequence log-likelihood by teacher forcing (optionally summed over `mask` positions only)."""
        bos = torch.full((tokens.shape[0], 1), self.undecided, dtype=torch.long)
        logits = self.model(self.prompt_ids(prompts), torch.cat([bos, tokens[:, :-1]], 1))[0]
        logp = F.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
        return logp.sum(-1) if mask is None else (logp * mask).sum(-1)

"""Masked-token parallel decoding (MaskGIT / Show-o), shared/method.md section 2."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import GenState
from ..sampling import choice_temperature, get_schedule, gumbel, masked_count, row_uniform, sample_with_gumbel
from .base import TokenGenerator


class MaskGITGenerator(TokenGenerator):
    KIND = "shapes-maskgit"

    def init(self, prompts: list[str], seeds: list[int]) -> GenState:
        b, n = len(prompts), self.config.transformer.image_len
        masked = torch.full((b, n), self.undecided, dtype=torch.long)
        return GenState(
            list(prompts), list(seeds), self.prompt_ids(prompts), masked, masked.clone(), 0, forwards=[0] * b
        )

    @torch.no_grad()
    def step(self, state: GenState) -> GenState:
        """One iteration: predict every masked token, keep the most confident, re-mask the rest by schedule."""
        d, n = self.config.decoding, state.tokens.shape[1]
        vocab = self.tokenizer.vocab_size
        unknown = state.tokens == self.undecided
        logits = self.guided(state.text, state.tokens)  # (B, N, V)
        noise = gumbel(row_uniform(state.seeds, state.step, (n, vocab + 1)))
        sampled = sample_with_gumbel(logits, noise[..., :vocab], d.temperature)
        sampled = torch.where(unknown, sampled, state.tokens)
        confidence = F.log_softmax(logits, -1).gather(-1, sampled[..., None])[..., 0]
        confidence = torch.where(unknown, confidence, torch.full_like(confidence, float("inf")))
        counts = torch.tensor([masked_count(state.step, d.num_steps, n, int(u), d.schedule) for u in unknown.sum(1)])
        temperature = choice_temperature(d.choice_temperature, state.step, d.num_steps)
        ranks = (confidence + temperature * noise[..., vocab]).argsort(-1).argsort(-1)
        remask = ranks < counts[:, None]
        tokens = torch.where(remask, torch.full_like(sampled, self.undecided), sampled)
        new = GenState(
            state.prompts, state.seeds, state.text, tokens, sampled, state.step + 1, forwards=list(state.forwards)
        )
        self._count(new, self.passes_per_forward)
        return new

    def revise(self, state: GenState, keep: torch.Tensor) -> GenState:
        """Re-mask positions where `keep` is False and resume the schedule where that many tokens are masked."""
        d = self.config.decoding
        tokens = torch.where(keep, state.tokens, torch.full_like(state.tokens, self.undecided))
        unknown = int((tokens == self.undecided).sum(1).max())
        n = tokens.shape[1]
        schedule = get_schedule(d.schedule)
        start = 0
        for s in range(1, d.num_steps):  # masked count at the start of step s is n * schedule(s - 1)
            if n * schedule(s - 1, d.num_steps) >= unknown:
                start = s
        return GenState(
            state.prompts, state.seeds, state.text, tokens, tokens.clone(), start, forwards=list(state.forwards)
        )

    def log_prob(
        self,
        prompts: list[str],
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        scored: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-position estimate: sum of log p(true token) over `scored` (default: every masked position) given
        the tokens outside `mask` (default: all masked)."""
        mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask
        inputs = torch.where(mask, torch.full_like(tokens, self.undecided), tokens)
        logits = self.model(self.prompt_ids(prompts), inputs)[0]
        logp = F.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
        return (logp * (mask if scored is None else scored)).sum(-1)

"""Janus-Pro as a step-wise generator: `--model hf-janus:<hub id or folder>` over transformers' Janus model.

The checkpoint is a transformers-format Janus folder or Hub id (`model_type: janus`, e.g.
`deepseek-community/Janus-Pro-1B` / `-7B`; DeepSeek's original `deepseek-ai/Janus-Pro-*` repositories use another
layout and are refused with a message), loaded with `JanusForConditionalGeneration` and its tokenizer;
`trust_remote_code` stays off.

Decoding is raster-order AR as in Janus-Pro's sampler (shared/method.md section 2), behind the same contract as
`generators/raster.py`:
- the prompt is Janus's generation format `<BOS><|User|>: {prompt}\\n\\n<|Assistant|>:<begin_of_image>`; the
  unconditional row keeps BOS and `<begin_of_image>` and turns every other prompt token into the pad token (Janus's
  own rule). Prompts are left-padded (masked) to `prompt_len` tokens, so a row's numbers never depend on the batch;
- cond and uncond rows run as one batch of 2B rows with one KV cache; guidance is `(1 + g) cond - g uncond`
  (g = 4 is Janus-Pro's `cfg_weight` 5), sampling by Gumbel-max at `temperature`, each token row's noise keyed by
  (seed, row) like the shapes AR model;
- a verification step is `rows_per_step` token rows (default 2: 12 steps for Janus-Pro's 24x24 grid); the step's
  preview decodes the rows so far with a striped placeholder for the rest;
- a guided forward counts 2 passes per row (cond and uncond), an unguided one 1;
- `log_prob` is the exact sequence log-likelihood under the conditional model (teacher forcing), for DPO.

The KV cache of a state is held in preallocated buffers (rows, heads, prompt_len + N - 1, head dim): appending a
token writes in place instead of re-concatenating the whole cache, and rows still select, fork and concatenate
like any GenState tensor. `step` copies the buffers once on entry, so a state is never changed by stepping it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core import GenState
from ..sampling import guided_logits, sample_with_gumbel
from .devices import Placement, check_fits, count_parameters
from .gen_common import cache_kwarg, check_ref, decode_in_chunks, paint_placeholder, quiet_transformers, row_noise

BOI_TOKEN = "<begin_of_image>"


@dataclass(frozen=True)
class JanusDecoding:
    guidance: float = 4.0  # g in (1 + g) cond - g uncond; Janus-Pro samples with cfg_weight 5 = 1 + g
    temperature: float = 1.0
    rows_per_step: int = 2  # token rows per verification step
    prompt_len: int = 64  # prompts are left-padded to this many tokens (longer ones to the batch's longest)
    template: str = "<|User|>: {prompt}\n\n<|Assistant|>:"
    decode_batch: int = 16  # rows per VQ-decoder call


@dataclass(frozen=True)
class JanusGenConfig:
    source: str  # the hub id or folder the weights came from
    decoding: JanusDecoding = JanusDecoding()


def uncond_ids(text: torch.Tensor, keep: tuple[int, ...], pad: int) -> torch.Tensor:
    """Janus's unconditional prompt: every token except BOS / <begin_of_image> (and padding) becomes the pad token."""
    kept = torch.zeros_like(text, dtype=torch.bool)
    for token in keep:
        kept |= text == token
    return torch.where(kept, text, torch.full_like(text, pad))


def attention_bias(valid: torch.Tensor, queries: int, dtype: torch.dtype) -> torch.Tensor:
    """(R, 1, queries, K) additive mask for the last `queries` of K positions: causal, never to an invalid (padding)
    key; a padding query sees itself only, so no row is empty and no NaN can reach the KV cache on any device."""
    k = valid.shape[1]
    q_pos, k_pos = torch.arange(k - queries, k, device=valid.device), torch.arange(k, device=valid.device)
    allowed = (k_pos[None, :] <= q_pos[:, None])[None] & valid[:, None, :]
    allowed |= (k_pos[None, :] == q_pos[:, None])[None] & ~valid[:, k - queries :, None]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=valid.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def prompt_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at the first real token (pads get 0 too; they are masked)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class _BufferLayer:
    """Factory of a transformers DynamicLayer over preallocated (R, H, capacity, D) buffers (built lazily so that
    transformers is imported only when a Janus model is used)."""

    cls = None

    @classmethod
    def make(cls, keys: torch.Tensor, values: torch.Tensor, length: int):
        if cls.cls is None:
            from transformers.cache_utils import DynamicLayer

            class BufferLayer(DynamicLayer):
                def __init__(self, keys, values, length):
                    super().__init__()
                    self.buf_k, self.buf_v, self.length = keys, values, length
                    self.is_initialized, self.dtype, self.device = True, keys.dtype, keys.device
                    self._expose()

                def _expose(self):
                    self.keys = self.buf_k[:, :, : self.length]
                    self.values = self.buf_v[:, :, : self.length]

                def lazy_initialization(self, key_states, value_states):  # pragma: no cover - always initialised
                    raise RuntimeError("buffer layers are created initialised")

                def update(self, key_states, value_states, *args, **kwargs):
                    n = key_states.shape[-2]
                    self.buf_k[:, :, self.length : self.length + n] = key_states
                    self.buf_v[:, :, self.length : self.length + n] = value_states
                    self.length += n
                    self._expose()
                    return self.keys, self.values

            cls.cls = BufferLayer
        return cls.cls(keys, values, length)


def _shared_buffer(cond, uncond, length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (keys, values) buffers that `cond` (and `uncond`) are exactly the row halves of, if their frontier is
    `length` (written by the step that made this state and by nothing since); else None."""
    out = []
    for i in range(2):
        part, base = cond[i], cond[i]._base
        if base is None or getattr(base, "_imgcot_frontier", None) != length or part.data_ptr() != base.data_ptr():
            return None
        rows = part.shape[0]
        if uncond is not None and (uncond[i]._base is not base or uncond[i].data_ptr() != base[rows:].data_ptr()):
            return None
        if base.shape[0] != rows * (1 if uncond is None else 2):
            return None
        out.append(base)
    return out[0], out[1]


def _make_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], length: int):
    from transformers.cache_utils import Cache, DynamicCache

    cache = DynamicCache.__new__(DynamicCache)
    Cache.__init__(cache, layers=[_BufferLayer.make(k, v, length) for k, v in layers])
    return cache


class JanusGenerator:
    """Janus-Pro behind the StepwiseGenerator contract (core.py); see the module docstring."""

    KIND = "hf-janus"
    causal = True

    def __init__(self, config: JanusGenConfig, model, tokenizer):
        self.config, self.model, self.tokenizer = config, model, tokenizer
        vq = model.config.vq_config
        self.vocab = vq.num_embeddings
        self.grid = vq.num_patches
        self.undecided = self.vocab  # token id meaning "not generated yet"
        self.image_size = self.grid * 2 ** (len(vq.channel_multiplier) - 1)
        self.pad, self.bos, self.boi = _special_ids(model, tokenizer)
        self._cache_kw = cache_kwarg(model.model.language_model.forward)

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name: str, placement: Placement | None = None, decoding: JanusDecoding | None = None
    ) -> JanusGenerator:
        quiet_transformers()
        from transformers import AutoTokenizer, JanusConfig, JanusForConditionalGeneration, PretrainedConfig

        device, dtype = (placement or Placement()).resolve()
        name = check_ref(name, "hf-janus")
        model_type = PretrainedConfig.get_config_dict(name)[0].get("model_type")
        if model_type != "janus":
            raise ValueError(
                f"hf-janus:{name} has model_type {model_type!r}, not 'janus': use a transformers-format Janus "
                f"checkpoint such as deepseek-community/Janus-Pro-1B"
            )
        config = JanusConfig.from_pretrained(name)
        check_fits(f"hf-janus:{name}", count_parameters(lambda: JanusForConditionalGeneration(config)), device, dtype)
        model = JanusForConditionalGeneration.from_pretrained(name, dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(name)
        return cls(JanusGenConfig(str(name), decoding or JanusDecoding()), model, tokenizer)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Weights and tokenizer in transformers' format (what `hf-janus:<folder>` loads)."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return Path(folder)

    def with_decoding(self, **changes) -> JanusGenerator:
        config = replace(self.config, decoding=replace(self.config.decoding, **changes))
        return type(self)(config, self.model, self.tokenizer)

    # --- sizes ----------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    @property
    def codebook_size(self) -> int:
        return self.vocab

    @property
    def num_steps(self) -> int:
        return math.ceil(self.grid / self.config.decoding.rows_per_step)

    @property
    def passes_per_forward(self) -> int:
        return 2 if self.config.decoding.guidance != 0 else 1

    def is_done(self, state: GenState) -> bool:
        return state.step >= self.num_steps

    def _fed(self, step: int) -> int:
        """Image tokens fed through the model after `step` steps (the last token is sampled, never fed)."""
        rows = min(step * self.config.decoding.rows_per_step, self.grid)
        return min(rows * self.grid, self.num_tokens - 1)

    # --- prompts --------------------------------------------------------------------------------------------------
    def prompt_ids(self, prompts: list[str]) -> torch.Tensor:
        """(B, P) left-padded ids of `<BOS>{template}<begin_of_image>`; P = max(prompt_len, longest)."""
        d = self.config.decoding
        head = [self.bos] if self.bos is not None else []
        rows = [
            head + self.tokenizer.encode(d.template.format(prompt=p), add_special_tokens=False) + [self.boi]
            for p in prompts
        ]
        width = max([d.prompt_len] + [len(r) for r in rows])
        return torch.tensor([[self.pad] * (width - len(r)) + r for r in rows], dtype=torch.long)

    def _rows(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ids and attention mask (R, P) of the rows a forward runs: cond rows, then uncond rows if guided."""
        mask = text != self.pad
        keep = tuple(t for t in (self.bos, self.boi) if t is not None)
        if self.passes_per_forward == 2:
            return torch.cat([text, uncond_ids(text, keep, self.pad)]), torch.cat([mask, mask])
        return text, mask

    # --- the network ----------------------------------------------------------------------------------------------
    def _forward(self, embeds, valid, positions, cache) -> torch.Tensor:
        """Guided logits (B, V) in float32 of the next image token from one forward of all rows; `valid` (R, K)
        marks the non-padding positions of the whole sequence so far."""
        lm = self.model.model.language_model
        out = lm(
            inputs_embeds=embeds,
            attention_mask=attention_bias(valid, embeds.shape[1], embeds.dtype),
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        logits = self.model.model.generation_head(out.last_hidden_state[:, -1]).float()
        if self.passes_per_forward == 2:
            cond, uncond = logits.chunk(2)
            return guided_logits(cond, uncond, self.config.decoding.guidance)
        return logits

    def _new_cache(self, rows: int, capacity: int):
        cfg = self.model.config.text_config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        shape = (rows, kv_heads, capacity, head_dim)
        dtype, device = next(self.model.parameters()).dtype, self.device
        layers = [
            (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
            for _ in range(cfg.num_hidden_layers)
        ]
        return _make_cache(layers, 0)

    def _state_cache(self, state: GenState):
        """One cache over all rows (cond then uncond) for stepping `state`. The state's buffers are reused in place
        when it is their frontier (nobody has written past its length, e.g. the state a step just returned);
        otherwise (a state stepped twice, or rows selected / forked / concatenated) they are copied first, so
        stepping never changes another state's cache."""
        length = state.text.shape[1] + self._fed(state.step)
        shared = [
            _shared_buffer(c, u, length)
            for c, u in zip(state.cache, state.uncond_cache or [None] * len(state.cache), strict=True)
        ]
        if all(pair is not None for pair in shared):
            return _make_cache(shared, length)
        if state.uncond_cache is None:
            layers = [(k.clone(), v.clone()) for k, v in state.cache]
        else:
            pairs = zip(state.cache, state.uncond_cache, strict=True)
            layers = [(torch.cat([k, uk]), torch.cat([v, uv])) for (k, v), (uk, uv) in pairs]
        layers = [(k.to(self.device), v.to(self.device)) for k, v in layers]
        return _make_cache(layers, length)

    def _store_cache(self, state: GenState, cache) -> None:
        """The state's cond / uncond caches become views of the step's buffers, which record their frontier."""
        b = state.batch
        for layer in cache.layers:
            layer.buf_k._imgcot_frontier = layer.buf_v._imgcot_frontier = layer.length
        layers = [(layer.buf_k, layer.buf_v) for layer in cache.layers]
        state.cache = [(k[:b], v[:b]) for k, v in layers]
        state.uncond_cache = [(k[b:], v[b:]) for k, v in layers] if self.passes_per_forward == 2 else None

    # --- the contract ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def init(self, prompts: list[str], seeds: list[int]) -> GenState:
        """Prefill the prompt rows (cond and uncond in one batch) and keep the guided logits of the first token."""
        b, n = len(prompts), self.num_tokens
        text = self.prompt_ids(prompts)
        empty = torch.full((b, n), self.undecided, dtype=torch.long)
        state = GenState(list(prompts), list(seeds), text, empty, empty.clone(), 0, forwards=[0] * b)
        ids, mask = self._rows(text)
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = self._new_cache(ids.shape[0], text.shape[1] + n - 1)
        embeds = self.model.get_input_embeddings()(ids)
        state.next_logits = self._forward(embeds, mask, prompt_positions(mask), cache)
        self._store_cache(state, cache)
        self._count(state)
        return state

    @torch.no_grad()
    def step(self, state: GenState) -> GenState:
        """Sample the next `rows_per_step` token rows, one cached forward of all rows per token."""
        return self._advance(state, None)

    def _advance(self, state: GenState, teacher: torch.Tensor | None) -> GenState:
        """One step: sample each token (or take it from `teacher`, for replays), feed it, keep the next logits."""
        d, grid, n = self.config.decoding, self.grid, self.num_tokens
        new = replace(state, tokens=state.tokens.clone(), step=state.step + 1, forwards=list(state.forwards))
        new.next_logits = state.next_logits.to(self.device)
        cache = self._state_cache(state)
        ids, mask = self._rows(state.text)
        full_mask = torch.cat([mask, torch.ones(mask.shape[0], n, dtype=torch.bool)], 1).to(self.device)
        start = mask.sum(1).to(self.device)  # position of image token 0 per row
        length = state.text.shape[1] + self._fed(state.step)
        tokens = new.tokens.to(self.device)
        for row in range(state.step * d.rows_per_step, min(new.step * d.rows_per_step, grid)):
            if teacher is None:
                noise = row_noise(state.seeds, row, (grid, self.vocab), self.device)
            for col in range(grid):
                index = row * grid + col
                if teacher is None:
                    token = sample_with_gumbel(new.next_logits, noise[:, col], d.temperature)
                else:
                    token = teacher[:, index].to(self.device)
                tokens[:, index] = token
                if index + 1 < n:
                    both = token.repeat(mask.shape[0] // state.batch)[:, None]
                    embeds = self.model.prepare_embeddings_for_image_generation(both)
                    positions = (start + index)[:, None]
                    new.next_logits = self._forward(embeds, full_mask[:, : length + 1], positions, cache)
                    length += 1
                    self._count(new)
        new.tokens = tokens.cpu()
        new.predicted = new.tokens
        self._store_cache(new, cache)
        return new

    def _count(self, state: GenState) -> None:
        state.forwards = [f + self.passes_per_forward for f in state.forwards]

    def tokens_to_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, H, W, 3) uint8 on the CPU; positions without a token show the striped placeholder."""
        undecided = tokens >= self.vocab
        filled = torch.where(undecided, torch.zeros_like(tokens), tokens)
        chunk = self.config.decoding.decode_batch
        images = decode_in_chunks(self.model.decode_image_tokens, filled, chunk, self.device)
        return paint_placeholder(images, undecided.cpu(), self.grid)

    def preview(self, state: GenState) -> torch.Tensor:
        return self.tokens_to_images(state.predicted)

    def decode(self, state: GenState) -> torch.Tensor:
        return self.tokens_to_images(state.tokens if self.is_done(state) else state.predicted)

    def revise(self, state: GenState, keep: torch.Tensor) -> GenState:
        """Restart at the first token row holding a position not kept; kept rows are replayed through the cache."""
        bad_rows = (~keep).view(keep.shape[0], self.grid, self.grid).any(-1).any(0).nonzero()
        first_row = int(bad_rows.min()) if len(bad_rows) else self.grid
        restart = first_row // self.config.decoding.rows_per_step
        fresh = self.init(state.prompts, state.seeds)
        fresh.forwards = [f + a for f, a in zip(state.forwards, fresh.forwards, strict=True)]
        with torch.no_grad():
            while fresh.step < restart:
                fresh = self._advance(fresh, state.tokens)
        return fresh

    def log_prob(self, prompts: list[str], tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood of image tokens (B, N) by teacher forcing under the conditional model (DPO,
        shared/method.md section 4); summed over `mask` positions only when a mask is given."""
        text = self.prompt_ids(prompts).to(self.device)
        tokens = tokens.to(self.device)
        b, p = text.shape
        text_mask = text != self.pad
        image_mask = torch.ones(b, tokens.shape[1] - 1, dtype=torch.bool, device=self.device)
        image_positions = text_mask.sum(1, keepdim=True) + torch.arange(tokens.shape[1] - 1, device=self.device)
        positions = torch.cat([prompt_positions(text_mask), image_positions], 1)
        embeds = torch.cat(
            [
                self.model.get_input_embeddings()(text),
                self.model.prepare_embeddings_for_image_generation(tokens[:, :-1]),
            ],
            1,
        )
        valid = torch.cat([text_mask, image_mask], 1)
        out = self.model.model.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_bias(valid, valid.shape[1], embeds.dtype),
            position_ids=positions,
            use_cache=False,
        )
        logits = self.model.model.generation_head(out.last_hidden_state[:, p - 1 :]).float()
        logp = F.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
        return logp.sum(-1) if mask is None else (logp * mask.to(self.device)).sum(-1)


def _special_ids(model, tokenizer) -> tuple[int, int | None, int]:
    """(pad, bos, <begin_of_image>) ids from the tokenizer, falling back to the generation config."""
    gen = getattr(model, "generation_config", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else getattr(gen, "pad_token_id", None)
    boi = tokenizer.convert_tokens_to_ids(BOI_TOKEN)
    if boi is None or boi == tokenizer.unk_token_id:
        boi = (getattr(gen, "generation_kwargs", None) or {}).get("boi_token_id")
    if pad is None or boi is None:
        raise ValueError(f"the Janus tokenizer has no pad token or no {BOI_TOKEN} token (pad={pad}, boi={boi})")
    return int(pad), tokenizer.bos_token_id, int(boi)

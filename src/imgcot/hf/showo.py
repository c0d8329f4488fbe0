"""Show-o as a step-wise generator: `--model hf-showo:<folder or hub id>`, our own code over transformers' Phi.

Show-o (Xie et al. 2024) is a Phi-1.5 language model whose vocabulary is extended with 10 special tokens, the 8,192
MAGVIT-v2 image codes and a mask token, decoding an image by masked-token parallel decoding with an omni-attention
mask (text tokens causal, image tokens attend to every non-padding token). Decoding follows
`generators/maskgit.py` exactly (shared/method.md section 2): T = 18 steps, guidance `(1 + g) cond - g uncond` with
g = 1.75, cosine schedule, Gumbel re-masking with a choice temperature annealed linearly to 0 and recomputed every
step (never compounded), per-row noise keyed by (seed, step). A step's preview decodes its full predicted token map.
`log_prob` is the masked-position estimate DPO uses (method.md section 4) under the conditional model.

Checkpoint layout it expects (our reading of the published Show-o code and `showlab/show-o` /
`showlab/magvitv2` repositories; NOT verified against the real weights on this machine):

    <folder>/config.json        Show-o's config: vocab_size (58498), llm_vocab_size (50295), codebook_size (8192),
                                num_vq_tokens (256), optional num_new_special_tokens (10), llm_model_path
    <folder>/*.safetensors      Show-o's weights: `showo.model.embed_tokens.weight`,
                                `showo.model.layers.<i>.self_attn.{q_proj,k_proj,v_proj,dense}.*`,
                                `showo.model.layers.<i>.mlp.{fc1,fc2}.*`, `showo.model.layers.<i>.input_layernorm.*`,
                                `showo.model.final_layernorm.*`, `showo.lm_head.{weight,bias}`
                                (`mm_projector.*` of the CLIP-ViT variant is ignored)
    <folder>/llm/               Phi-1.5's config.json and tokenizer files (else `llm_model_path`, e.g.
                                microsoft/phi-1_5, is loaded)
    <folder>/vq/                MAGVIT-v2: config.json (sizes optional, defaults = showlab/magvitv2) and
                                *.safetensors with `decoder.*` (`encoder.*`, `quantize.*` are ignored); else
                                `vq_model_name` from config.json or showlab/magvitv2 is loaded

Only safetensors are read. The published Show-o repositories ship `pytorch_model.bin`: convert it once to
`model.safetensors` (README, "Using real models"). The tokenizer gets Show-o's additions in Show-o's order (`[PAD]`
as pad token, then `<|soi|> <|eoi|> <|sov|> <|eov|> <|t2i|> <|mmu|> <|t2v|> <|v2v|> <|lvg|>`), which must land on
ids llm_vocab_size .. llm_vocab_size + 9; image code c is token llm_vocab_size + 10 + c and the mask token is
vocab_size - 1. A prompt is `[PAD]* <|t2i|> BOS text EOS` left-padded to text_len + 1 = 129 tokens, then
`<|soi|>` image `<|eoi|>`; the unconditional row has the empty text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core import GenState
from ..sampling import choice_temperature, get_schedule, guided_logits, masked_count, sample_with_gumbel
from .devices import Placement, check_fits
from .gen_common import decode_in_chunks, local_or_hub, quiet_transformers, row_noise
from .magvit import MagvitConfig, MagvitDecoder

SHOWO_SPECIALS = ("<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")
PAD_TOKEN = "[PAD]"


@dataclass(frozen=True)
class ShowoLayout:
    """Vocabulary layout from Show-o's config.json."""

    vocab_size: int = 58498
    llm_vocab_size: int = 50295
    codebook_size: int = 8192
    num_vq_tokens: int = 256
    num_new_special_tokens: int = 10

    @property
    def code_offset(self) -> int:
        return self.llm_vocab_size + self.num_new_special_tokens

    @property
    def mask_token_id(self) -> int:
        return self.vocab_size - 1


@dataclass(frozen=True)
class ShowoDecoding:
    num_steps: int = 18  # T in the paper
    guidance: float = 1.75  # g in (1 + g) cond - g uncond
    temperature: float = 1.0  # token sampling temperature
    choice_temperature: float = 1.0  # re-masking noise at step 0, annealed linearly to 0 (Show-o's value)
    schedule: str = "cosine"
    text_len: int = 128  # Show-o's max_seq_length: the text part is text_len + 1 tokens
    decode_batch: int = 16  # rows per MAGVIT decoder call


@dataclass(frozen=True)
class ShowoGenConfig:
    source: str
    layout: ShowoLayout
    magvit: MagvitConfig
    decoding: ShowoDecoding = ShowoDecoding()


class ShowoModel(nn.Module):
    """The trainable network: `showo` (PhiForCausalLM over the extended vocabulary) and `vq` (MAGVIT-v2 decoder)."""

    def __init__(self, showo: nn.Module, vq: MagvitDecoder):
        super().__init__()
        self.showo, self.vq = showo, vq


# --- sequences and the attention mask (pure) --------------------------------------------------------------------
def text_part(token_lists: list[list[int]], text_len: int, t2i: int, bos: int, eos: int, pad: int) -> torch.Tensor:
    """(B, text_len + 1) `[PAD]* <|t2i|> BOS text EOS`, left-padded; a too-long text is cut and ends with EOS."""
    width, rows = text_len + 1, []
    for ids in token_lists:
        ids = list(ids) if ids and ids[0] == bos else [bos] + list(ids)
        seq = [t2i] + ids + [eos]
        seq = [pad] * (width - len(seq)) + seq if len(seq) <= width else seq[: width - 1] + [eos]
        rows.append(seq)
    return torch.tensor(rows, dtype=torch.long)


def omni_mask(ids: torch.Tensor, pad: int, soi: int, eoi: int) -> torch.Tensor:
    """(R, 1, L, L) bool, True = may attend. Text rows are causal; rows from <|soi|> to <|eoi|> see the whole
    sequence; nobody attends to padding (a padding row sees itself only, so no row is empty)."""
    length = ids.shape[1]
    is_pad = ids == pad
    image = (ids == soi).cumsum(1) > (ids == eoi).cumsum(1)
    image |= ids == eoi
    causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
    rows = torch.where(image[:, :, None], torch.ones_like(causal)[None], causal[None])
    allowed = rows & ~is_pad[:, None, :]
    eye = torch.eye(length, dtype=torch.bool, device=ids.device)[None]
    return (allowed | (eye & is_pad[:, :, None]))[:, None]


class ShowoGenerator:
    """Show-o behind the StepwiseGenerator contract (core.py); see the module docstring."""

    KIND = "hf-showo"
    causal = False

    def __init__(self, config: ShowoGenConfig, model: ShowoModel, tokenizer):
        self.config, self.model, self.tokenizer = config, model, tokenizer
        layout = config.layout
        self.undecided = layout.codebook_size  # MASK of the token map (not the LM's mask token id)
        self.grid = model.vq.grid
        if self.grid**2 != layout.num_vq_tokens:
            raise ValueError(f"MAGVIT grid {self.grid}^2 != Show-o's num_vq_tokens {layout.num_vq_tokens}")
        if model.vq.config.codebook_size != layout.codebook_size:
            raise ValueError(f"MAGVIT codebook {model.vq.config.codebook_size} != Show-o's {layout.codebook_size}")
        self.image_size = model.vq.config.resolution
        self.ids = _special_ids(tokenizer, layout)

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name: str, placement: Placement | None = None, decoding: ShowoDecoding | None = None
    ) -> ShowoGenerator:
        quiet_transformers()
        from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

        device, dtype = (placement or Placement()).resolve()
        root = local_or_hub(name, "hf-showo")
        raw = json.loads((root / "config.json").read_text())
        layout = _layout(raw, root)
        llm_dir = _part(root, "llm", raw.get("llm_model_path", "microsoft/phi-1_5"))
        vq_dir = _part(root, "vq", raw.get("vq_model_name", "showlab/magvitv2"))
        phi = PhiConfig.from_pretrained(llm_dir)
        phi.vocab_size = layout.vocab_size
        magvit = _magvit_config(vq_dir)
        with torch.device("meta"):
            size = sum(p.numel() for p in ShowoModel(PhiForCausalLM(phi), MagvitDecoder(magvit)).parameters())
        check_fits(f"hf-showo:{name}", size, device, dtype)
        model = ShowoModel(PhiForCausalLM(phi), MagvitDecoder(magvit))
        model.showo.load_state_dict(_weights(root, "showo.", ("mm_projector.",)), strict=True)
        model.vq.load_state_dict(_weights(vq_dir, "decoder.", ("encoder.", "quantize.")), strict=True)
        model = model.to(device=device, dtype=dtype).eval()
        tokenizer = AutoTokenizer.from_pretrained(llm_dir)
        return cls(ShowoGenConfig(str(name), layout, magvit, decoding or ShowoDecoding()), model, tokenizer)

    def save_pretrained(self, folder: str | Path) -> Path:
        """The layout `from_pretrained` reads: config.json + model.safetensors, llm/ (Phi config, tokenizer), vq/."""
        from safetensors.torch import save_file

        folder = Path(folder)
        (folder / "vq").mkdir(parents=True, exist_ok=True)
        raw = {"_class_name": "Showo", **asdict(self.config.layout), "llm_model_path": "llm"}
        raw["mask_token_id"] = self.config.layout.mask_token_id
        (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
        state = {f"showo.{k}": v.contiguous() for k, v in self.model.showo.state_dict().items()}
        if _tied(self.model.showo):
            state.pop("showo.lm_head.weight")
        save_file(state, str(folder / "model.safetensors"))
        self.model.showo.config.save_pretrained(folder / "llm")
        self.tokenizer.save_pretrained(folder / "llm")
        vq = {"_class_name": "MAGVITv2", **asdict(self.config.magvit)}
        (folder / "vq" / "config.json").write_text(json.dumps(vq, indent=2) + "\n")
        save_file(
            {f"decoder.{k}": v.contiguous() for k, v in self.model.vq.state_dict().items()},
            str(folder / "vq" / "model.safetensors"),
        )
        return folder

    def with_decoding(self, **changes) -> ShowoGenerator:
        config = replace(self.config, decoding=replace(self.config.decoding, **changes))
        return type(self)(config, self.model, self.tokenizer)

    # --- sizes ----------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_steps(self) -> int:
        return self.config.decoding.num_steps

    @property
    def num_tokens(self) -> int:
        return self.config.layout.num_vq_tokens

    @property
    def codebook_size(self) -> int:
        return self.config.layout.codebook_size

    @property
    def passes_per_forward(self) -> int:
        return 2 if self.config.decoding.guidance != 0 else 1

    def is_done(self, state: GenState) -> bool:
        return state.step >= self.num_steps

    # --- the network ----------------------------------------------------------------------------------------------
    def prompt_ids(self, prompts: list[str]) -> torch.Tensor:
        """(B, text_len + 1) text parts of Show-o's t2i sequence."""
        ids = self.ids
        tokens = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        return text_part(tokens, self.config.decoding.text_len, ids["t2i"], ids["bos"], ids["eos"], ids["pad"])

    def _sequence(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(R, L) `text <|soi|> image <|eoi|>`; undecided codes become Show-o's mask token."""
        layout, ids = self.config.layout, self.ids
        image = torch.where(tokens == self.undecided, layout.mask_token_id, tokens + layout.code_offset)
        col = lambda t: torch.full((text.shape[0], 1), t, dtype=torch.long)  # noqa: E731
        return torch.cat([text, col(ids["soi"]), image.cpu(), col(ids["eoi"])], 1)

    def code_logits(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(R, N, codebook) logits of the image codes (float32): one forward; the LM head is applied to the image
        positions and the code rows only (the full-vocabulary logits of every position are never formed)."""
        seq = self._sequence(text, tokens).to(self.device)
        ids = self.ids
        allowed = omni_mask(seq, ids["pad"], ids["soi"], ids["eoi"])
        dtype = next(self.model.parameters()).dtype
        bias = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        bias.masked_fill_(~allowed, torch.finfo(dtype).min)
        hidden = self.model.showo.model(input_ids=seq, attention_mask=bias).last_hidden_state
        n, layout = tokens.shape[1], self.config.layout
        head = self.model.showo.lm_head
        rows = slice(layout.code_offset, layout.code_offset + layout.codebook_size)
        bias_rows = None if head.bias is None else head.bias[rows]
        return F.linear(hidden[:, -(n + 1) : -1], head.weight[rows], bias_rows).float()

    def guided(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Guided code logits (B, N, K): cond and uncond rows in one batched forward."""
        g = self.config.decoding.guidance
        if g == 0:
            return self.code_logits(text, tokens)
        uncond = self.prompt_ids([""]).expand(text.shape[0], -1)
        cond, unc = self.code_logits(torch.cat([text, uncond]), torch.cat([tokens, tokens])).chunk(2)
        return guided_logits(cond, unc, g)

    # --- the contract (generators/maskgit.py semantics) -------------------------------------------------------------
    def init(self, prompts: list[str], seeds: list[int]) -> GenState:
        b, n = len(prompts), self.config.layout.num_vq_tokens
        masked = torch.full((b, n), self.undecided, dtype=torch.long)
        return GenState(
            list(prompts), list(seeds), self.prompt_ids(prompts), masked, masked.clone(), 0, forwards=[0] * b
        )

    @torch.no_grad()
    def step(self, state: GenState) -> GenState:
        """One iteration: predict every masked token, keep the most confident, re-mask the rest by schedule."""
        d, n, k = self.config.decoding, state.tokens.shape[1], self.config.layout.codebook_size
        unknown = (state.tokens == self.undecided).to(self.device)
        current = state.tokens.to(self.device)
        logits = self.guided(state.text, state.tokens)  # (B, N, K)
        noise = row_noise(state.seeds, state.step, (n, k + 1), self.device)
        sampled = torch.where(unknown, sample_with_gumbel(logits, noise[..., :k], d.temperature), current)
        confidence = F.log_softmax(logits, -1).gather(-1, sampled[..., None])[..., 0]
        confidence = torch.where(unknown, confidence, torch.full_like(confidence, float("inf")))
        counts = [masked_count(state.step, d.num_steps, n, int(u), d.schedule) for u in unknown.sum(1).tolist()]
        temperature = choice_temperature(d.choice_temperature, state.step, d.num_steps)
        ranks = (confidence + temperature * noise[..., k]).argsort(-1).argsort(-1)
        remask = ranks < torch.tensor(counts, device=self.device)[:, None]
        tokens = torch.where(remask, torch.full_like(sampled, self.undecided), sampled)
        forwards = [f + self.passes_per_forward for f in state.forwards]
        return GenState(
            state.prompts, state.seeds, state.text, tokens.cpu(), sampled.cpu(), state.step + 1, forwards=forwards
        )

    def revise(self, state: GenState, keep: torch.Tensor) -> GenState:
        """Re-mask positions where `keep` is False and resume the schedule where that many tokens are masked."""
        d = self.config.decoding
        tokens = torch.where(keep, state.tokens, torch.full_like(state.tokens, self.undecided))
        unknown, n = int((tokens == self.undecided).sum(1).max()), tokens.shape[1]
        schedule = get_schedule(d.schedule)
        start = max([s for s in range(1, d.num_steps) if n * schedule(s - 1, d.num_steps) >= unknown], default=0)
        return GenState(
            state.prompts, state.seeds, state.text, tokens, tokens.clone(), start, forwards=list(state.forwards)
        )

    def tokens_to_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) codes -> (B, H, W, 3) uint8 on the CPU (a still-masked code decodes as code 0)."""
        filled = torch.where(tokens >= self.undecided, torch.zeros_like(tokens), tokens)
        return decode_in_chunks(self.model.vq.decode_codes, filled, self.config.decoding.decode_batch, self.device)

    def preview(self, state: GenState) -> torch.Tensor:
        return self.tokens_to_images(state.predicted)

    def decode(self, state: GenState) -> torch.Tensor:
        return self.tokens_to_images(state.tokens if self.is_done(state) else state.predicted)

    def log_prob(
        self,
        prompts: list[str],
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        scored: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-position estimate (DPO): sum of log p(true code) over `scored` (default: every masked position)
        given the codes outside `mask` (default: all masked), from one conditional forward; probabilities over the
        image codes, as in sampling."""
        tokens = tokens.to(self.device)
        mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.to(self.device)
        scored = mask if scored is None else scored.to(self.device)
        inputs = torch.where(mask, torch.full_like(tokens, self.undecided), tokens)
        logits = self.code_logits(self.prompt_ids(prompts), inputs)
        logp = F.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
        return (logp * scored).sum(-1)


# --- loading helpers ----------------------------------------------------------------------------------------------
def _layout(raw: dict, root: Path) -> ShowoLayout:
    missing = [k for k in ("vocab_size", "llm_vocab_size") if k not in raw]
    if missing:
        raise ValueError(f"{root / 'config.json'}: not a Show-o config (missing {', '.join(missing)})")
    known = {f.name for f in fields(ShowoLayout)}
    return ShowoLayout(**{k: int(v) for k, v in raw.items() if k in known})


def _part(root: Path, sub: str, fallback: str) -> Path:
    """A sub-folder of the checkpoint (llm/, vq/) when present, else the hub id or folder the config names."""
    return root / sub if (root / sub).is_dir() else local_or_hub(fallback, sub)


def _magvit_config(folder: Path) -> MagvitConfig:
    path = folder / "config.json"
    raw = json.loads(path.read_text()) if path.is_file() else {}
    known = {f.name: f for f in fields(MagvitConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return MagvitConfig(**values)


def _weights(folder: Path, prefix: str, ignored: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors under `prefix` (prefix removed) from every *.safetensors in `folder`; unknown prefixes are an error."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        bins = ", ".join(p.name for p in folder.glob("*.bin")) or "none"
        raise FileNotFoundError(
            f"{folder}: no *.safetensors weights (found .bin: {bins}); convert them to model.safetensors first"
        )
    out, unknown = {}, []
    for file in files:
        for key, value in load_file(str(file)).items():
            if key.startswith(prefix):
                out[key[len(prefix) :]] = value
            elif not key.startswith(ignored) and not key.endswith("rotary_emb.inv_freq"):
                unknown.append(key)
    if unknown:
        raise ValueError(f"{folder}: unexpected weights {unknown[:5]} ({len(unknown)} in all)")
    return {k: v for k, v in out.items() if not k.endswith("rotary_emb.inv_freq")}


def _tied(lm: nn.Module) -> bool:
    return lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()


def _special_ids(tokenizer, layout: ShowoLayout) -> dict[str, int]:
    """Add Show-o's tokens as Show-o does ([PAD] as pad, then the nine task/boundary tokens) and check their ids."""
    if tokenizer.pad_token != PAD_TOKEN:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.add_tokens(list(SHOWO_SPECIALS))
    for k, token in enumerate((PAD_TOKEN, *SHOWO_SPECIALS)):
        got, want = tokenizer.convert_tokens_to_ids(token), layout.llm_vocab_size + k
        if got != want:
            raise ValueError(
                f"Show-o tokenizer: {token} has id {got}, expected {want} (llm_vocab_size + {k}); the tokenizer "
                f"does not match this checkpoint"
            )
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("Show-o tokenizer needs BOS and EOS tokens (Phi-1.5's <|endoftext|>)")
    ids = {name.strip("<|>"): tokenizer.convert_tokens_to_ids(name) for name in SHOWO_SPECIALS}
    return {**ids, "pad": tokenizer.pad_token_id, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id}

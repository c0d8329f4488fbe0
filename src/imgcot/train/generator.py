"""Training recipe for the shapes generators (MaskGIT and raster AR), resumable, with a learning curve.

Recipe from the feasibility notes in shared/shapes-world.md: small batch for steps per second, AdamW
(0.9, 0.98), weight decay 0.05, warm-up then cosine decay, gradient clipping 1.0, 10% prompt dropout (for
classifier-free guidance) and EMA weights. Data are drawn fresh every step.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import write_text_atomic
from ..generators.base import DecodingConfig, GeneratorConfig, TokenGenerator
from ..generators.maskgit import MaskGITGenerator
from ..generators.raster import RasterGenerator
from ..nn.io import config_from_dict
from ..nn.tokenizer import PatchTokenizer
from ..nn.transformer import Transformer, TransformerConfig
from ..worlds.shapes.text import WORDS, null_prompts
from .data import token_batch
from .state import has_state, read_state, restore_training, save_training

GENERATORS = {"maskgit": MaskGITGenerator, "ar": RasterGenerator}


@dataclass(frozen=True)
class TrainConfig:
    kind: str = "maskgit"
    dim: int = 128
    depth: int = 4
    heads: int = 4
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 300
    max_steps: int = 12000
    minutes: float = 60.0  # wall-clock budget; training stops at whichever limit comes first
    weight_decay: float = 0.05
    clip: float = 1.0
    prompt_dropout: float = 0.1
    ema: float = 0.995
    seed: int = 0
    eval_every: int = 1000
    checkpoint_every: int = 500
    eval_prompts_per_tag: int = 8
    eval_images_per_prompt: int = 2


# The shipped models' recipes: `imgcot train maskgit|ar` reruns exactly these.
RECIPES = {
    "maskgit": TrainConfig(kind="maskgit", max_steps=3_000, minutes=180.0, eval_every=250),
    "ar": TrainConfig(kind="ar", max_steps=1_500, minutes=180.0, eval_every=250),
}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak at max_steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def maskgit_loss(model: Transformer, text: torch.Tensor, tokens: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mask a cosine-distributed fraction of tokens; cross-entropy on the masked positions."""
    b, n = tokens.shape
    ratio = torch.cos(math.pi / 2 * torch.rand(b, generator=gen))  # drawn on the CPU on every device
    count = (ratio * n).ceil().clamp(min=1)
    ranks = torch.rand(b, n, generator=gen).argsort(-1).argsort(-1)
    mask = (ranks < count[:, None]).to(tokens.device)
    inputs = torch.where(mask, torch.full_like(tokens, model.config.image_vocab), tokens)
    logits = model(text, inputs)[0]
    return F.cross_entropy(logits[mask], tokens[mask])


def ar_loss(model: Transformer, text: torch.Tensor, tokens: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Next-token cross-entropy in raster order after a BOS token."""
    bos = torch.full((tokens.shape[0], 1), model.config.image_vocab, dtype=torch.long, device=tokens.device)
    logits = model(text, torch.cat([bos, tokens[:, :-1]], 1))[0]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


LOSSES = {"maskgit": maskgit_loss, "ar": ar_loss}


def build_generator(cfg: TrainConfig, tokenizer: PatchTokenizer, decoding: DecodingConfig) -> TokenGenerator:
    tcfg = TransformerConfig(
        len(WORDS),
        tokenizer.vocab_size,
        dim=cfg.dim,
        depth=cfg.depth,
        heads=cfg.heads,
        image_len=tokenizer.config.num_tokens,
        causal=cfg.kind == "ar",
    )
    return GENERATORS[cfg.kind].from_config(GeneratorConfig(tcfg, tokenizer.config, decoding), tokenizer)


def _save_training_state(folder: Path, model, ema, optimizer, step: int, rng_state: dict, cfg: TrainConfig) -> None:
    """Model, EMA and AdamW moments as safetensors, counters as JSON; written atomically."""
    meta = {"step": step, "rng": rng_state, "config": asdict(cfg)}
    save_training(folder, {"model": model, "ema": ema}, optimizer, meta)


def _load_training_state(folder: Path, model, ema, optimizer) -> tuple[int, dict]:
    tensors, meta = read_state(folder)
    restore_training({"model": model, "ema": ema}, optimizer, tensors)
    return meta["step"], meta["rng"]


def train_generator(
    cfg: TrainConfig,
    tokenizer: PatchTokenizer,
    out: Path,
    decoding: DecodingConfig,
    evaluate=None,
    progress=None,
    device: str = "cpu",
) -> TokenGenerator:
    """Train (or resume) into `out`: checkpoint/, curve.jsonl and the final EMA generator in final/. `device` places
    the training step (a GPU makes the recipe minutes); data, random draws, checkpoints, the learning-curve
    evaluation and the returned generator stay on the CPU, so a run can resume on another device."""
    torch.manual_seed(cfg.seed)
    generator = build_generator(cfg, tokenizer, decoding)
    model = generator.model.to(device).train()
    ema = build_generator(cfg, tokenizer, decoding).model.to(device).eval()
    ema.load_state_dict(model.state_dict())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name == "pos" else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    step, rng_state = 0, None
    ckpt = out / "checkpoint"
    if has_state(ckpt):
        step, rng_state = _load_training_state(ckpt, model, ema, optimizer)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state["numpy"]
        gen.set_state(torch.tensor(rng_state["torch"], dtype=torch.uint8))
    loss_fn = LOSSES[cfg.kind]
    out.mkdir(parents=True, exist_ok=True)
    elapsed0 = _elapsed(out)
    start = time.time()
    curve = out / "curve.jsonl"
    while step < cfg.max_steps and elapsed0 + (time.time() - start) < cfg.minutes * 60:
        prompts, tokens = token_batch(rng, cfg.batch, tokenizer)
        text = generator.prompt_ids(prompts)
        drop = torch.rand(cfg.batch, generator=gen) < cfg.prompt_dropout
        text = torch.where(drop[:, None], null_prompts(cfg.batch, text.shape[1]), text)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = loss_fn(model, text.to(device), tokens.to(device), gen)
        loss_value = float(loss.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizer.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - cfg.ema)
        step += 1
        minutes = (elapsed0 + time.time() - start) / 60
        if progress is not None:
            progress(step, cfg.max_steps, loss_value, minutes)
        record = {"step": step, "minutes": round(minutes, 3), "loss": round(loss_value, 4)}
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            state = {"numpy": rng.bit_generator.state, "torch": gen.get_state().tolist()}
            _save_training_state(ckpt, model, ema, optimizer, step, state, cfg)
            _save_elapsed(out, elapsed0 + time.time() - start)
        if evaluate is not None and (step % cfg.eval_every == 0):
            record.update(evaluate(type(generator)(generator.config, _on_cpu(ema), tokenizer)))
        if step % 50 == 0 or "overall" in record:
            with curve.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    state = {"numpy": rng.bit_generator.state, "torch": gen.get_state().tolist()}
    _save_training_state(ckpt, model, ema, optimizer, step, state, cfg)
    _save_elapsed(out, elapsed0 + time.time() - start)
    final = type(generator)(generator.config, ema.cpu(), tokenizer)
    final.save_pretrained(out / "final")
    return final


def _on_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """`module` itself on a CPU, else a CPU copy (the shapes generators decode on the CPU)."""
    return module if next(module.parameters()).device.type == "cpu" else copy.deepcopy(module).cpu()


def _elapsed(out: Path) -> float:
    path = out / "checkpoint" / "elapsed.json"
    return json.loads(path.read_text())["seconds"] if path.is_file() else 0.0


def _save_elapsed(out: Path, seconds: float) -> None:
    write_text_atomic(out / "checkpoint" / "elapsed.json", json.dumps({"seconds": seconds}))


def load_train_config(data: dict) -> TrainConfig:
    return config_from_dict(TrainConfig, data)

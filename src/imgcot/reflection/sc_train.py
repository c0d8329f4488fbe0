"""Fine-tuning a shapes generator for self-correction (PARM++, shared/method.md section 3), resumable.

The shipped generator is widened for critique text (`correct.extend_for_critique`, every weight kept) and trained
on a mix per batch: plain rows (ground-truth renders, prompt only: the generator's own task, so plain generation
keeps working; 10% prompt dropout for guidance), groups from edited ground-truth scenes (fresh every step), and,
when given, groups from the generator's own failures (`sc_data.build_generated_groups`). A group is trained like
the generator's own objective restricted to its redraw region: MaskGIT masks a cosine-distributed fraction of the
region (the rest of the region shows the good tokens, outside it the bad image's); AR is teacher-forced on the good
image and scored from the first redrawn row on. Some groups drop the critique (the model also corrects from the
image alone) or redraw everything (it also corrects from the critique alone).

Run folder: checkpoint/ (model, EMA, AdamW, RNG), curve.jsonl (loss; plain quick-eval and correction rates every
`eval_every` steps), metrics.json (before/after), final/ (the EMA generator, a normal generator checkpoint).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import write_text_atomic
from ..generators.base import TokenGenerator
from ..geneval.judge import judge
from ..nn.io import config_from_dict
from ..nn.transformer import Transformer
from ..train.curve import make_curve_eval
from ..train.data import token_batch
from ..train.state import has_state
from ..worlds.shapes.detector import ShapesDetector
from ..worlds.shapes.prompts import parse_prompt
from ..worlds.shapes.text import null_prompts
from .checkpoint import adamw, load_state, lr_at, save_state
from .correct import condition_ids, extend_for_critique, localised, redraw_tokens, restart_key
from .sc_data import Groups, edit_groups

KINDS = ("maskgit", "ar")
EVAL_SEED = 4242  # held-out edit groups: a seed of their own
Progress = Callable[[int, int, float, float], None]  # (step, max_steps, loss, minutes)


@dataclass(frozen=True)
class SelfCorrectConfig:
    kind: str = "maskgit"
    batch: int = 32
    plain_frac: float = 0.3  # rows of plain generation (prompt only, full image)
    generated_frac: float = 0.15  # rows from the generator's own corrected failures (when data is given)
    lr: float = 1e-3
    warmup: int = 30
    max_steps: int = 600
    minutes: float = 30.0  # wall-clock budget; training stops at whichever limit comes first
    weight_decay: float = 0.05
    clip: float = 1.0
    ema: float = 0.99
    prompt_dropout: float = 0.1  # plain rows: the null prompt, for classifier-free guidance
    critique_dropout: float = 0.1  # groups: no critique words
    full_redraw: float = 0.15  # groups: redraw the whole image
    localize: str = "objects"  # what a group redraws (correct.LOCALIZE); match the corrector's policy
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 300
    eval_groups: int = 64
    eval_prompts_per_tag: int = 8

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown generator kind {self.kind!r}; known: {', '.join(KINDS)}")
        localised((), self.localize)


# The recipes `imgcot train self-correct` runs (the AR model moves more under the same rate: half of it).
RECIPES = {"maskgit": SelfCorrectConfig(kind="maskgit"), "ar": SelfCorrectConfig(kind="ar", lr=5e-4)}


def load_config(data: dict) -> SelfCorrectConfig:
    return config_from_dict(SelfCorrectConfig, data)


# --- batches and losses -------------------------------------------------------------------------------------------
def plain_groups(rng: np.random.Generator, count: int, tokenizer) -> Groups:
    prompts, tokens = token_batch(rng, count, tokenizer)
    return Groups(prompts, [[] for _ in prompts], tokens, tokens, torch.ones_like(tokens, dtype=torch.bool))


def training_batch(
    rng: np.random.Generator, gen: torch.Generator, cfg: SelfCorrectConfig, tokenizer, generated: Groups | None
) -> tuple[Groups, torch.Tensor]:
    """The step's rows and a (B,) bool of which are plain (for prompt dropout)."""
    n_plain = round(cfg.batch * cfg.plain_frac)
    n_gen = round(cfg.batch * cfg.generated_frac) if generated is not None and len(generated) else 0
    edits = edit_groups(rng, cfg.batch - n_plain - n_gen, tokenizer, localize=cfg.localize)
    parts = [plain_groups(rng, n_plain, tokenizer), edits]
    if n_gen:
        parts.append(generated.select(rng.integers(len(generated), size=n_gen)))
    batch = Groups.concat(parts)
    plain = torch.arange(len(batch)) < n_plain
    drop = (torch.rand(len(batch), generator=gen) < cfg.critique_dropout) & ~plain
    full = (torch.rand(len(batch), generator=gen) < cfg.full_redraw) & ~plain
    batch.critiques = [[] if d else c for c, d in zip(batch.critiques, drop.tolist(), strict=True)]
    batch.redraw = batch.redraw | full[:, None]
    return batch, plain


def maskgit_correction_loss(
    model: Transformer, text: torch.Tensor, bad: torch.Tensor, good: torch.Tensor, redraw: torch.Tensor, gen
) -> torch.Tensor:
    """MaskGIT's loss inside the redraw region: mask a cosine-distributed fraction of it, predict the good tokens."""
    b, n = good.shape
    ratio = torch.cos(math.pi / 2 * torch.rand(b, generator=gen))
    count = (ratio * redraw.sum(1)).ceil().clamp(min=1)
    scores = torch.where(redraw, torch.rand(b, n, generator=gen), torch.full((b, n), 2.0))
    mask = scores.argsort(-1).argsort(-1) < count[:, None]
    inputs = torch.where(redraw, good, bad)
    inputs = torch.where(mask, torch.full_like(inputs, model.config.image_vocab), inputs)
    logits = model(text, inputs)[0]
    return F.cross_entropy(logits[mask], good[mask])


def ar_correction_loss(
    model: Transformer, text: torch.Tensor, bad: torch.Tensor, good: torch.Tensor, redraw: torch.Tensor, gen
) -> torch.Tensor:
    """Next-token loss on the good image from the first redrawn token row on (earlier rows are kept context)."""
    b, n = good.shape
    grid = int(math.isqrt(n))
    first = redraw.view(b, grid, grid).any(-1).float().argmax(-1) * grid  # (B,) first redrawn position
    scored = torch.arange(n)[None] >= first[:, None]
    bos = torch.full((b, 1), model.config.image_vocab, dtype=torch.long)
    logits = model(text, torch.cat([bos, good[:, :-1]], 1))[0]
    return F.cross_entropy(logits[scored], good[scored])


LOSSES = {"maskgit": maskgit_correction_loss, "ar": ar_correction_loss}


# --- evaluation -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def correction_rate(generator: TokenGenerator, groups: Groups, use_critique: bool = True, seed: int = 0) -> float:
    """Fraction of groups whose redraw (the group's region, its critique or none) the evaluator accepts."""
    detector, ok = ShapesDetector(), []
    keys: dict[int, list[int]] = {}
    grid = generator.config.tokenizer.grid
    for i in range(len(groups)):
        keys.setdefault(restart_key(generator, groups.redraw[i].view(grid, grid).numpy()), []).append(i)
    for rows in keys.values():
        prompts = [groups.prompts[i] for i in rows]
        critiques = [groups.critiques[i] if use_critique else [] for i in rows]
        state = redraw_tokens(generator, prompts, [seed + i for i in rows], groups.bad[rows], ~groups.redraw[rows],
                              critiques)  # fmt: skip
        for prompt, image in zip(prompts, generator.decode(state).numpy(), strict=True):
            ok.append(judge(parse_prompt(prompt), image, detector)[0])
    return float(np.mean(ok)) if ok else math.nan


def make_evaluator(cfg: SelfCorrectConfig, tokenizer, generated_heldout: Groups | None = None):
    """generator -> {plain: quick-eval overall, fix / fix_no_critique: correction rates on held-out edits, ...}."""
    plain = make_curve_eval(cfg.eval_prompts_per_tag, 2)
    edits = edit_groups(np.random.default_rng(EVAL_SEED), cfg.eval_groups, tokenizer, consistent=False,
                        localize=cfg.localize)  # fmt: skip

    def evaluate(generator: TokenGenerator) -> dict:
        out = {"plain": plain(generator)["overall"], "fix": correction_rate(generator, edits),
               "fix_no_critique": correction_rate(generator, edits, use_critique=False)}  # fmt: skip
        if generated_heldout is not None and len(generated_heldout):
            out["fix_generated"] = correction_rate(generator, generated_heldout)
        return {k: round(v, 4) for k, v in out.items()}

    return evaluate


# --- the run ---------------------------------------------------------------------------------------------------------
def train_self_correct(
    base: TokenGenerator,
    out: str | Path,
    cfg: SelfCorrectConfig,
    generated: Groups | None = None,
    *,
    evaluate: Callable[[TokenGenerator], dict] | None = None,
    progress: Progress | None = None,
) -> TokenGenerator:
    """Fine-tune `base` (widened for critique text) into `out`; rerun with the same arguments to resume."""
    out = Path(out)
    generator = extend_for_critique(base, cfg.seed)
    model = generator.model.train()
    ema = copy.deepcopy(model).eval()
    optimizer = adamw(model, cfg.lr, cfg.weight_decay)
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    step, elapsed0, ckpt = 0, 0.0, out / "checkpoint"
    modules = {"model": model, "ema": ema}
    if has_state(ckpt):
        step, elapsed0 = load_state(ckpt, modules, optimizer, rng, gen, cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "train_config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    as_generator = lambda m: type(generator)(generator.config, m, generator.tokenizer)  # noqa: E731
    metrics = _read_metrics(out)
    if evaluate is not None and "before" not in metrics:
        metrics["before"] = {"base": evaluate(base), "widened": evaluate(as_generator(ema))}
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    start = time.time()
    while step < cfg.max_steps and elapsed0 + time.time() - start < cfg.minutes * 60:
        loss = _train_step(model, optimizer, generator, cfg, rng, gen, generated, lr_at(step, cfg.lr, cfg.warmup,
                                                                                         cfg.max_steps))  # fmt: skip
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - cfg.ema)
        step, seconds = step + 1, elapsed0 + time.time() - start
        record = {"step": step, "minutes": round(seconds / 60, 3), "loss": round(loss, 4)}
        if progress is not None:
            progress(step, cfg.max_steps, record["loss"], record["minutes"])
        if step % cfg.checkpoint_every == 0:
            save_state(ckpt, modules, optimizer, step, rng, gen, seconds, cfg)
        if evaluate is not None and step % cfg.eval_every == 0 and step < cfg.max_steps:  # the last: "after"
            record.update(evaluate(as_generator(ema)))
        if step % 25 == 0 or len(record) > 3:
            with (out / "curve.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    save_state(ckpt, modules, optimizer, step, rng, gen, elapsed0 + time.time() - start, cfg)
    final = as_generator(ema)
    final.save_pretrained(out / "final")
    if evaluate is not None:
        metrics["after"] = {"step": step, **evaluate(final)}
        metrics["minutes"] = round((elapsed0 + time.time() - start) / 60, 2)
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return final


def _train_step(model, optimizer, generator, cfg, rng, gen, generated, lr: float) -> float:
    batch, plain = training_batch(rng, gen, cfg, generator.tokenizer, generated)
    text = condition_ids(generator, batch.prompts, batch.critiques)
    dropped = plain & (torch.rand(len(batch), generator=gen) < cfg.prompt_dropout)
    text = torch.where(dropped[:, None], null_prompts(len(batch), text.shape[1]), text)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = LOSSES[cfg.kind](model, text, batch.bad, batch.good, batch.redraw, gen)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    optimizer.step()
    return float(loss.detach())


def _read_metrics(out: Path) -> dict:
    path = out / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}

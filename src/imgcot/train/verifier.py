"""Training of the shapes verifiers (one recipe for every role) and their agreement with the evaluator.

Each question (head) is trained as its own yes/no sample, as the paper mixes ORM, clarity, potential and
final-selection samples into one model (shared/method.md section 3): a batch draws `batch / heads` rows labelled
for each head the role trains, and the loss is the mean over heads of the binary cross-entropy of that head on
its rows. AdamW, linear warm-up then cosine decay, gradient clipping; checkpoints are safetensors + JSON and a
killed run resumes to the same weights. The paper trains one epoch at lr 1e-5 on a pretrained 7B judge; a
0.4M network from scratch needs more steps, a larger rate, and some perception to start from: an auxiliary loss
asks every patch what the evaluator's detector sees there (object and colour). On 10K zero-shot rows it lifted
held-out AUC after 400 steps from 0.57 to 0.78 (1 CPU thread, batch 64, lr 3e-3). Networks with the grounding
readout can also be told where each object word's object is (`ground_weight`, grounding_loss): with it, position
was read within an image at AUC 0.974 instead of 0.648 (README, "Telling the words where their objects are").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import write_text_atomic
from ..nn.io import config_from_dict
from ..nn.verifier import HEADS, PATCH_CLASSES, PATCH_COLORS, VerifierNet, VerifierNetConfig
from ..verifiers.data import VerifierData, patch_labels
from ..verifiers.shapes import ROLE_CLASSES, ROLE_HEADS, ShapesVerifier, ShapesVerifierConfig, run_net
from ..worlds.shapes.text import encode_prompts, word_labels
from .state import has_state, read_state, restore_training, save_training

Progress = Callable[[int, int, float, float], None]  # (step, max_steps, loss, minutes)


@dataclass(frozen=True)
class VerifierTrainConfig:
    role: str = "parm"
    clarity_rule: str = "fixed"  # PARM: which clarity labels ('fixed' paper rule or 'learned' from data)
    net: VerifierNetConfig = VerifierNetConfig()
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 100
    max_steps: int = 3000
    minutes: float = 30.0  # wall-clock budget; training stops at whichever limit comes first
    weight_decay: float = 0.05
    clip: float = 1.0
    seed: int = 0
    aux_weight: float = 1.0  # weight of the per-patch detector targets (what each patch shows); 0 disables
    # Grounding networks only: weight of the loss that asks each object word of the prompt to put its grounding
    # attention on the patches where the detector sees that object (of the colour the prompt gives it, if any)
    ground_weight: float = 0.0
    checkpoint_every: int = 250
    eval_every: int = 500


def head_columns(role: str, clarity_rule: str = "fixed") -> dict[str, str]:
    """Which label column of the data trains each head of a role."""
    if role not in ROLE_HEADS:
        raise ValueError(f"unknown verifier role {role!r}; known: {', '.join(ROLE_HEADS)}")
    columns = {"outcome": "outcome", "value": "value"}
    columns.update({"clarity": f"clarity_{clarity_rule}", "potential": f"potential_{clarity_rule}"})
    return {head: columns[head] for head in ROLE_HEADS[role]}


def lr_at(step: int, cfg: VerifierTrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak at max_steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# --- tensors of a dataset ---------------------------------------------------------------------------------------
@dataclass
class Inputs:
    images: torch.Tensor  # (M, H, W, 3) uint8
    text: torch.Tensor  # (M, L) word ids
    frac: torch.Tensor  # (M,) step / num_steps
    final: torch.Tensor  # (M,) bool
    targets: torch.Tensor  # (M, len(HEADS)) float, NaN where a head has no label
    patch_classes: torch.Tensor | None = None  # (M, P) long: auxiliary targets (verifiers.data.patch_labels)
    patch_colors: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.images[index], self.text[index], self.frac[index], self.final[index]


def inputs_of(data: VerifierData, columns: dict[str, str], text_len: int) -> Inputs:
    table = encode_prompts(data.prompts, text_len) if data.prompts else torch.zeros(0, text_len, dtype=torch.long)
    targets = torch.full((len(data), len(HEADS)), math.nan)
    for head, column in columns.items():
        targets[:, HEADS.index(head)] = data.label(column)
    frac = data.step.float() / data.num_steps.float()
    return Inputs(data.images, table[data.prompt_id], frac, data.step >= data.num_steps, targets)


def _sample_batch(pools: dict[int, torch.Tensor], batch: int, gen: torch.Generator) -> list[tuple[int, torch.Tensor]]:
    """(head index, rows) per head: batch / heads rows drawn with replacement from the rows labelled for it."""
    each = max(1, batch // len(pools))
    return [(h, pool[torch.randint(len(pool), (each,), generator=gen)]) for h, pool in pools.items()]


def batch_loss(
    net: VerifierNet,
    inputs: Inputs,
    picks: list[tuple[int, torch.Tensor]],
    aux_weight: float = 0.0,
    ground_weight: float = 0.0,
) -> torch.Tensor:
    """Mean over heads of the BCE of head h on the rows drawn for it (one forward pass for all), plus
    `aux_weight` x the cross-entropy of the per-patch object and colour targets when the inputs hold them, plus
    `ground_weight` x the grounding loss (grounding_loss) for networks with the grounding readout."""
    index = torch.cat([rows for _, rows in picks])
    logits, patches, attention = net.outputs(*inputs.rows(index))
    losses, start = [], 0
    for h, rows in picks:
        part = slice(start, start + len(rows))
        losses.append(F.binary_cross_entropy_with_logits(logits[part, h], inputs.targets[rows, h]))
        start += len(rows)
    loss = torch.stack(losses).mean()
    if aux_weight and inputs.patch_classes is not None:
        cls_logits, color_logits = patches.split([PATCH_CLASSES, PATCH_COLORS], -1)
        aux = F.cross_entropy(cls_logits.flatten(0, 1), inputs.patch_classes[index].flatten())
        aux = aux + F.cross_entropy(color_logits.flatten(0, 1), inputs.patch_colors[index].flatten())
        loss = loss + aux_weight * aux
    if ground_weight and attention is not None and inputs.patch_classes is not None:
        text = inputs.text[index]
        target = grounding_targets(text, inputs.patch_classes[index], inputs.patch_colors[index])
        loss = loss + ground_weight * grounding_loss(attention, target)
    return loss


def grounding_targets(text: torch.Tensor, classes: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """(B, L, P) bool: the patches each object word names. text (B, L) ids; classes, colors (B, P) the detector's
    per-patch labels (verifiers.data.patch_labels). A word preceded by a colour names patches of that object and
    colour when there are any, else those of the object; other words, and absent objects, name none."""
    objects, colors_of = word_labels()
    word_object = objects[text]
    word_color = colors_of[torch.cat([torch.zeros_like(text[:, :1]), text[:, :-1]], 1)]
    by_object = (classes[:, None, :] == word_object[..., None]) & (word_object[..., None] > 0)
    by_both = by_object & (colors[:, None, :] == word_color[..., None])
    use_both = (word_color > 0) & by_both.any(-1)
    return torch.where(use_both[..., None], by_both, by_object)


def grounding_loss(attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the words that name something of -log(attention mass on the named patches); 0 if none do."""
    named = target.any(-1)
    if not bool(named.any()):
        return attention.sum() * 0.0
    mass = (attention * target.float()).sum(-1)[named]
    return -torch.log(mass.clamp_min(1e-6)).mean()


# --- checkpoints ------------------------------------------------------------------------------------------------
def _save_state(folder: Path, net, optimizer, step: int, gen: torch.Generator, seconds: float, cfg) -> None:
    meta = {"step": step, "rng": gen.get_state().tolist(), "seconds": seconds, "config": asdict(cfg)}
    save_training(folder, {"model": net}, optimizer, meta)


def _load_state(folder: Path, net, optimizer, gen: torch.Generator, cfg) -> tuple[int, float]:
    tensors, meta = read_state(folder)
    now = json.loads(json.dumps(asdict(cfg)))
    defaults = json.loads(json.dumps(asdict(VerifierTrainConfig())))
    saved = {**defaults, **meta["config"]}  # options added since
    saved["net"] = {**defaults["net"], **saved["net"]}
    if {**saved, "minutes": None} != {**now, "minutes": None}:  # a longer wall budget may resume; nothing else
        raise ValueError(f"{folder}: the checkpoint was trained with another config; use a new output folder")
    restore_training({"model": net}, optimizer, tensors)
    gen.set_state(torch.tensor(meta["rng"], dtype=torch.uint8))
    return meta["step"], meta["seconds"]


def _optimizer(net: VerifierNet, cfg: VerifierTrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("_pos") or name == "cls" else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


# --- training ---------------------------------------------------------------------------------------------------
def train_verifier(
    role: str,
    data: VerifierData,
    out: str | Path,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    clarity_rule: str = "fixed",
    heldout: VerifierData | None = None,
    config: VerifierTrainConfig | None = None,
    progress: Progress | None = None,
) -> ShapesVerifier:
    """Train (or resume) the `role` verifier on `data` into `out`: checkpoint/, curve.jsonl, final/ (the
    verifier folder for `load_role`), metrics.json (agreement on `heldout`, when given). Returns the verifier."""
    cfg = replace(config or VerifierTrainConfig(), role=role, clarity_rule=clarity_rule, seed=seed)
    cfg = replace(cfg, max_steps=steps or cfg.max_steps, minutes=minutes or cfg.minutes)
    out, columns = Path(out), head_columns(role, clarity_rule)
    inputs, pools = _training_rows(data, columns, cfg)
    torch.manual_seed(cfg.seed)
    net = VerifierNet(cfg.net).train()
    optimizer, gen = _optimizer(net, cfg), torch.Generator().manual_seed(cfg.seed)
    step, elapsed0, ckpt = 0, 0.0, out / "checkpoint"
    if has_state(ckpt):
        step, elapsed0 = _load_state(ckpt, net, optimizer, gen, cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "train_config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    start = time.time()
    while step < cfg.max_steps and elapsed0 + time.time() - start < cfg.minutes * 60:
        loss = _train_step(net, optimizer, inputs, _sample_batch(pools, cfg.batch, gen), lr_at(step, cfg), cfg)
        step, seconds = step + 1, elapsed0 + time.time() - start
        record = {"step": step, "minutes": round(seconds / 60, 3), "loss": round(loss, 4)}
        if progress is not None:
            progress(step, cfg.max_steps, record["loss"], record["minutes"])
        if step % cfg.checkpoint_every == 0:
            _save_state(ckpt, net, optimizer, step, gen, seconds, cfg)
        if heldout is not None and step % cfg.eval_every == 0:
            record["heldout"] = agreement(_wrap(net, cfg, columns), heldout)
        if step % 50 == 0 or "heldout" in record:
            with (out / "curve.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    _save_state(ckpt, net, optimizer, step, gen, elapsed0 + time.time() - start, cfg)
    return _finish(net.eval(), cfg, columns, out, step, heldout)


def _training_rows(
    data: VerifierData, columns: dict[str, str], cfg: VerifierTrainConfig
) -> tuple[Inputs, dict[int, torch.Tensor]]:
    """The data's tensors (with the auxiliary patch targets) and, per trained head, the rows labelled for it."""
    inputs = inputs_of(data, columns, cfg.net.text_len)
    if cfg.aux_weight:
        inputs.patch_classes, inputs.patch_colors = patch_labels(data.images, cfg.net.patch)
    pools = {h: (~inputs.targets[:, h].isnan()).nonzero()[:, 0] for h in map(HEADS.index, columns)}
    if empty := [HEADS[h] for h, pool in pools.items() if len(pool) == 0]:
        raise ValueError(f"no rows labelled for head(s) {empty} (columns {columns}) in this data")
    return inputs, pools


def _train_step(net, optimizer, inputs: Inputs, picks, lr: float, cfg: VerifierTrainConfig) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = batch_loss(net, inputs, picks, cfg.aux_weight, cfg.ground_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
    optimizer.step()
    return float(loss.detach())


def _finish(net: VerifierNet, cfg, columns: dict[str, str], out: Path, step: int, heldout) -> ShapesVerifier:
    """Save the verifier folder (final/) and its held-out agreement (metrics.json)."""
    verifier = _wrap(net, cfg, columns)
    verifier.save_pretrained(out / "final")
    if heldout is not None:
        metrics = {"step": step, "heldout": agreement(verifier, heldout), "heldout_info": heldout.info}
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return verifier


def _wrap(net: VerifierNet, cfg: VerifierTrainConfig, columns: dict[str, str]) -> ShapesVerifier:
    config = ShapesVerifierConfig(cfg.role, tuple(columns), cfg.clarity_rule, cfg.net)
    return ROLE_CLASSES[cfg.role](config, net)


def load_train_config(data: dict) -> VerifierTrainConfig:
    return config_from_dict(VerifierTrainConfig, data)


# --- agreement with the evaluator -------------------------------------------------------------------------------
def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U), ties counted as half; NaN without both classes."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based average rank of each tie group
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def agreement(verifier: ShapesVerifier, data: VerifierData, threshold: float = 0.5) -> dict[str, dict]:
    """Per trained head, on the rows `data` labels for it: accuracy at `threshold`, AUC, rows, positive rate."""
    cfg = verifier.config
    columns = head_columns(cfg.role, cfg.clarity_rule)
    inputs = inputs_of(data, columns, cfg.net.text_len)
    probs = run_net(verifier.net, inputs.images, inputs.text, inputs.frac, inputs.final, verifier.batch_size)
    out = {}
    for head in columns:
        h = HEADS.index(head)
        known = ~inputs.targets[:, h].isnan()
        if not known.any():
            continue
        p, y = probs[known, h].numpy(), inputs.targets[known, h].numpy()
        out[head] = {
            "accuracy": round(float(((p >= threshold) == (y == 1)).mean()), 4),
            "auc": None if math.isnan(area := auc(p, y)) else round(area, 4),
            "n": int(known.sum()),
            "positive": round(float(y.mean()), 4),
        }
    return out

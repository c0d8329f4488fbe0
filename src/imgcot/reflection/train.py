"""Training the shapes reflection model, and its agreement with the evaluator per clause type.

Each row teaches every question that applies to it (reflection/clauses.py: NaN targets are skipped): binary
cross-entropy per yes/no question, cross-entropy per categorical one (the colour seen, the count seen), plus the
verifiers' auxiliary per-patch loss (what the evaluator's detector sees in each token patch: object and colour),
which is also what the critique is localised with. AdamW, warm-up then cosine decay, clipping; a killed run
resumes (reflection/checkpoint.py). `init_from` warm-starts the trunk from a shapes verifier (e.g. the ORM),
whose perception is what reflection needs too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import write_text_atomic
from ..nn.io import CheckpointError, config_from_dict, load_checkpoint, read_config
from ..nn.verifier import HEADS, PATCH_CLASSES, PATCH_COLORS, VerifierNetConfig
from ..train.state import has_state
from ..train.verifier import auc
from ..verifiers.data import VerifierData, patch_labels
from ..worlds.shapes.prompts import parse_prompt
from ..worlds.shapes.text import encode_prompts
from .checkpoint import adamw, load_state, lr_at, save_state
from .clauses import CATEGORICAL, TARGETS, clauses_of, one_hot_outputs, output_slices
from .model import KIND, ReflectorNet, ShapesReflector, ShapesReflectorConfig

Progress = Callable[[int, int, float, float], None]  # (step, max_steps, loss, minutes)


@dataclass(frozen=True)
class ReflectorTrainConfig:
    net: VerifierNetConfig = field(default_factory=VerifierNetConfig)
    batch: int = 128
    lr: float = 1e-3  # from a warm start 1e-3 kept the ORM's aligned AUC (0.83 on samples), 5e-4/2e-3 lost it
    warmup: int = 50
    max_steps: int = 1500
    minutes: float = 30.0  # wall-clock budget; training stops at whichever limit comes first
    weight_decay: float = 0.05
    clip: float = 1.0
    seed: int = 0
    aux_weight: float = 1.0
    checkpoint_every: int = 250
    eval_every: int = 500
    init_from: str = ""  # a shapes-verifier or shapes-reflector folder to start from ("" = random)


def load_train_config(data: dict) -> ReflectorTrainConfig:
    return config_from_dict(ReflectorTrainConfig, data)


@dataclass
class Inputs:
    images: torch.Tensor  # (M, H, W, 3) uint8
    text: torch.Tensor  # (M, L)
    targets: torch.Tensor  # (M, len(TARGETS)) float, NaN where a question does not apply
    patch_classes: torch.Tensor | None = None  # (M, P) long
    patch_colors: torch.Tensor | None = None


def inputs_of(data: VerifierData, text_len: int, aux: bool = True) -> Inputs:
    table = encode_prompts(data.prompts, text_len) if data.prompts else torch.zeros(0, text_len, dtype=torch.long)
    targets = torch.stack([data.label(name) for name in TARGETS], 1)
    inputs = Inputs(data.images, table[data.prompt_id], targets)
    if aux:
        inputs.patch_classes, inputs.patch_colors = patch_labels(data.images)
    return inputs


def reflection_loss(net: ReflectorNet, inputs: Inputs, rows: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """Mean BCE over binary questions + mean CE over categorical ones (labelled rows only) + aux patch loss."""
    ones = torch.ones(len(rows))
    logits, patches = net.with_patches(inputs.images[rows], inputs.text[rows], ones, ones.bool())
    targets, slices = inputs.targets[rows], output_slices()
    binary, categorical = [], []
    for k, name in enumerate(TARGETS):
        known = ~targets[:, k].isnan()
        if not known.any():
            continue
        out = logits[known, slices[name]]
        if name in CATEGORICAL:
            categorical.append(F.cross_entropy(out, targets[known, k].long()))
        else:
            binary.append(F.binary_cross_entropy_with_logits(out[:, 0], targets[known, k]))
    # "aligned" is the question that stops or starts a correction: it weighs as much as all clause questions
    loss = binary[0] + torch.stack(binary[1:]).mean() if len(binary) > 1 else binary[0]
    loss = loss + (torch.stack(categorical).mean() if categorical else 0.0)
    if aux_weight and inputs.patch_classes is not None:
        cls_logits, color_logits = patches.split([PATCH_CLASSES, PATCH_COLORS], -1)
        aux = F.cross_entropy(cls_logits.flatten(0, 1), inputs.patch_classes[rows].flatten())
        loss = loss + aux_weight * (
            aux + F.cross_entropy(color_logits.flatten(0, 1), inputs.patch_colors[rows].flatten())
        )
    return loss


def warm_start(net: ReflectorNet, folder: str) -> None:
    """Load a shapes verifier's (or reflector's) trunk and patch head; the clause head stays fresh, except the
    "aligned" row, which starts as the verifier's outcome question when it was trained."""
    kind = read_config(folder).get("kind")
    if kind == KIND:
        _, tensors = load_checkpoint(folder, ShapesReflectorConfig, KIND)
    elif kind == "shapes-verifier":
        from ..verifiers.shapes import ShapesVerifierConfig

        config, tensors = load_checkpoint(folder, ShapesVerifierConfig, kind)
        if config.net != net.config:
            raise CheckpointError(f"{folder}: its network config differs from the reflector's ({config.net})")
        head = {k: tensors.pop(k) for k in ("head.weight", "head.bias")}
        if "outcome" in config.trained_heads:  # "aligned" is the outcome question: start from the verifier's answer
            row, aligned = HEADS.index("outcome"), output_slices()["aligned"].start
            tensors["head.weight"], tensors["head.bias"] = (
                net.head.weight.detach().clone(),
                net.head.bias.detach().clone(),
            )
            tensors["head.weight"][aligned], tensors["head.bias"][aligned] = (
                head["head.weight"][row],
                head["head.bias"][row],
            )
    else:
        raise CheckpointError(f"{folder}: kind {kind!r} is neither a shapes verifier nor a reflector")
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise CheckpointError(f"{folder}: weights do not fit the reflector (missing {missing}, extra {unexpected})")


def train_reflector(
    data: VerifierData,
    out: str | Path,
    cfg: ReflectorTrainConfig,
    *,
    heldout: VerifierData | None = None,
    progress: Progress | None = None,
) -> ShapesReflector:
    """Train (or resume) into `out`: checkpoint/, curve.jsonl, final/ (the reflector), metrics.json (agreement)."""
    out = Path(out)
    inputs = inputs_of(data, cfg.net.text_len, aux=bool(cfg.aux_weight))
    torch.manual_seed(cfg.seed)
    net = ReflectorNet(cfg.net).train()
    if cfg.init_from:
        warm_start(net, cfg.init_from)
    optimizer = adamw(net, cfg.lr, cfg.weight_decay)
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    step, elapsed0, ckpt = 0, 0.0, out / "checkpoint"
    if has_state(ckpt):
        step, elapsed0 = load_state(ckpt, {"model": net}, optimizer, rng, gen, cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "train_config.json", json.dumps(asdict(cfg), indent=1) + "\n")
    wrap = lambda: ShapesReflector(ShapesReflectorConfig(cfg.net), net)  # noqa: E731
    start = time.time()
    while step < cfg.max_steps and elapsed0 + time.time() - start < cfg.minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps)
        rows = torch.randint(len(data), (cfg.batch,), generator=gen)
        loss = reflection_loss(net, inputs, rows, cfg.aux_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        optimizer.step()
        step, seconds = step + 1, elapsed0 + time.time() - start
        record = {"step": step, "minutes": round(seconds / 60, 3), "loss": round(float(loss.detach()), 4)}
        if progress is not None:
            progress(step, cfg.max_steps, record["loss"], record["minutes"])
        if step % cfg.checkpoint_every == 0:
            save_state(ckpt, {"model": net}, optimizer, step, rng, gen, seconds, cfg)
        if heldout is not None and step % cfg.eval_every == 0:
            record["heldout"] = agreement(wrap(), heldout)["summary"]
        if step % 50 == 0 or "heldout" in record:
            with (out / "curve.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    save_state(ckpt, {"model": net}, optimizer, step, rng, gen, elapsed0 + time.time() - start, cfg)
    reflector = wrap()
    reflector.net.eval()
    reflector.save_pretrained(out / "final")
    if heldout is not None:
        metrics = {"step": step, "heldout": agreement(reflector, heldout), "heldout_info": heldout.info}
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return reflector


# --- agreement with the evaluator ---------------------------------------------------------------------------------
def _question_agreement(probs: dict[str, np.ndarray], targets: torch.Tensor) -> dict[str, dict]:
    out = {}
    for k, name in enumerate(TARGETS):
        known = ~targets[:, k].isnan()
        if not known.any():
            continue
        y = targets[known, k].numpy()
        p = probs[name][known.numpy()]
        if name in CATEGORICAL:
            out[name] = {"accuracy": round(float((p.argmax(-1) == y).mean()), 4), "n": int(known.sum())}
        else:
            area = auc(p, y)
            out[name] = {"accuracy": round(float(((p >= 0.5) == (y == 1)).mean()), 4),
                         "auc": None if math.isnan(area) else round(area, 4), "n": int(known.sum()),
                         "positive": round(float(y.mean()), 4)}  # fmt: skip
    return out


def _clause_agreement(predicted: list[tuple], teacher: list[tuple]) -> dict[str, dict]:
    """Per clause kind: recall (teacher clauses the reflector also names: same kind and object) and precision."""
    out = {}
    kinds = sorted({c.kind for row in teacher + predicted for c in row})
    for kind in kinds:
        t = [{(c.kind, c.obj) for c in row if c.kind == kind} for row in teacher]
        p = [{(c.kind, c.obj) for c in row if c.kind == kind} for row in predicted]
        hits = sum(len(a & b) for a, b in zip(t, p, strict=True))
        n_t, n_p = sum(map(len, t)), sum(map(len, p))
        out[kind] = {"recall": round(hits / n_t, 4) if n_t else None,
                     "precision": round(hits / n_p, 4) if n_p else None, "n": n_t}  # fmt: skip
    return out


def agreement(reflector: ShapesReflector, data: VerifierData) -> dict:
    """Agreement with the evaluator on `data`: per question (accuracy, AUC), per clause kind (recall, precision),
    and how often the whole critique is the teacher's (on the images the evaluator rejects)."""
    from .model import split_outputs

    prompts = [data.prompts[i] for i in data.prompt_id.tolist()]
    logits, _ = reflector.outputs(prompts, data.images)
    probs = {k: v.double().numpy() for k, v in split_outputs(logits).items()}
    targets = torch.stack([data.label(name) for name in TARGETS], 1)
    answers = reflector.reflect(prompts, data.images)
    metas = {p: parse_prompt(p) for p in data.prompts}
    teacher = [clauses_of(metas[p], one_hot_outputs(dict(zip(TARGETS, row.tolist(), strict=True))))
               for p, row in zip(prompts, targets, strict=True)]  # fmt: skip
    predicted = [a.clauses for a in answers]
    bad = [i for i, t in enumerate(teacher) if t]
    exact = [predicted[i] == teacher[i] for i in bad]
    questions = _question_agreement(probs, targets)
    summary = {"aligned_accuracy": questions["aligned"]["accuracy"], "aligned_auc": questions["aligned"]["auc"],
               "critique_exact": round(float(np.mean(exact)), 4) if exact else None}  # fmt: skip
    return {"summary": summary, "questions": questions, "clauses": _clause_agreement(predicted, teacher),
            "rows": len(data), "rejected": len(bad)}  # fmt: skip

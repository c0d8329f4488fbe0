"""Fine-tune a VLM judge on judge data (judge_data.py): full fine-tuning or LoRA through peft, resumable.

The loss is the language-model cross-entropy of the answer tokens (the answer word, or the critique sentence,
then the end-of-turn token) after exactly the text the judge asks at inference (vlm_judge.py: image, prompt
line, question, assistant header), so training moves the same next-token probabilities the judge reads. The
paper trains its verifiers one epoch at lr 1e-5 (method.md section 3); those are the defaults here.

Output folder ``out``:
- ``checkpoint/``: trainable tensors and AdamW moments (``state.safetensors``) + ``state.json`` (step, config),
  written every ``checkpoint_every`` steps; rerunning the same command resumes from it (a different config fails);
- ``curve.jsonl``: the loss per step;
- at the end: the fine-tuned model (LoRA merged into the weights) + processor + ``imgcot_judge.json``, a folder
  that loads back with ``--verifier hf-vlm:<out>``.
Batches are a pure function of (seed, step) (a fresh permutation of the records every epoch), so a resumed run
sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save

from ..fileio import write_bytes_atomic, write_text_atomic
from .judge_data import load_images, load_judge_data
from .loading import save_processor
from .prompts import QUESTIONS
from .vlm_judge import VLMJudge, VLMJudgeConfig, write_judge_config

VISION = re.compile(r"(^|\.)(vision_tower|visual|vision_model)\.")  # the vision encoders of LLaVA-OV / Qwen2-VL


@dataclass(frozen=True)
class JudgeTrainConfig:
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_rank: int = 0  # 0: full fine-tuning; > 0: LoRA of this rank on `lora_targets`
    lora_alpha: float = 16.0
    lora_targets: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    train_vision: bool = False  # full fine-tuning: also train the vision encoder
    gradient_checkpointing: bool = False
    checkpoint_every: int = 200
    seed: int = 0


def batch_indices(n: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Records of batch `step`: positions step*B .. step*B+B-1 of a stream of per-epoch permutations of range(n)."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[offset]))
    return out


def answer_text(row: dict, eos: str | None) -> str:
    return row["answer"] + (eos or "")


def judge_loss(judge: VLMJudge, rows: list[dict], images: list) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens of `rows` (one forward pass, logits of the tail only)."""
    tok = judge.tokenizer
    answers = [answer_text(r, tok.eos_token) for r in rows]
    lengths = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
    prefix = judge.encode_prefix([r["prompt"] for r in rows], images)
    ids, mask = judge.encode_suffixes(
        [QUESTIONS[r["kind"]] + judge.tail + a for r, a in zip(rows, answers, strict=True)]
    )
    ids, mask = torch.cat([prefix["input_ids"], ids], 1), torch.cat([prefix["attention_mask"], mask], 1)
    keep = max(lengths) + 1  # logits at the last `keep` positions predict the last keep-1 tokens
    out = judge.model(
        input_ids=ids, attention_mask=mask, position_ids=judge.positions(ids, mask, prefix), use_cache=False,
        logits_to_keep=keep, **judge._image_inputs(prefix),
    )  # fmt: skip
    logits, targets = out.logits[:, :-1].float(), ids[:, -keep + 1 :]
    column = torch.arange(keep - 1, device=ids.device)
    weight = column[None, :] >= (keep - 1 - torch.tensor(lengths, device=ids.device))[:, None]  # answer tokens
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (losses * weight).sum() / weight.sum()


def _prepare(judge: VLMJudge, cfg: JudgeTrainConfig):
    """Make the trainable parameters trainable; returns the peft wrapper (LoRA) or None (full fine-tuning)."""
    model = judge.model
    if cfg.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=cfg.lora_targets)  # fmt: skip
        device = next(model.parameters()).device
        gpus = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=gpus):  # LoRA's A matrices start random: seed them, restore global RNG
            torch.manual_seed(cfg.seed)
            return get_peft_model(model, lora)  # injects adapters into `model` itself and freezes the rest
    for name, p in model.named_parameters():
        p.requires_grad_(cfg.train_vision or not VISION.search(name))
    return None


def _trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _save_state(folder: Path, params: dict, optimizer, step: int, meta: dict) -> None:
    tensors = {f"param.{n}": p.detach() for n, p in params.items()}
    names = list(params)
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{names[index]}.{key}"] = torch.as_tensor(value).reshape(-1) if key == "step" else value
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / "state.safetensors", save({k: v.contiguous().cpu() for k, v in tensors.items()}))
    write_text_atomic(folder / "state.json", json.dumps({"step": step, **meta}))


def _load_state(folder: Path, params: dict, optimizer, meta: dict) -> int:
    saved = json.loads((folder / "state.json").read_text())
    if {k: saved.get(k) for k in meta} != json.loads(json.dumps(meta)):
        raise ValueError(f"{folder}: the checkpoint was trained with another config or base; use a new output folder")
    tensors = load_file(str(folder / "state.safetensors"))
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[f"param.{n}"])
    state, names = optimizer.state_dict(), list(params)
    for key, value in tensors.items():
        if key.startswith("opt."):
            name, field = key[4:].rsplit(".", 1)
            value = value.reshape(()) if field == "step" else value
            state["state"].setdefault(names.index(name), {})[field] = value.to(params[name].device)
    optimizer.load_state_dict(state)
    return saved["step"]


def _trim_curve(path: Path, step: int) -> None:
    """Drop curve lines past the checkpoint a run resumes from (a killed run may have logged a few more)."""
    if path.is_file():
        lines = [x for x in path.read_text().splitlines() if x.strip() and json.loads(x)["step"] <= step]
        write_text_atomic(path, "".join(x + "\n" for x in lines))


def finetune_judge(base: str | Path, data: str | Path, out: str | Path, cfg: JudgeTrainConfig | None = None,
                   judge_config: VLMJudgeConfig | None = None, on_step=None) -> Path:  # fmt: skip
    """Fine-tune judge `base` (hub id or folder) on the JSONL `data`; returns `out`, loadable as hf-vlm:<out>."""
    cfg, out = cfg or JudgeTrainConfig(), Path(out)
    rows = load_judge_data(data)
    judge = VLMJudge.from_pretrained(base, role="parm", config=judge_config)
    peft_model = _prepare(judge, cfg)
    params = _trainable(judge.model)
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    meta = {"config": {**asdict(cfg), "steps": None}, "base": str(base)}  # a run may resume to more steps
    ckpt = out / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    step = _load_state(ckpt, params, optimizer, meta) if (ckpt / "state.json").is_file() else 0
    _trim_curve(out / "curve.jsonl", step)
    if cfg.gradient_checkpointing:
        judge.model.gradient_checkpointing_enable()
    judge.model.train()
    while step < cfg.steps:
        batch = [rows[i] for i in batch_indices(len(rows), step, cfg.batch_size, cfg.seed)]
        loss = judge_loss(judge, batch, load_images(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
        optimizer.step()
        step += 1
        with open(out / "curve.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "loss": loss.item()}) + "\n")
        if on_step:
            on_step(step, loss.item())
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_state(ckpt, params, optimizer, step, meta)
    judge.model.eval()
    model = peft_model.merge_and_unload() if peft_model is not None else judge.model
    model.save_pretrained(out)
    save_processor(judge.processor, out)
    write_judge_config(out, judge.config, {"base": str(base), "train": asdict(cfg), "steps": step})
    return out

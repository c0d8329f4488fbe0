"""`imgcot judge samples|data|finetune`: fine-tuning data for a real VLM judge and its training (hf/ package).

    imgcot judge samples --model MODEL --prompts metadata.jsonl --out runs/judge   # samples + step previews
    imgcot geneval score runs/judge                                                 # results.jsonl
    imgcot judge data runs/judge --out runs/judge/judge.jsonl
    imgcot judge finetune --base llava-hf/llava-onevision-qwen2-0.5b-ov-hf --data runs/judge/judge.jsonl \\
        --out runs/judge-ft --lora-rank 16            # then: imgcot eval ... --verifier hf-vlm:runs/judge-ft
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from .cli import _load_model, _parse_overrides, _positive, _user_errors

judge_app = typer.Typer(help="Build data for and fine-tune a vision-language judge (hf-vlm).", no_args_is_help=True)


@judge_app.command("samples")
def samples_cmd(
    prompts: Path = typer.Option(..., "--prompts", help="GenEval metadata JSONL, one prompt per line."),
    out: Path = typer.Option(..., "--out", help="Folder to write (GenEval layout + <prompt>/steps/<sample>/)."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Generator: registered name or folder."),
    images_per_prompt: int = typer.Option(4, "--images-per-prompt", help="Samples per prompt."),
    seed: int = typer.Option(0, "--seed", help="Run seed (image k of prompt i uses image_seed(seed, i, k))."),
) -> None:
    """Generate samples and every step's preview; score them next with `imgcot geneval score OUT`."""
    from .geneval.spec import read_metadata
    from .hf.judge_data import write_samples_with_steps

    with _user_errors():
        _positive("--images-per-prompt", images_per_prompt)
        metas = read_metadata(prompts)
        write_samples_with_steps(_load_model(model), metas, out, images_per_prompt, seed)
    typer.echo(f"wrote {len(metas)} prompts x {images_per_prompt} samples with step previews to {out}")


@judge_app.command("data")
def data_cmd(
    root: Path = typer.Argument(..., help="A scored GenEval-layout folder (with results.jsonl)."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
    kinds: str = typer.Option("orm,clarity,potential,reflection", "--kinds", help="Comma-separated question kinds."),
    results: Path | None = typer.Option(None, "--results", help="Results file (default ROOT/results.jsonl)."),
) -> None:
    """Write judge training questions (orm, final, clarity, potential, reflection) about a scored folder."""
    from .hf.judge_data import build_judge_data

    with _user_errors():
        counts = build_judge_data(root, out, tuple(k.strip() for k in kinds.split(",") if k.strip()), results)
    typer.echo(f"{sum(counts.values())} records -> {out}")
    for (kind, answer), n in sorted(counts.items()):
        typer.echo(f"  {kind:<11}{answer:<5}{n:>8}")


@judge_app.command("finetune")
def finetune_cmd(
    base: str = typer.Option(..., "--base", help="Judge to start from: hub id or folder."),
    data: Path = typer.Option(..., "--data", help="Judge data JSONL (imgcot judge data)."),
    out: Path = typer.Option(..., "--out", help="Output folder; rerun the same command to resume."),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    lora_rank: int = typer.Option(0, "--lora-rank", help="0: full fine-tuning; > 0: LoRA of this rank (peft)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, fp32, bf16, fp16 (bf16/fp16 only on a GPU)."),
    overrides: list[str] = typer.Option([], "--set", help="Training config override key=value (repeatable)."),
) -> None:
    """Fine-tune a VLM judge (full or LoRA) with checkpoints; the result loads with --verifier hf-vlm:OUT."""
    from .hf.judge_finetune import JudgeTrainConfig, finetune_judge
    from .hf.vlm_judge import VLMJudgeConfig
    from .nn.io import config_from_dict

    with _user_errors():
        _positive("--steps", steps)
        changes = {"steps": steps, "lora_rank": lora_rank, **_parse_overrides(overrides)}
        cfg = config_from_dict(JudgeTrainConfig, {**asdict(JudgeTrainConfig()), **changes})
        folder = finetune_judge(base, data, out, cfg, VLMJudgeConfig(device=device, dtype=dtype))
    typer.echo(f"fine-tuned judge ({'LoRA r=' + str(lora_rank) if lora_rank else 'full'}, {steps} steps) -> {folder}")
    typer.echo(f"use it with --verifier hf-vlm:{folder}")
    typer.echo(json.dumps({"train": asdict(cfg)}))

"""`imgcot reflect build-data|train|eval|build-groups` and `imgcot train self-correct` (issue: Reflection, PARM++).

The reflection model and the self-correcting generators are made with exactly these commands;
`scripts/train_reflection.sh` runs the whole recipe.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .cli import InputError, _load_model, _parse_overrides, _positive, _stderr, _user_errors

reflect_app = typer.Typer(
    help="PARM++ reflection: build data for and train the shapes reflection model (resumable).", no_args_is_help=True
)


def _bar(loss: bool = False) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}")]
    if loss:
        columns.append(TextColumn("loss {task.fields[loss]:.3f}"))
    return Progress(*columns, TimeElapsedColumn(), console=_stderr)


def _counter(bar: Progress, description: str):
    task = bar.add_task(description, total=1)
    return lambda done, total: bar.update(task, completed=done, total=total)


def _trainer(bar: Progress, description: str, total: int):
    task = bar.add_task(description, total=total, loss=float("nan"))
    return lambda step, max_steps, loss, _minutes: bar.update(task, completed=step, total=max_steps, loss=loss)


_MODELS_OPT = typer.Option(["shapes-maskgit", "shapes-ar"], "--model", help="Generator(s) whose samples are labelled.")
_SET_OPT = typer.Option([], "--set", help="Override a recipe field, e.g. --set batch=64 (unknown keys fail).")


@reflect_app.command("build-data")
def build_data_cmd(
    out: Path = typer.Option(..., "--out", help="Data folder to write (data.safetensors, data.json)."),
    models: list[str] = _MODELS_OPT,
    n_prompts: int = typer.Option(1000, "--n-prompts", help="Prompts drawn with --seed (never the benchmark's)."),
    seed: int = typer.Option(3001, "--seed", help="Prompt and sample seed; keep it away from the benchmark's 43."),
    images_per_prompt: int = typer.Option(4, "--images-per-prompt", help="Samples per prompt and generator."),
    renders: int = typer.Option(1, "--renders", help="Ground-truth renders per prompt (aligned rows)."),
    edits: int = typer.Option(2, "--edits", help="Edited ground-truth renders per prompt (one clause broken)."),
) -> None:
    """Label generated samples and (edited) ground-truth renders with the evaluator's failed clauses."""
    from .reflection.data import build_reflection_data

    with _user_errors():
        _positive("--n-prompts", n_prompts)
        generators = [_load_model(m) for m in models]
        with _bar() as bar:
            data = build_reflection_data(
                generators, n_prompts, seed, images_per_prompt=images_per_prompt, renders=renders, edits=edits,
                progress=_counter(bar, "label samples"),
            )  # fmt: skip
        data.save(out)
    typer.echo(f"reflection data: {len(data)} rows -> {out}")
    typer.echo(json.dumps({"summary": data.summary(), "sample_accuracy": data.info["sample_accuracy"]}, indent=1))


@reflect_app.command("train")
def train_cmd(
    data: Path = typer.Option(..., "--data", help="Training data folder (reflect build-data)."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint/, curve.jsonl, final/, metrics.json)."),
    heldout: Path | None = typer.Option(None, "--heldout", help="Held-out data folder: agreement per clause type."),
    init_from: str | None = typer.Option(None, "--init-from", help="Shapes verifier name or folder to start from."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override the recipe's optimisation steps."),
    minutes: float | None = typer.Option(None, "--minutes", help="Wall-clock cap; rerun the command to resume."),
    overrides: list[str] = _SET_OPT,
) -> None:
    """Train the reflection model (resumes from OUT/checkpoint); final/ is a `shapes-reflector` folder."""
    from .reflection.train import ReflectorTrainConfig, load_train_config, train_reflector
    from .verifiers.data import VerifierData

    with _user_errors():
        changes = _parse_overrides(overrides)
        if max_steps is not None:
            changes["max_steps"] = _positive("--max-steps", max_steps)
        if minutes is not None:
            changes["minutes"] = minutes
        if init_from:
            changes["init_from"] = str(_verifier_folder(init_from))
        cfg = load_train_config({**asdict(ReflectorTrainConfig()), **changes})
        train, held = VerifierData.load(data), VerifierData.load(heldout) if heldout else None
        with _bar(loss=True) as bar:
            train_reflector(train, out, cfg, heldout=held, progress=_trainer(bar, "train reflector", cfg.max_steps))
    typer.echo(f"reflector: {out / 'final'} (learning curve: {out / 'curve.jsonl'})")
    if held is not None:
        typer.echo(json.dumps(json.loads((out / "metrics.json").read_text())["heldout"], indent=1))


def _verifier_folder(name: str) -> Path:
    from .generators.registry import registered_models, weights_root

    folder = weights_root() / name if name in registered_models() else Path(name)
    if not folder.is_dir():
        raise InputError(f"--init-from {name!r}: not a shipped name nor a folder")
    return folder


@reflect_app.command("eval")
def eval_cmd(
    data: Path = typer.Option(..., "--data", help="Labelled data folder (reflect build-data, another seed)."),
    reflector: str | None = typer.Option(None, "--reflector", help="Reflector name or folder (default: shipped)."),
) -> None:
    """Agreement of a reflector with the evaluator: per question, per clause kind, whole critiques."""
    from .reflection.model import load_reflector
    from .reflection.train import agreement
    from .verifiers.data import VerifierData

    with _user_errors():
        result = agreement(load_reflector(reflector), VerifierData.load(data))
    typer.echo(json.dumps(result, indent=1))


@reflect_app.command("build-groups")
def build_groups_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write (groups.safetensors, groups.json)."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Generator whose failures are corrected."),
    n_prompts: int = typer.Option(400, "--n-prompts", help="Prompts drawn with --seed (never the benchmark's)."),
    seed: int = typer.Option(3101, "--seed", help="Prompt and sample seed."),
    images_per_prompt: int = typer.Option(2, "--images-per-prompt", help="Samples per prompt."),
    tries: int = typer.Option(4, "--tries", help="Redraws of a failure's region until the evaluator accepts one."),
    localize: str = typer.Option("objects", "--localize", help="What a redraw covers: clauses, objects or none."),
) -> None:
    """Self-correction groups from the generator's own failures, corrected by rejection-sampled redraws."""
    from .reflection.sc_data import build_generated_groups

    with _user_errors():
        _positive("--n-prompts", n_prompts)
        _positive("--tries", tries)
        generator = _load_model(model)
        with _bar() as bar:
            progress = _counter(bar, "sample and correct")
            groups = build_generated_groups(
                generator, n_prompts, images_per_prompt, seed, tries=tries, localize=localize, progress=progress
            )
        groups.save(out)
    typer.echo(f"{len(groups)} groups -> {out}")
    typer.echo(json.dumps(groups.info, indent=1))


def train_self_correct_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint/, curve.jsonl, metrics.json, final/)."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Generator name or folder to fine-tune."),
    groups: Path | None = typer.Option(None, "--groups", help="Groups from the generator's failures (build-groups)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override the recipe's optimisation steps."),
    minutes: float | None = typer.Option(None, "--minutes", help="Wall-clock cap; rerun the command to resume."),
    overrides: list[str] = _SET_OPT,
) -> None:
    """Fine-tune a shapes generator to correct itself from a critique (resumes from OUT/checkpoint)."""
    from .reflection.sc_data import Groups
    from .reflection.sc_train import RECIPES, load_config, make_evaluator, train_self_correct

    with _user_errors():
        base = _load_model(model)
        kind = "ar" if getattr(base, "causal", False) else "maskgit"
        changes = _parse_overrides(overrides)
        if max_steps is not None:
            changes["max_steps"] = _positive("--max-steps", max_steps)
        if minutes is not None:
            changes["minutes"] = minutes
        cfg = load_config({**asdict(RECIPES[kind]), **changes})
        if cfg.kind != kind:
            raise InputError(f"--set kind={cfg.kind} does not match the {kind} generator {model!r}")
        data = Groups.load(groups) if groups is not None else None
        held, train = (None, data) if data is None else _split(data)
        evaluate = make_evaluator(cfg, base.tokenizer, held)
        with _bar(loss=True) as bar:
            train_self_correct(base, out, cfg, train, evaluate=evaluate,
                               progress=_trainer(bar, f"self-correct {kind}", cfg.max_steps))  # fmt: skip
    typer.echo(f"self-correcting generator: {out / 'final'} (curve: {out / 'curve.jsonl'})")
    typer.echo(json.dumps(json.loads((out / "metrics.json").read_text()), indent=1))


def _split(groups, heldout: int = 64):
    """The last `heldout` groups are held out for the correction-rate curve (none when there are too few)."""
    n = len(groups)
    if n < 2 * heldout:
        return None, groups
    return groups.select(list(range(n - heldout, n))), groups.select(list(range(n - heldout)))

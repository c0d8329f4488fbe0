"""`imgcot verifiers build-data|train`: the shapes verifiers' data recipe and training (issue: Verification).

The shipped verifiers were made with exactly these commands; `scripts/train_verifiers.sh` runs the whole recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .cli import _fail, _load_model, _positive, _stderr, _user_errors
from .geneval.spec import TAGS

verifiers_app = typer.Typer(help="Build data for and train the shapes verifiers (resumable).", no_args_is_help=True)

ROLES = ("orm-zs", "orm", "prm", "parm")


def _role(role: str) -> str:
    if role not in ROLES:
        _fail(f"unknown verifier role {role!r}; known: {', '.join(ROLES)}")
    return role


def _bar(description: str) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    return Progress(*columns, TimeElapsedColumn(), console=_stderr)


@verifiers_app.command("build-data")
def build_data_cmd(
    role: str = typer.Argument(..., help="orm-zs (ground-truth renders), orm / parm (samples), prm (roll-outs)."),
    out: Path = typer.Option(..., "--out", help="Data folder to write (images, labels, info.json)."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Generator whose samples are labelled."),
    n_prompts: int = typer.Option(1200, "--n-prompts", help="Prompts drawn with --seed (never the benchmark's)."),
    seed: int = typer.Option(1002, "--seed", help="Prompt and sample seed; keep it away from the benchmark's 43."),
    images_per_prompt: int = typer.Option(4, "--images-per-prompt", help="Sampled paths per prompt."),
    rollouts: int = typer.Option(4, "--rollouts", help="PRM: continuations per labelled step."),
    label_every: int = typer.Option(2, "--label-every", help="PRM: label every k-th step."),
    tag: list[str] = typer.Option(
        [], "--tag", help="Draw prompts of this GenEval tag only (repeatable; default: all six in turn)."
    ),
) -> None:
    """Label a generator's samples (or ground-truth renders for orm-zs) with the evaluator."""
    from .verifiers.data import build_data

    with _user_errors():
        _role(role)
        _positive("--n-prompts", n_prompts)
        _positive("--images-per-prompt", images_per_prompt)
        if unknown := sorted(set(tag) - set(TAGS)):
            _fail(f"unknown tag(s) {', '.join(unknown)}; known: {', '.join(TAGS)}")
        generator = None if role == "orm-zs" else _load_model(model)
        with _bar(f"build {role} data") as bar:
            task = bar.add_task(f"build {role} data", total=n_prompts)
            data = build_data(
                role, generator, n_prompts, seed, images_per_prompt=images_per_prompt, rollouts=rollouts,
                label_every=label_every, tags=tuple(tag) or TAGS,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        data.save(out)
    typer.echo(f"{role} data: {len(data)} rows -> {out}")
    typer.echo(json.dumps(data.summary(), indent=1))


@verifiers_app.command("counterfactual")
def counterfactual_cmd(
    source: Path = typer.Argument(..., help="A data folder of samples (`build-data orm|parm`) or renders (orm-zs)."),
    out: Path = typer.Option(..., "--out", help="Data folder to write; train on it beside SOURCE (--data twice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random colour and count changes."),
) -> None:
    """The same images under changed prompts (other relations, exchanged colours, counts +-1), each
    labelled by the evaluator: rows that teach a verifier to tell apart the images of one prompt."""
    from .verifiers.counterfactual import build_counterfactual
    from .verifiers.data import VerifierData

    with _user_errors():
        if not (source / "data.json").is_file():
            _fail(f"no data folder {source} (expected {source / 'data.json'})")
        data = VerifierData.load(source)
        with _bar("counterfactual prompts") as bar:
            task = bar.add_task("counterfactual prompts", total=None)
            rows = build_counterfactual(
                data, seed=seed, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        rows.save(out)
    typer.echo(f"counterfactual data: {len(rows)} rows ({rows.info['prompts']} changed prompts) -> {out}")
    typer.echo(json.dumps(rows.summary(), indent=1))


@verifiers_app.command("train")
def train_cmd(
    role: str = typer.Argument(..., help="orm-zs, orm, prm or parm."),
    data: list[Path] = typer.Option(
        ..., "--data", help="Folder written by `imgcot verifiers build-data`; repeat to train on several."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint/, curve.jsonl, final/, metrics.json)."),
    heldout: Path | None = typer.Option(None, "--heldout", help="Held-out data folder for agreement metrics."),
    steps: int = typer.Option(1500, "--steps", help="Optimisation steps."),
    minutes: float | None = typer.Option(None, "--minutes", help="Wall-clock cap; rerun to resume."),
    clarity_rule: str = typer.Option("fixed", "--clarity-rule", help="PARM: 'fixed' (the paper's) or 'learned'."),
    seed: int = typer.Option(0, "--seed", help="Initialisation and batch-order seed."),
    grounding: bool = typer.Option(
        False, "--grounding", help="Network with patch coordinates and a word-grounding readout (relations)."
    ),
    ground_weight: float = typer.Option(
        0.0, "--ground-weight", help="With --grounding: weight of the loss that points object words at their patches."
    ),
    word_evidence: bool = typer.Option(
        False, "--word-evidence", help="With --grounding: each word also reads the object and colour it looks at."
    ),
) -> None:
    """Train (or resume) a verifier; its final/ folder is what `--verifier FOLDER` loads."""
    from .nn.verifier import VerifierNetConfig
    from .train.verifier import VerifierTrainConfig, train_verifier
    from .verifiers.data import VerifierData

    with _user_errors():
        _role(role)
        _positive("--steps", steps)
        if ground_weight < 0 or (ground_weight and not grounding):
            _fail("--ground-weight needs --grounding and a value >= 0")
        if word_evidence and not grounding:
            _fail("--word-evidence needs --grounding")
        if clarity_rule not in ("fixed", "learned"):
            _fail(f"unknown clarity rule {clarity_rule!r}; known: fixed, learned")
        for folder in (*data, heldout):
            if folder is not None and not folder.is_dir():
                _fail(f"no data folder {folder}")
        parts = [VerifierData.load(folder) for folder in data]
        rows = parts[0] if len(parts) == 1 else VerifierData.concat(parts)
        held = VerifierData.load(heldout) if heldout is not None else None
        with _bar(f"train {role}") as bar:
            task = bar.add_task(f"train {role}", total=steps)
            train_verifier(
                role, rows, out, steps=steps, minutes=minutes, seed=seed, clarity_rule=clarity_rule, heldout=held,
                config=VerifierTrainConfig(
                    net=VerifierNetConfig(coords=grounding, grounding=grounding, word_evidence=word_evidence),
                    ground_weight=ground_weight,
                ),
                progress=lambda step, total, _loss, _minutes: bar.update(task, completed=step),
            )  # fmt: skip
    typer.echo(f"verifier: {out / 'final'}")
    if (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text())
        for head, values in metrics.get("heldout", {}).items():
            auc = "n/a (one class)" if values.get("auc") is None else f"{values['auc']:.3f}"
            typer.echo(f"  held-out {head:<10} accuracy {values['accuracy']:.3f}  AUC {auc}  (n={values['n']})")

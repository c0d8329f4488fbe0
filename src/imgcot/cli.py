"""The `imgcot` command line. Every command is thin: parse options, call the library, print.

Bad input (a malformed metadata line, an unknown object, a missing file, ...) is one `error: ...` line on stderr
and a non-zero exit, never a traceback: the project's ValueError subclasses and OSError are caught at the command
boundary, and `main` turns typer's usage errors into the same one line.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import track

from .fileio import save_png, write_text_atomic
from .geneval.compare import compare, format_comparison, load_arms
from .geneval.detector import Detector
from .geneval.layout import stale_entries
from .geneval.score import SUMMARY_FILE, format_summary, score_folder
from .geneval.spec import TAGS, Metadata, dumps, read_metadata
from .worlds.shapes.benchmark import load_benchmark, read_shapes_metadata, render_ground_truth, subset
from .worlds.shapes.detector import ShapesDetector
from .worlds.shapes.prompts import parse_prompt
from .worlds.shapes.scenes import SIZES

T = TypeVar("T")

DETECTORS: dict[str, Callable[[], Detector]] = {"shapes": ShapesDetector}
WORLDS = ("shapes",)
DEMO_PROMPTS_PER_TAG = 2
DEMO_IMAGES_PER_PROMPT = 4

app = typer.Typer(
    help="Verify and reinforce step-wise image generation; GenEval without mmdet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
shapes_app = typer.Typer(help="The shapes world: ground-truth renders, prompt parsing.", no_args_is_help=True)
geneval_app = typer.Typer(help="GenEval: score image folders, check metadata files.", no_args_is_help=True)
app.add_typer(shapes_app, name="shapes")
app.add_typer(geneval_app, name="geneval")
train_app = typer.Typer(help="Training recipes of the shapes world's models (resumable).", no_args_is_help=True)
app.add_typer(train_app, name="train")

_stderr = Console(stderr=True)


class InputError(ValueError):
    """A bad option value caught by the CLI itself."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input -> one `error: ...` line on stderr and exit 1."""
    try:
        yield
    except (ValueError, OSError) as err:
        _fail(str(err) or type(err).__name__)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(1)


def _progress(description: str) -> Callable[[Sequence[T]], Iterable[T]]:
    def wrap(items: Sequence[T]) -> Iterable[T]:
        return track(items, description=description, console=_stderr, transient=True)

    return wrap


def _detector(name: str, clip: str | None = None, place=None) -> Detector:
    """A registered detector, or `hf-mask2former:<id>` with CLIP `clip` for real images (imgcot.hf.geneval_real)."""
    if name.startswith("hf-mask2former:"):
        from .hf.cli_glue import load_detector, placement

        return load_detector(name, clip, place or placement("auto", "fp32"))
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}; known detectors: {', '.join(DETECTORS)}, hf-mask2former:<id>")
    return DETECTORS[name]()


_DETECTOR_HELP = f"Detector: {', '.join(DETECTORS)}, or hf-mask2former:<hub id or folder> for real images."
_CLIP_HELP = "CLIP for real-image colours (default openai/clip-vit-large-patch14)."


def _check_fresh(out: Path, n_prompts: int, n_images: int) -> None:
    stale = stale_entries(out, n_prompts, n_images)
    if stale:
        raise InputError(
            f"{out} holds {len(stale)} prompt folders or images from an earlier run that this one would not "
            f"overwrite (e.g. {stale[0]}); choose an empty --out or remove them"
        )


def _render(entries: Sequence[Metadata], out: Path, seed: int, images_per_prompt: int, size: int) -> None:
    if size not in SIZES:
        raise InputError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")
    if images_per_prompt < 1:
        raise InputError(f"--images-per-prompt must be >= 1, got {images_per_prompt}")
    _check_fresh(out, len(entries), images_per_prompt)
    render_ground_truth(entries, out, seed, images_per_prompt, size, progress=_progress("rendering"))


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"imgcot {version('imgcot')}")
        except PackageNotFoundError:
            typer.echo("imgcot (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Verify and reinforce step-wise image generation; GenEval without mmdet."""


@shapes_app.command("render")
def shapes_render(
    prompts: Path | None = typer.Option(None, "--prompts", help="Metadata JSONL (default: the shipped benchmark)."),
    out: Path = typer.Option(..., "--out", help="Output folder (GenEval layout)."),
    seed: int = typer.Option(0, "--seed", help="Image j of prompt i uses rng([seed, i, j])."),
    images_per_prompt: int = typer.Option(4, "--images-per-prompt", help="Images per prompt."),
    size: int = typer.Option(32, "--size", help="Canvas size: 32 or 64."),
) -> None:
    """Render ground-truth images for a metadata file in GenEval's folder layout."""
    with _user_errors():
        entries = read_shapes_metadata(prompts) if prompts is not None else load_benchmark()
        _render(entries, out, seed, images_per_prompt, size)
    typer.echo(f"wrote {len(entries)} prompts x {images_per_prompt} images ({size}x{size}) to {out}")


@shapes_app.command("prompt-to-metadata")
def shapes_prompt_to_metadata(text: str = typer.Argument(..., help="A prompt in one of GenEval's templates.")) -> None:
    """Print the GenEval metadata line of a shapes prompt."""
    with _user_errors():
        typer.echo(dumps(parse_prompt(text)))


@geneval_app.command("score")
def geneval_score(
    folder: Path = typer.Argument(..., help="GenEval-layout folder: 00000/metadata.jsonl, 00000/samples/0000.png."),
    out: Path | None = typer.Option(None, "--out", help="Results file (default: FOLDER/results.jsonl)."),
    detector: str = typer.Option("shapes", "--detector", help=_DETECTOR_HELP),
    clip: str | None = typer.Option(None, "--clip", help=_CLIP_HELP),
    device: str = typer.Option("auto", "--device", help="Real-image detector: auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option("fp32", "--dtype", help="Real-image detector: fp32, fp16 or bf16 (GPU only)."),
) -> None:
    """Score a folder of images with GenEval's rules; write results and summary.json; print the summary."""
    with _user_errors():
        scorer = _detector(detector, clip, _placement(device, dtype) if detector != "shapes" else None)
        _, summary = score_folder(folder, scorer, out, progress=_progress("scoring"))
    typer.echo(format_summary(summary))
    typer.echo(f"\nresults: {out or folder / 'results.jsonl'}\nsummary: {folder / SUMMARY_FILE}")


def _arm(text: str) -> tuple[str, list[Path]]:
    """`NAME=PATH[,PATH...]` or `PATH[,PATH...]` (named by its first path)."""
    name, _, paths = text.partition("=") if "=" in text else ("", "", text)
    files = [Path(p) for p in paths.split(",") if p]
    if not files:
        raise InputError(f"{text!r}: no results folder or file")
    return name or text, files


@geneval_app.command("compare")
def geneval_compare(
    arms: list[str] = typer.Argument(
        ...,
        help="Two or more arms, the first the baseline: an eval folder or results file, or NAME=PATH,PATH,... "
        "to pool several runs (training seeds) of one recipe.",
    ),
    resamples: int = typer.Option(10_000, "--resamples", help="Paired bootstrap resamples of the prompts."),
    level: float = typer.Option(0.95, "--level", help="Level of the interval of each difference."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the comparison as JSON here."),
) -> None:
    """Compare GenEval runs on the same prompts: overall scores, differences against the first arm, and their
    intervals from a paired bootstrap over prompts within each tag."""
    with _user_errors():
        if len(arms) < 2:
            raise InputError("give at least two arms to compare (the first is the baseline)")
        rows = compare(load_arms([_arm(a) for a in arms]), resamples, seed, level)
        if json_out is not None:
            write_text_atomic(json_out, json.dumps({"resamples": resamples, "seed": seed, "level": level,
                                                    "arms": rows}, indent=2) + "\n")  # fmt: skip
    typer.echo(format_comparison(rows, resamples, level))


@geneval_app.command("check")
def geneval_check(
    file: Path = typer.Argument(..., help="Metadata JSONL file."),
    world: str | None = typer.Option(
        None, "--world", help=f"Also check classes against a world: {', '.join(WORLDS)}."
    ),
) -> None:
    """Validate a GenEval metadata file and print its prompts per tag."""
    with _user_errors():
        if world is not None and world not in WORLDS:
            raise InputError(f"unknown world {world!r}; known worlds: {', '.join(WORLDS)}")
        entries = read_shapes_metadata(file) if world == "shapes" else read_metadata(file)
    counts = Counter(meta["tag"] for meta in entries)
    typer.echo(f"{file}: {len(entries)} prompts, all valid" + (f" for the {world} world" if world else ""))
    for tag in TAGS:
        typer.echo(f"  {tag:<16}{counts.get(tag, 0):>5}")
    typer.echo(f"  {'total':<16}{len(entries):>5}")


def _load_model(name: str, place=None):
    from .generators.registry import load_generator

    return load_generator(name, place)


def _placement(device: str, dtype: str):
    """Checked device/dtype names for a real model (imgcot.hf.devices.Placement)."""
    from .hf.cli_glue import placement

    return placement(device, dtype)


_DEVICE_OPT = typer.Option("auto", "--device", help="Generator device: auto, cpu, cuda or cuda:N (real models).")
_DTYPE_OPT = typer.Option("fp32", "--dtype", help="Generator dtype: fp32, fp16 or bf16 (fp16/bf16 on a GPU only).")
_JUDGE_DEVICE_OPT = typer.Option("auto", "--judge-device", help="hf-vlm/hf-clip judge device (auto: its default).")
_JUDGE_DTYPE_OPT = typer.Option("auto", "--judge-dtype", help="hf-vlm/hf-clip judge dtype: auto, fp32, fp16, bf16.")


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise InputError(f"{name} must be >= 1, got {value}")
    return value


_STRATEGY_OPT = typer.Option(
    "baseline", "--strategy", help="baseline, orm-zs, orm, prm, parm, parm++, parm++-noreflect or oracle."
)
_VERIFIER_OPT = typer.Option(
    None, "--verifier", help="Verifier name or folder (default: the shipped one); parm++: PARM[,REFLECTOR]."
)
_ROUNDS_OPT = typer.Option(3, "--max-rounds", help="parm++: reflection and correction rounds at most.")
_REFLECT_JUDGE_OPT = typer.Option(
    "reflector", "--reflect-judge", help="parm++: who says aligned or not: reflector, or parm (its outcome question)."
)
_SELECT_OPT = typer.Option("last", "--select", help="parm++: the answer: last (paper) or best (judge's) round.")
_KEEP_OPT = typer.Option(
    None, "--keep", help="parm: at most K promising paths per image go past the gate, by potential (default: all)."
)


def _strategy_options(strategy: str, keep: int | None) -> dict:
    """The search loop's own settings: parm's keep limit (search/parm.py)."""
    if keep is None:
        return {}
    if strategy != "parm":
        raise InputError(f"--keep applies to --strategy parm only, not {strategy!r}")
    return {"keep": _positive("--keep", keep)}


def _parmpp_settings(verifier, max_rounds: int, reflect_judge: str = "reflector", select: str = "last"):
    """parm++'s settings on the verifier bundle it is handed (search/reflect.py): round limit, judge, answer."""
    from .search.reflect import JUDGES, SELECT

    if max_rounds < 0:
        raise InputError(f"--max-rounds must be >= 0, got {max_rounds}")
    if reflect_judge not in JUDGES:
        raise InputError(f"unknown --reflect-judge {reflect_judge!r}; known: {', '.join(JUDGES)}")
    if select not in SELECT:
        raise InputError(f"unknown --select {select!r}; known: {', '.join(SELECT)}")
    if hasattr(verifier, "max_rounds"):
        verifier.max_rounds, verifier.judge_with, verifier.select = max_rounds, reflect_judge, select
    return verifier


def _strategy_verifier(
    strategy: str,
    verifier: str | None,
    metas: Sequence[Metadata],
    detector: Detector | None = None,
    judge=None,
    generator=None,
):
    """The verifier a strategy's role needs: the GenEval oracle (on `detector` when given), or a learned verifier
    (shipped, a folder, or hf-vlm:/hf-clip:, loaded by `judge` on its own device when given). Without --verifier,
    a generator with verifiers trained on its own samples (the AR models) gets those."""
    from .search import get_strategy
    from .verifiers.registry import load_verifier, own_verifier

    role = get_strategy(strategy).verifier
    if role is None:
        return None
    if verifier is None and (verifier := own_verifier(role, generator)) is not None:
        _stderr.print(f"{role} verifier: {verifier} (trained on this generator's samples; --verifier overrides)")
    lookup = {m["prompt"]: m for m in metas}
    if role == "oracle" and detector is not None:
        from .verifiers import OracleVerifier

        return OracleVerifier(lookup.__getitem__, detector)
    if judge is not None:
        return _load_real_judge(judge, role, verifier)
    return load_verifier(role, verifier, metadata=lookup.__getitem__)


def _load_real_judge(judge, role: str, verifier: str | None, flag: str = "--verifier"):
    """A real-image verifier loaded by `judge` (_judge: its own device and dtype); the options need one."""
    from .hf import is_hf_verifier

    if not is_hf_verifier(verifier):
        raise InputError(f"--judge-device / --judge-dtype apply to {flag} hf-vlm:<id> or hf-clip:<id> only")
    return judge(role, verifier)


def _judge(device: str, dtype: str):
    from .hf.cli_glue import judge_loader

    return judge_loader(device, dtype)


def _prompt_meta(prompt: str, model: str, strategy: str) -> Metadata:
    """A shapes model's prompt must parse (its metadata feeds the oracle); a real model takes any text."""
    if not model.startswith(("hf-janus:", "hf-showo:")):
        return parse_prompt(prompt)
    if not prompt.strip():
        raise InputError("the prompt is empty")
    if strategy == "oracle":
        raise InputError("the oracle needs GenEval metadata for a real model: use imgcot eval --prompts FILE")
    return {"prompt": prompt.strip()}


@app.command("generate")
def generate_cmd(
    prompt: str = typer.Argument(..., help="A prompt: shapes grammar for shapes models, any text for hf-* models."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Registered model name or checkpoint folder."),
    seed: int = typer.Option(0, "--seed", help="Candidate seeds derive from image_seed(seed, 0, 0)."),
    n: int = typer.Option(1, "--n", help="Candidates N (baseline writes all N; a strategy writes its choice)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Rows per forward pass."),
    out: Path = typer.Option(Path("runs/generate"), "--out", help="Output folder."),
    save_steps: bool = typer.Option(False, "--save-steps", help="Also write every step's intermediate image."),
    strategy: str = _STRATEGY_OPT,
    verifier: str | None = _VERIFIER_OPT,
    max_rounds: int = _ROUNDS_OPT,
    reflect_judge: str = _REFLECT_JUDGE_OPT,
    select: str = _SELECT_OPT,
    keep: int | None = _KEEP_OPT,
    trace: bool = typer.Option(False, "--trace", help="Write trace.json and an HTML view of every step."),
    device: str = _DEVICE_OPT,
    dtype: str = _DTYPE_OPT,
    judge_device: str = _JUDGE_DEVICE_OPT,
    judge_dtype: str = _JUDGE_DTYPE_OPT,
) -> None:
    """Generate images for one prompt, plainly (baseline) or with a verifier-guided search strategy."""
    from .pipeline import image_seed
    from .search import candidate_seeds, run_strategy, total_compute
    from .trace_html import write_trace

    with _user_errors():
        meta = _prompt_meta(prompt, model, strategy)
        _positive("--n", n)
        _positive("--batch-size", batch_size)
        options = _strategy_options(strategy, keep)
        generator = _load_model(model, _placement(device, dtype))
        seeds = candidate_seeds(image_seed(seed, 0, 0), n)
        judge = _judge(judge_device, judge_dtype)
        judge_with = _strategy_verifier(strategy, verifier, [meta], judge=judge, generator=generator)
        judge_with = _parmpp_settings(judge_with, max_rounds, reflect_judge, select)
        record = save_steps or trace
        if strategy == "baseline":  # every candidate is an output image, batch_size rows at a time
            groups = [seeds[i : i + batch_size] for i in range(0, n, batch_size)]
            results = [
                r
                for g in groups
                for r in run_strategy(
                    "baseline", generator, [meta["prompt"]] * len(g), [[s] for s in g], record_previews=record
                )
            ]
        else:
            results = run_strategy(
                strategy, generator, [meta["prompt"]], [seeds], judge_with, record_previews=record, options=options
            )
        for k, result in enumerate(results):
            save_png(result.image, out / f"{k:04d}.png")
            for cand in result.candidates if save_steps else []:
                name = f"{k:04d}" if strategy == "baseline" else f"cand{cand.index:02d}"
                for step, preview in enumerate(cand.previews or []):
                    save_png(preview, out / "steps" / name / f"step_{step:02d}.png")
        page = write_trace(results, out) if trace else None
        spent = total_compute(results)
    typer.echo(
        f"wrote {len(results)} image(s) for {meta['prompt']!r} to {out} ({strategy}, N={n}; "
        f"{spent.generator_forwards} generator forwards, {spent.verifier_calls} verifier calls)"
    )
    if page is not None:
        typer.echo(f"trace: {page}")


@app.command("eval")
def eval_cmd(
    prompts: Path | None = typer.Option(None, "--prompts", help="Metadata JSONL (default: the shipped benchmark)."),
    out: Path = typer.Option(..., "--out", help="Output folder (GenEval layout); rerun to resume."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Registered model name or checkpoint folder."),
    images_per_prompt: int = typer.Option(4, "--images-per-prompt", help="Images per prompt."),
    seed: int = typer.Option(0, "--seed", help="Run seed; image k of prompt i uses image_seed(seed, i, k)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Rows per forward pass (several prompts share it)."),
    strategy: str = _STRATEGY_OPT,
    n: int = typer.Option(1, "--n", help="Candidates per image for a search strategy."),
    verifier: str | None = _VERIFIER_OPT,
    max_rounds: int = _ROUNDS_OPT,
    reflect_judge: str = _REFLECT_JUDGE_OPT,
    select: str = _SELECT_OPT,
    keep: int | None = _KEEP_OPT,
    detector: str = typer.Option("shapes", "--detector", help=_DETECTOR_HELP + " Scores the run; the oracle uses it."),
    clip: str | None = typer.Option(None, "--clip", help=_CLIP_HELP),
    device: str = _DEVICE_OPT,
    dtype: str = _DTYPE_OPT,
    judge_device: str = _JUDGE_DEVICE_OPT,
    judge_dtype: str = _JUDGE_DTYPE_OPT,
) -> None:
    """Generate in GenEval layout, score it, write results.jsonl and summary.json (with compute)."""
    from rich.progress import Progress

    from .geneval.spec import read_metadata
    from .pipeline import claim_run, eval_generate, run_settings

    with _user_errors():
        if detector != "shapes" and prompts is None:
            raise InputError("--prompts is required with a real-image detector (e.g. GenEval's metadata file)")
        entries = read_shapes_metadata(prompts) if detector == "shapes" and prompts else None
        entries = entries or (read_metadata(prompts) if prompts is not None else load_benchmark())
        _positive("--images-per-prompt", images_per_prompt)
        _positive("--batch-size", batch_size)
        _positive("--n", n)
        options = _strategy_options(strategy, keep)
        place = _placement(device, dtype)
        scorer = _detector(detector, clip, _placement(device, "fp32")) if detector != "shapes" else ShapesDetector()
        generator = _load_model(model, place)
        judge = _judge(judge_device, judge_dtype)
        judge_with = _strategy_verifier(strategy, verifier, entries, scorer, judge, generator)
        judge_with = _parmpp_settings(judge_with, max_rounds, reflect_judge, select)
        reflection = {}
        if strategy.startswith("parm++"):
            reflection = {"max_rounds": max_rounds, "reflect_judge": reflect_judge, "select": select}
        describe = {"model": model, "verifier": verifier, **reflection}
        out.mkdir(parents=True, exist_ok=True)
        claim_run(out, run_settings(strategy, n, seed, images_per_prompt, options, describe))  # before any bar
        with Progress(console=_stderr, transient=True) as bar:
            task = bar.add_task(f"{strategy} N={n}", total=len(entries))
            compute = eval_generate(
                generator,
                entries,
                out,
                images_per_prompt,
                seed,
                batch_size,
                strategy,
                n,
                judge_with,
                on_progress=lambda k: bar.advance(task, k),
                options=options,
                describe=describe,
            )
        _, summary = score_folder(out, scorer, progress=_progress("scoring"))
        summary["compute"] = {
            "generator_forwards": compute["generator_forwards"],
            "verifier_calls": compute["verifier_calls"],
            "wall_seconds": round(compute["wall_seconds"], 3),
        }
        summary.update({"model": model, "strategy": strategy, "n": n, "seed": seed, **options})
        summary.update(reflection)
        write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    typer.echo(format_summary(summary))
    typer.echo(
        f"\ncompute: {compute['generator_forwards']} generator forward passes, "
        f"{compute['verifier_calls']} verifier calls, {compute['wall_seconds']:.1f} s"
    )
    typer.echo(f"results: {out / 'results.jsonl'}\nsummary: {out / SUMMARY_FILE}")


@train_app.command("tokenizer")
def train_tokenizer_cmd(
    out: Path = typer.Option(..., "--out", help="Checkpoint folder to write."),
    images: int = typer.Option(20_000, "--images", help="Ground-truth renders to fit the patch vocabulary on."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fit the patch tokenizer; report the evaluator's accuracy on reconstructions of ground-truth renders."""
    from .train.tokenizer import train_tokenizer

    with _user_errors():
        tokenizer, report = train_tokenizer(out, _positive("--images", images), seed)
    typer.echo(f"{tokenizer.vocab_size} codes -> {out}")
    typer.echo(
        f"evaluator accuracy on {report['scenes']} reconstructions: {report['evaluator_accuracy']:.4f} "
        f"(pixel-exact {report['pixel_exact']:.4f})"
    )


def _parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--set expects key=value, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _train_generator(
    kind: str,
    out: Path,
    tokenizer: str,
    max_steps: int | None,
    minutes: float | None,
    overrides: list[str],
    device: str = "cpu",
) -> None:
    from dataclasses import asdict, replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .generators.base import DecodingConfig
    from .generators.registry import resolve_model
    from .hf.devices import resolve_device
    from .nn.tokenizer import PatchTokenizer
    from .train.curve import make_curve_eval
    from .train.generator import RECIPES, load_train_config, train_generator

    with _user_errors():
        changes = _parse_overrides(overrides)
        if max_steps is not None:
            changes["max_steps"] = _positive("--max-steps", max_steps)
        if minutes is not None:
            changes["minutes"] = minutes
        cfg = load_train_config({**asdict(RECIPES[kind]), **changes})
        place = str(resolve_device(device))
        tok = PatchTokenizer.from_pretrained(resolve_model(tokenizer))
        decoding = DecodingConfig(num_steps=12) if kind == "maskgit" else DecodingConfig(num_steps=8)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=_stderr) as bar:
            task = bar.add_task(f"train {kind}", total=cfg.max_steps, loss=float("nan"))

            def progress(step: int, total: int, loss: float, _minutes: float) -> None:
                bar.update(task, completed=step, loss=loss)

            train_generator(replace(cfg), tok, out, decoding, make_curve_eval(), progress, device=place)
    typer.echo(f"final EMA weights: {out / 'final'} (learning curve: {out / 'curve.jsonl'})")


_TOKENIZER_OPT = typer.Option("shapes-tokenizer", "--tokenizer", help="Tokenizer name or folder.")
_STEPS_OPT = typer.Option(None, "--max-steps", help="Override the recipe's optimisation steps.")
_MINUTES_OPT = typer.Option(None, "--minutes", help="Wall-clock cap; rerun the command to resume.")
_SET_OPT = typer.Option([], "--set", help="Override a recipe field, e.g. --set batch=32 (unknown keys fail).")
_TRAIN_DEVICE_OPT = typer.Option("cpu", "--device", help="Where the training step runs: cpu, cuda, cuda:N or auto.")


@train_app.command("maskgit")
def train_maskgit_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint/, curve.jsonl, final/); resumes."),
    tokenizer: str = _TOKENIZER_OPT,
    max_steps: int | None = _STEPS_OPT,
    minutes: float | None = _MINUTES_OPT,
    overrides: list[str] = _SET_OPT,
    device: str = _TRAIN_DEVICE_OPT,
) -> None:
    """Train the masked-token generator with the shipped recipe (resumes from OUT/checkpoint)."""
    _train_generator("maskgit", out, tokenizer, max_steps, minutes, overrides, device)


@train_app.command("ar")
def train_ar_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint/, curve.jsonl, final/); resumes."),
    tokenizer: str = _TOKENIZER_OPT,
    max_steps: int | None = _STEPS_OPT,
    minutes: float | None = _MINUTES_OPT,
    overrides: list[str] = _SET_OPT,
    device: str = _TRAIN_DEVICE_OPT,
) -> None:
    """Train the raster-order AR generator with the shipped recipe (resumes from OUT/checkpoint)."""
    _train_generator("ar", out, tokenizer, max_steps, minutes, overrides, device)


DEMO_N = 8
DEMO_TRACE_TAGS = ("counting", "position", "color_attr")


def _demo_eval(generator, entries, out: Path, strategy: str, verifier) -> dict:
    """One demo row: generate in GenEval layout (resumable), score, write summary.json with compute."""
    from .pipeline import eval_generate

    n = 1 if strategy == "baseline" else DEMO_N
    compute = eval_generate(generator, entries, out, DEMO_IMAGES_PER_PROMPT, 0, 64, strategy, n, verifier)
    _, summary = score_folder(out, ShapesDetector())
    summary["compute"] = {k: compute[k] for k in ("generator_forwards", "verifier_calls", "wall_seconds")}
    write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


DEMO_CORRECTION_N = 4  # PARM++'s candidates per prompt in the reflect-and-correct search for the demo's trace


def corrected_case(results: list, entries: list[Metadata], detector: Detector) -> tuple[int | None, int, int]:
    """(index of the first result whose PARM pick (round 0) fails the evaluator and whose final answer passes,
    or None; how many PARM picks failed; how many of those PARM++ fixed). The evaluator only selects which trace the
    demo shows and counts the outcome: it never steers the search."""
    from .geneval.judge import judge

    first, failed, fixed = None, 0, 0
    for i, (result, meta) in enumerate(zip(results, entries, strict=True)):
        if not result.rounds or judge(meta, result.rounds[0].image, detector)[0]:
            continue
        failed += 1
        if judge(meta, result.image, detector)[0]:
            fixed += 1
            first = i if first is None else first
    return first, failed, fixed


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    model: str = typer.Option("shapes-maskgit", "--model", help="Registered model name or checkpoint folder."),
    corrector: str = typer.Option("shapes-maskgit-sc", "--corrector", help="Self-correcting generator (PARM++)."),
) -> None:
    """Plain generation vs PARM vs PARM++ (N = 8) on a few prompts of every tag, plus HTML traces."""
    from .search import candidate_seeds, run_strategy
    from .trace_html import write_trace

    with _user_errors():
        entries = subset(load_benchmark(), DEMO_PROMPTS_PER_TAG)
        generator, correcting = _load_model(model), _load_model(corrector)
        parm = _strategy_verifier("parm", None, entries)
        parmpp = _strategy_verifier("parm++", None, entries)
        rows = {}
        for strategy, gen in (("baseline", generator), ("parm", generator), ("parm++", correcting)):
            typer.echo(f"{strategy} ({'N=1' if strategy == 'baseline' else f'N={DEMO_N}'}) ...", err=True)
            judge_with = parmpp if strategy == "parm++" else parm
            rows[strategy] = _demo_eval(gen, entries, out / strategy.replace("+", "p"), strategy, judge_with)
        traced = [next(m for m in entries if m["tag"] == tag) for tag in DEMO_TRACE_TAGS]
        seeds = [candidate_seeds(1000 + i, DEMO_N) for i in range(len(traced))]
        results = run_strategy("parm", generator, [m["prompt"] for m in traced], seeds, parm, record_previews=True)
        page = write_trace(results, out / "trace")
        hard = [m for m in entries if m["tag"] != "single_object"]
        seeds = [candidate_seeds(2000 + i, DEMO_CORRECTION_N) for i in range(len(hard))]
        texts = [m["prompt"] for m in hard]
        reflected = run_strategy("parm++", correcting, texts, seeds, parmpp, record_previews=True)
        pick, failed, fixed = corrected_case(reflected, hard, ShapesDetector())
        retried = next((r for r in reflected if len(r.rounds) > 1), reflected[0])
        shown = reflected[pick] if pick is not None else retried
        corrected = write_trace([shown], out / "trace-parmpp")
    typer.echo(f"\n{'':<10}" + "".join(f"{t:>14}" for t in (*TAGS, "overall")) + f"{'forwards':>12}{'seconds':>9}")
    for name, summary in rows.items():
        cells = "".join(f"{summary['tasks'].get(t, float('nan')):>14.3f}" for t in TAGS)
        spent = summary["compute"]
        typer.echo(
            f"{name:<10}{cells}{summary['overall']:>14.3f}{spent['generator_forwards']:>12,}{spent['wall_seconds']:>9.1f}"
        )
    typer.echo(f"\n{len(entries)} prompts x {DEMO_IMAGES_PER_PROMPT} images; images and results under {out}/<row>/")
    outcome = "corrected" if pick is not None else "not corrected (none of this demo's were)"
    typer.echo(
        f"PARM++ fixed {fixed} of the {failed} PARM picks the evaluator rejected ({len(hard)} prompts, "
        f"N={DEMO_CORRECTION_N}); one reflect-and-correct trace, {outcome}: {shown.prompt!r}: {corrected}"
    )
    typer.echo(f"PARM's step-by-step search on three prompts: {page}")


# --- sub-apps in their own modules (imported last: they reuse the helpers above) ------------------------------
from .cli_verifiers import verifiers_app  # noqa: E402

app.add_typer(verifiers_app, name="verifiers")
from .cli_dpo import dpo_app  # noqa: E402

app.add_typer(dpo_app, name="dpo")
from .cli_hf import judge_app  # noqa: E402

app.add_typer(judge_app, name="judge")
from .cli_reflect import reflect_app, train_self_correct_cmd  # noqa: E402

app.add_typer(reflect_app, name="reflect")
train_app.command("self-correct")(train_self_correct_cmd)


def main() -> None:
    """Entry point: typer's usage errors also become one `error: ...` line (exit 2)."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except Exception as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `imgcot` or `imgcot shapes` alone: show the help
            typer.echo(err.format_message())
            sys.exit(0)
        if not (hasattr(err, "format_message") and hasattr(err, "exit_code")):  # not a usage error: a bug
            raise
        typer.echo(f"error: {' '.join(err.format_message().split())}", err=True)
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

"""The `imgcot` command line. Every command is thin: parse options, call the library, print.

Bad input (a malformed metadata line, an unknown object, a missing file, ...) is one `error: ...` line on stderr
and a non-zero exit, never a traceback: the project's ValueError subclasses and OSError are caught at the command
boundary, and `main` turns typer's usage errors into the same one line.
"""

from __future__ import annotations

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


def _detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}; known detectors: {', '.join(DETECTORS)}")
    return DETECTORS[name]()


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
    detector: str = typer.Option("shapes", "--detector", help=f"Detector: {', '.join(DETECTORS)}."),
) -> None:
    """Score a folder of images with GenEval's rules; write results and summary.json; print the summary."""
    with _user_errors():
        scorer = _detector(detector)
        _, summary = score_folder(folder, scorer, out, progress=_progress("scoring"))
    typer.echo(format_summary(summary))
    typer.echo(f"\nresults: {out or folder / 'results.jsonl'}\nsummary: {folder / SUMMARY_FILE}")


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


@app.command("demo")
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder.")) -> None:
    """Render ground truth for a small subset of the shipped benchmark, score it, print the summary."""
    with _user_errors():
        entries = subset(load_benchmark(), DEMO_PROMPTS_PER_TAG)
        _render(entries, out, 0, DEMO_IMAGES_PER_PROMPT, 32)
        _, summary = score_folder(out, ShapesDetector(), progress=_progress("scoring"))
    typer.echo(format_summary(summary))
    typer.echo(f"\nimages:  {out}/<prompt>/samples/*.png\nresults: {out / 'results.jsonl'}")
    typer.echo(f"summary: {out / SUMMARY_FILE}")


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

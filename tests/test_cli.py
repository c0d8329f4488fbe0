"""The `imgcot` commands: behaviour through typer's runner, bad input also through the installed executable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.geneval.score import load_image
from imgcot.geneval.spec import TAGS, dumps
from imgcot.worlds.shapes.benchmark import load_benchmark, render_ground_truth, subset
from imgcot.worlds.shapes.prompts import parse_prompt

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "geneval" / "evaluation_metadata.jsonl"
needs_official = pytest.mark.skipif(not OFFICIAL.is_file(), reason="GenEval's metadata file is not alongside")
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(dumps(m) + "\n" for m in subset(load_benchmark(), 1)))
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a fragment of the error line)."""
    malformed = tmp / "bad.jsonl"
    malformed.write_text(dumps(parse_prompt("a photo of a star")) + "\n{oops\n")
    return {
        "empty prompt": (["shapes", "prompt-to-metadata", ""], "empty prompt"),
        "unknown object": (["shapes", "prompt-to-metadata", "a photo of an apple"], "unknown object 'apple'"),
        "unknown colour": (["shapes", "prompt-to-metadata", "a photo of a teal star"], "unknown colour 'teal'"),
        "malformed json": (["geneval", "check", str(malformed)], f"{malformed}:2: malformed JSON"),
        "malformed json render": (["shapes", "render", "--prompts", str(malformed), "--out", str(tmp / "o")], ":2:"),
        "missing file": (["geneval", "check", str(tmp / "missing.jsonl")], "missing.jsonl: no such file"),
        "missing folder": (["geneval", "score", str(tmp / "nowhere")], "no such folder"),
        "bad detector": (["geneval", "score", str(tmp), "--detector", "yolo"], "known detectors: shapes"),
        "bad size": (["shapes", "render", "--out", str(tmp / "o"), "--size", "48"], "--size must be one of 32, 64"),
        "bad world": (["geneval", "check", str(malformed), "--world", "coco"], "known worlds: shapes"),
    }


def _assert_one_error_line(stderr: str, fragment: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "name",
    [
        "empty prompt",
        "unknown object",
        "unknown colour",
        "malformed json",
        "malformed json render",
        "missing file",
        "missing folder",
        "bad detector",
        "bad size",
        "bad world",
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, name: str) -> None:
    args, fragment = _bad_inputs(tmp_path)[name]
    result = _run(*args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    _assert_one_error_line(result.stderr, fragment)
    assert result.stdout == ""


def _executable() -> str:
    found = Path(sys.executable).with_name("imgcot")
    return str(found) if found.is_file() else shutil.which("imgcot") or pytest.skip("imgcot is not installed")


@pytest.mark.parametrize(
    "name", ["empty prompt", "unknown object", "unknown colour", "malformed json", "missing file", "bad detector"]
)
def test_installed_executable_fails_cleanly(tmp_path: Path, name: str) -> None:
    args, fragment = _bad_inputs(tmp_path)[name]
    proc = subprocess.run([_executable(), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    _assert_one_error_line(proc.stderr, fragment)


def test_installed_executable_turns_usage_errors_into_one_line() -> None:
    proc = subprocess.run([_executable(), "shapes", "render"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    _assert_one_error_line(proc.stderr, "--out")


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("imgcot ")


def test_prompt_to_metadata_prints_the_line() -> None:
    result = _run("shapes", "prompt-to-metadata", "a photo of a cross below a square")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == parse_prompt("a photo of a cross below a square")


@needs_official
def test_check_accepts_geneval_official_file() -> None:
    result = _run("geneval", "check", OFFICIAL)
    assert result.exit_code == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines()[1:])
    assert counts == {
        "single_object": "80",
        "two_object": "99",
        "counting": "80",
        "colors": "94",
        "position": "100",
        "color_attr": "100",
        "total": "553",
    }
    assert "553 prompts" in result.stdout


@needs_official
def test_check_with_shapes_world_names_unknown_classes() -> None:
    result = _run("geneval", "check", OFFICIAL, "--world", "shapes")
    assert result.exit_code == 1
    _assert_one_error_line(result.stderr, "classes unknown to the shapes world: airplane, apple")


def test_check_with_shapes_world_accepts_the_benchmark(prompts: Path) -> None:
    result = _run("geneval", "check", prompts, "--world", "shapes")
    assert result.exit_code == 0 and "6 prompts" in result.stdout


def test_render_then_score_is_100_percent(tmp_path: Path, prompts: Path) -> None:
    out = tmp_path / "gt"
    result = _run("shapes", "render", "--prompts", prompts, "--out", out, "--images-per-prompt", "2", "--seed", "5")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}" for i in range(6)]
    result = _run("geneval", "score", out)
    assert result.exit_code == 0, result.stderr
    assert "Overall score (avg. over tasks): 1.00000" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"] == 1.0 and list(summary["tasks"]) == list(TAGS)
    assert len((out / "results.jsonl").read_text().splitlines()) == 12


def test_score_out_option(tmp_path: Path, prompts: Path) -> None:
    _run("shapes", "render", "--prompts", prompts, "--out", tmp_path / "gt", "--images-per-prompt", "1")
    result = _run("geneval", "score", tmp_path / "gt", "--out", tmp_path / "r.jsonl", "--detector", "shapes")
    assert result.exit_code == 0 and (tmp_path / "r.jsonl").is_file()


def test_render_is_seeded_and_sized(tmp_path: Path, prompts: Path) -> None:
    def image(seed: int, size: int = 32) -> np.ndarray:
        out = tmp_path / f"s{seed}-{size}"
        args = ["--prompts", prompts, "--out", out, "--seed", seed, "--images-per-prompt", 1, "--size", size]
        assert _run("shapes", "render", *args).exit_code == 0
        return load_image(out / "00005" / "samples" / "0000.png")

    assert np.array_equal(image(1), image(1)) and not np.array_equal(image(1), image(2))
    assert image(1, 64).shape == (64, 64, 3)


def test_render_defaults_to_the_shipped_benchmark(tmp_path: Path) -> None:
    result = _run("shapes", "render", "--out", tmp_path / "gt", "--images-per-prompt", "1")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "gt").iterdir())) == len(load_benchmark())


def test_render_refuses_to_leave_stale_folders(tmp_path: Path, prompts: Path) -> None:
    _run("shapes", "render", "--prompts", prompts, "--out", tmp_path / "gt", "--images-per-prompt", "2")
    result = _run("shapes", "render", "--prompts", prompts, "--out", tmp_path / "gt", "--images-per-prompt", "1")
    assert result.exit_code == 1
    _assert_one_error_line(result.stderr, "from an earlier run")


def test_demo_compares_baseline_with_parm_and_writes_a_trace(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    result = _run("demo", "--out", demo)
    assert result.exit_code == 0, result.stderr
    assert "trace.html" in result.stdout
    rows = ("baseline", "parm", "parmpp")
    summaries = {row: json.loads((demo / row / "summary.json").read_text()) for row in rows}
    for summary in summaries.values():
        assert summary["n_prompts"] == 2 * len(TAGS)
    assert (demo / "parm" / "00000" / "samples" / "0000.png").is_file()
    base, parm = (summaries[row]["compute"] for row in ("baseline", "parm"))
    assert base["verifier_calls"] == 0 < parm["verifier_calls"]
    assert parm["generator_forwards"] > base["generator_forwards"]  # N = 8 candidates, some truncated early
    trace = json.loads((demo / "trace" / "trace.json").read_text())
    assert len(trace["prompts"]) == 3
    assert (demo / "trace" / "trace.html").read_text().count("<img") > 0
    rounds = json.loads((demo / "trace-parmpp" / "trace.json").read_text())["prompts"][0]["rounds"]
    assert len(rounds) >= 2 and rounds[0]["critique"]  # the demo's PARM++ case is corrected at least once
    assert "PARM++ fixed" in result.stdout
    assert _run("demo", "--out", demo).exit_code == 0  # a rerun resumes: nothing left to generate


def test_demo_shows_a_case_whose_failed_parm_pick_parm_plus_plus_fixed(tmp_path: Path) -> None:
    from imgcot.cli import corrected_case
    from imgcot.search.result import RoundTrace
    from imgcot.worlds.shapes.detector import ShapesDetector

    entries = [m for m in subset(load_benchmark(), 1) if m["tag"] in ("counting", "position")]
    good = [load_image(render_ground_truth(entries, tmp_path / "gt", images_per_prompt=1) / f"{i:05d}" / "samples"
                       / "0000.png") for i in range(len(entries))]  # fmt: skip
    blank = np.full_like(good[0], 255)

    def result(first, last):
        rounds = [RoundTrace(0, first), RoundTrace(1, last)]
        return SimpleNamespace(image=last, rounds=rounds)

    already_right = result(good[0], good[0])
    fixed = result(blank, good[1])
    assert corrected_case([already_right, fixed], entries, ShapesDetector()) == (1, 1, 1)
    never_fixed = result(blank, blank)
    assert corrected_case([never_fixed, already_right], entries[::-1], ShapesDetector()) == (None, 1, 0)


def test_score_records_an_unreadable_image_and_goes_on(tmp_path: Path, prompts: Path) -> None:
    _run("shapes", "render", "--prompts", prompts, "--out", tmp_path / "gt", "--images-per-prompt", "2")
    (tmp_path / "gt" / "00003" / "samples" / "0000.png").write_bytes(b"\x89PNG garbage")
    result = _run("geneval", "score", tmp_path / "gt")
    assert result.exit_code == 0, result.stderr
    assert "Total images: 12" in result.stdout and "% correct images: 91.67%" in result.stdout
    records = [json.loads(line) for line in (tmp_path / "gt" / "results.jsonl").read_text().splitlines()]
    assert [r["reason"].split(":")[0] for r in records if not r["correct"]] == ["unreadable image"]


def test_network_is_blocked() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError, match="blocked"):
        sock.connect(("127.0.0.1", 9))

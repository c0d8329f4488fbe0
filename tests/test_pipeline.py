"""Generate-and-score runs: GenEval layout, resume without redoing work, byte-identical PNGs, CLI wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.geneval.layout import prompt_dir as prompt_folder
from imgcot.pipeline import eval_generate, finished
from imgcot.worlds.shapes.prompts import parse_prompt
from tiny import tiny_generator

PROMPTS = ["a photo of a red star", "a photo of three hearts", "a photo of a cross below a square"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-maskgit")
    tiny_generator("maskgit", folder)
    return folder


def _metas():
    return [parse_prompt(p) for p in PROMPTS]


def test_resume_skips_finished_prompts_and_matches_an_uninterrupted_run(model_dir, tmp_path):
    from imgcot.generators.maskgit import MaskGITGenerator

    gen = MaskGITGenerator.from_pretrained(model_dir)
    whole = tmp_path / "whole"
    eval_generate(gen, _metas(), whole, images_per_prompt=2, seed=3, batch_size=4)
    part = tmp_path / "part"
    eval_generate(gen, _metas()[:2], part, images_per_prompt=2, seed=3, batch_size=4)  # "killed" after 2 prompts
    first = (prompt_folder(part, 0) / "samples" / "0000.png").stat().st_mtime_ns
    compute = eval_generate(gen, _metas(), part, images_per_prompt=2, seed=3, batch_size=2)
    assert (prompt_folder(part, 0) / "samples" / "0000.png").stat().st_mtime_ns == first  # not redone
    assert all(finished(prompt_folder(part, i), 2) for i in range(3))
    for i in range(3):
        for k in range(2):
            name = Path(f"{i:05d}") / "samples" / f"{k:04d}.png"
            assert (whole / name).read_bytes() == (part / name).read_bytes()  # batch size and resume change nothing
    assert compute["generator_forwards"] == 3 * 2 * 2 * gen.num_steps


def test_eval_command_writes_results_summary_and_compute(model_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(m) + "\n" for m in _metas()))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--model",
            str(model_dir),
            "--images-per-prompt",
            "2",
            "--batch-size",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"overall", "tasks", "images", "prompts", "compute"}
    assert summary["compute"]["generator_forwards"] > 0 and summary["compute"]["wall_seconds"] > 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {"filename", "tag", "prompt", "correct", "reason", "metadata"} <= set(
        json.loads(lines[0])
    )


def test_eval_parm_keep_is_recorded_and_bounds_the_compute(model_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(m) + "\n" for m in _metas()))
    spent = {}
    for keep in (None, 1):
        out = tmp_path / f"keep-{keep}"
        args = ["eval", "--prompts", str(prompts), "--out", str(out), "--model", str(model_dir), "--strategy", "parm"]
        args += ["--n", "4", "--images-per-prompt", "1"] + ([] if keep is None else ["--keep", str(keep)])
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary.get("keep") == keep
        spent[keep] = summary["compute"]["generator_forwards"]
    assert 0 < spent[1] <= spent[None]


def test_a_run_resumes_only_with_its_own_settings(model_dir, tmp_path):
    from imgcot.generators.maskgit import MaskGITGenerator

    gen, out = MaskGITGenerator.from_pretrained(model_dir), tmp_path / "run"
    eval_generate(gen, _metas()[:1], out, images_per_prompt=1, seed=3, batch_size=4)
    eval_generate(gen, _metas(), out, images_per_prompt=1, seed=3, batch_size=2)  # same settings: resumes
    assert all(finished(prompt_folder(out, i), 1) for i in range(3))
    with pytest.raises(ValueError, match="other settings"):
        eval_generate(gen, _metas(), out, images_per_prompt=1, seed=4, batch_size=4)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(m) + "\n" for m in _metas()))
    args = ["eval", "--prompts", str(prompts), "--out", str(out), "--model", str(model_dir)]
    args += ["--images-per-prompt", "1"]
    result = CliRunner().invoke(app, [*args, "--seed", "3"])
    assert result.exit_code != 0 and "other settings" in result.stderr  # the CLI also names the model
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error:")


def test_generate_same_seed_gives_identical_png_bytes_and_step_images(model_dir, tmp_path):
    runner = CliRunner()
    for name in ("a", "b"):
        args = [
            "generate",
            "a photo of a red star",
            "--model",
            str(model_dir),
            "--n",
            "3",
            "--seed",
            "7",
            "--out",
            str(tmp_path / name),
            "--save-steps",
            "--batch-size",
            "2",
        ]
        assert runner.invoke(app, args).exit_code == 0
    for k in range(3):
        assert (tmp_path / "a" / f"{k:04d}.png").read_bytes() == (tmp_path / "b" / f"{k:04d}.png").read_bytes()
    steps = sorted((tmp_path / "a" / "steps" / "0000").glob("step_*.png"))
    assert len(steps) == 4


def test_generate_bad_input_is_one_line(model_dir, tmp_path):
    exe = Path(sys.executable).parent / "imgcot"
    for args in (
        ["generate", "a photo of a dog", "--model", str(model_dir)],
        ["generate", "a photo of a star", "--model", str(tmp_path / "missing")],
        ["generate", "a photo of a star", "--model", str(model_dir), "--n", "0"],
        ["generate", "a photo of a star", "--model", str(model_dir), "--n", "4", "--keep", "2"],  # baseline
        ["generate", "a photo of a star", "--model", str(model_dir), "--strategy", "parm", "--keep", "0"],
    ):
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True)
        assert proc.returncode != 0
        assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
        assert "Traceback" not in proc.stderr


def test_images_are_valid_pngs(model_dir, tmp_path):
    from PIL import Image

    runner = CliRunner()
    runner.invoke(app, ["generate", "a photo of a heart", "--model", str(model_dir), "--out", str(tmp_path)])
    image = np.asarray(Image.open(tmp_path / "0000.png"))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8

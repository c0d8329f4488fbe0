"""`imgcot verifiers build-data|train` on a tiny random generator: data round trip, a trained folder that loads."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.verifiers.data import VerifierData
from imgcot.verifiers.registry import load_verifier
from imgcot.verifiers.shapes import load_role
from imgcot.worlds.shapes.prompts import parse_prompt
from tiny import tiny_generator

runner = CliRunner()


def _run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def test_build_data_then_train_gives_a_loadable_parm(tmp_path: Path) -> None:
    tiny_generator("maskgit", tmp_path / "gen")
    data, held, run = tmp_path / "data", tmp_path / "held", tmp_path / "run"
    common = ["--model", tmp_path / "gen", "--n-prompts", 3, "--images-per-prompt", 2]
    assert _run("verifiers", "build-data", "parm", "--out", data, "--seed", 5, *common).exit_code == 0
    assert _run("verifiers", "build-data", "parm", "--out", held, "--seed", 6, *common).exit_code == 0
    rows = VerifierData.load(data)
    assert len(rows) == 3 * 2 * 4  # one row per step of each path; the last step is the final image
    assert rows.info["seed"] == 5

    result = _run("verifiers", "train", "parm", "--data", data, "--heldout", held, "--out", run, "--steps", 3)
    assert result.exit_code == 0, result.output
    assert "held-out outcome" in result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["heldout"]) == {"outcome", "clarity", "potential"}
    verifier = load_verifier("parm", str(run / "final"))
    assert verifier.config.clarity_rule == "fixed"


def test_orm_trains_on_the_samples_of_both_generators_at_once(tmp_path: Path) -> None:
    folders = []
    for kind in ("maskgit", "ar"):
        tiny_generator(kind, tmp_path / kind)
        folders += ["--data", tmp_path / f"data-{kind}"]
        common = ["--model", tmp_path / kind, "--n-prompts", 2, "--images-per-prompt", 2, "--seed", 5]
        assert _run("verifiers", "build-data", "orm", "--out", folders[-1], *common).exit_code == 0
    result = _run("verifiers", "train", "orm", *folders, "--out", tmp_path / "run", "--steps", 2)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert info["kind"] == "shapes-verifier" and info["role"] == "orm"
    missing = _run("verifiers", "train", "orm", *folders, "--data", tmp_path / "nope", "--out", tmp_path / "r2")
    assert missing.exit_code == 1 and "no data folder" in missing.output


def test_orm_zs_needs_no_generator(tmp_path: Path) -> None:
    result = _run("verifiers", "build-data", "orm-zs", "--out", tmp_path / "zs", "--n-prompts", 4, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert VerifierData.load(tmp_path / "zs").info["role"] == "orm-zs"


def test_tag_draws_prompts_of_that_tag_only(tmp_path: Path) -> None:
    result = _run("verifiers", "build-data", "orm-zs", "--out", tmp_path / "p", "--n-prompts", 4, "--tag", "position")
    assert result.exit_code == 0, result.output
    rows = VerifierData.load(tmp_path / "p")
    grounded = _run(
        "verifiers", "train", "orm", "--data", tmp_path / "p", "--out", tmp_path / "g", "--steps", 2,
        "--grounding", "--ground-weight", 0.5, "--word-evidence",
    )  # fmt: skip
    assert grounded.exit_code == 0, grounded.output
    saved = json.loads((tmp_path / "g" / "train_config.json").read_text())
    assert saved["ground_weight"] == 0.5 and saved["net"]["grounding"] and saved["net"]["word_evidence"]
    assert load_role("orm", tmp_path / "g" / "final").config.net.word_evidence
    renders = rows.extras["source"] == 0  # constructed positives: the drawn prompts themselves
    assert rows.info["tags"] == ["position"] and renders.any()
    for i in renders.nonzero().flatten().tolist():
        assert parse_prompt(rows.prompts[int(rows.prompt_id[i])])["tag"] == "position"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = [
        (["verifiers", "build-data", "rm", "--out", tmp_path / "x"], "unknown verifier role"),
        (["verifiers", "train", "parm", "--data", tmp_path / "missing", "--out", tmp_path / "r"], "no data folder"),
        (["verifiers", "build-data", "orm-zs", "--out", tmp_path / "x", "--n-prompts", 0], "--n-prompts"),
        (["verifiers", "build-data", "orm-zs", "--out", tmp_path / "x", "--tag", "shapes"], "unknown tag"),
        (
            ["verifiers", "train", "orm", "--data", tmp_path, "--out", tmp_path / "r", "--ground-weight", 1],
            "--grounding",
        ),
        (["verifiers", "train", "orm", "--data", tmp_path, "--out", tmp_path / "r", "--word-evidence"], "--grounding"),
    ]
    for args, fragment in cases:
        result = _run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert fragment in result.output

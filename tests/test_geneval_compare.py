"""`imgcot geneval compare`: the paired, tag-stratified bootstrap of the GenEval overall score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.geneval.compare import bootstrap_overall, compare, load_arms, overall_score
from imgcot.geneval.score import ScoreError, summarize

TAG_PROMPTS = {"single_object": 3, "counting": 5, "position": 6}
IMAGES = 4


def records(correct: dict[tuple[int, int], bool]) -> list[dict]:
    """Results records of prompts in TAG_PROMPTS' order, IMAGES each; `correct[(prompt, image)]` (default False)."""
    out, prompt = [], 0
    for tag, n in TAG_PROMPTS.items():
        for k in range(n):
            meta = json.dumps({"tag": tag, "prompt": f"{tag} {k}"})
            for image in range(IMAGES):
                out.append({
                    "filename": f"run/{prompt:05d}/samples/{image:04d}.png",
                    "tag": tag,
                    "prompt": f"{tag} {k}",
                    "correct": correct.get((prompt, image), False),
                    "metadata": meta,
                })  # fmt: skip
            prompt += 1
    return out


def write(tmp_path: Path, name: str, recs: list[dict]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return folder


def random_correct(seed: int, p: float = 0.5) -> dict[tuple[int, int], bool]:
    rng = np.random.default_rng(seed)
    total = sum(TAG_PROMPTS.values())
    return {(i, j): bool(rng.random() < p) for i in range(total) for j in range(IMAGES)}


def test_overall_follows_genevals_summary_and_pools_runs_as_their_mean(tmp_path):
    runs = [records(random_correct(s)) for s in (1, 2, 3)]
    paths = [write(tmp_path, f"r{s}", r) for s, r in enumerate(runs)]
    singles = load_arms([(str(p), [p]) for p in paths])
    for arm, recs in zip(singles, runs, strict=True):
        assert overall_score(arm) == pytest.approx(summarize(recs)["overall"])
    pooled = load_arms([("seeds", paths)])[0]
    assert pooled.runs == 3
    assert overall_score(pooled) == pytest.approx(np.mean([summarize(r)["overall"] for r in runs]))


def test_identical_arms_differ_by_nothing(tmp_path):
    a = write(tmp_path, "a", records(random_correct(4)))
    b = write(tmp_path, "b", records(random_correct(4)))
    rows = compare(load_arms([("a", [a]), ("b", [b])]), resamples=500)
    assert rows[1]["difference"] == 0
    assert rows[1]["interval"] == [0.0, 0.0]
    assert rows[1]["ahead"] == 0.0


def test_one_more_correct_image_moves_the_score_by_its_share(tmp_path):
    base = random_correct(5)
    flip = next(k for k, v in base.items() if k[0] >= 8 and not v)  # a wrong image of a position prompt
    a = write(tmp_path, "a", records(base))
    b = write(tmp_path, "b", records({**base, flip: True}))
    rows = compare(load_arms([("a", [a]), ("b", [b])]), resamples=2000)
    share = 1 / (TAG_PROMPTS["position"] * IMAGES) / len(TAG_PROMPTS)
    assert rows[1]["difference"] == pytest.approx(share)
    low, high = rows[1]["interval"]
    # a resample shows the gain once for each time it draws that prompt, and none when it misses it
    assert low >= 0 and high >= share and (high / share) == pytest.approx(round(high / share))
    assert 0.5 < rows[1]["ahead"] < 1.0


def test_a_clear_gain_has_an_interval_above_zero_and_a_tie_straddles_it(tmp_path):
    base = random_correct(6, p=0.3)
    better = {k: v or k[0] < 8 for k, v in base.items()}  # every single_object and counting image right
    a, b = write(tmp_path, "a", records(base)), write(tmp_path, "b", records(better))
    c = write(tmp_path, "c", records(random_correct(7, p=0.3)))  # same rate, other draws
    rows = compare(load_arms([("a", [a]), ("b", [b]), ("c", [c])]), resamples=2000)
    assert rows[1]["interval"][0] > 0 and rows[1]["ahead"] == 1.0
    assert rows[2]["interval"][0] < 0 < rows[2]["interval"][1]


def test_the_resampling_is_paired_and_seeded(tmp_path):
    arms = load_arms([(n, [write(tmp_path, n, records(random_correct(s)))]) for n, s in (("a", 1), ("b", 2))])
    first, again = bootstrap_overall(arms, 300, seed=3), bootstrap_overall(arms, 300, seed=3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, bootstrap_overall(arms, 300, seed=4))
    # the same prompts drawn for both arms: an arm compared with itself never varies
    twin = load_arms([("a", [tmp_path / "a"]), ("a2", [tmp_path / "a"])])
    boot = bootstrap_overall(twin, 300, seed=3)
    np.testing.assert_array_equal(boot[0], boot[1])


def test_runs_over_different_prompts_are_refused(tmp_path):
    a = write(tmp_path, "a", records({}))
    b = write(tmp_path, "b", [r for r in records({}) if not r["filename"].startswith("run/00000/")])
    with pytest.raises(ScoreError, match="score different prompts"):
        load_arms([("a", [a]), ("b", [b])])


def test_cli_prints_the_table_and_writes_json(tmp_path):
    a = write(tmp_path, "a", records(random_correct(1)))
    b1 = write(tmp_path, "b1", records(random_correct(2)))
    b2 = write(tmp_path, "b2", records(random_correct(3)))
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(
        app, ["geneval", "compare", str(a), f"seeds={b1},{b2}", "--resamples", "200", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "| seeds | 2 |" in result.output and "(baseline)" in result.output
    saved = json.loads(out.read_text())
    assert [arm["name"] for arm in saved["arms"]] == [str(a), "seeds"] and saved["resamples"] == 200


def test_empty_or_malformed_results_are_refused(tmp_path):
    good = write(tmp_path, "good", records({}))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"tag": "counting", "correct": True}) + "\n")
    with pytest.raises(ScoreError, match="no results"):
        load_arms([("a", [good]), ("b", [empty])])
    with pytest.raises(ScoreError, match="not GenEval results"):
        load_arms([("a", [good]), ("b", [odd])])


@pytest.mark.parametrize(
    "args, message",
    [
        (["only"], "at least two arms"),
        (["missing", "missing2"], "no such file"),
        (["a", "b", "--resamples", "0"], "resamples must be >= 1"),
        (["a", "b", "--level", "1.5"], "level must be in"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    write(tmp_path, "a", records({}))
    write(tmp_path, "b", records({}))
    paths = [str(tmp_path / x) if x in ("a", "b", "only", "missing", "missing2") else x for x in args]
    result = CliRunner().invoke(app, ["geneval", "compare", *paths])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]

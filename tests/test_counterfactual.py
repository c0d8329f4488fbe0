"""Counterfactual verifier rows: the same image under changed prompts, labelled by the evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.verifiers.counterfactual import build_counterfactual, counterfactual_prompts
from imgcot.verifiers.data import PARM_COLUMNS, VerifierData, shapes_evaluator
from imgcot.worlds.shapes.prompts import parse_prompt
from imgcot.worlds.shapes.sampler import sample_scene
from imgcot.worlds.shapes.scenes import render

BELOW, ABOVE = "a photo of a cross below a square", "a photo of a cross above a square"


def test_changed_prompts_keep_the_objects_and_are_template_sentences() -> None:
    relations = [m["prompt"] for m in counterfactual_prompts(parse_prompt(BELOW), np.random.default_rng(0))]
    assert sorted(relations) == sorted(
        [ABOVE, "a photo of a cross left of a square", "a photo of a cross right of a square"]
    )
    binding = counterfactual_prompts(parse_prompt("a photo of a red star and a blue circle"), np.random.default_rng(0))
    assert "a photo of a blue star and a red circle" in [m["prompt"] for m in binding]
    for meta in binding:  # the same two objects, only colours change
        assert [c["class"] for c in meta["include"]] == ["star", "circle"]
    assert counterfactual_prompts(parse_prompt("a photo of a star"), np.random.default_rng(0)) == []
    four = counterfactual_prompts(parse_prompt("a photo of four squares"), np.random.default_rng(0))
    assert [m["prompt"] for m in four] == ["a photo of three squares"]  # "exactly 5" has no template sentence


def _paths() -> VerifierData:
    """Two 2-step paths of ground-truth renders, both prompted 'cross below square': path 0 shows it (correct),
    path 1 shows the cross above (wrong). Path 0's first step is clear by the fixed rule, path 1's is not."""
    images = []
    for text in (BELOW, ABOVE):
        final = torch.from_numpy(render(sample_scene(parse_prompt(text), 3)))
        images += [final.flip(0), final]  # a preview (any image) then the final image
    labels = {name: torch.full((4,), math.nan) for name in PARM_COLUMNS}
    labels["outcome"] = torch.tensor([math.nan, 1.0, math.nan, 0.0])
    labels["clarity_fixed"] = torch.tensor([1.0, 1.0, 0.0, 1.0])
    labels["clarity_learned"] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    extras = {"path_id": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    step, total = torch.tensor([1, 2, 1, 2]), torch.full((4,), 2)
    return VerifierData(torch.stack(images), torch.zeros(4, dtype=torch.long), step, total, labels, extras, [BELOW])


def test_rows_carry_the_evaluators_verdict_under_the_changed_prompt() -> None:
    data = _paths()
    rows = build_counterfactual(data, seed=0)
    evaluate = shapes_evaluator()
    finals = rows.step == rows.num_steps
    assert int(finals.sum()) == 2 * 3  # two paths x three other relations
    for i in finals.nonzero().flatten().tolist():
        meta = parse_prompt(rows.prompts[int(rows.prompt_id[i])])
        assert rows.label("outcome")[i] == float(evaluate(meta, rows.images[i].numpy())[0])
    above = rows.prompts.index(ABOVE)
    verdict = {int(rows.extras["path_id"][i]): float(rows.label("outcome")[i])
               for i in finals.nonzero().flatten().tolist() if int(rows.prompt_id[i]) == above}  # fmt: skip
    assert verdict == {0: 0.0, 1: 1.0}  # the wrong image is right for the flipped prompt
    # Path 0's clear first step inherits the final verdict (fixed rule only); path 1's unclear one is not copied.
    first = (rows.step == 1).nonzero().flatten().tolist()
    assert len(first) == 3 and all(int(rows.extras["path_id"][i]) == 0 for i in first)
    path0_finals = (finals & (rows.extras["path_id"] == 0)).nonzero().flatten().tolist()
    final_of = {int(rows.prompt_id[j]): j for j in path0_finals}
    for i in first:
        assert rows.label("potential_fixed")[i] == rows.label("outcome")[final_of[int(rows.prompt_id[i])]]
        assert math.isnan(rows.label("potential_learned")[i])
    assert rows.label("clarity_fixed").isnan().all()  # clarity is taught by the source rows only


def test_final_images_without_path_ids_are_each_their_own_path() -> None:
    data = _paths()
    finals = data.select(data.step == data.num_steps)
    alone = VerifierData(finals.images, finals.prompt_id, finals.step, finals.num_steps, finals.labels, {}, [BELOW])
    rows = build_counterfactual(alone, seed=0)
    assert len(rows) == 2 * 3 and sorted(set(rows.extras["path_id"].tolist())) == [0.0, 1.0]


def test_data_without_paths_is_refused_and_the_cli_writes_a_folder(tmp_path: Path) -> None:
    data = _paths()
    no_paths = VerifierData(data.images, data.prompt_id, data.step, data.num_steps, data.labels, {}, data.prompts)
    with pytest.raises(ValueError, match="sampled paths"):  # steps without path ids
        build_counterfactual(no_paths)
    data.save(tmp_path / "src")
    runner = CliRunner()
    result = runner.invoke(app, ["verifiers", "counterfactual", str(tmp_path / "src"), "--out", str(tmp_path / "cf")])
    assert result.exit_code == 0, result.output
    assert len(VerifierData.load(tmp_path / "cf")) == len(build_counterfactual(data, seed=0))
    missing = runner.invoke(app, ["verifiers", "counterfactual", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no data folder" in missing.output

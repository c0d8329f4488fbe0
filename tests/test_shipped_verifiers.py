"""Every shipped shapes verifier loads strictly by its registered name and, on fresh samples of the generator it was
trained for, scores the images the evaluator accepts above those it rejects: a check that fails for an untrained or
mis-registered network. (The verifiers learn from their generator's own samples, so these are the inputs they
are meant to judge; exact renders and gross mismatches are out of their distribution.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcot.generators.registry import load_generator, registered_models, weights_root
from imgcot.geneval.judge import judge
from imgcot.nn.io import read_config
from imgcot.search import run_strategy
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.benchmark import dev_prompts, subset
from imgcot.worlds.shapes.detector import ShapesDetector


def _config(name: str) -> dict:
    return read_config(weights_root() / name)


SHIPPED_VERIFIERS = [name for name in registered_models() if _config(name)["kind"] == "shapes-verifier"]


def test_both_generators_have_their_own_outcome_and_parm_verifiers() -> None:
    assert {"shapes-orm", "shapes-parm", "shapes-ar-orm", "shapes-ar-parm"} <= set(SHIPPED_VERIFIERS)


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[list[str], torch.Tensor, torch.Tensor]]:
    """Per generator: prompts, 3 samples of each of 4 dev prompts per tag (seeded), the evaluator's verdicts."""
    entries = subset(dev_prompts(), 4)
    out = {}
    for model in ("shapes-maskgit", "shapes-ar"):
        metas = [m for m in entries for _ in range(3)]
        results = run_strategy("baseline", load_generator(model), [m["prompt"] for m in metas],
                               [[900 + i] for i in range(len(metas))], None)  # fmt: skip
        images = [r.image for r in results]
        verdicts = [judge(m, image, ShapesDetector())[0] for m, image in zip(metas, images, strict=True)]
        out[model] = ([m["prompt"] for m in metas], torch.from_numpy(np.stack(images)),
                      torch.tensor(verdicts))  # fmt: skip
    return out


@pytest.mark.parametrize("name", SHIPPED_VERIFIERS)
def test_shipped_verifier_prefers_the_samples_the_evaluator_accepts(name, samples) -> None:
    verifier = load_verifier(_config(name)["role"], name)
    prompts, images, correct = samples["shapes-ar" if name.startswith("shapes-ar-") else "shapes-maskgit"]
    assert 0 < correct.sum() < len(correct)
    scores = verifier.score(prompts, images)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[correct].mean() > scores[~correct].mean() + 0.2


def test_the_ar_models_get_their_own_verifiers_unless_one_is_named(tmp_path) -> None:
    from typer.testing import CliRunner

    from imgcot.cli import app
    from tiny import tiny_generator

    runner = CliRunner()
    for kind, expected in (("ar", "shapes-ar-parm"), ("maskgit", None)):
        folder = tmp_path / kind
        tiny_generator(kind, folder)
        args = ["generate", "a photo of a star", "--model", str(folder), "--strategy", "parm", "--n", "2"]
        result = runner.invoke(app, [*args, "--out", str(tmp_path / f"out-{kind}")])
        assert result.exit_code == 0, result.output
        assert (expected is not None) == (f"verifier: {expected}" in result.stderr)
        named = runner.invoke(app, [*args, "--verifier", "shapes-parm", "--out", str(tmp_path / f"named-{kind}")])
        assert named.exit_code == 0 and "trained on this generator's samples" not in named.stderr

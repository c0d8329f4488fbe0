"""DPO on the real-model adapters (`hf-janus:`, `hf-showo:`) through the command line, on tiny random models.

Each model is built from configs, saved in the layout a user's checkpoint has, and loaded through the same names a
user types; labels come from a real-image verifier (`hf-vlm:` a tiny LLaVA-OneVision, `hf-clip:` a tiny CLIP as the
guide). The aligned folders load back with `--model hf-janus:<out>` / `hf-showo:<out>` and generate. Nothing is
downloaded (conftest blocks the network); the weights are random, so nothing here is about image quality.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.dpo.config import TRAIN_PROMPT_SEED, DPOConfig
from imgcot.dpo.iterate import ROUND_SEED_STRIDE
from imgcot.dpo.pairs import COLUMNS, read_pairs, sample_tokens
from imgcot.dpo.train import train_dpo
from imgcot.generators.registry import load_generator
from imgcot.generators.run import run_to_end
from imgcot.geneval.spec import dumps
from imgcot.hf.tiny import tiny_clip, tiny_llava_onevision
from imgcot.hf.tiny_generators import tiny_janus, tiny_showo
from imgcot.pipeline import image_seed
from imgcot.verifiers.registry import load_verifier

K = 4  # images per prompt
METAS = [  # GenEval-format training prompts with COCO classes (not the shapes world's, not GenEval's test file)
    {"tag": "single_object", "include": [{"class": "car", "count": 1}], "prompt": "a photo of a car"},
    {"tag": "colors", "include": [{"class": "bench", "count": 1, "color": "red"}], "prompt": "a photo of a red bench"},
    {"tag": "counting", "include": [{"class": "dog", "count": 2}], "exclude": [{"class": "dog", "count": 3}],
     "prompt": "a photo of two dogs"},
]  # fmt: skip
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("hfdpo"))


def tiny_world(root) -> dict:
    """Tiny random Janus, Show-o, LLaVA-OneVision judge and CLIP saved under `root`, and the training prompts."""
    prompts = root / "train.jsonl"
    prompts.write_text("".join(dumps(m) + "\n" for m in METAS))
    return {
        "janus": tiny_janus(root / "janus"),
        "showo": tiny_showo(root / "showo"),
        "judge": tiny_llava_onevision(root / "llava"),
        "clip": tiny_clip(root / "clip"),
        "prompts": prompts,
    }


def model_name(world, kind: str) -> str:
    return f"hf-{kind}:{world[kind]}"


def splitting_threshold(model: str, judge, rounds: int) -> float:
    """A labeller threshold inside the judge's scores: the median of its P(yes) on the base model's samples with the
    image seeds build-pairs draws in each round. A tiny random judge's P(yes) lies in a narrow band near 0.5, so the
    default 0.5 would label everything "no"; a user calibrates --threshold to a judge's scores the same way."""
    generator = load_generator(model)
    verifier = load_verifier("orm", f"hf-vlm:{judge}")
    rows = [m["prompt"] for m in METAS for _ in range(K)]
    scores = []
    for r in range(rounds):
        seeds = [
            image_seed(TRAIN_PROMPT_SEED + ROUND_SEED_STRIDE * r, i, k) for i in range(len(METAS)) for k in range(K)
        ]
        scores.append(verifier.score(rows, sample_tokens(generator, rows, seeds)[1]).view(len(METAS), K))
    threshold = float(torch.cat([s.flatten() for s in scores]).median())
    for s in scores:  # every round has a prompt with a "yes" and a "no": a pair to train on
        assert ((s >= threshold).any(1) & (s < threshold).any(1)).any()
    return threshold


def pair_args(world, kind: str, threshold: float) -> list[str]:
    return ["--model", model_name(world, kind), "--prompts", str(world["prompts"]), "--n-prompts", "3",
            "--images-per-prompt", str(K), "--labeler", "orm", "--verifier", f"hf-vlm:{world['judge']}",
            "--threshold", repr(threshold)]  # fmt: skip


def built_pairs(world, kind: str, path, *guide: str) -> tuple[str, float]:
    """`dpo build-pairs` for one tiny model into `path`, with the guide options `guide`: (model name, threshold)."""
    model = model_name(world, kind)
    threshold = splitting_threshold(model, world["judge"], rounds=1)
    result = runner.invoke(app, ["dpo", "build-pairs", *pair_args(world, kind, threshold), *guide, "--out", str(path)])
    assert result.exit_code == 0, result.output
    return model, threshold


def weights_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def language_model(generator):
    return generator.model.model.language_model if generator.causal else generator.model.showo


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def generates(generator) -> bool:
    state = run_to_end(generator, generator.init(["a photo of a car"], [5]))
    image = generator.decode(state)
    size = generator.image_size
    return image.dtype == torch.uint8 and tuple(image.shape) == (1, size, size, 3)


@pytest.mark.parametrize("kind", ["janus", "showo"])
def test_build_pairs_train_and_reload_a_real_model(world, kind, tmp_path):
    pairs = tmp_path / "pairs.parquet"
    guide = ["--guide", "orm", "--guide-verifier", f"hf-clip:{world['clip']}"]
    model, threshold = built_pairs(world, kind, pairs, *guide, "--device", "cpu", "--judge-device", "cpu",
                                   "--judge-dtype", "fp32")  # fmt: skip
    table = pq.read_table(pairs)
    assert set(COLUMNS) <= set(table.column_names) and table.num_rows > 0  # TRL's prompt / chosen / rejected
    data = table.to_pydict()
    assert all(png.startswith(b"\x89PNG") for png in data["chosen"] + data["rejected"])
    assert set(data["prompt"]) <= {m["prompt"] for m in METAS}
    assert all(c >= threshold > r for c, r in zip(data["chosen_score"], data["rejected_score"], strict=True))
    assert all(0.0 <= g <= 1.0 for g in data["chosen_guide"])  # the CLIP guide scored them

    out = tmp_path / "aligned"
    train = ["dpo", "train", "--model", model, "--pairs", str(pairs), "--out", str(out), "--steps", "2",
             "--device", "cpu", "--dtype", "fp32"]  # fmt: skip
    result = runner.invoke(app, train)
    assert result.exit_code == 0, result.output
    assert f"use --model hf-{kind}:{out}" in result.output
    base, aligned = load_generator(model), load_generator(f"hf-{kind}:{out}")
    lm_before, lm_after = weights_of(language_model(base)), weights_of(language_model(aligned))
    assert changed(lm_before, lm_after)  # DPO moved the language model
    assert generates(aligned)
    resumed = runner.invoke(app, [*train, "--resume"])  # the checkpoint (tied weights stored once) loads back
    assert resumed.exit_code == 0, resumed.output
    assert not changed(lm_after, weights_of(language_model(load_generator(f"hf-{kind}:{out}"))))

    # the library call the command makes: the reference (the generator itself by default) keeps its weights
    before = weights_of(base.model)
    trained = train_dpo(base, read_pairs(pairs, images=False), tmp_path / "lib", DPOConfig(steps=1, batch_size=2))
    assert not changed(before, weights_of(base.model))
    assert changed(before, weights_of(trained.model))
    if kind == "showo":  # the sampler's own trajectory (--logp trajectory) trains Show-o too
        data = read_pairs(pairs, images=False)
        assert data.chosen_order is not None and int(data.chosen_order.max()) == base.num_steps - 1
        traj = train_dpo(base, data, tmp_path / "traj", DPOConfig(steps=1, batch_size=2, logp="trajectory"))
        assert changed(before, weights_of(traj.model))


@pytest.mark.parametrize("kind", ["janus", "showo"])
def test_iterate_two_rounds_reloads_each_round_through_the_hf_path(world, kind, tmp_path):
    model = model_name(world, kind)
    threshold = splitting_threshold(model, world["judge"], rounds=2)
    out = tmp_path / "iter"
    args = ["dpo", "iterate", *pair_args(world, kind, threshold), "--rounds", "2", "--steps", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "round 1:" in result.output and "round 2:" in result.output
    assert f"use --model hf-{kind}:{out}" in result.output
    assert read_pairs(out / "round2" / "pairs.parquet", images=False).info["round"] == 2
    base = weights_of(language_model(load_generator(model)))
    one = weights_of(language_model(load_generator(f"hf-{kind}:{out / 'round1' / 'model'}")))
    final = load_generator(f"hf-{kind}:{out}")
    last = weights_of(language_model(final))
    assert changed(base, one) and changed(one, last)  # round 2 trained on from round 1's model
    assert generates(final)

    rerun = runner.invoke(app, args)  # resumes: both rounds done, the last round's model reloaded via hf-<kind>:
    assert rerun.exit_code == 0, rerun.output
    assert "round 1:" not in rerun.output
    assert not changed(last, weights_of(language_model(load_generator(f"hf-{kind}:{out}"))))


def test_real_models_need_a_real_image_labeller(world, tmp_path):
    common = ["--model", model_name(world, "janus"), "--prompts", str(world["prompts"]), "--out", str(tmp_path / "o")]
    cases = [
        (["dpo", "build-pairs", *common, "--labeler", "oracle"], "error: --labeler oracle is the shapes world's"),
        (["dpo", "iterate", *common, "--labeler", "orm"], "needs --verifier hf-vlm:<id> or hf-clip:<id>"),
        (["dpo", "build-pairs", *common, "--labeler", "orm", "--verifier", f"hf-vlm:{world['judge']}", "--guide",
          "parm"], "needs --guide-verifier hf-vlm:<id>"),
    ]  # fmt: skip
    for args, fragment in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("kind", "logp"), [("janus", "masked"), ("showo", "trajectory")])
def test_step_credited_dpo_on_a_real_model(world, kind, logp, tmp_path):
    """A vision-language PARM judges every step of every sample; DPO then scores each rejected image up to the step
    where that judge first called it hopeless (`--credit until-failure`)."""
    pairs = tmp_path / "pairs.parquet"
    model, _ = built_pairs(world, kind, pairs, "--guide", "parm", "--guide-verifier", f"hf-vlm:{world['judge']}",
                           "--judge-steps")  # fmt: skip
    data = read_pairs(pairs, images=False)
    generator = load_generator(model)
    assert data.rejected_potential.shape == (len(data), generator.num_steps)
    judged = data.rejected_potential[~data.rejected_potential.isnan()]
    assert bool(((judged >= 0) & (judged <= 1)).all())
    out = tmp_path / "aligned"
    train = ["dpo", "train", "--model", model, "--pairs", str(pairs), "--out", str(out), "--steps", "2",
             "--logp", logp, "--credit", "until-failure"]  # fmt: skip
    result = runner.invoke(app, train)
    assert result.exit_code == 0, result.output
    assert changed(
        weights_of(language_model(generator)), weights_of(language_model(load_generator(f"hf-{kind}:{out}")))
    )

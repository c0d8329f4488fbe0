"""Real-architecture judges on tiny random models: LLaVA-OneVision and Qwen2-VL (hf-vlm), CLIP (hf-clip), judge
fine-tuning. Every model is built from configs, saved with save_pretrained and loaded through load_verifier, the
path a user's checkpoint takes. No network: conftest blocks sockets and sets the hub clients offline."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.core import Reflection
from imgcot.fileio import save_png
from imgcot.geneval.score import read_results, score_folder
from imgcot.hf.clip_verifier import CLIPVerifier, clip_probability
from imgcot.hf.judge_data import clarity_label, load_images, load_judge_data, write_samples_with_steps
from imgcot.hf.judge_finetune import JudgeTrainConfig, batch_indices, finetune_judge
from imgcot.hf.tiny import tiny_clip, tiny_llava_onevision, tiny_qwen2_vl
from imgcot.hf.vlm_judge import VLMJudge, VLMJudgeConfig, answer_token_ids, yes_probability
from imgcot.reflection.clauses import critique_text, teacher_clauses
from imgcot.search import STRATEGIES, candidate_seeds, run_strategy
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.prompts import parse_prompt
from tiny import tiny_generator

PROMPTS = [
    "a photo of a red star",
    "a photo of three hearts",
    "a photo of a cross below a blue square",
    "a photo of a circle",
]
CPU = VLMJudgeConfig(device="cpu", batch_size=8)


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "llava": tiny_llava_onevision(root / "llava"),
        "qwen": tiny_qwen2_vl(root / "qwen"),
        "qwen25": tiny_qwen2_vl(root / "qwen25", version="2.5"),
        "clip": tiny_clip(root / "clip"),
    }


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return tiny_generator("maskgit", tmp_path_factory.mktemp("gen") / "maskgit", steps=4)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))


def _judge(folders, arch: str, role: str = "parm", **config) -> VLMJudge:
    return VLMJudge.from_pretrained(folders[arch], role=role, config=VLMJudgeConfig(**{"device": "cpu", **config}))


# --- yes/no scoring -----------------------------------------------------------------------------------------------
def test_yes_no_tokens_cover_casings_and_normalise(folders):
    judge = _judge(folders, "llava")
    yes, no = answer_token_ids(judge.tokenizer)
    decoded = {judge.tokenizer.decode([i]) for i in yes}
    assert {"yes", "Yes", " yes", " Yes"} <= decoded and len(no) >= 4
    logits = torch.full((2, judge.model.config.text_config.vocab_size), -30.0)
    logits[0, yes[0]], logits[0, yes[1]], logits[0, no[0]] = 1.0, 1.0, 2.0  # P(yes) = 2e / (2e + e^2)
    logits[1, no[0]] = 5.0
    expected = 2 * np.e / (2 * np.e + np.e**2)
    probs = yes_probability(logits, yes, no)
    assert probs[0].item() == pytest.approx(expected, abs=1e-6) and probs[1].item() < 1e-3


@pytest.mark.parametrize("arch", ["llava", "qwen", "qwen25"])
def test_every_role_loads_through_the_registry_and_answers_probabilities(folders, arch):
    images = _images(4)
    for role in ("orm-zs", "orm", "prm", "parm"):
        judge = load_verifier(role, f"hf-vlm:{folders[arch]}")
        assert isinstance(judge, VLMJudge) and judge.role == role
        score = judge.score(PROMPTS, images)
        step = judge.judge(PROMPTS, images, 2, 4)
        for values in (score, step.clarity, step.potential, step.value):
            assert values.shape == (4,) and values.dtype == torch.float32
            assert bool(((values >= 0) & (values <= 1)).all())
        if role == "prm":
            assert torch.equal(step.clarity, torch.ones(4)) and torch.equal(step.value, step.potential)
    assert torch.equal(judge.score(PROMPTS, images), judge.score(PROMPTS, images))  # one forward, no sampling


@pytest.mark.parametrize("arch", ["llava", "qwen", "qwen25"])
def test_shared_prefix_equals_unshared_and_batching_changes_nothing(folders, arch):
    judge = _judge(folders, arch, batch_size=3)  # 4 rows -> batches of 3 and 1, different padding
    images = _images(4, seed=1)
    calls = []
    judge.model.register_forward_pre_hook(
        lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    shared = judge.yes_probabilities(PROMPTS, images, ["clarity", "potential"])
    (rows, prefix), (rows2, suffix) = calls[:2]
    del calls[:]
    unshared = judge.yes_probabilities(PROMPTS, images, ["clarity", "potential"], shared=False)
    assert rows2 == 2 * rows == 6  # the 2nd pass asks both questions of every row, over the suffix tokens only
    assert calls[0] == (3, prefix + suffix)  # unshared: a full pass over prefix and suffix per question
    torch.testing.assert_close(shared, unshared, atol=1e-5, rtol=0)
    one_by_one = torch.cat([judge.yes_probabilities(PROMPTS[i : i + 1], images[i : i + 1], ["clarity", "potential"])
                            for i in range(4)])  # fmt: skip
    torch.testing.assert_close(shared, one_by_one, atol=1e-5, rtol=0)
    step = judge.judge(PROMPTS, images, 1, 4)
    torch.testing.assert_close(torch.stack([step.clarity, step.potential], 1), shared)


@pytest.mark.parametrize("arch", ["llava", "qwen"])
def test_reflect_returns_core_reflections_with_greedy_capped_critiques(folders, arch):
    judge = _judge(folders, arch, max_critique_tokens=6)
    images = _images(3, seed=2)
    calls = []
    hook = judge.model.register_forward_pre_hook(lambda *a: calls.append(1))
    first = judge.reflect(PROMPTS[:3], images)
    hook.remove()
    again = judge.reflect(PROMPTS[:3], images)
    assert all(isinstance(r, Reflection) for r in first) and len(first) == 3
    torch.testing.assert_close(torch.tensor([r.aligned for r in first]), judge.score(PROMPTS[:3], images))
    assert [r.critique for r in first] == [r.critique for r in again]  # greedy: the same text every time
    for r in first:
        assert (r.critique == "") == r.ok
    misaligned = sum(not r.ok for r in first)
    assert len(calls) <= 1 + (6 if misaligned else 0)  # the score pass + at most one pass per new token


# --- every strategy end to end ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llava", "qwen"])
def test_every_strategy_runs_end_to_end_with_the_vlm_judge(folders, generator, arch):
    prompts = PROMPTS[:2]
    seeds = [candidate_seeds(100 + i, 3) for i in range(len(prompts))]
    for name in ("baseline", "orm-zs", "orm", "prm", "parm", "oracle"):
        role = STRATEGIES[name].verifier
        spec = None if role in (None, "oracle") else f"hf-vlm:{folders[arch]}"
        verifier = None if role is None else load_verifier(role, spec)
        results = run_strategy(name, generator, prompts, seeds, verifier)
        assert len(results) == 2
        for r in results:
            assert r.image.shape == (32, 32, 3) and r.image.dtype == np.uint8
        if role not in (None, "oracle"):
            assert sum(r.compute.verifier_calls for r in results) > 0, name


def test_cli_generate_with_a_vlm_judge_and_bad_specs(folders, generator, tmp_path):
    model = tmp_path / "gen"
    generator.save_pretrained(model)
    runner = CliRunner()
    args = ["generate", "a photo of a red star", "--model", str(model), "--n", "3", "--out", str(tmp_path / "o")]
    ok = runner.invoke(app, [*args, "--strategy", "parm", "--verifier", f"hf-vlm:{folders['llava']}"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o" / "0000.png").is_file()
    specs = ["hf-vlm:", f"hf-vlm:{tmp_path / 'missing'}", "hf-vlm:nobody/no-such-model", f"hf-vlm:{folders['clip']}",
             f"hf-clip:{folders['llava']}", f"hf-vlm:{folders['llava'] / 'config.json'}"]  # fmt: skip
    for spec in specs:
        bad = runner.invoke(app, [*args, "--strategy", "orm", "--verifier", spec])
        assert bad.exit_code == 1 and bad.output.strip().startswith("error:"), (spec, bad.output)
        assert "Traceback" not in bad.output


# --- CLIP ---------------------------------------------------------------------------------------------------------
def test_clip_probability_is_clipscore_clamped():
    got = clip_probability(torch.tensor([-0.3, 0.0, 0.2, 0.4, 0.9]))
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_clip_verifier_scores_and_serves_every_role(folders, generator):
    images = _images(4, seed=3)
    orm = load_verifier("orm", f"hf-clip:{folders['clip']}")
    assert isinstance(orm, CLIPVerifier)
    orm.config = type(orm.config)(device="cpu", batch_size=3)
    cos = orm.cosine(PROMPTS, images)
    assert bool(((cos >= -1) & (cos <= 1)).all()) and len(set(cos.tolist())) == 4
    torch.testing.assert_close(orm.score(PROMPTS, images), clip_probability(cos))
    torch.testing.assert_close(cos, torch.cat([orm.cosine(PROMPTS[i : i + 1], images[i : i + 1]) for i in range(4)]))
    step = load_verifier("parm", f"hf-clip:{folders['clip']}").judge(PROMPTS, images, 1, 4)
    assert torch.equal(step.clarity, torch.ones(4)) and torch.equal(step.potential, step.value)
    results = run_strategy("orm", generator, PROMPTS[:1], [candidate_seeds(7, 3)], orm)
    assert results[0].image.shape == (32, 32, 3)


# --- judge data and fine-tuning -----------------------------------------------------------------------------------
def _colour_data(root: Path) -> Path:
    """Four solid images: red ones labelled yes, blue ones no, for the same prompt."""
    rows = []
    for i in range(4):
        image = np.zeros((32, 32, 3), np.uint8)
        image[..., 0 if i % 2 == 0 else 2] = 220
        save_png(image, root / f"img{i}.png")
        rows.append({"image": f"img{i}.png", "prompt": "a photo of a red square", "kind": "orm",
                     "answer": "yes" if i % 2 == 0 else "no"})  # fmt: skip
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _orm_probs(folder: Path, data: Path) -> torch.Tensor:
    judge = load_verifier("orm", f"hf-vlm:{folder}")
    rows = load_judge_data(data)
    return judge.score([r["prompt"] for r in rows], load_images(rows))


def test_full_finetuning_moves_yes_probability_toward_labels_and_loads_back(folders, tmp_path):
    data = _colour_data(tmp_path)
    before = _orm_probs(folders["llava"], data)
    out = finetune_judge(
        folders["llava"], data, tmp_path / "ft", JudgeTrainConfig(steps=8, batch_size=4, lr=3e-3), CPU
    )
    after = _orm_probs(out, data)  # through load_verifier("orm", "hf-vlm:<out>")
    assert (after[0::2] > before[0::2]).all() and (after[1::2] < before[1::2]).all()  # yes up, no down
    assert (after[0::2].min() > after[1::2].max()).item()
    losses = [json.loads(line)["loss"] for line in (out / "curve.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and losses[-1] < losses[0]
    base, tuned = load_file(str(folders["llava"] / "model.safetensors")), load_file(str(out / "model.safetensors"))
    vision = [k for k in base if "vision_tower" in k]
    assert vision and all(torch.equal(base[k], tuned[k]) for k in vision)  # the vision encoder stays frozen
    assert any(not torch.equal(base[k], tuned[k]) for k in base if "language_model" in k)


def test_lora_finetuning_resumes_to_the_same_weights(folders, tmp_path):
    data = _colour_data(tmp_path)
    cfg = JudgeTrainConfig(steps=4, batch_size=2, lr=3e-2, lora_rank=4, checkpoint_every=2)
    straight = finetune_judge(folders["llava"], data, tmp_path / "straight", cfg, CPU)
    half = JudgeTrainConfig(**{**cfg.__dict__, "steps": 2})
    finetune_judge(folders["llava"], data, tmp_path / "resumed", half, CPU)
    resumed = finetune_judge(folders["llava"], data, tmp_path / "resumed", cfg, CPU)  # continues from step 2
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = load_file(str(folders["llava"] / "model.safetensors"))
    assert a.keys() == base.keys()  # LoRA merged: a plain model folder
    changed = {k for k in a if not torch.equal(a[k], base[k])}
    assert changed and all("language_model" in k and "_proj" in k for k in changed)
    assert len((resumed / "curve.jsonl").read_text().splitlines()) == 4
    with pytest.raises(ValueError, match="another config"):
        finetune_judge(folders["llava"], data, tmp_path / "resumed", JudgeTrainConfig(**{**cfg.__dict__, "lr": 1.0}))


def test_qwen_finetuning_separates_the_labels(folders, tmp_path):
    data = _colour_data(tmp_path)
    before = _orm_probs(folders["qwen"], data)
    out = finetune_judge(folders["qwen"], data, tmp_path / "ft", JudgeTrainConfig(steps=8, batch_size=4, lr=3e-3), CPU)
    after = _orm_probs(out, data)
    gap = lambda p: (p[0::2].mean() - p[1::2].mean()).item()  # noqa: E731
    assert gap(after) > gap(before) + 0.005


def test_batches_are_a_pure_function_of_step():
    n, bs = 5, 3
    stream = [i for step in range(5) for i in batch_indices(n, step, bs, seed=1)]
    for epoch in range(3):
        assert sorted(stream[epoch * n : (epoch + 1) * n]) == list(range(n))  # each epoch visits every record once
    assert batch_indices(n, 3, bs, 1) == batch_indices(n, 3, bs, 1) != batch_indices(n, 3, bs, 2)


def test_clarity_rule_follows_the_papers_11_vs_10_of_18():
    labels = [clarity_label(s, 18) for s in range(18)]  # step s + 1 of 18
    assert labels[:9] == [False] * 9 and labels[9:11] == [None, None] and labels[11:] == [True] * 7


def test_judge_data_from_a_scored_folder_then_finetune_via_cli(folders, generator, tmp_path):
    metas = [parse_prompt(p) for p in PROMPTS[:2]]
    root = write_samples_with_steps(generator, metas, tmp_path / "samples", images_per_prompt=2, seed=0)
    score_folder(root, ShapesDetector())
    results = read_results(root / "results.jsonl")
    runner = CliRunner()
    done = runner.invoke(app, ["judge", "data", str(root), "--out", str(tmp_path / "d" / "judge.jsonl")])
    assert done.exit_code == 0, done.output
    rows = load_judge_data(tmp_path / "d" / "judge.jsonl")
    assert all(Path(r["image"]).is_file() for r in rows)
    by_kind = {k: [r for r in rows if r["kind"] == k] for k in ("orm", "clarity", "potential", "reflection")}
    labels = ["yes" if r["correct"] else "no" for r in results]
    assert [r["answer"] for r in by_kind["orm"]] == labels
    # 4 steps: previews after steps 1, 2 are unclear (< 10/18), after 3, 4 clear (> 11/18); clear ones inherit
    assert [r["answer"] for r in by_kind["clarity"]] == ["no", "no", "yes", "yes"] * 4
    assert [r["answer"] for r in by_kind["potential"]] == [a for a in labels for _ in range(2)]
    wrong = [r for r in results if not r["correct"]]
    expected = [critique_text(teacher_clauses(json.loads(r["metadata"]), False, r["reason"])) for r in wrong]
    assert [r["answer"] for r in by_kind["reflection"]] == expected
    out = tmp_path / "ft"
    args = ["judge", "finetune", "--base", str(folders["llava"]), "--data", str(tmp_path / "d" / "judge.jsonl"),
            "--out", str(out), "--steps", "2", "--device", "cpu", "--set", "batch_size=3"]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    judge = load_verifier("parm", f"hf-vlm:{out}")
    assert judge.judge(PROMPTS[:1], _images(1), 3, 4).clarity.shape == (1,)
    bad = runner.invoke(app, ["judge", "data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code == 1 and bad.output.startswith("error:")


def test_judge_data_rejects_malformed_records(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"image": "a.png", "prompt": "p", "kind": "orm", "answer": "maybe"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: a orm answer is yes or no"):
        load_judge_data(path)
    path.write_text(json.dumps({"image": "a.png", "prompt": "p", "kind": "vibes", "answer": "yes"}) + "\n")
    with pytest.raises(ValueError, match="unknown kind"):
        load_judge_data(path)


# --- no network, no remote code -----------------------------------------------------------------------------------
def test_network_is_blocked_and_hub_clients_are_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE
    with pytest.raises(RuntimeError, match="blocked"):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(RuntimeError, match="blocked"), socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))


def test_remote_code_in_a_folder_never_runs(folders, tmp_path):
    import shutil

    folder = tmp_path / "evil"
    shutil.copytree(folders["llava"], folder)
    marker = tmp_path / "ran"
    (folder / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "evil_model.Evil", "AutoConfig": "evil_model.Config"}
    (folder / "config.json").write_text(json.dumps(config))
    with contextlib.suppress(ValueError):  # refusing is fine; running the file is not
        load_verifier("orm", f"hf-vlm:{folder}")
    assert not marker.exists()

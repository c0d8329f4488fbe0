"""Real models on a CUDA GPU: CPU/GPU agreement, half precision end to end, DPO and judge fine-tuning on the GPU.

Every test here needs a CUDA GPU and is reported as skipped (with that reason) on a machine without one, such as CI.
On a GPU machine the other test_hf_* modules run on CUDA too, since their models load with `--device auto`; this
module adds what a CPU cannot run: bf16 / fp16 generation, judging, GenEval scoring, DPO and LoRA fine-tuning.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.generators.registry import load_generator
from imgcot.generators.run import run_to_end
from imgcot.geneval.spec import dumps, read_metadata
from imgcot.hf.devices import Placement
from imgcot.hf.judge_data import write_samples_with_steps
from imgcot.hf.tiny_generators import tiny_mask2former
from imgcot.hf.vlm_judge import VLMJudge, VLMJudgeConfig
from imgcot.search import candidate_seeds, run_strategy
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.prompts import parse_prompt
from test_hf_dpo import pair_args, splitting_threshold, tiny_world
from test_hf_generators import OFFICIAL, PROMPTS, SEEDS
from tiny import tiny_generator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("cuda"))


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return tiny_mask2former(tmp_path_factory.mktemp("m2f") / "m2f", favour=("dog", "cat"))


def loaded(world, kind: str, device: str, dtype: str = "fp32"):
    generator = load_generator(f"hf-{kind}:{world[kind]}", Placement(device, dtype))
    return generator.with_decoding(rows_per_step=1) if kind == "janus" else generator.with_decoding(num_steps=4)


@pytest.mark.parametrize("kind", ["janus", "showo"])
def test_cpu_and_cuda_agree_in_fp32(world, kind):
    """The same tokens get the same log-probabilities and images on both devices, to float32 rounding. (Sampled
    tokens differ: a GPU draws its noise there, per row, hf/gen_common.row_noise.)"""
    cpu, gpu = loaded(world, kind, "cpu"), loaded(world, kind, "cuda")
    tokens = run_to_end(cpu, cpu.init(PROMPTS, SEEDS)).tokens
    logp_cpu, logp_gpu = cpu.log_prob(PROMPTS, tokens), gpu.log_prob(PROMPTS, tokens).cpu()
    assert torch.allclose(logp_cpu, logp_gpu, rtol=1e-4, atol=1e-3), (logp_cpu, logp_gpu)
    pixels = cpu.tokens_to_images(tokens).int() - gpu.tokens_to_images(tokens).int()
    assert int(pixels.abs().max()) <= 2


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("kind", ["janus", "showo"])
def test_half_precision_generation_is_reproducible_and_searches(world, kind, dtype):
    generator = loaded(world, kind, "cuda", dtype)
    first = generator.decode(run_to_end(generator, generator.init(PROMPTS, SEEDS)))
    again = generator.decode(run_to_end(generator, generator.init(PROMPTS, SEEDS)))
    assert first.dtype == torch.uint8 and tuple(first.shape[1:]) == (16, 16, 3)
    assert torch.equal(first, again)  # same seed, same image on the GPU
    logp = generator.log_prob(PROMPTS, run_to_end(generator, generator.init(PROMPTS, SEEDS)).tokens)
    assert bool(torch.isfinite(logp).all()) and bool((logp < 0).all())
    judge = VLMJudge.from_pretrained(
        str(world["judge"]), role="parm", config=VLMJudgeConfig(device="cuda", dtype=dtype, batch_size=4)
    )
    seeds = [candidate_seeds(7 + p, 3) for p in range(2)]
    for name in ("orm", "parm"):
        results = run_strategy(name, generator, PROMPTS[:2], seeds, judge)
        assert [r.image.shape for r in results] == [(16, 16, 3)] * 2
        assert all(0.0 <= c.outcome <= 1.0 for r in results for c in r.candidates if c.outcome is not None)


def test_cli_eval_on_cuda_with_the_real_detector(world, detector, tmp_path):
    prompts = tmp_path / "two.jsonl"
    prompts.write_text("".join(dumps(m) + "\n" for m in read_metadata(OFFICIAL)[:2]))
    run = tmp_path / "eval"
    args = ["eval", "--model", f"hf-showo:{world['showo']}", "--prompts", str(prompts), "--out", str(run),
            "--images-per-prompt", "1", "--strategy", "parm", "--n", "2", "--verifier", f"hf-vlm:{world['judge']}",
            "--device", "cuda", "--dtype", "bf16", "--judge-device", "cuda", "--judge-dtype", "bf16",
            "--detector", f"hf-mask2former:{detector}", "--clip", str(world["clip"])]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["images"] <= 1.0 and summary["compute"]["generator_forwards"] > 0
    assert len((run / "results.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(("kind", "logp"), [("janus", "masked"), ("showo", "trajectory")])
def test_dpo_pairs_and_bf16_training_on_cuda(world, kind, logp, tmp_path):
    model = f"hf-{kind}:{world[kind]}"
    threshold = splitting_threshold(model, world["judge"], rounds=1)  # generator and judge load with auto: cuda
    pairs = tmp_path / "pairs.parquet"
    built = runner.invoke(app, ["dpo", "build-pairs", *pair_args(world, kind, threshold), "--out", str(pairs)])
    assert built.exit_code == 0, built.output
    out = tmp_path / "aligned"
    train = ["dpo", "train", "--model", model, "--pairs", str(pairs), "--out", str(out), "--steps", "2",
             "--device", "cuda", "--dtype", "bf16", "--logp", logp]  # fmt: skip
    result = runner.invoke(app, train)
    assert result.exit_code == 0, result.output
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(np.isfinite(m["loss"]) for m in metrics)
    aligned = load_generator(f"hf-{kind}:{out}", Placement("cuda", "bf16"))
    image = aligned.decode(run_to_end(aligned, aligned.init(PROMPTS[:1], SEEDS[:1])))
    assert image.dtype == torch.uint8


def test_judge_lora_finetuning_in_bf16_on_cuda(world, tmp_path):
    generator = tiny_generator("maskgit", tmp_path / "gen", steps=4)
    metas = [parse_prompt(p) for p in ("a photo of a red star", "a photo of three hearts")]
    root = write_samples_with_steps(generator, metas, tmp_path / "samples", images_per_prompt=2, seed=0)
    assert runner.invoke(app, ["geneval", "score", str(root)]).exit_code == 0
    data = tmp_path / "judge.jsonl"
    assert runner.invoke(app, ["judge", "data", str(root), "--out", str(data)]).exit_code == 0
    out = tmp_path / "ft"
    args = ["judge", "finetune", "--base", str(world["judge"]), "--data", str(data), "--out", str(out), "--steps",
            "3", "--lora-rank", "4", "--device", "cuda", "--dtype", "bf16", "--set", "batch_size=3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    judge = load_verifier("orm", f"hf-vlm:{out}")
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    scores = judge.score(["a photo of a red star"] * 2, images)
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())


@pytest.mark.parametrize("kind", ["maskgit", "ar"])
def test_shapes_training_on_cuda_matches_the_cpu_and_resumes_there(kind, tmp_path):
    """The shapes recipes train on a GPU (data and random draws stay on the CPU): the first steps' losses equal the
    CPU's to float rounding, and a run killed on the GPU resumes on the CPU."""
    from imgcot.generators.base import DecodingConfig
    from imgcot.train.generator import train_generator
    from test_training import Killed, _cfg
    from tiny import tiny_tokenizer

    tokenizer, losses = tiny_tokenizer(), {}
    for device in ("cpu", "cuda"):
        seen = losses.setdefault(device, [])

        def record(step, total, loss, minutes, seen=seen):
            seen.append(loss)

        train_generator(_cfg(kind), tokenizer, tmp_path / device, DecodingConfig(num_steps=4), None, record, device)
    assert np.allclose(losses["cpu"][:3], losses["cuda"][:3], rtol=1e-3, atol=1e-4), losses

    def kill_at_four(step, total, loss, minutes):
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        train_generator(_cfg(kind), tokenizer, tmp_path / "moved", DecodingConfig(num_steps=4),
                        progress=kill_at_four, device="cuda")  # fmt: skip
    moved = train_generator(_cfg(kind), tokenizer, tmp_path / "moved", DecodingConfig(num_steps=4))
    assert next(moved.model.parameters()).device.type == "cpu" and (tmp_path / "moved" / "final").is_dir()
    image = moved.decode(run_to_end(moved, moved.init(["a photo of a red star"], [0])))
    assert image.dtype == torch.uint8

"""Real-model adapters on tiny random models of the real architectures, loaded through the user's path.

Janus-Pro (`hf-janus:<folder>`) and Show-o (`hf-showo:<folder>`) pass the generator contract and every search
strategy; their log-probabilities train under AdamW; the real-image GenEval path (Mask2Former + CLIP) scores the
official metadata end to end; devices and dtypes fail with one clear line. Nothing is downloaded (conftest blocks
the network); the weights are random, so no test asserts image quality or scores.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.core import concat_states
from imgcot.dpo.logprob import bind, dpo_logps
from imgcot.dpo.losses import sigmoid_loss
from imgcot.fileio import save_png
from imgcot.generators.registry import load_generator
from imgcot.generators.run import generate, run_to_end
from imgcot.geneval.score import score_folder
from imgcot.geneval.spec import dumps, read_metadata
from imgcot.hf import devices
from imgcot.hf.gen_common import decode_in_chunks, padded, to_uint8
from imgcot.hf.geneval_real import (
    COCO_CLASSES,
    GREY,
    RealDetectorConfig,
    RealImageDetector,
    instance_results,
    mask_boxes,
    masked_crop,
    mmdet_resize_shape,
)
from imgcot.hf.janus import JanusGenerator, attention_bias, uncond_ids
from imgcot.hf.magvit import lfq_codes_to_latent
from imgcot.hf.showo import ShowoGenerator, omni_mask, text_part
from imgcot.hf.tiny_generators import tiny_clip, tiny_janus, tiny_mask2former, tiny_showo
from imgcot.search import STRATEGIES, candidate_seeds, run_strategy, total_compute
from imgcot.verifiers import OracleVerifier
from test_cli import OFFICIAL, needs_official  # GenEval's metadata from ../shared, as CI lays it
from test_search import Brightness, Flat

PROMPTS = ["a photo of a red star", "a photo of three hearts", "a photo of a cross below a square"]
SEEDS = [11, 22, 33]
runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {
        "janus": tiny_janus(root / "janus"),
        "showo": tiny_showo(root / "showo"),
        "detector": tiny_mask2former(root / "m2f", favour=("dog", "cat")),
        "clip": tiny_clip(root / "clip"),
    }


@pytest.fixture(scope="module", params=["janus", "showo"])
def gen(request, folders):
    """Loaded through the registry like a user's checkpoint; fewer steps than the defaults to stay fast."""
    generator = load_generator(f"hf-{request.param}:{folders[request.param]}")
    if request.param == "janus":
        return generator.with_decoding(rows_per_step=1)  # 4 steps of one token row
    return generator.with_decoding(num_steps=4)


def test_registry_loads_real_models_with_their_defaults(folders):
    janus = load_generator(f"hf-janus:{folders['janus']}")
    showo = load_generator(f"hf-showo:{folders['showo']}")
    assert isinstance(janus, JanusGenerator) and isinstance(showo, ShowoGenerator)
    assert (janus.config.decoding.guidance, janus.config.decoding.rows_per_step, janus.num_steps) == (4.0, 2, 2)
    assert (showo.num_steps, showo.config.decoding.guidance, showo.config.decoding.schedule) == (18, 1.75, "cosine")
    assert janus.image_size == showo.image_size == 16 and janus.causal and not showo.causal


# --- the generator contract (as tests/test_generator_contract.py for the shapes models) -------------------------
def test_steps_previews_and_final_tokens(gen):
    state = gen.init(PROMPTS, SEEDS)
    assert state.tokens.shape == (3, 16) and bool((state.tokens == gen.undecided).all())
    steps = 0
    while not gen.is_done(state):
        before = state.tokens.clone()
        state = gen.step(state)
        steps += 1
        committed = before != gen.undecided
        assert torch.equal(state.tokens[committed], before[committed])  # committed tokens stay frozen
        preview = gen.preview(state)
        assert preview.shape == (3, 16, 16, 3) and preview.dtype == torch.uint8
    assert steps == gen.num_steps == 4
    assert bool((state.tokens < gen.undecided).all()) and gen.decode(state).shape == (3, 16, 16, 3)


def test_janus_preview_stripes_the_rows_not_generated_yet(folders):
    janus = load_generator(f"hf-janus:{folders['janus']}").with_decoding(rows_per_step=1)
    preview = janus.preview(janus.step(janus.init(PROMPTS[:1], SEEDS[:1])))[0]  # one of four token rows
    rest = preview[4:]  # pixel rows 4.. belong to token rows 1..3
    assert set(rest.flatten().tolist()) <= {100, 156}  # base.PLACEHOLDER
    assert not set(preview[:4].flatten().tolist()) <= {100, 156}


def test_same_seed_same_image_and_batch_equals_singles(gen):
    final = run_to_end(gen, gen.init(PROMPTS, SEEDS))
    batch = gen.decode(final)
    assert torch.equal(batch, gen.decode(run_to_end(gen, gen.init(PROMPTS, SEEDS))))
    for i in range(3):
        single = run_to_end(gen, gen.init(PROMPTS[i : i + 1], SEEDS[i : i + 1]))
        assert torch.equal(single.tokens[0], final.tokens[i])  # the same tokens, then the same pixels
        assert torch.equal(gen.decode(single)[0], batch[i])
    other = gen.decode(run_to_end(gen, gen.init(PROMPTS, [s + 1 for s in SEEDS])))
    assert not torch.equal(other, batch)


def test_forward_passes_counted_with_guidance(gen):
    state = run_to_end(gen, gen.init(PROMPTS, SEEDS))
    per_row = 16 if gen.causal else gen.num_steps  # AR: prefill + 15 fed tokens; masked: one per step
    assert state.forwards == [2 * per_row] * 3
    plain = gen.with_decoding(guidance=0.0)
    assert run_to_end(plain, plain.init(PROMPTS, SEEDS)).forwards == [per_row] * 3


def test_select_fork_concat_and_revise(gen):
    state = gen.step(gen.init(PROMPTS, SEEDS))
    full = run_to_end(gen, state)
    assert torch.equal(run_to_end(gen, state.select([2, 0])).tokens[0], full.tokens[2])  # caches are selected too
    branches = run_to_end(gen, state.fork([0, 0], [101, 102]))
    assert not torch.equal(branches.tokens[0], branches.tokens[1])
    merged = concat_states([state.select([0]), state.select([1, 2])])
    assert torch.equal(run_to_end(gen, merged).tokens, full.tokens)
    keep = torch.ones_like(full.tokens, dtype=torch.bool)
    keep[:, 8:] = False
    revised = run_to_end(gen, gen.revise(full, keep))
    assert torch.equal(revised.tokens[:, :8], full.tokens[:, :8]) and bool((revised.tokens < gen.undecided).all())


def test_stepping_a_state_twice_leaves_both_branches_intact(gen):
    """Janus writes its KV cache in place when a state is the frontier of its buffers; a state stepped a second
    time (here with other seeds, sharing the same cache objects) is no longer the frontier and must copy, so
    neither continuation sees the other's keys (checked on the exact next-token logits)."""
    reference = gen.step(gen.step(gen.step(gen.init(PROMPTS, SEEDS))))
    state = gen.step(gen.init(PROMPTS, SEEDS))
    first = gen.step(state)
    other = gen.step(replace(state, seeds=[s + 7 for s in SEEDS]))
    assert not torch.equal(other.tokens, first.tokens)
    for continued in (gen.step(first), gen.step(gen.step(state))):
        assert torch.equal(continued.tokens, reference.tokens)
        if gen.causal:
            assert torch.equal(continued.next_logits, reference.next_logits)


def test_janus_cached_decoding_matches_teacher_forcing(folders):
    """The KV-cached sampler's logits, left padding included, are exactly the teacher-forced log_prob's."""
    janus = load_generator(f"hf-janus:{folders['janus']}").with_decoding(guidance=0.0)
    seen, forward = [], janus._forward
    janus._forward = lambda *a: seen.append(F.log_softmax(forward(*a), -1)) or seen[-1]
    prompts = ["a photo of a red star", "a photo of three hearts and a blue circle"]  # different lengths
    final = run_to_end(janus, janus.init(prompts, [1, 2]))
    tokens = final.tokens.to(seen[0].device)
    cached = torch.stack([lp.gather(-1, tokens[:, i : i + 1])[:, 0] for i, lp in enumerate(seen)], 1).sum(1)
    assert len(seen) == 16
    torch.testing.assert_close(cached, janus.log_prob(prompts, final.tokens), rtol=0, atol=1e-4)


def test_log_prob_finite_negative_and_masked(gen):
    final = run_to_end(gen, gen.init(PROMPTS, SEEDS))
    logp = gen.log_prob(PROMPTS, final.tokens)
    assert logp.shape == (3,) and bool(torch.isfinite(logp).all()) and bool((logp < 0).all())
    none = gen.log_prob(PROMPTS, final.tokens, torch.zeros_like(final.tokens, dtype=torch.bool))
    assert torch.equal(none.cpu(), torch.zeros(3))


def test_save_load_round_trip(gen, tmp_path):
    gen.save_pretrained(tmp_path / "copy")
    kind = "janus" if gen.causal else "showo"
    loaded = load_generator(f"hf-{kind}:{tmp_path / 'copy'}").with_decoding(**vars(gen.config.decoding))
    a = run_to_end(gen, gen.init(PROMPTS, SEEDS)).tokens
    assert torch.equal(a, run_to_end(loaded, loaded.init(PROMPTS, SEEDS)).tokens)


# --- every strategy end to end ----------------------------------------------------------------------------------
# PARM++ also needs a self-correcting generator (reflection/correct.py, shapes models only), so it is not run here.
SEARCHES = [name for name, s in STRATEGIES.items() if s.verifier in (None, "orm-zs", "orm", "prm", "parm", "oracle")]


@needs_official
def test_every_strategy_runs_end_to_end(gen, folders):
    metas = read_metadata(OFFICIAL)[:2]  # real GenEval prompts
    prompts = [m["prompt"] for m in metas]
    seeds = [candidate_seeds(100 + p, 3) for p in range(2)]
    plain, _ = generate(gen, prompts, [s[0] for s in seeds])
    everything, _ = generate(gen, [p for p in prompts for _ in range(3)], [s for row in seeds for s in row])
    detector = RealImageDetector.from_pretrained(str(folders["detector"]), str(folders["clip"]), config=SMALL)
    verifiers = dict.fromkeys(SEARCHES, Brightness())
    verifiers["oracle"] = OracleVerifier({m["prompt"]: m for m in metas}.__getitem__, detector)
    spent = {}
    for name in SEARCHES:
        results = run_strategy(name, gen, prompts, seeds, verifiers[name], record_previews=True)
        spent[name] = total_compute(results).generator_forwards
        for p, r in enumerate(results):
            assert r.image.shape == (16, 16, 3) and r.image.dtype == np.uint8
            if name == "baseline":
                assert np.array_equal(r.image, plain[p].numpy())
            if name in ("orm", "orm-zs", "oracle"):
                assert np.array_equal(r.image, everything[3 * p + r.chosen].numpy())
            if name == "orm":
                brightness = [float(everything[3 * p + k].float().mean()) for k in range(3)]
                assert r.chosen == int(np.argmax(brightness))
            if name == "oracle":
                assert all(c.outcome in (0.0, 1.0) for c in r.candidates)
    ties = run_strategy("prm", gen, prompts, seeds, Flat())  # all values tie: branch 0 at every step
    assert all(np.array_equal(r.image, plain[p].numpy()) for p, r in enumerate(ties))
    assert spent["orm"] == 3 * spent["baseline"] and spent["parm"] <= spent["orm"] + spent["baseline"] // 2


# --- DPO: log-probs train ---------------------------------------------------------------------------------------
def test_adamw_steps_on_log_prob_change_parameters_and_raise_the_margin(gen):
    torch.manual_seed(0)
    policy = bind(gen, copy.deepcopy(gen.model))
    reference = bind(gen, copy.deepcopy(gen.model))
    prompts = PROMPTS[:2]
    chosen = run_to_end(gen, gen.init(prompts, [1, 2])).tokens
    rejected = run_to_end(gen, gen.init(prompts, [3, 4])).tokens
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-2)
    lm = policy.model.model.language_model if gen.causal else policy.model.showo
    before = {name: p.detach().clone() for name, p in lm.named_parameters()}

    def margin() -> float:
        with torch.no_grad():
            return float((policy.log_prob(prompts, chosen) - policy.log_prob(prompts, rejected)).mean())

    start = margin()
    for _ in range(4):
        logps = dpo_logps(policy, reference, prompts, chosen, rejected, torch.Generator().manual_seed(0))
        h = (logps["policy_chosen"] - logps["policy_rejected"]) - (logps["ref_chosen"] - logps["ref_rejected"])
        loss = sigmoid_loss(h, 0.1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unchanged = [name for name, p in lm.named_parameters() if torch.equal(before[name], p.detach())]
    assert not unchanged  # every weight of the language model moved
    assert margin() > start
    assert all(torch.equal(a, b) for a, b in zip(gen.model.parameters(), reference.model.parameters(), strict=True))


# --- Show-o pieces --------------------------------------------------------------------------------------------------
def test_showo_text_part_and_omni_attention():
    text = text_part([[7, 8], [5] * 10], text_len=5, t2i=1, bos=2, eos=3, pad=0)
    assert text.tolist() == [[0, 1, 2, 7, 8, 3], [1, 2, 5, 5, 5, 3]]  # left-padded; cut, ending with EOS
    seq = torch.tensor([[0, 0, 1, 2, 7, 3, 9, 50, 51, 10]])  # pads, t2i bos text eos, soi img img eoi
    allowed = omni_mask(seq, pad=0, soi=9, eoi=10)[0, 0]
    assert not allowed[:, :2][2:].any()  # nobody attends to padding
    assert allowed[0, 0] and not allowed[0, 1]  # a padding row sees itself only
    assert allowed[4, 2:5].all() and not allowed[4, 5:].any()  # text is causal: no look at eos or the image
    assert allowed[6:, 2:].all()  # <|soi|> .. <|eoi|> see every non-padding token, both ways


def test_showo_steps_exactly_like_the_shapes_maskgit_rule(folders):
    """Given the same guided logits, Show-o's step commits and re-masks exactly what generators/maskgit.py does."""
    from types import SimpleNamespace

    from imgcot.generators.base import DecodingConfig
    from imgcot.generators.maskgit import MaskGITGenerator

    showo = load_generator(f"hf-showo:{folders['showo']}", devices.Placement("cpu"))  # the CPU's noise (row_noise)
    showo = showo.with_decoding(num_steps=6, choice_temperature=4.5)
    logits = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 3
    showo.guided = lambda text, tokens: logits
    shapes = MaskGITGenerator.__new__(MaskGITGenerator)
    shapes.config = SimpleNamespace(decoding=DecodingConfig(num_steps=6, guidance=1.75, choice_temperature=4.5))
    shapes.tokenizer, shapes.undecided = SimpleNamespace(vocab_size=16), 16
    shapes.guided = lambda text, tokens: logits
    a = showo.init(PROMPTS, SEEDS)
    b = replace(a, text=torch.zeros(3, 1, dtype=torch.long))
    while not showo.is_done(a):
        a, b = showo.step(a), shapes.step(b)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.predicted, b.predicted) and a.forwards == b.forwards


def test_gpu_decoding_pads_every_chunk_to_one_shape():
    codes = torch.arange(10).view(5, 2)
    assert torch.equal(padded(codes, 8)[:5], codes) and padded(codes, 8).shape == (8, 2)
    assert padded(codes, 8)[5:].eq(0).all() and padded(codes, 3) is codes
    calls = []

    def decode(rows):  # pixels in [-1, 1] that depend on the row's own codes only
        calls.append(rows.shape[0])
        return (rows.sum(1).float() / 20 - 0.5).view(-1, 1, 1, 1).expand(-1, 2, 2, 3)

    images = decode_in_chunks(decode, codes, 2, torch.device("cpu"))
    assert images.shape == (5, 2, 2, 3) and calls == [2, 2, 1]  # a CPU decodes the last chunk as it is
    assert torch.equal(images, torch.cat([to_uint8(decode(codes[i : i + 1])) for i in range(5)]))


def test_showo_lfq_codes_are_their_bits():
    latent = lfq_codes_to_latent(torch.tensor([[5, 0, 15, 8]]), bits=4, grid=2)
    assert latent[0, :, 0, 0].tolist() == [-1, 1, -1, 1]  # 5 = 0101, most significant bit first
    assert latent[0, :, 1, 0].tolist() == [1, 1, 1, 1] and latent[0, :, 1, 1].tolist() == [1, -1, -1, -1]


def test_showo_checkpoint_errors_are_one_clear_line(folders, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folders["showo"], bad)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights .*pytorch_model.bin.*convert"):
        ShowoGenerator.from_pretrained(str(bad))
    shutil.copy(folders["showo"] / "model.safetensors", bad / "model.safetensors")
    raw = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**raw, "llm_vocab_size": raw["llm_vocab_size"] + 1}))
    with pytest.raises(ValueError, match=r"\[PAD\] has id \d+, expected"):
        ShowoGenerator.from_pretrained(str(bad))


def test_janus_uncond_rows_and_attention_bias():
    text = torch.tensor([[0, 0, 5, 7, 8, 9]])  # pad pad BOS text.. BOI
    assert uncond_ids(text, keep=(5, 9), pad=0).tolist() == [[0, 0, 5, 0, 0, 9]]
    bias = attention_bias(text != 0, 6, torch.float32)[0, 0]
    allowed = bias == 0
    assert allowed[0].tolist() == [True] + [False] * 5  # a padding query sees itself only
    assert allowed[3].tolist() == [False, False, True, True, False, False]  # causal, padding skipped


# --- GenEval on real images -------------------------------------------------------------------------------------
SMALL = RealDetectorConfig(scale=(128, 64))  # tiny images stay tiny (the default is mmdet's (1333, 800))


def test_detector_pieces_follow_mmdet_and_geneval():
    assert mmdet_resize_shape(512, 512, (1333, 800)) == (800, 800)
    assert mmdet_resize_shape(480, 640, (1333, 800)) == (800, 1067)
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert mask_boxes(masks).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]
    # two queries, three classes + no-object: query 0 is class 1 (p ~ 0.97), query 1 is no object
    logits = torch.tensor([[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]])
    mask_logits = torch.full((2, 8, 8), -20.0)
    mask_logits[0, :3, :4] = 20.0
    labels, scores, boxes, binary = instance_results(logits, mask_logits, (8, 8), (8, 8), (6, 6), RealDetectorConfig())
    p = torch.tensor([0.0, 5.0, 0.0, 0.0]).softmax(-1)[1]
    assert labels.tolist() == [1] and binary.shape == (1, 6, 6)  # resized to the original image
    assert float(scores[0]) == pytest.approx(float(p), rel=1e-4)  # x mean mask probability, ~1 inside the mask
    assert boxes[0].tolist() == [0.0, 0.0, 3.0, 2.0]  # the extent of the resized mask, x2 and y2 exclusive
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[1, 1] = 200
    mask = np.zeros((4, 4), dtype=bool)
    mask[1, 1] = True
    crop = np.asarray(masked_crop(image, mask, (0, 0, 3, 2)))
    assert crop.shape == (2, 3, 3) and crop[1, 1].tolist() == [200] * 3 and crop[0, 0].tolist() == [GREY] * 3


@needs_official
def test_official_metadata_scores_end_to_end(folders, tmp_path):
    metas = read_metadata(OFFICIAL)
    assert len(metas) == 553 and len(COCO_CLASSES) == 80
    rng = np.random.default_rng(0)
    for i, meta in enumerate(metas):
        save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), tmp_path / f"{i:05d}" / "samples" / "0000.png")
        (tmp_path / f"{i:05d}" / "metadata.jsonl").write_text(dumps(meta) + "\n")
    detector = RealImageDetector.from_pretrained(str(folders["detector"]), str(folders["clip"]), config=SMALL)
    rows, summary = score_folder(tmp_path, detector)
    assert len(rows) == 553 and summary["images"] >= 0 and set(summary["tasks"]) == {
        "single_object", "two_object", "counting", "colors", "position", "color_attr"
    }  # fmt: skip
    dog = next(r for r in rows if r["prompt"] == "a photo of a dog")
    assert dog["correct"]  # the tiny detector is biased to find dogs
    colored = [r for r in rows if r["tag"] == "colors" and "dog" in r["prompt"]]
    assert colored and all("found" in r["reason"] or r["correct"] for r in colored)  # the colour path ran


@needs_official
def test_cli_geneval_score_with_real_detector(folders, tmp_path):
    metas = [m for m in read_metadata(OFFICIAL) if m["prompt"] in ("a photo of a dog", "a photo of a white dog")]
    rng = np.random.default_rng(1)
    for i, meta in enumerate(metas):
        save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), tmp_path / f"{i:05d}" / "samples" / "0000.png")
        (tmp_path / f"{i:05d}" / "metadata.jsonl").write_text(dumps(meta) + "\n")
    spec = f"hf-mask2former:{folders['detector']}"
    result = runner.invoke(
        app, ["geneval", "score", str(tmp_path), "--detector", spec, "--clip", str(folders["clip"])]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["correct"]


@needs_official
def test_cli_generate_and_eval_real_models(folders, tmp_path):
    out = tmp_path / "gen"
    args = ["generate", "a photo of a dog", "--model", f"hf-janus:{folders['janus']}", "--n", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["0000.png", "0001.png"]
    prompts = tmp_path / "two.jsonl"
    prompts.write_text("".join(dumps(m) + "\n" for m in read_metadata(OFFICIAL)[:2]))
    run = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["eval", "--model", f"hf-showo:{folders['showo']}", "--prompts", str(prompts), "--out", str(run),
         "--images-per-prompt", "1", "--strategy", "oracle", "--n", "2",
         "--detector", f"hf-mask2former:{folders['detector']}", "--clip", str(folders["clip"])],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["compute"]["generator_forwards"] == 2 * 2 * 2 * 18  # 2 prompts x N=2 x CFG x T
    assert summary["compute"]["verifier_calls"] == 4


def test_cli_real_generator_with_a_vlm_judge_on_its_own_device(folders, tmp_path):
    from imgcot.hf.tiny import tiny_llava_onevision

    judge = tiny_llava_onevision(tmp_path / "llava")
    out = tmp_path / "parm"
    result = runner.invoke(
        app,
        ["generate", "a photo of a dog", "--model", f"hf-janus:{folders['janus']}", "--device", "cpu",
         "--strategy", "parm", "--n", "3", "--verifier", f"hf-vlm:{judge}", "--judge-device", "cpu",
         "--judge-dtype", "fp32", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(parm, N=3;" in result.output and (out / "0000.png").is_file()
    result = runner.invoke(app, ["generate", "a photo of a star", "--strategy", "orm", "--n", "2", "--judge-device",
                                 "cpu", "--judge-dtype", "fp32", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1 and "apply to --verifier hf-vlm:<id> or hf-clip:<id> only" in result.output


# --- devices ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dtype", "fp16"], "error: --dtype fp16 needs a GPU, but the device is cpu; use --dtype fp32 on a CPU"),
        (["--device", "cpu", "--dtype", "bf16"], "error: --dtype bf16 needs a GPU"),
        (["--device", "tpu"], "error: unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_device_or_dtype_is_one_clear_line(folders, flags, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["generate", "a photo of a dog", "--model", f"hf-janus:{folders['janus']}", *flags])
    assert result.exit_code == 1
    assert result.output.strip().startswith(message) and len(result.output.strip().splitlines()) == 1


def test_cuda_without_a_gpu_and_the_memory_check(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(devices.DeviceError, match="no CUDA GPU is visible"):
        devices.Placement("cuda", "fp32").resolve()
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.memory_error("m", 10**9, torch.bfloat16, 4 * 2**30, "cuda:0") is None
    message = devices.memory_error("hf-janus:x", 7 * 10**9, torch.bfloat16, 8 * 2**30, "cuda:0")
    assert message == (
        "hf-janus:x needs about 15.6 GiB on cuda:0 (7.00 B parameters in bf16, x1.2 headroom) but only 8.0 GiB is "
        "free; use a smaller --dtype, another --device, or free the GPU"
    )
    free = {"value": 2**20}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["value"], 2**34))
    with pytest.raises(devices.DeviceError, match="needs about .* but only 0.0 GiB is free"):
        devices.check_fits("m", 10**6, torch.device("cuda"), torch.float32)
    devices.check_fits("m", 10**6, torch.device("cpu"), torch.float32)  # no check on a CPU

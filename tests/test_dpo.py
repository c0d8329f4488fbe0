"""Preference alignment: losses against hand-computed values, log-probabilities (exact AR, one shared mask for the
masked model), pairs through parquet, the DPO loop (every parameter moves, the reference does not, resume),
verifier-guided DPO (a different update, with gradient), iterative rounds and the `imgcot dpo` commands."""

from __future__ import annotations

import copy
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.core import StepScore
from imgcot.dpo.config import LOSS_NAMES, DPOConfig, IterateConfig, PairConfig
from imgcot.dpo.iterate import iterate_dpo
from imgcot.dpo.logprob import bind, dpo_logps, draw_masks, draw_steps, trajectory_logps
from imgcot.dpo.losses import (
    LOSSES,
    blind_spot_weights,
    dpo_objective,
    gap_weights,
    get_loss,
    hinge_loss,
    ipo_loss,
    log_ratio_gap,
    sigmoid_loss,
)
from imgcot.dpo.pairs import (
    Pairs,
    build_pairs,
    choose_pairs,
    credited_tokens,
    failure_steps,
    previewed_tokens,
    read_pairs,
    sample_tokens,
    training_prompts,
    write_pairs,
)
from imgcot.dpo.train import batch_indices, lr_at, pair_guidance, rejected_credit, train_dpo
from imgcot.generators.registry import load_generator
from imgcot.generators.run import run_recording_order, run_to_end
from imgcot.sampling import masked_count
from imgcot.worlds.shapes.benchmark import benchmark_path, load_benchmark
from tiny import tiny_generator

PROMPTS = ["a photo of a red star", "a photo of a cross below a square", "a photo of three hearts"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """Tiny random generators of both kinds, saved and loaded back like a user's checkpoint."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: (tiny_generator(kind, root / kind), root / kind) for kind in ("maskgit", "ar")}


class ScriptedVerifier:
    """Deterministic outcome scores from the pixels: brightness ranked within the batch, so about half pass."""

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        brightness = images.float().mean((1, 2, 3))
        ranks = brightness.argsort().argsort().float()
        return ((ranks + 0.5) / len(prompts) + self.offset).clamp(0, 1)


class ScriptedStepVerifier(ScriptedVerifier):
    """A step judge from the pixels: clear from step 2 on; potential is the preview's brightness rank in the batch."""

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore:
        self.calls.append(step)
        potential = self.score(prompts, previews)
        return StepScore(torch.full_like(potential, float(step >= 2)), potential, potential)


def random_pairs(generator, n: int = 6, seed: int = 0, scores: tuple | None = None) -> Pairs:
    gen = torch.Generator().manual_seed(seed)
    vocab, length = generator.tokenizer.vocab_size, generator.config.transformer.image_len
    chosen_score = torch.linspace(0.6, 1.0, n, dtype=torch.float64) if scores is None else scores[0]
    rejected_score = torch.linspace(0.4, 0.0, n, dtype=torch.float64) if scores is None else scores[1]
    nan = torch.full((n,), math.nan, dtype=torch.float64)
    return Pairs(
        [PROMPTS[i % len(PROMPTS)] for i in range(n)],
        torch.randint(0, vocab, (n, length), generator=gen),
        torch.randint(0, vocab, (n, length), generator=gen),
        chosen_score,
        rejected_score,
        nan,
        nan.clone(),
    )


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- losses --------------------------------------------------------------------------------------------------------
def test_sigmoid_loss_hand_values() -> None:
    zero = torch.zeros(3)
    assert torch.allclose(sigmoid_loss(zero, 0.1), torch.full((3,), math.log(2)))  # policy == reference
    h = torch.tensor([-2.0, 2.0])
    below, above = sigmoid_loss(h, 0.5)
    assert above < math.log(2) < below  # preferring the chosen sample lowers the loss
    assert math.isclose(float(above), math.log1p(math.exp(-1.0)), rel_tol=1e-6)  # -log sigma(0.5 * 2)
    assert math.isclose(float(sigmoid_loss(torch.tensor(1.0), 1.0)), float(above), rel_tol=1e-6)  # beta scales h
    assert math.isclose(float(sigmoid_loss(torch.tensor(0.0), 0.1, 1.0)), math.log1p(math.e), rel_tol=1e-6)


def test_ipo_and_hinge_hand_values() -> None:
    assert float(ipo_loss(torch.tensor(3.0), 0.25)) == pytest.approx(1.0)  # (3 - 1/(2*0.25))^2
    assert float(ipo_loss(torch.tensor(0.0), 0.1)) == pytest.approx(25.0)  # (0 - 5)^2
    assert float(ipo_loss(torch.tensor(3.0), 0.25, 0.5)) == pytest.approx(1.0)  # target (0.5 + 0.5) / 0.25 = 4
    assert float(hinge_loss(torch.tensor(5.0), 0.1)) == pytest.approx(0.5)  # 1 - 0.5
    assert float(hinge_loss(torch.tensor(20.0), 0.1)) == 0.0
    assert float(hinge_loss(torch.tensor(10.0), 0.1, 0.5)) == pytest.approx(0.5)  # 1 - (1 - 0.5)
    assert float(hinge_loss(torch.tensor(0.0), 0.1)) == pytest.approx(1.0)


def test_objective_metrics_and_registry() -> None:
    values = {"policy_chosen": -1.0, "policy_rejected": -3.0, "ref_chosen": -2.0, "ref_rejected": -2.0}
    logps = {k: torch.tensor([v]) for k, v in values.items()}
    assert float(log_ratio_gap(*logps.values())) == 2.0
    loss, m = dpo_objective("sigmoid", logps, 0.5)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)))
    assert (m["rewards/chosen"], m["rewards/rejected"], m["rewards/margins"]) == pytest.approx((0.5, -0.5, 1.0))
    assert m["rewards/accuracies"] == 1.0 and m["logps/chosen"] == -1.0 and m["logps/rejected"] == -3.0
    rpo, _ = dpo_objective("sigmoid", logps, 0.5, nll_weight=2.0, num_tokens=4)
    assert float(rpo) == pytest.approx(math.log1p(math.exp(-1.0)) + 2.0 * 1.0 / 4)  # + alpha * NLL(chosen) / N
    assert tuple(LOSSES) == LOSS_NAMES and get_loss("ipo") is ipo_loss
    with pytest.raises(ValueError, match="known: sigmoid, ipo, hinge"):
        get_loss("kto")
    weights = gap_weights(torch.tensor([1.0, 0.2, 0.9]), torch.tensor([0.2, 0.4, 0.5]), 0.4)
    assert torch.allclose(weights, torch.tensor([2.0, 0.0, 1.0]))  # gap / mean gap; a reversed pair counts 0
    blind = blind_spot_weights(torch.tensor([0.6, 0.0, 0.3]))
    assert torch.allclose(blind, torch.tensor([2.0, 0.0, 1.0]))  # the rejected image's score / its mean


def test_lr_schedule_and_batches_are_pure() -> None:
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1) and lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100) == pytest.approx(1.0) and lr_at(100, 1.0, 10, 100) == pytest.approx(0.0)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.5)  # halfway through the cosine
    first_epoch = torch.cat([batch_indices(s, 2, 6, 0) for s in range(3)])
    assert sorted(first_epoch.tolist()) == list(range(6))  # one epoch is a permutation
    assert torch.equal(batch_indices(4, 2, 6, 0), batch_indices(4, 2, 6, 0))


# --- log-probabilities ---------------------------------------------------------------------------------------------
def test_masked_logprob_shares_one_mask_across_the_four_passes(tiny, monkeypatch) -> None:
    generator, _ = tiny["maskgit"]
    policy = bind(generator, copy.deepcopy(generator.model))
    pairs = random_pairs(generator, n=4)
    seen: dict[str, list[torch.Tensor]] = {"policy": [], "reference": []}
    for name, model in (("policy", policy.model), ("reference", generator.model)):
        real = model.forward

        def spy(text, image, *args, _real=real, _name=name, **kwargs):
            seen[_name].append(image.clone())
            return _real(text, image, *args, **kwargs)

        monkeypatch.setattr(model, "forward", spy)
    gen = torch.Generator().manual_seed(5)
    logps = dpo_logps(policy, generator, pairs.prompts, pairs.chosen_tokens, pairs.rejected_tokens, gen, 3)
    mask_id, b = generator.undecided, len(pairs)
    assert len(seen["policy"]) == len(seen["reference"]) == 3  # one 2B-row pass per model per draw
    draws = []
    for pol, ref in zip(seen["policy"], seen["reference"], strict=True):
        masked = pol == mask_id
        assert torch.equal(masked, ref == mask_id)  # policy and reference: the same mask
        assert torch.equal(masked[:b], masked[b:])  # chosen and rejected: the same mask
        assert masked.any(1).all()
        draws.append(masked[:b])
    assert not torch.equal(draws[0], draws[1])  # several draws are averaged, not one repeated
    expected = sum(generator.log_prob(pairs.prompts, pairs.chosen_tokens, m) for m in draws) / 3
    assert torch.allclose(logps["ref_chosen"], expected, atol=1e-5)
    assert torch.allclose(logps["policy_chosen"], logps["ref_chosen"], atol=1e-5)  # same weights so far
    assert logps["policy_chosen"].requires_grad and not logps["ref_chosen"].requires_grad


def test_masks_follow_the_generators_schedule() -> None:
    masks = draw_masks(400, 64, "cosine", 12, torch.Generator().manual_seed(0))
    allowed = {64} | {max(1, math.floor(64 * math.cos(math.pi / 2 * s / 12))) for s in range(1, 12)}
    counts = set(masks.sum(1).tolist())
    assert counts <= allowed and len(counts) > 6
    again = draw_masks(400, 64, "cosine", 12, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)  # seeded


def test_ar_logprob_is_the_exact_sequence_likelihood(tiny) -> None:
    generator, _ = tiny["ar"]
    pairs = random_pairs(generator, n=2)
    logps = dpo_logps(generator, generator, pairs.prompts, pairs.chosen_tokens, pairs.rejected_tokens, None)
    # token by token through the KV cache, as decoding computes it (unguided)
    text, tokens = generator.prompt_ids(pairs.prompts), pairs.chosen_tokens
    bos = torch.full((2, 1), generator.undecided, dtype=torch.long)
    with torch.no_grad():
        logits, cache = generator.model(text, bos, None, 0)
        total = torch.zeros(2)
        for i in range(tokens.shape[1]):
            total += F.log_softmax(logits[:, -1], -1).gather(-1, tokens[:, i : i + 1])[:, 0]
            position = generator.config.transformer.text_len + 1 + i
            logits, cache = generator.model(None, tokens[:, i : i + 1], cache, position)
    assert torch.allclose(logps["policy_chosen"], total, atol=1e-3)


def test_decoding_order_records_when_each_token_was_committed(tiny) -> None:
    generator, _ = tiny["maskgit"]
    state, order = run_recording_order(generator, generator.init(PROMPTS, [3, 4, 5]))
    assert torch.equal(state.tokens, run_to_end(generator, generator.init(PROMPTS, [3, 4, 5])).tokens)
    d, n = generator.config.decoding, state.tokens.shape[1]
    assert int(order.min()) == 0 and int(order.max()) == d.num_steps - 1
    # the number committed at step s is the schedule's drop in masked tokens
    masked = [n]
    for s in range(d.num_steps):
        masked.append(masked_count(s, d.num_steps, n, masked[-1], d.schedule))
    expected = [masked[s] - masked[s + 1] for s in range(d.num_steps)]
    for row in order:
        assert torch.bincount(row, minlength=d.num_steps).tolist() == expected
    replay = generator.init(PROMPTS, [3, 4, 5])
    for s in range(d.num_steps):  # the state before step s holds exactly the tokens committed before s
        assert torch.equal(replay.tokens != generator.undecided, order < s)
        replay = generator.step(replay)


def test_trajectory_logprob_sums_the_committed_tokens_step_by_step(tiny) -> None:
    generator, _ = tiny["maskgit"]
    policy = bind(generator, copy.deepcopy(generator.model))
    state, order = run_recording_order(generator, generator.init(PROMPTS, [3, 4, 5]))
    other, other_order = run_recording_order(generator, generator.init(PROMPTS, [6, 7, 8]))
    t = generator.num_steps
    by_hand = torch.zeros(3)
    with torch.no_grad():
        for s in range(t):  # log p(tokens committed at s | tokens committed before s), one step at a time
            by_hand += generator.log_prob(PROMPTS, state.tokens, order >= s, order == s)
    every = torch.arange(t)[:, None].expand(t, 3)
    logps = trajectory_logps(policy, generator, PROMPTS, state.tokens, other.tokens, (order, other_order), every)
    assert torch.allclose(logps["ref_chosen"], by_hand, atol=1e-4)
    assert torch.allclose(logps["policy_chosen"], by_hand, atol=1e-4)
    assert logps["policy_chosen"].requires_grad and not logps["ref_chosen"].requires_grad
    assert not torch.allclose(logps["ref_rejected"], by_hand)  # the rejected image's own trajectory
    # K drawn steps: the sum over those steps scaled by T / K; the same steps for chosen and rejected
    steps = draw_steps(3, t, 4, torch.Generator().manual_seed(1))
    assert steps.shape == (4, 3) and all(len(set(col.tolist())) == 4 for col in steps.T)
    part = trajectory_logps(policy, generator, PROMPTS, state.tokens, other.tokens, (order, other_order), steps)
    with torch.no_grad():
        expected = [sum(generator.log_prob(PROMPTS[j : j + 1], tok[j : j + 1], o[j : j + 1] >= s, o[j : j + 1] == s)
                        for s in steps[:, j].tolist()) * t / 4 for tok, o in ((state.tokens, order),
                        (other.tokens, other_order)) for j in range(3)]  # fmt: skip
    assert torch.allclose(torch.cat([part["ref_chosen"], part["ref_rejected"]]), torch.cat(expected), atol=1e-4)


# --- pairs ---------------------------------------------------------------------------------------------------------
def test_choose_pairs_plain_and_guided() -> None:
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    guide = torch.tensor([[0.2, 0.9, 0.8, 0.1], [0.5] * 4, [0.3, 0.1, 0.7, 0.6]])
    assert choose_pairs(labels, 0.5) == [(0, 0, 1), (2, 2, 0)]  # first yes with first no; all-yes prompt dropped
    assert choose_pairs(labels, 0.5, guide) == [(0, 2, 3), (2, 2, 1)]  # guide's best yes, guide's worst no
    assert choose_pairs(labels, 0.5, None, 2) == [(0, 0, 1), (0, 2, 3), (2, 2, 0)]  # disjoint pairs
    assert choose_pairs(labels, 0.5, guide, 3) == [(0, 2, 3), (0, 0, 1), (2, 2, 1)]
    # blind spots: the guide's best yes against the no it scores highest
    assert choose_pairs(labels, 0.5, guide, 1, "blind-spots") == [(0, 2, 1), (2, 2, 3)]
    assert choose_pairs(labels, 0.5, None, 1, "blind-spots") == choose_pairs(labels, 0.5)  # no guide: plain
    with pytest.raises(ValueError, match="known: clearest, blind-spots"):
        PairConfig(guide_rank="hardest")


def test_guide_fill_pairs_the_prompts_the_labeller_leaves_unpaired() -> None:
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0] * 4])
    guide = torch.tensor([[0.2, 0.9, 0.8, 0.1], [0.5, 0.9, 0.2, 0.6], [0.3, 0.1, 0.7, 0.6], [0.40, 0.45, 0.5, 0.35]])
    mixed = [(0, 2, 3)]  # the mixed prompt pairs as before, whatever the fill
    assert choose_pairs(labels, 0.5, guide) == mixed  # no fill: the all-yes and all-no prompts give nothing
    # all rejected: the guide's least wrong against its most wrong; prompt 3's gap 0.15 is below the 0.2 default
    assert choose_pairs(labels, 0.5, guide, fill="failed") == mixed + [(2, 2, 1)]
    assert choose_pairs(labels, 0.5, guide, fill="passed") == mixed[:1] + [(1, 1, 2)]
    assert choose_pairs(labels, 0.5, guide, 3, fill="both") == [(0, 2, 3), (0, 0, 1), (1, 1, 2), (2, 2, 1)]
    assert choose_pairs(labels, 0.5, guide, fill="failed", fill_gap=0.1)[-1] == (3, 2, 3)
    assert choose_pairs(labels, 0.5, None, fill="both") == choose_pairs(labels, 0.5)  # without a guide: nothing
    with pytest.raises(ValueError, match="known: none, failed, passed, both"):
        PairConfig(guide_fill="all")
    with pytest.raises(ValueError, match="guide_fill_gap"):
        PairConfig(guide_fill_gap=0.0)


def test_guide_filled_pairs_are_counted_and_need_a_guide(tiny) -> None:
    generator, _ = tiny["maskgit"]
    config = PairConfig(images_per_prompt=4, batch_size=8, guide_fill="both", guide_fill_gap=0.05)
    pairs = build_pairs(generator, PROMPTS, config, ScriptedVerifier(offset=0.6), ScriptedVerifier())
    # every sample is a yes (the labeller's offset), so each pair is the guide's and its gap ranks it
    assert len(pairs) == len(PROMPTS) == pairs.info["stats"]["guide_filled_pairs"]
    assert bool((pairs.chosen_score >= 0.5).all()) and bool((pairs.rejected_score >= 0.5).all())
    assert bool((pairs.chosen_guide - pairs.rejected_guide >= 0.05).all())
    plain = build_pairs(generator, PROMPTS, replace(config, guide_fill="none"), ScriptedVerifier(offset=0.6),
                        ScriptedVerifier())  # fmt: skip
    assert len(plain) == 0 and plain.info["stats"]["guide_filled_pairs"] == 0
    with pytest.raises(ValueError, match="needs a guide"):
        build_pairs(generator, PROMPTS, config, ScriptedVerifier())


def test_training_prompts_are_drawn_not_read_from_the_benchmark() -> None:
    drawn = training_prompts(60)
    assert drawn == training_prompts(60) and len({m["tag"] for m in drawn}) == 6
    assert [m["prompt"] for m in drawn] != [m["prompt"] for m in load_benchmark()[:60]]
    held_out = {m["prompt"] for m in load_benchmark()}
    assert not {m["prompt"] for m in training_prompts(60, exclude_benchmark=True)} & held_out
    for seed in (43, 7):
        with pytest.raises(ValueError, match="benchmark"):
            training_prompts(10, seed)


def test_pairs_round_trip_through_parquet(tiny, tmp_path) -> None:
    generator, _ = tiny["maskgit"]
    config = PairConfig(images_per_prompt=4, batch_size=8)
    pairs = build_pairs(generator, PROMPTS, config, ScriptedVerifier(), ScriptedVerifier(offset=0.1))
    assert len(pairs) == 3 and pairs.info["stats"]["images"] == 12
    assert bool((pairs.chosen_score >= 0.5).all()) and bool((pairs.rejected_score < 0.5).all())
    path = write_pairs(pairs, tmp_path / "pairs.parquet")
    assert pq.read_schema(path).names[:3] == ["prompt", "chosen", "rejected"]  # TRL's preference columns
    back = read_pairs(path)
    assert back.prompts == pairs.prompts and back.info["stats"] == pairs.info["stats"]
    for name in ("chosen_tokens", "rejected_tokens", "chosen_score", "rejected_score", "chosen_guide"):
        assert torch.equal(getattr(back, name), getattr(pairs, name)), name
    assert back.chosen_png == pairs.chosen_png
    decoded = np.array(Image.open(io.BytesIO(back.chosen_png[0])))
    assert np.array_equal(decoded, generator.tokens_to_images(back.chosen_tokens[:1])[0].numpy())
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temp file left
    light = read_pairs(path, images=False)
    assert light.chosen_png == [] and torch.equal(light.chosen_tokens, pairs.chosen_tokens)
    assert torch.equal(back.chosen_order, pairs.chosen_order) and torch.equal(
        light.rejected_order, pairs.rejected_order
    )
    assert int(pairs.chosen_order.max()) == generator.num_steps - 1
    older = write_pairs(replace(pairs, chosen_order=None, rejected_order=None), tmp_path / "older.parquet")
    assert "chosen_order" not in pq.read_schema(older).names and read_pairs(older).chosen_order is None


# --- training ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["maskgit", "ar"])
def test_steps_change_every_parameter_and_leave_the_reference(tiny, tmp_path, kind) -> None:
    generator, _ = tiny[kind]
    before = weights_of(generator.model)
    config = DPOConfig(lr=1e-3, steps=3, batch_size=4, warmup=0)
    aligned = train_dpo(generator, random_pairs(generator), tmp_path / "run", config)
    after = weights_of(aligned.model)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"parameters not trained: {unchanged}"
    assert all(torch.equal(before[k], v) for k, v in weights_of(generator.model).items())  # the reference
    assert all(p.grad is None for p in generator.model.parameters())
    loaded = load_generator(str(tmp_path / "run"))  # a normal generator folder
    assert type(loaded) is type(generator)
    assert all(torch.equal(after[k], v) for k, v in weights_of(loaded.model).items())
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert lines[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # step 1: policy == reference
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        assert key in lines[-1]


def test_trajectory_dpo_trains_and_needs_recorded_orders(tiny, tmp_path) -> None:
    generator, _ = tiny["maskgit"]
    pairs = build_pairs(generator, PROMPTS, PairConfig(images_per_prompt=4, batch_size=8), ScriptedVerifier())
    before = weights_of(generator.model)
    config = DPOConfig(lr=1e-3, steps=2, batch_size=2, warmup=0, logp="trajectory", trajectory_steps=3)
    aligned = train_dpo(generator, pairs, tmp_path / "run", config)
    after = weights_of(aligned.model)
    assert all(not torch.equal(before[k], after[k]) for k in before)
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
    with pytest.raises(ValueError, match="no decoding orders"):
        train_dpo(generator, replace(pairs, chosen_order=None), tmp_path / "old", config)
    with pytest.raises(ValueError, match="already exact"):
        train_dpo(tiny["ar"][0], random_pairs(tiny["ar"][0]), tmp_path / "ar", config)
    with pytest.raises(ValueError, match="unknown log-probability"):
        DPOConfig(logp="random")


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_uninterrupted_weights(tiny, tmp_path) -> None:
    generator, _ = tiny["maskgit"]
    pairs, config = random_pairs(generator), DPOConfig(lr=1e-3, steps=6, batch_size=4, checkpoint_every=2)
    whole = train_dpo(generator, pairs, tmp_path / "whole", config)

    def kill(step: int, total: int, metrics: dict) -> None:
        if step == 5:  # after the checkpoint at step 4, before the next
            raise Killed

    with pytest.raises(Killed):
        train_dpo(generator, pairs, tmp_path / "cut", config, progress=kill)
    assert json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())["step"] == 4
    with pytest.raises(ValueError, match="--resume"):
        train_dpo(generator, pairs, tmp_path / "cut", config)
    with pytest.raises(ValueError, match="other settings"):
        train_dpo(generator, pairs, tmp_path / "cut", replace(config, lr=2e-3), resume=True)
    resumed = train_dpo(generator, pairs, tmp_path / "cut", config, resume=True)
    for key, value in weights_of(whole.model).items():
        assert torch.equal(value, weights_of(resumed.model)[key]), key
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_guided_dpo_changes_the_update_and_has_a_gradient(tiny, tmp_path) -> None:
    generator, _ = tiny["maskgit"]
    gaps = (torch.tensor([0.9, 0.95, 0.6, 0.99], dtype=torch.float64), torch.tensor([0.0, 0.8, 0.5, 0.1]).double())
    pairs = random_pairs(generator, n=4, scores=gaps)
    pairs.chosen_guide, pairs.rejected_guide = gaps  # a guide's scores (here the same as the labeller's)
    plain = DPOConfig(lr=1e-3, steps=1, batch_size=4)
    guided, blind = replace(plain, weighting="gap", margin=0.5), replace(plain, weighting="blind")
    a = weights_of(train_dpo(generator, pairs, tmp_path / "plain", plain).model)
    b = weights_of(train_dpo(generator, pairs, tmp_path / "guided", guided).model)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # the guidance enters the loss the policy is differentiated through: gradients exist and differ
    grads = {}
    for name, cfg in (("plain", plain), ("guided", guided), ("blind", blind)):
        policy = bind(generator, copy.deepcopy(generator.model))
        gen = torch.Generator().manual_seed(0)
        logps = dpo_logps(policy, generator, pairs.prompts, pairs.chosen_tokens, pairs.rejected_tokens, gen)
        weights, margins = pair_guidance(pairs, cfg)
        loss, _ = dpo_objective("sigmoid", logps, 0.1, weights, margins)
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in policy.model.parameters()])
    assert grads["guided"].abs().sum() > 0 and grads["blind"].abs().sum() > 0
    assert not torch.allclose(grads["guided"], grads["plain"])
    assert not torch.allclose(grads["blind"], grads["plain"]) and not torch.allclose(grads["blind"], grads["guided"])
    unguided = random_pairs(generator, n=4)  # labeller scores only: a rejected image's score says nothing to weigh by
    with pytest.raises(ValueError, match="needs pairs built with a guide"):
        pair_guidance(unguided, blind)


def test_iterative_rounds_resume_and_end_in_a_generator_folder(tiny, tmp_path) -> None:
    _, folder = tiny["maskgit"]
    config = IterateConfig(
        rounds=2,
        pairs=PairConfig(images_per_prompt=4, batch_size=12),
        dpo=DPOConfig(lr=1e-3, steps=2, batch_size=2),
    )
    args = (str(folder), PROMPTS, tmp_path / "it", config, ScriptedVerifier())
    rounds_seen = []
    final = iterate_dpo(*args, guide=ScriptedVerifier(0.05), on_round=lambda r, rec: rounds_seen.append(r))
    assert rounds_seen == [1, 2]
    one, two = (
        read_pairs(tmp_path / "it" / "round1" / "pairs.parquet"),
        read_pairs(tmp_path / "it" / "round2" / "pairs.parquet"),
    )
    assert one.guided and not torch.equal(one.chosen_tokens, two.chosen_tokens)  # regenerated each round
    loaded = load_generator(str(tmp_path / "it"))
    assert all(torch.equal(v, weights_of(final.model)[k]) for k, v in weights_of(loaded.model).items())
    rounds_seen.clear()
    iterate_dpo(*args, guide=ScriptedVerifier(0.05), on_round=lambda r, rec: rounds_seen.append(r))
    assert rounds_seen == []  # rerun: both rounds already done
    with pytest.raises(ValueError, match="other settings"):
        iterate_dpo(*args)  # unguided into a guided run's folder
    # a run written before PairConfig.guide_rank existed still resumes: the missing setting takes its default
    state = json.loads((tmp_path / "it" / "iterate.json").read_text())
    del state["settings"]["config"]["pairs"]["guide_rank"]
    (tmp_path / "it" / "iterate.json").write_text(json.dumps(state))
    iterate_dpo(*args, guide=ScriptedVerifier(0.05), on_round=lambda r, rec: rounds_seen.append(r))
    assert rounds_seen == []
    blind = replace(config, pairs=replace(config.pairs, guide_rank="blind-spots"))
    with pytest.raises(ValueError, match="other settings"):
        iterate_dpo(str(folder), PROMPTS, tmp_path / "it", blind, ScriptedVerifier(), guide=ScriptedVerifier(0.05))
    fewer = (str(folder), PROMPTS, tmp_path / "it", replace(config, rounds=1), ScriptedVerifier())
    with pytest.raises(ValueError, match="already holds 2 rounds"):
        iterate_dpo(*fewer, guide=ScriptedVerifier(0.05))


def test_more_rounds_extend_a_finished_run_exactly(tiny, tmp_path) -> None:
    """Two rounds, then --rounds 3 on the same folder, equal three rounds in one go."""
    _, folder = tiny["maskgit"]
    config = IterateConfig(rounds=2, pairs=PairConfig(images_per_prompt=4, batch_size=12),
                           dpo=DPOConfig(lr=1e-3, steps=2, batch_size=2))  # fmt: skip
    three = replace(config, rounds=3)
    iterate_dpo(str(folder), PROMPTS, tmp_path / "a", config, ScriptedVerifier())
    seen = []
    extended = iterate_dpo(str(folder), PROMPTS, tmp_path / "a", three, ScriptedVerifier(),
                           on_round=lambda r, rec: seen.append(r))  # fmt: skip
    assert seen == [3]
    whole = iterate_dpo(str(folder), PROMPTS, tmp_path / "b", three, ScriptedVerifier())
    assert all(torch.equal(v, weights_of(whole.model)[k]) for k, v in weights_of(extended.model).items())


# --- commands ------------------------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_train_writes_a_generator_folder(tiny, tmp_path) -> None:
    generator, folder = tiny["ar"]
    write_pairs(_with_pngs(random_pairs(generator), generator), tmp_path / "p.parquet")
    args = ["dpo", "train", "--model", folder, "--pairs", tmp_path / "p.parquet", "--out", tmp_path / "run",
            "--steps", "2", "--batch-size", "2", "--loss", "ipo"]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    assert load_generator(str(tmp_path / "run")).causal
    again = runner.invoke(app, [str(a) for a in args])
    assert again.exit_code == 1 and "--resume" in again.stderr
    assert runner.invoke(app, [str(a) for a in [*args, "--resume"]]).exit_code == 0


def _with_pngs(pairs: Pairs, generator) -> Pairs:
    from imgcot.fileio import png_bytes

    pairs.chosen_png = [png_bytes(x) for x in generator.tokens_to_images(pairs.chosen_tokens).numpy()]
    pairs.rejected_png = [png_bytes(x) for x in generator.tokens_to_images(pairs.rejected_tokens).numpy()]
    return pairs


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    junk = tmp / "junk.parquet"
    junk.write_text("not parquet")
    out = str(tmp / "o")
    return {
        "labeler": (["dpo", "build-pairs", "--labeler", "judge", "--out", out], "known: oracle"),
        "k": (["dpo", "build-pairs", "--images-per-prompt", "1", "--out", out], ">= 2 to form pairs"),
        "benchmark": (["dpo", "build-pairs", "--prompts", str(benchmark_path()), "--out", out], "benchmark"),
        "prompts": (["dpo", "build-pairs", "--prompts", str(tmp / "none.jsonl"), "--out", out], "none.jsonl"),
        "model": (
            ["dpo", "build-pairs", "--model", str(tmp / "nomodel"), "--n-prompts", "2", "--out", out],
            "nomodel",
        ),
        "pairs": (["dpo", "train", "--pairs", str(tmp / "none.parquet"), "--out", out], "no such pairs file"),
        "junk": (["dpo", "train", "--pairs", str(junk), "--out", out], "unreadable parquet"),
        "loss": (["dpo", "train", "--pairs", str(junk), "--out", out, "--loss", "kto"], "unknown DPO loss"),
        "reference": (["dpo", "iterate", "--reference", "mid", "--out", out], "unknown reference"),
        "rounds": (["dpo", "iterate", "--rounds", "0", "--out", out], "--rounds must be >= 1"),
        "rank": (["dpo", "iterate", "--guided", "--guide-rank", "worst", "--out", out], "unknown --guide-rank"),
        "logp": (["dpo", "iterate", "--logp", "random", "--out", out], "unknown log-probability"),
    }


@pytest.mark.parametrize(
    "name",
    ["labeler", "k", "benchmark", "prompts", "model", "pairs", "junk", "loss", "reference", "rounds", "rank", "logp"],
)
def test_cli_bad_input_is_one_error_line(tmp_path, name) -> None:
    args, fragment = _bad_inputs(tmp_path)[name]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("reference", ["round", "base"])
def test_iterative_reference_is_the_rounds_start_or_the_base(tiny, tmp_path, monkeypatch, reference) -> None:
    import imgcot.dpo.iterate as iterate_module

    generator, folder = tiny["maskgit"]
    real, seen = iterate_module.train_dpo, []

    def spy(start, pairs, out, config, ref, *args, **kwargs):
        seen.append((weights_of(start.model), weights_of(ref.model)))
        return real(start, pairs, out, config, ref, *args, **kwargs)

    monkeypatch.setattr(iterate_module, "train_dpo", spy)
    config = IterateConfig(2, reference, PairConfig(images_per_prompt=4), DPOConfig(lr=1e-3, steps=1, batch_size=2))
    iterate_dpo(str(folder), PROMPTS, tmp_path / "it", config, ScriptedVerifier())
    base = weights_of(generator.model)
    (start1, ref1), (start2, ref2) = seen
    assert all(torch.equal(base[k], start1[k]) and torch.equal(base[k], ref1[k]) for k in base)
    assert any(not torch.equal(base[k], start2[k]) for k in base)  # round 2 starts from round 1's model
    expected = start2 if reference == "round" else base
    assert all(torch.equal(expected[k], ref2[k]) for k in base)


# --- step-credited DPO (beyond the paper) --------------------------------------------------------------------------
def test_failure_step_is_the_first_clear_hopeless_step() -> None:
    nan = math.nan
    potentials = torch.tensor(
        [
            [nan, nan, 0.7, 0.3, 0.2],  # judged clear at step 3, hopeless at step 4
            [nan, 0.9, 0.8, 0.6, 0.55],  # never hopeless: the whole trajectory
            [0.1, nan, 0.9, 0.9, 0.9],  # hopeless at once
            [nan, nan, nan, nan, nan],  # never judged clear
        ]
    )
    assert failure_steps(potentials).tolist() == [4, 5, 1, 5]
    order = torch.tensor([[0, 1, 2, 3, 4, 4], [4, 3, 2, 1, 0, 0], [0, 0, 1, 1, 2, 2], [3, 3, 3, 3, 4, 4]])
    expected = [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert credited_tokens(order, failure_steps(potentials)).int().tolist() == expected
    with pytest.raises(ValueError, match="unknown credit"):
        DPOConfig(credit="some")


def test_failure_preview_credit_adds_the_later_tokens_the_failing_preview_showed() -> None:
    order = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 2]])
    failure = torch.tensor([1, 3])  # the first path fails at step 1, the second never (credited in full anyway)
    tokens = torch.tensor([[5, 6, 7, 8, 9, 4], [1, 2, 3, 4, 5, 6]])
    previews = torch.tensor(
        [
            [[5, 6, 7, 0, 9, 0], [5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 4]],  # step 1 showed 7 and 9 as they stayed
            [[1, 0, 0, 0, 0, 0], [1, 2, 3, 0, 0, 0], [1, 2, 3, 4, 5, 6]],
        ]
    )
    credit = previewed_tokens(order, failure, tokens, previews)
    assert credit.int().tolist() == [[1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert torch.equal(credited_tokens(order, failure) <= credit, torch.ones_like(credit))


@pytest.mark.parametrize("kind", ["maskgit", "ar"])
def test_step_judged_pairs_hold_each_previews_potential(tiny, tmp_path, kind) -> None:
    generator, _ = tiny[kind]
    judge, t = ScriptedStepVerifier(), generator.num_steps
    seeds = [11, 12, 13]
    tokens, _, order, (potentials, previews) = sample_tokens(generator, PROMPTS, seeds, judge=judge)
    assert potentials.shape == (3, t) and judge.calls == list(range(1, t + 1))
    assert previews.shape == (3, t, tokens.shape[1]) and torch.equal(previews[:, -1], tokens)
    assert bool(potentials[:, 0].isnan().all()) and not bool(potentials[:, 1:].isnan().any())  # clear from step 2
    state = generator.init(PROMPTS, seeds)  # the same steps by hand
    for s in range(1, t + 1):
        state = generator.step(state)
        assert torch.equal(previews[:, s - 1], state.predicted)
        if s >= 2:
            assert torch.equal(potentials[:, s - 1], ScriptedVerifier().score(PROMPTS, generator.preview(state)))
    assert torch.equal(state.tokens, tokens)
    ungated = sample_tokens(generator, PROMPTS, seeds, judge=ScriptedStepVerifier(), gated=False)[3][0]
    assert not bool(ungated.isnan().any()) and torch.equal(ungated[:, 1:], potentials[:, 1:])  # step 1 kept too
    first = generator.step(generator.init(PROMPTS, seeds))
    assert torch.equal(ungated[:, 0], ScriptedVerifier().score(PROMPTS, generator.preview(first)))
    with pytest.raises(ValueError, match="judge_unclear needs judge_steps"):
        PairConfig(judge_unclear=True)
    config = PairConfig(images_per_prompt=4, batch_size=8, judge_steps=True)
    pairs = build_pairs(generator, PROMPTS, config, ScriptedVerifier(), ScriptedStepVerifier())
    assert pairs.rejected_potential.shape == (len(pairs), t)
    back = read_pairs(write_pairs(pairs, tmp_path / "p.parquet"), images=False)
    assert torch.equal(back.rejected_previews, pairs.rejected_previews)
    for name in ("chosen_potential", "rejected_potential"):
        assert torch.equal(getattr(back, name).isnan(), getattr(pairs, name).isnan())
        assert torch.equal(getattr(back, name).nan_to_num(), getattr(pairs, name).nan_to_num())
    plain = read_pairs(write_pairs(replace(pairs, rejected_potential=None, rejected_previews=None), tmp_path / "q.pq"))
    assert plain.rejected_potential is None and plain.chosen_potential is None and plain.rejected_previews is None
    with pytest.raises(ValueError, match="judges steps"):
        build_pairs(generator, PROMPTS, config, ScriptedVerifier(), ScriptedVerifier())


def test_step_credit_scores_the_rejected_image_up_to_its_failure(tiny) -> None:
    ar, mg = tiny["ar"][0], tiny["maskgit"][0]
    pairs = random_pairs(ar, n=3)
    credit = torch.zeros_like(pairs.rejected_tokens, dtype=torch.bool)
    credit[:, :20] = True
    policy = bind(ar, copy.deepcopy(ar.model))
    gen = torch.Generator().manual_seed(0)
    args = (policy, ar, pairs.prompts, pairs.chosen_tokens, pairs.rejected_tokens, gen)
    full, part = dpo_logps(*args), dpo_logps(*args, credit=credit)
    with torch.no_grad():
        prefix = ar.log_prob(pairs.prompts, pairs.rejected_tokens, credit)
    assert torch.allclose(part["ref_rejected"], prefix) and torch.allclose(part["policy_rejected"], prefix, atol=1e-5)
    assert torch.equal(part["ref_chosen"], full["ref_chosen"])  # the chosen image keeps every token
    assert not torch.allclose(part["ref_rejected"], full["ref_rejected"])
    # masked-token trajectory: the rejected image's steps score only its credited tokens
    state, order = run_recording_order(mg, mg.init(PROMPTS, [3, 4, 5]))
    other, other_order = run_recording_order(mg, mg.init(PROMPTS, [6, 7, 8]))
    credit = other_order < 4
    every = torch.arange(mg.num_steps)[:, None].expand(mg.num_steps, 3)
    orders = (order, other_order)
    logps = trajectory_logps(mg, mg, PROMPTS, state.tokens, other.tokens, orders, every, credit)
    with torch.no_grad():
        by_hand = sum(mg.log_prob(PROMPTS, other.tokens, other_order >= s, other_order == s) for s in range(4))
    assert torch.allclose(logps["ref_rejected"], by_hand, atol=1e-4)


def test_step_credit_changes_the_update_and_needs_step_judgments(tiny, tmp_path) -> None:
    generator, _ = tiny["ar"]
    config = PairConfig(images_per_prompt=4, batch_size=8, judge_steps=True)
    pairs = build_pairs(generator, PROMPTS, config, ScriptedVerifier(), ScriptedStepVerifier())
    pairs.rejected_potential[:, 1] = 0.9  # clear and hopeful at step 2, hopeless from step 3 on
    pairs.rejected_potential[:, 2:] = 0.0
    credit = rejected_credit(pairs, generator, DPOConfig(credit="until-failure"))
    rows = 3 * generator.config.decoding.rows_per_step  # the token rows of steps 1-3
    assert len(pairs) > 0 and credit.sum(1).tolist() == [rows * generator.config.tokenizer.grid] * len(pairs)
    # a raster preview shows only committed rows: the failing preview adds no token
    assert torch.equal(rejected_credit(pairs, generator, DPOConfig(credit="failure-preview")), credit)
    plain = DPOConfig(lr=1e-3, steps=2, batch_size=2, warmup=0)
    a = weights_of(train_dpo(generator, pairs, tmp_path / "all", plain).model)
    b = weights_of(train_dpo(generator, pairs, tmp_path / "credit", replace(plain, credit="until-failure")).model)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="judged every step"):
        train_dpo(generator, random_pairs(generator), tmp_path / "x", replace(plain, credit="until-failure"))
    mg = tiny["maskgit"][0]
    mg_pairs = build_pairs(mg, PROMPTS, config, ScriptedVerifier(), ScriptedStepVerifier())
    with pytest.raises(ValueError, match="--logp trajectory"):
        train_dpo(mg, mg_pairs, tmp_path / "y", replace(plain, credit="until-failure"))
    traj = replace(plain, credit="until-failure", logp="trajectory")
    trained = weights_of(train_dpo(mg, mg_pairs, tmp_path / "z", traj).model)
    assert any(not torch.equal(v, weights_of(mg.model)[k]) for k, v in trained.items())
    # a masked-token preview also shows predictions of tokens committed later: those it kept join the credit
    mg_pairs.rejected_potential[:] = 0.0  # hopeless from step 1, whose preview showed every other final token
    mg_pairs.rejected_previews[:, 0, ::2] = mg_pairs.rejected_tokens[:, ::2]
    shown = replace(traj, credit="failure-preview")
    narrow, wide = rejected_credit(mg_pairs, mg, traj), rejected_credit(mg_pairs, mg, shown)
    kept = mg_pairs.rejected_previews[:, 0] == mg_pairs.rejected_tokens
    assert torch.equal(wide, narrow | kept) and bool(wide[:, ::2].all()) and bool((wide & ~narrow).any())
    with pytest.raises(ValueError, match="recorded every step's preview"):
        train_dpo(mg, replace(mg_pairs, rejected_previews=None), tmp_path / "w", shown)


def test_cli_step_credit_needs_a_guide(tmp_path) -> None:
    out = str(tmp_path / "o")
    for args, fragment in (
        (["dpo", "iterate", "--credit", "until-failure", "--out", out], "needs --guided"),
        (["dpo", "iterate", "--guided", "--credit", "most", "--out", out], "unknown credit"),
        (["dpo", "iterate", "--guided", "--judge-unclear", "--out", out], "--judge-unclear needs step judgments"),
        (["dpo", "build-pairs", "--judge-steps", "--out", out], "needs --guide parm"),
        (["dpo", "build-pairs", "--guide-fill", "failed", "--out", out], "--guide-fill needs --guide"),
        (["dpo", "iterate", "--guide-fill", "failed", "--out", out], "--guide-fill needs --guided"),
        (["dpo", "iterate", "--guided", "--guide-fill", "all", "--out", out], "unknown --guide-fill"),
        (["dpo", "iterate", "--guided", "--guide-fill-gap", "2", "--out", out], "--guide-fill-gap must be"),
    ):
        result = runner.invoke(app, args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and fragment in lines[0], result.stderr

"""Learned shapes verifiers: network heads, checkpoints, data builders (labels vs the evaluator), training, AUC."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from imgcot.core import GenState, StepScore
from imgcot.geneval.judge import judge
from imgcot.nn.io import CheckpointError
from imgcot.nn.verifier import HEADS, VerifierNet, VerifierNetConfig, patch_centres
from imgcot.train.verifier import (
    VerifierTrainConfig,
    agreement,
    auc,
    grounding_loss,
    grounding_targets,
    head_columns,
    train_verifier,
)
from imgcot.verifiers.data import (
    SOURCES,
    VerifierData,
    build_data,
    build_orm_zs,
    build_prm,
    draw_prompts,
    fixed_clarity,
    patch_labels,
    path_seed,
    rollout_seed,
    same_reading,
    settled,
)
from imgcot.verifiers.registry import load_verifier
from imgcot.verifiers.shapes import ShapesORM, ShapesPARM, ShapesPRM, ShapesVerifierConfig, load_role
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.prompts import parse_prompt
from imgcot.worlds.shapes.scenes import Scene, SceneObject, render
from imgcot.worlds.shapes.text import encode_prompts
from imgcot.worlds.shapes.vocab import COLORS, OBJECTS
from tiny import tiny_generator

TINY = VerifierNetConfig(dim=32, depth=1, heads=2, stem_channels=8)
PROMPTS = ["a photo of a red star", "a photo of three hearts", "a photo of a cross below a square"]


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 32, 32, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _config(role: str, heads: tuple[str, ...]) -> ShapesVerifierConfig:
    return ShapesVerifierConfig(role=role, trained_heads=heads, net=TINY)


# --- network and wrappers ---------------------------------------------------------------------------------------
def test_network_returns_one_logit_per_head():
    net = VerifierNet(TINY)
    text = torch.zeros(5, TINY.text_len, dtype=torch.long)
    out = net(_images(5), text, torch.linspace(0, 1, 5), torch.tensor([0, 0, 0, 0, 1]))
    assert out.shape == (5, len(HEADS)) and torch.isfinite(out).all()


@pytest.mark.parametrize("cls", [ShapesORM, ShapesPRM, ShapesPARM])
def test_every_question_is_a_probability_per_row(cls):
    torch.manual_seed(0)
    verifier = cls(_config("parm", ("outcome", "clarity", "potential")))
    images = _images(3)
    if hasattr(verifier, "score"):
        score = verifier.score(PROMPTS, images)
        assert score.shape == (3,) and ((score >= 0) & (score <= 1)).all()
    if hasattr(verifier, "judge"):
        judged = verifier.judge(PROMPTS, images, 2, 12)
        assert isinstance(judged, StepScore)
        for value in (judged.clarity, judged.potential, judged.value):
            assert value.shape == (3,) and ((value >= 0) & (value <= 1)).all()


def test_judgment_depends_on_the_step_and_batching_does_not_change_it():
    torch.manual_seed(0)
    verifier = ShapesPARM(_config("parm", ("outcome", "clarity", "potential")))
    images = _images(3)
    early, late = verifier.judge(PROMPTS, images, 1, 12), verifier.judge(PROMPTS, images, 11, 12)
    assert not torch.allclose(early.clarity, late.clarity)
    verifier.batch_size = 1
    assert torch.allclose(verifier.judge(PROMPTS, images, 1, 12).clarity, early.clarity, atol=1e-6)


def test_save_and_load_round_trip_is_identical(tmp_path):
    torch.manual_seed(0)
    verifier = ShapesPARM(_config("parm", ("outcome", "clarity", "potential")))
    verifier.save_pretrained(tmp_path / "v")
    back = load_role("parm", tmp_path / "v")
    assert isinstance(back, ShapesPARM) and back.config == verifier.config
    for (name, a), b in zip(verifier.net.state_dict().items(), back.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    images = _images(3)
    assert torch.equal(verifier.score(PROMPTS, images), back.score(PROMPTS, images))
    assert isinstance(load_verifier("parm", str(tmp_path / "v")), ShapesPARM)  # the strategies' entry point


def test_grounding_network_round_trips_and_grounds_words_on_patch_centres(tmp_path):
    assert torch.equal(patch_centres(2), torch.tensor([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]))
    torch.manual_seed(0)
    net_config = replace(TINY, coords=True, grounding=True)
    verifier = ShapesORM(ShapesVerifierConfig(role="orm", trained_heads=("outcome",), net=net_config))
    state = verifier.net.state_dict()
    assert "coord_embed.weight" in state and "ground_query.weight" in state
    assert "patch_xy" not in state  # a fixed grid, rebuilt from the config: not a weight
    verifier.save_pretrained(tmp_path / "g")
    back = load_role("orm", tmp_path / "g")
    images = _images(3)
    assert back.config.net.grounding and torch.equal(verifier.score(PROMPTS, images), back.score(PROMPTS, images))
    # The readout adds to the CLS head: with its last layer zeroed the network is the CLS head alone.
    net = back.net
    text = torch.zeros(3, TINY.text_len, dtype=torch.long)
    text[:, 0] = 5
    args = (images, text, torch.ones(3), torch.ones(3))
    with torch.no_grad():
        seq = net.encode(*args)
        full = net(*args)
        net.ground_head[-1].weight.zero_()
        net.ground_head[-1].bias.zero_()
        assert not torch.allclose(full, net(*args))
        assert torch.allclose(net(*args), net.head(seq[:, 0]))


def test_word_evidence_reads_the_colour_under_each_words_attention(tmp_path):
    with pytest.raises(ValueError, match="grounding"):
        replace(TINY, word_evidence=True)
    torch.manual_seed(0)
    net_config = replace(TINY, coords=True, grounding=True, word_evidence=True)
    verifier = ShapesORM(ShapesVerifierConfig(role="orm", trained_heads=("outcome",), net=net_config))
    verifier.save_pretrained(tmp_path / "e")
    back = load_role("orm", tmp_path / "e")
    images = _images(3)
    assert back.config.net.word_evidence and torch.equal(verifier.score(PROMPTS, images), back.score(PROMPTS, images))
    net = back.net
    text = encode_prompts(["a photo of a red star and a blue heart"] * 3)
    args = (images, text, torch.ones(3), torch.ones(3))
    with torch.no_grad():
        seq = net.encode(*args)
        attention = net.grounding_attention(seq, text)
        evidence = net.word_evidence(seq, text, attention)
        # By hand: the MLP over [word state, object and colour distributions under the attention, match].
        patch_logits = net.patch_head(seq[:, -net_config.num_patches :])
        seen_object = attention @ torch.softmax(patch_logits[..., :7], -1)
        seen_color = attention @ torch.softmax(patch_logits[..., 7:], -1)
        match = torch.logsumexp(net.grounding_scores(seq, text), -1, keepdim=True)
        words = seq[:, 2 : 2 + text.shape[1]]
        expected = net.evidence(torch.cat([words, seen_object, seen_color, match], -1))
        assert evidence.shape == (3, net_config.text_len, 4) and torch.allclose(evidence, expected)
        before = net(*args)
        net.patch_head.bias[7 + 3] += 5.0  # every patch now looks like one colour: the words see it, the CLS does not
        assert not torch.allclose(net.word_evidence(seq, text, attention), evidence)
        assert not torch.allclose(net(*args), before)
        assert torch.allclose(net.head(seq[:, 0]), net.head(net.encode(*args)[:, 0]))


def test_loading_is_strict_and_checks_the_role(tmp_path):
    ShapesORM(_config("orm", ("outcome",))).save_pretrained(tmp_path / "orm")
    assert isinstance(load_role("orm-zs", tmp_path / "orm"), ShapesORM)  # same head: either ORM role
    with pytest.raises(CheckpointError, match="no trained"):
        load_role("parm", tmp_path / "orm")
    config = json.loads((tmp_path / "orm" / "config.json").read_text())
    config["net"]["extra"] = 1
    (tmp_path / "orm" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown config keys"):
        load_role("orm", tmp_path / "orm")


# --- data builders ----------------------------------------------------------------------------------------------
def _meta_of(data: VerifierData, row: int) -> dict:
    return parse_prompt(data.prompts[int(data.prompt_id[row])])


def test_orm_zero_shot_data_agrees_with_the_evaluator():
    data = build_orm_zs(18, seed=3)
    detector, sources = ShapesDetector(), data.extras["source"].long()
    labels = data.label("outcome")
    for row in range(len(data)):
        correct = judge(_meta_of(data, row), data.images[row].numpy(), detector)[0]
        assert float(correct) == labels[row], (row, SOURCES[int(sources[row])])
    assert (labels[sources == SOURCES.index("render")] == 1).all()
    assert (labels[sources == SOURCES.index("mutation")] == 0).all()
    assert (sources == SOURCES.index("mutation")).sum() >= 18  # hard negatives: a render under a changed prompt
    assert 0.3 < labels.mean() < 0.7
    assert SOURCES.index("sample") not in sources.tolist()  # never a generated image


def test_builders_are_seeded_and_never_use_the_benchmark_seed():
    a, b, c = build_orm_zs(6, seed=5), build_orm_zs(6, seed=5), build_orm_zs(6, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.label("outcome"), b.label("outcome"))
    assert a.images.shape != c.images.shape or not torch.equal(a.images, c.images)
    with pytest.raises(ValueError, match="benchmark"):
        draw_prompts(4, seed=43)


def test_data_round_trips_through_safetensors(tmp_path):
    data = build_orm_zs(6, seed=1)
    data.save(tmp_path / "d")
    back = VerifierData.load(tmp_path / "d")
    assert back.prompts == data.prompts and back.info == data.info
    for name in ("images", "prompt_id", "step", "num_steps"):
        assert torch.equal(getattr(back, name), getattr(data, name))
    assert torch.equal(back.label("outcome"), data.label("outcome"))
    assert json.loads((tmp_path / "d" / "data.json").read_text())["summary"]["rows"] == len(data)


def test_concatenated_data_keeps_each_rows_prompt_and_labels():
    a, b = build_orm_zs(4, seed=1), build_orm_zs(4, seed=2)
    b.labels["value"] = torch.ones(len(b))
    both = VerifierData.concat([a, b])
    assert len(both) == len(a) + len(b) and len(set(both.prompts)) == len(both.prompts)
    texts = [both.prompts[i] for i in both.prompt_id.tolist()]
    assert texts == [a.prompts[i] for i in a.prompt_id.tolist()] + [b.prompts[i] for i in b.prompt_id.tolist()]
    assert both.label("value")[: len(a)].isnan().all() and (both.label("value")[len(a) :] == 1).all()


class SeedWriter:
    """Scripted generator: each step writes the row's seed (mod 251) into token `step`; the image shows tokens."""

    num_steps = 4

    def init(self, prompts, seeds):
        tokens = torch.zeros(len(prompts), self.num_steps, dtype=torch.long)
        return GenState(
            list(prompts), list(seeds), tokens[:, :1], tokens, tokens.clone(), 0, forwards=[0] * len(seeds)
        )

    def step(self, s):
        tokens = s.tokens.clone()
        tokens[:, s.step] = torch.tensor([seed % 251 for seed in s.seeds])
        return GenState(s.prompts, s.seeds, s.text, tokens, tokens.clone(), s.step + 1, forwards=list(s.forwards))

    def is_done(self, s):
        return s.step >= self.num_steps

    def preview(self, s):
        images = torch.zeros(s.batch, 4, 4, 3, dtype=torch.uint8)
        images[:, 0, :, 0] = s.tokens.to(torch.uint8)
        return images

    decode = preview


def _last_token_even(meta, image):
    """Scripted evaluator: an image is correct when the token of its last step is even."""
    return int(image[0, -1, 0]) % 2 == 0, "", {}


def test_prm_label_is_any_rollout_correct_on_a_scripted_generator():
    data = build_prm(SeedWriter(), 3, 2, seed=9, rollouts=3, batch_size=6, evaluate=_last_token_even)
    assert len(data) == 3 * 2 * SeedWriter.num_steps
    for row in range(len(data)):
        pid, t = int(data.extras["path_id"][row]), int(data.step[row])
        own = path_seed(9, pid // 2, pid % 2)
        if t == SeedWriter.num_steps:  # the last step: the path's own verdict
            expected = [own % 251 % 2 == 0]
        else:  # roll-out r continues with its own seed: its last token is that seed
            expected = [rollout_seed(own, t, r) % 251 % 2 == 0 for r in range(3)]
        assert data.label("value")[row] == float(any(expected)), (pid, t)
        assert data.extras["value_frac"][row] == pytest.approx(np.mean(expected))
    assert 0 < data.label("value").mean() < 1


def test_patch_labels_name_what_each_patch_shows():
    image = render(Scene((SceneObject("square", "red", 0, 0), SceneObject("star", "blue", 20, 20))))
    classes, colors = patch_labels(torch.from_numpy(np.stack([image, np.full_like(image, 128)])))
    grid = classes.view(2, 8, 8)
    square = grid[0, :3, :3] == 1 + OBJECTS.index("square")  # patches at least half covered by the square
    assert square[1, 1] and square.sum() >= 5 and (grid[0, :3, :3][~square] == 0).all()
    assert (colors.view(2, 8, 8)[0, :3, :3][square] == 1 + COLORS.index("red")).all()
    assert set(grid[0, 5:, 5:].unique().tolist()) <= {0, 1 + OBJECTS.index("star")} and grid[0, 6, 6] > 0
    assert grid[0, 0, 4] == 0 and (classes[1] == 0).all() and (colors[1] == 0).all()


def test_fixed_clarity_rule_generalises_the_papers_18_steps():
    labels = [fixed_clarity(t, 18) for t in range(1, 19)]
    assert labels[:9] == [0.0] * 9 and all(math.isnan(x) for x in labels[9:11]) and labels[11:] == [1.0] * 7
    assert [fixed_clarity(t, 12) for t in (6, 8, 12)] == [0.0, 1.0, 1.0] and math.isnan(fixed_clarity(7, 12))


def test_parm_asks_clarity_where_its_rule_allows_a_yes():
    fixed = ShapesPARM(_config("parm", ("outcome", "clarity", "potential")))
    assert fixed.first_clarity_step(18) == 10  # the paper: steps before 10 of 18 are unclear
    assert fixed.first_clarity_step(12) == 7 and fixed_clarity(6, 12) == 0.0 != fixed_clarity(7, 12)
    learned = ShapesPARM(ShapesVerifierConfig("parm", ("outcome", "clarity", "potential"), "learned", TINY))
    assert learned.first_clarity_step(12) == 1


def test_learned_clarity_is_settled_reading():
    star, star_moved = ("star", "red", 10.0, 10.0), ("star", "red", 11.0, 9.0)
    heart = ("heart", "blue", 20.0, 20.0)
    assert same_reading([star], [star_moved]) and not same_reading([star], [("star", "red", 16.0, 10.0)])
    assert not same_reading([star], [star, heart])
    readings = [[], [heart], [star], [star_moved, heart], [star, heart]]
    assert settled(readings, [star, heart]) == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert settled([[star], [star]], [star]) == [1.0, 1.0]
    assert settled([[], []], []) == [0.0, 0.0]  # a final with nothing to read is never "clear"


def test_parm_and_orm_data_on_a_tiny_generator_follow_the_evaluator(tmp_path):
    generator = tiny_generator("maskgit", tmp_path / "g", steps=4)
    data = build_data("parm", generator, 3, seed=2, images_per_prompt=2, batch_size=4)
    detector, total = ShapesDetector(), generator.num_steps
    assert len(data) == 3 * 2 * total and (data.num_steps == total).all()
    final = data.step == total
    assert (~data.label("outcome")[~final].isnan()).sum() == 0  # outcome labels only on final images
    for row in final.nonzero()[:, 0].tolist():
        assert float(judge(_meta_of(data, row), data.images[row].numpy(), detector)[0]) == data.label("outcome")[row]
    for rule in ("fixed", "learned"):  # clear steps inherit the final image's label, unclear steps have none
        clear = data.label(f"clarity_{rule}") == 1
        potential = data.label(f"potential_{rule}")
        assert torch.equal(potential[clear], data.extras["final_correct"][clear])
        assert potential[~clear].isnan().all()
    orm = build_data("orm", generator, 3, seed=2, images_per_prompt=2, batch_size=4)
    assert torch.equal(orm.images, data.images[final]) and torch.equal(
        orm.label("outcome"), data.label("outcome")[final]
    )


# --- training and agreement -------------------------------------------------------------------------------------
def _separable(n: int = 64) -> VerifierData:
    """Red canvases are correct for the prompt, blue ones are not."""
    labels = torch.arange(n) % 2
    images = torch.zeros(n, 32, 32, 3, dtype=torch.uint8)
    images[labels == 1, ..., 0] = 220
    images[labels == 0, ..., 2] = 220
    zeros = torch.zeros(n, dtype=torch.long)
    return VerifierData(
        images, zeros, zeros + 1, zeros + 1, {"outcome": labels.float()}, {}, ["a photo of a red star"]
    )


def _train_cfg(**changes) -> VerifierTrainConfig:
    base = VerifierTrainConfig(net=TINY, batch=16, lr=3e-3, warmup=2, checkpoint_every=3, eval_every=10**9)
    return replace(base, **changes)


def test_a_few_steps_move_the_outcome_probability_toward_the_labels(tmp_path):
    data = _separable()
    before = train_verifier("orm", data, tmp_path / "a", steps=1, config=_train_cfg(lr=1e-9))
    after = train_verifier("orm", data, tmp_path / "b", steps=40, config=_train_cfg(), heldout=data)
    y = data.label("outcome") == 1
    p0 = before.score(["a photo of a red star"] * len(data), data.images)
    p1 = after.score(["a photo of a red star"] * len(data), data.images)
    assert p1[y].mean() - p1[~y].mean() > p0[y].mean() - p0[~y].mean() + 0.2
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())["heldout"]
    assert metrics["outcome"]["auc"] > 0.9 and set(metrics) == {"outcome"}
    assert isinstance(load_role("orm", tmp_path / "b" / "final"), ShapesORM)


class Killed(Exception):
    pass


def test_killed_training_resumes_to_identical_weights(tmp_path):
    data = _separable(32)
    whole = train_verifier("orm", data, tmp_path / "whole", steps=6, config=_train_cfg())

    def kill_at_four(step, total, loss, minutes):
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        train_verifier("orm", data, tmp_path / "resumed", steps=6, config=_train_cfg(), progress=kill_at_four)
    resumed = train_verifier("orm", data, tmp_path / "resumed", steps=6, config=_train_cfg())
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_heads_train_on_their_own_columns():
    assert head_columns("orm-zs") == {"outcome": "outcome"}
    assert head_columns("prm") == {"value": "value"}
    assert head_columns("parm", "learned") == {
        "outcome": "outcome",
        "clarity": "clarity_learned",
        "potential": "potential_learned",
    }
    with pytest.raises(ValueError, match="no rows labelled"):
        train_verifier("prm", _separable(8), "unused", steps=1, config=_train_cfg())


def test_agreement_reports_the_trained_heads_only():
    torch.manual_seed(0)
    verifier = ShapesPRM(_config("prm", ("value",)))
    data = _separable(16)
    data.labels["value"] = data.labels.pop("outcome")
    report = agreement(verifier, data)
    assert set(report) == {"value"} and report["value"]["n"] == 16 and 0 <= report["value"]["accuracy"] <= 1


def test_auc_matches_hand_computed_values_with_ties():
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auc([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == pytest.approx(0.75)  # tied pairs count half
    assert auc([0.3, 0.3, 0.3], [1, 0, 1]) == pytest.approx(0.5)
    assert auc([0.9, 0.1], [0, 1]) == 0.0 and math.isnan(auc([0.2, 0.4], [1, 1]))
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 60) / 4, rng.integers(0, 2, 60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(scores, labels) == pytest.approx(brute)


# --- grounding loss ---------------------------------------------------------------------------------------------
def test_grounding_targets_name_the_patches_of_each_object_word():
    text = encode_prompts(["a photo of a red star and a blue circle", "a photo of three hearts"])
    star, circle = 1 + OBJECTS.index("star"), 1 + OBJECTS.index("circle")
    red, blue = 1 + COLORS.index("red"), 1 + COLORS.index("blue")
    classes = torch.tensor([[star, circle, star, 0], [star, circle, star, 0]])
    colors = torch.tensor([[red, blue, blue, 0], [red, blue, blue, 0]])
    target = grounding_targets(text, classes, colors)
    words = ["a", "photo", "of", "a", "red", "star", "and", "a", "blue", "circle"]
    assert torch.equal(target[0, words.index("star")], torch.tensor([True, False, False, False]))  # red star only
    assert torch.equal(target[0, words.index("circle")], torch.tensor([False, True, False, False]))
    assert int(target[0].sum()) == 2 and not bool(target[1].any())  # other words, and absent hearts, name nothing
    blue_star = grounding_targets(encode_prompts(["a photo of a green star"]), classes[:1], colors[:1])
    assert torch.equal(blue_star[0, 5], torch.tensor([True, False, True, False]))  # no green star: every star


def test_grounding_loss_is_minus_log_of_the_attention_mass_on_the_named_patches():
    attention = torch.full((1, 3, 4), 0.25)
    target = torch.zeros(1, 3, 4, dtype=torch.bool)
    target[0, 1, :2] = True
    assert math.isclose(float(grounding_loss(attention, target)), math.log(2), rel_tol=1e-6)
    assert float(grounding_loss(attention, torch.zeros_like(target))) == 0.0


def test_grounding_weight_points_the_object_word_at_the_object(tmp_path):
    rng = np.random.default_rng(0)
    corners = [0, 20]
    images = torch.stack(
        [torch.from_numpy(render(Scene((SceneObject("star", "red", *rng.choice(corners, 2)),)))) for _ in range(32)]
    )
    zeros = torch.zeros(32, dtype=torch.long)
    labels = (torch.arange(32) % 2).float()
    data = VerifierData(images, zeros, zeros + 1, zeros + 1, {"outcome": labels}, {}, ["a photo of a red star"])
    net = replace(TINY, coords=True, grounding=True)
    mass = {}
    for weight in (0.0, 1.0):
        verifier = train_verifier(
            "orm", data, tmp_path / str(weight), steps=30, config=_train_cfg(net=net, ground_weight=weight)
        )
        text = encode_prompts(["a photo of a red star"] * 32)
        classes, colors = patch_labels(images)
        with torch.no_grad():
            attention = verifier.net.outputs(images, text, torch.ones(32), torch.ones(32).bool())[2]
        target = grounding_targets(text, classes, colors)[:, 5]
        mass[weight] = float((attention[:, 5] * target.float()).sum(-1).mean())
    assert mass[1.0] > mass[0.0] + 0.2, mass


def test_a_checkpoint_from_before_an_option_existed_still_resumes(tmp_path):
    data = _separable(32)

    def kill_at_four(step, total, loss, minutes):  # after the step-3 checkpoint
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        train_verifier("orm", data, tmp_path / "run", steps=6, config=_train_cfg(), progress=kill_at_four)
    meta_path = tmp_path / "run" / "checkpoint" / "state.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["ground_weight"]  # as written before the grounding loss existed
    del meta["config"]["net"]["word_evidence"]  # and before the word-evidence readout
    meta_path.write_text(json.dumps(meta))
    resumed = train_verifier("orm", data, tmp_path / "run", steps=6, config=_train_cfg())
    assert json.loads(meta_path.read_text())["step"] == 6 and isinstance(resumed, ShapesORM)
    meta["config"]["lr"] = 1.0  # any other difference is still refused
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another config"):
        train_verifier("orm", data, tmp_path / "run", steps=6, config=_train_cfg())

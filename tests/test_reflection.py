"""Reflection and self-correction (PARM++): the evaluator's clauses, critiques, localisation, the reflection model,
critique-conditioned correction on tiny generators, the parm++ loop with scripted parts, traces and commands."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from imgcot.cli import app
from imgcot.core import Clause, Reflection
from imgcot.generators.base import DecodingConfig, GeneratorConfig
from imgcot.generators.maskgit import MaskGITGenerator
from imgcot.generators.registry import load_generator, resolve_model
from imgcot.geneval.judge import judge
from imgcot.nn.io import CheckpointError
from imgcot.nn.tokenizer import PatchTokenizer
from imgcot.nn.transformer import TransformerConfig
from imgcot.nn.verifier import VerifierNetConfig
from imgcot.reflection.clauses import (
    ALIGNED_TEXT,
    GENERIC_TEXT,
    clause_text,
    clauses_of,
    critique_text,
    critique_words,
    one_hot_outputs,
    output_slices,
    targets_of,
    teacher_clauses,
)
from imgcot.reflection.correct import (
    CRITIQUE_LEN,
    LOCALIZE,
    VOCAB,
    CritiqueCorrector,
    condition_ids,
    critique_ids,
    extend_for_critique,
    region_for,
    supports_critique,
)
from imgcot.reflection.data import build_reflection_data
from imgcot.reflection.edits import EDITS, edit_scene
from imgcot.reflection.localize import redraw_region
from imgcot.reflection.model import ShapesReflector, ShapesReflectorConfig, load_reflector
from imgcot.reflection.sc_data import edit_groups
from imgcot.reflection.sc_train import SelfCorrectConfig, maskgit_correction_loss, train_self_correct
from imgcot.reflection.train import ReflectorTrainConfig, agreement, train_reflector
from imgcot.search import STRATEGIES, run_strategy
from imgcot.search.reflect import ParmPlusPlusVerifier
from imgcot.trace_html import trace_dict, write_trace
from imgcot.verifiers.data import patch_labels
from imgcot.verifiers.shapes import ShapesPARM, ShapesVerifierConfig
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.prompts import parse_prompt
from imgcot.worlds.shapes.sampler import random_metadata, sample_scene
from imgcot.worlds.shapes.scenes import Scene, SceneObject, render
from imgcot.worlds.shapes.text import WORDS
from imgcot.worlds.shapes.vocab import PALETTE
from test_search import PROMPTS, SEEDS, MockGenerator, parm_verifiers
from tiny import tiny_generator

TINY_NET = VerifierNetConfig(dim=32, depth=1, heads=2, stem_channels=8)
DETECTOR = ShapesDetector()
runner = CliRunner()


def _o(cls: str, color: str, x: int, y: int) -> SceneObject:
    return SceneObject(cls, color, x, y)


def _evaluate(prompt: str, scene: Scene):
    meta = parse_prompt(prompt)
    image = render(scene)
    correct, reason, _ = judge(meta, image, DETECTOR)
    return meta, image, teacher_clauses(meta, correct, reason)


def _patches(image: np.ndarray) -> np.ndarray:
    return patch_labels(torch.as_tensor(image)[None])[0][0].view(8, 8).numpy()


# --- the teacher: GenEval's reasons -> clauses -> critique ----------------------------------------------------------
FOUR_HEARTS = (_o("heart", "red", 0, 0), _o("heart", "blue", 12, 0), _o("heart", "green", 0, 12))
CASES = [
    ("a photo of a red star", (_o("star", "blue", 4, 4),),
     (Clause("colour", "star", 0, color="red", found_color="blue"),), "the star is blue, not red"),
    ("a photo of three hearts", FOUR_HEARTS[:2],
     (Clause("count", "heart", 0, count=3, found_count=2),), "there are two hearts, not three"),
    ("a photo of three hearts", FOUR_HEARTS + (_o("heart", "pink", 12, 12),),
     (Clause("extra", "heart", 0, count=3, found_count=4),), "there are four hearts, not three"),
    ("a photo of a cross below a square", (_o("cross", "red", 8, 0), _o("square", "blue", 8, 16)),
     (Clause("relation", "cross", 1, relation="below", target="square"),), "the cross is not below the square"),
    ("a photo of a star and a circle", (_o("star", "red", 0, 0),),
     (Clause("missing", "circle", 1, found_count=0),), "the circle is missing"),
    ("a photo of a square below a heart", (_o("square", "red", 8, 16),),
     (Clause("missing", "heart", 0, found_count=0),), "the heart is missing"),
    ("a photo of a red star and a blue circle", (_o("star", "blue", 0, 0), _o("circle", "red", 16, 16)),
     (Clause("colour", "star", 0, color="red", found_color="blue"),
      Clause("colour", "circle", 1, color="blue", found_color="red")),
     "the star is blue, not red and the circle is red, not blue"),
]  # fmt: skip


@pytest.mark.parametrize("prompt, objects, clauses, text", CASES)
def test_teacher_clauses_and_critique_come_from_the_evaluators_reasons(prompt, objects, clauses, text):
    meta, _, found = _evaluate(prompt, Scene(objects))
    assert found == clauses
    assert critique_text(found) == text == " and ".join(clause_text(c) for c in found)
    words = critique_words(found)
    assert words == text.replace(",", "").split() and set(words) <= set(VOCAB)
    assert clauses_of(meta, one_hot_outputs(targets_of(meta, found))) == found  # the network's layout, both ways


def test_aligned_and_unreadable_evaluations():
    meta, image, clauses = _evaluate("a photo of a red star", Scene((_o("star", "red", 4, 4),)))
    assert clauses == () and critique_text(clauses, aligned=True) == ALIGNED_TEXT
    assert critique_text(()) == GENERIC_TEXT and critique_words(()) == []
    assert targets_of(meta, ())["aligned"] == 1.0 and np.isnan(targets_of(meta, ())["relation"])
    with pytest.raises(ValueError, match="unreadable GenEval reason"):
        teacher_clauses(meta, False, "the moon is made of cheese")
    with pytest.raises(ValueError, match="unknown clause kind"):
        Clause("wrong shape", "star")


def test_every_edit_of_every_tag_round_trips_through_the_network_targets():
    rng = np.random.default_rng(0)
    seen = set()
    for tag, kinds in EDITS.items():
        for _ in range(25):
            meta = random_metadata(tag, rng)
            scene = sample_scene(meta, rng)
            for kind in kinds:
                bad = edit_scene(meta, scene, kind, rng)
                if bad is None:
                    continue
                correct, reason, _ = judge(meta, render(bad), DETECTOR)
                clauses = teacher_clauses(meta, correct, reason)
                assert not correct and clauses, (meta["prompt"], kind)
                assert clauses_of(meta, one_hot_outputs(targets_of(meta, clauses))) == clauses
                seen |= {c.kind for c in clauses}
    assert seen == {"missing", "count", "extra", "colour", "relation"}
    assert sum(s.stop - s.start for s in output_slices().values()) == 7 + 10 + 10 + 7


# --- localisation ------------------------------------------------------------------------------------------------
def _patch_set(obj: SceneObject) -> np.ndarray:
    return obj.mask().reshape(8, 4, 8, 4).any((1, 3))


def test_the_region_to_redraw_follows_the_clauses():
    star, circle = _o("star", "blue", 0, 0), _o("circle", "blue", 20, 20)
    meta, image, clauses = _evaluate("a photo of a red star and a blue circle", Scene((star, circle)))
    region = redraw_region(meta, clauses, _patches(image))
    assert region[_patch_set(star)].all() and not region[_patch_set(circle)].any()  # recolour the star only

    meta, image, clauses = _evaluate("a photo of a star and a circle", Scene((_o("star", "red", 0, 0),)))
    region = redraw_region(meta, clauses, _patches(image))
    assert not region[_patch_set(_o("star", "red", 0, 0))].any() and region[4:, 4:].all()  # room for the circle

    hearts = FOUR_HEARTS + (_o("heart", "pink", 12, 12),)
    meta, image, clauses = _evaluate("a photo of three hearts", Scene(hearts))
    region = redraw_region(meta, clauses, _patches(image))
    assert region[_patch_set(hearts[-1])].all()  # the last instance in raster order goes
    assert not any(region[_patch_set(h)].any() for h in hearts[:2])
    assert redraw_region(meta, (), _patches(image)).all() and redraw_region(meta, clauses, None).all()


def test_localisation_policies():
    star, circle = _o("star", "blue", 0, 0), _o("circle", "blue", 20, 20)
    meta, image, colour = _evaluate("a photo of a red star and a blue circle", Scene((star, circle)))
    _, other, missing = _evaluate("a photo of a star and a circle", Scene((_o("star", "red", 0, 0),)))
    local = {p: region_for(meta, colour, _patches(image), 8, p) for p in LOCALIZE}
    assert not local["clauses"].all() and np.array_equal(local["clauses"], local["objects"]) and local["none"].all()
    meta = parse_prompt("a photo of a star and a circle")
    assert not region_for(meta, missing, _patches(other), 8, "clauses").all()
    assert region_for(meta, missing, _patches(other), 8, "objects").all()  # a missing object: redraw everything
    with pytest.raises(ValueError, match="unknown localisation"):
        CritiqueCorrector(None, localize="everywhere")


def test_edit_groups_keep_what_is_right_and_redraw_what_differs():
    tokenizer = PatchTokenizer.from_pretrained(resolve_model("shapes-tokenizer"))
    groups = edit_groups(np.random.default_rng(1), 24, tokenizer)
    assert len(groups) == 24 and all(groups.critiques)
    assert bool(((groups.bad != groups.good) <= groups.redraw).all())  # outside the region bad == good
    assert 0 < groups.redraw.float().mean() < 1
    for prompt, tokens in zip(groups.prompts, groups.good, strict=True):  # every good image is correct
        assert judge(parse_prompt(prompt), tokenizer.decode(tokens[None])[0].numpy(), DETECTOR)[0]


# --- critique-conditioned generators -----------------------------------------------------------------------------
@pytest.fixture(params=["maskgit", "ar"], scope="module")
def tiny(request, tmp_path_factory):
    return tiny_generator(request.param, tmp_path_factory.mktemp(request.param))


def test_widening_for_critique_keeps_every_shipped_weight(tiny, tmp_path):
    wide = extend_for_critique(tiny)
    old, new = tiny.model.state_dict(), wide.model.state_dict()
    length = tiny.config.transformer.text_len
    assert supports_critique(wide) and not supports_critique(tiny) and extend_for_critique(wide) is wide
    assert torch.equal(new["text_embed.weight"][: len(WORDS)], old["text_embed.weight"])
    assert torch.equal(new["pos"][:, :length], old["pos"][:, :length])
    assert torch.equal(new["pos"][:, length + CRITIQUE_LEN :], old["pos"][:, length:])
    assert all(torch.equal(new[k], v) for k, v in old.items() if k not in ("text_embed.weight", "pos"))
    prompts = ["a photo of a red star", "a photo of three hearts"]
    plain = condition_ids(wide, prompts, None)
    assert torch.equal(plain, wide.prompt_ids(prompts)) and plain.shape[1] == length + CRITIQUE_LEN
    ids = condition_ids(wide, prompts, [["the", "star", "is", "blue", "not", "red"], []])
    assert ids[0, length] == VOCAB.index("<critique>") and (ids[1, length:] == 0).all()
    assert torch.equal(condition_ids(tiny, prompts, [["the"], []]), tiny.prompt_ids(prompts))  # no room: dropped
    wide.save_pretrained(tmp_path / "wide")
    assert supports_critique(load_generator(str(tmp_path / "wide")))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        critique_ids(["banana"])
    with pytest.raises(ValueError, match="does not fit"):
        critique_ids(["the"] * CRITIQUE_LEN)


def test_correction_redraws_the_region_only_and_does_not_depend_on_batching(tiny):
    wide = extend_for_critique(tiny)
    prompts = ["a photo of a red star and a blue circle", "a photo of three hearts", "a photo of a red star"]
    scenes = [Scene((_o("star", "blue", 0, 0), _o("circle", "blue", 20, 20))), Scene(FOUR_HEARTS[:2]),
              Scene((_o("star", "red", 8, 8),))]  # fmt: skip
    images = torch.as_tensor(np.stack([render(s) for s in scenes]))
    reflections = []
    for prompt, scene in zip(prompts, scenes, strict=True):
        _, image, clauses = _evaluate(prompt, scene)
        reflections.append(Reflection(0.1, clauses, critique_text(clauses), _patches(image)))
    corrector = CritiqueCorrector(wide)
    out, forwards, redrawn = corrector.correct(prompts, [5, 6, 7], images, reflections)
    one = [corrector.correct(prompts[i : i + 1], [5 + i], images[i : i + 1], reflections[i : i + 1]) for i in range(3)]
    assert all(torch.equal(out[i], one[i][0][0]) and forwards[i] == one[i][1][0] for i in range(3))
    regions, _ = corrector.plan(prompts, reflections)
    assert redrawn == [int(r.sum()) for r in regions] and redrawn[2] == 64  # an aligned image: nothing to localise
    before, after = wide.tokenizer.encode(images), wide.tokenizer.encode(out)
    for i, region in enumerate(regions):
        keep = torch.from_numpy(~region.reshape(-1))
        if wide.causal:  # AR keeps the rows before the first redrawn one
            keep &= torch.arange(64) < 8 * int(np.flatnonzero(region.any(1))[0])
        assert torch.equal(after[i][keep], before[i][keep]) and forwards[i] > 0


def test_a_critique_naming_a_wrong_colour_recolours_that_object():
    """A tiny critique-conditioned MaskGIT, briefly trained on (blue star, "the star is blue, not C", C star)
    groups for a prompt that names no colour: the corrected star takes the colour the critique names."""
    colors, prompt = ("red", "green", "blue"), "a photo of a star"
    star = lambda c: render(Scene((_o("star", c, 8, 8),)))  # noqa: E731
    tokenizer = PatchTokenizer.fit(np.stack([star(c) for c in colors] + [render(Scene())]))
    torch.manual_seed(0)
    config = GeneratorConfig(TransformerConfig(len(WORDS), tokenizer.vocab_size, dim=32, depth=2, heads=2),
                             tokenizer.config, DecodingConfig(num_steps=4, guidance=0.0))  # fmt: skip
    generator = extend_for_critique(MaskGITGenerator.from_config(config, tokenizer))
    meta, patches = parse_prompt(prompt), {c: _patches(star(c)) for c in colors}
    pairs = [(bad, good) for bad in colors for good in colors if bad != good]
    clauses = [(Clause("colour", "star", 0, color=good, found_color=bad),) for bad, good in pairs]
    text = condition_ids(generator, [prompt] * len(pairs), [critique_words(c) for c in clauses])
    bad = tokenizer.encode(np.stack([star(b) for b, _ in pairs]))
    good = tokenizer.encode(np.stack([star(g) for _, g in pairs]))
    region = torch.from_numpy(np.stack([redraw_region(meta, c, patches[b]).reshape(-1)
                                        for c, (b, _) in zip(clauses, pairs, strict=True)]))  # fmt: skip
    optimizer, gen = torch.optim.AdamW(generator.model.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
    generator.model.train()
    for _ in range(250):
        rows = torch.randint(len(pairs), (12,), generator=gen)
        loss = maskgit_correction_loss(generator.model, text[rows], bad[rows], good[rows], region[rows], gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator.model.eval()
    blue = torch.as_tensor(star("blue"))[None].repeat(2, 1, 1, 1)
    asked = [Reflection(0.0, (Clause("colour", "star", 0, color=c, found_color="blue"),), "", patches["blue"])
             for c in ("red", "green")]  # fmt: skip
    out, _, _ = CritiqueCorrector(generator).correct([prompt] * 2, [11, 12], blue, asked)
    pixels = _o("star", "blue", 8, 8).mask()
    for image, wanted in zip(out.numpy(), ("red", "green"), strict=True):
        share = {c: float((image[pixels] == PALETTE[c]).all(-1).mean()) for c in colors}
        assert share[wanted] > 0.6 and share["blue"] < 0.1, share
    without = CritiqueCorrector(generator, use_critique=False).plan([prompt], asked[:1])[1]
    assert without == [[]]


# --- the reflection model ----------------------------------------------------------------------------------------
def _reflector(**bias: float) -> ShapesReflector:
    torch.manual_seed(0)
    reflector = ShapesReflector(ShapesReflectorConfig(TINY_NET))
    with torch.no_grad():
        reflector.net.head.weight.zero_()
        reflector.net.head.bias.zero_()
        for name, value in bias.items():
            reflector.net.head.bias[output_slices()[name]] = value
    return reflector


def test_the_reflector_builds_its_critique_from_the_clauses_it_finds(tmp_path):
    bias = {"aligned": -6.0, "short0": -6.0, "colour0": 6.0}
    reflector = _reflector(**bias)
    with torch.no_grad():
        reflector.net.head.bias[output_slices()["found_colour0"].start + 4] = 5.0  # colour index 4 = blue
    images = torch.as_tensor(np.stack([render(Scene((_o("star", "blue", 4, 4),)))] * 2))
    (a, b) = reflector.reflect(["a photo of a red star", "a photo of a star"], images)
    assert a.clauses == (Clause("colour", "star", 0, color="red", found_color="blue"),) and not a.ok
    assert a.critique == "the star is blue, not red" and a.patches.shape == (8, 8)
    assert b.clauses == () and b.critique == GENERIC_TEXT  # no colour asked: nothing to name
    aligned = _reflector(aligned=6.0).reflect(["a photo of a red star"], images[:1])[0]
    assert aligned.ok and aligned.clauses == () and aligned.critique == ALIGNED_TEXT
    lenient = _reflector(aligned=-0.4, colour0=6.0)  # P(aligned) = 0.40
    lenient.config = ShapesReflectorConfig(TINY_NET, threshold=0.3)
    answer = lenient.reflect(["a photo of a red star"], images[:1])[0]
    assert answer.ok and answer.threshold == 0.3 and answer.clauses == () and not Reflection(0.4).ok
    reflector.save_pretrained(tmp_path / "r")
    again = load_reflector(str(tmp_path / "r"))
    assert again.reflect(["a photo of a red star"], images[:1])[0].critique == a.critique
    with pytest.raises(CheckpointError, match="no reflector"):
        load_reflector(str(tmp_path / "missing"))
    ShapesPARM(ShapesVerifierConfig(net=TINY_NET)).save_pretrained(tmp_path / "parm")
    with pytest.raises(CheckpointError, match="not a shapes-reflector"):
        load_reflector(str(tmp_path / "parm"))


def test_warm_start_from_an_orm_answers_aligned_as_the_orm_does(tmp_path):
    from imgcot.reflection.model import ReflectorNet
    from imgcot.reflection.train import warm_start
    from imgcot.verifiers.shapes import ShapesORM

    torch.manual_seed(1)
    orm = ShapesORM(ShapesVerifierConfig("orm", ("outcome",), net=TINY_NET))
    orm.save_pretrained(tmp_path / "orm")
    net = ReflectorNet(TINY_NET)
    warm_start(net, str(tmp_path / "orm"))
    reflector = ShapesReflector(ShapesReflectorConfig(TINY_NET), net)
    images = torch.as_tensor(np.stack([render(Scene((_o("star", c, 4, 4),))) for c in ("red", "blue", "green")]))
    prompts = ["a photo of a red star"] * 3
    aligned = [r.aligned for r in reflector.reflect(prompts, images)]
    assert aligned == pytest.approx(orm.score(prompts, images).tolist(), abs=1e-6)
    assert torch.equal(net.stem[0].weight, orm.net.stem[0].weight)
    with pytest.raises(CheckpointError, match="network config differs"):
        warm_start(ReflectorNet(replace(TINY_NET, dim=16)), str(tmp_path / "orm"))


class Killed(Exception):
    pass


def test_reflector_training_learns_reports_agreement_and_resumes(tmp_path):
    data = build_reflection_data([], 40, 5, renders=1, edits=2)
    cfg = ReflectorTrainConfig(net=TINY_NET, batch=32, lr=3e-3, warmup=2, max_steps=6, checkpoint_every=3,
                               eval_every=10**9)  # fmt: skip
    whole = train_reflector(data, tmp_path / "whole", cfg, heldout=data)

    def kill_at_five(step, total, loss, minutes):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train_reflector(data, tmp_path / "resumed", cfg, progress=kill_at_five)
    resumed = train_reflector(data, tmp_path / "resumed", cfg)
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    report = json.loads((tmp_path / "whole" / "metrics.json").read_text())["heldout"]
    assert {"aligned", "short0", "colour0", "relation", "extra", "found_count"} <= set(report["questions"])
    assert {"missing", "colour"} <= set(report["clauses"]) and report["rows"] == len(data)
    stars = _red_or_blue_stars()
    before = agreement(train_reflector(stars, tmp_path / "zero", replace(cfg, max_steps=1, lr=1e-9)), stars)
    after = agreement(train_reflector(stars, tmp_path / "longer", replace(cfg, max_steps=40)), stars)
    assert before["questions"]["aligned"]["auc"] < 0.8 < after["questions"]["aligned"]["auc"]
    assert after["questions"]["colour0"]["accuracy"] > 0.8


def _red_or_blue_stars():
    """A red star anywhere is aligned with "a photo of a red star"; a blue one has a colour clause."""
    from imgcot.reflection.data import _Rows

    rows, meta = _Rows(), parse_prompt("a photo of a red star")
    for x in range(0, 21, 4):
        for y in range(0, 21, 8):
            for color in ("red", "blue"):
                _, image, clauses = _evaluate(meta["prompt"], Scene((_o("star", color, x, y),)))
                rows.add(meta["prompt"], image, targets_of(meta, clauses), 0)
    return rows.to_data({})


def test_self_correction_training_resumes_and_ships_a_normal_generator(tmp_path):
    base = tiny_generator("maskgit", tmp_path / "base")
    cfg = SelfCorrectConfig(kind="maskgit", batch=8, max_steps=5, warmup=2, checkpoint_every=3, eval_every=10**9)
    whole = train_self_correct(base, tmp_path / "whole", cfg)

    def kill_at_four(step, total, loss, minutes):
        if step == 4:
            raise Killed

    with pytest.raises(Killed):
        train_self_correct(base, tmp_path / "resumed", cfg, progress=kill_at_four)
    resumed = train_self_correct(base, tmp_path / "resumed", cfg)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    loaded = load_generator(str(tmp_path / "whole" / "final"))
    assert supports_critique(loaded) and isinstance(loaded, MaskGITGenerator)
    changed = [
        k
        for k, v in whole.model.state_dict().items()
        if not torch.equal(v, extend_for_critique(base).model.state_dict()[k])
    ]
    assert "text_embed.weight" in changed and len(changed) > 10


# --- the parm++ loop with scripted parts -----------------------------------------------------------------------------
COST = 5  # forward passes of one scripted correction


class CorrectingMock(MockGenerator):
    """The search mock plus core.SelfCorrector: a correction adds one to pixel (2, 0) and logs what it was told."""

    def __init__(self):
        self.told: list[Reflection] = []

    def correct(self, prompts, seeds, images, reflections):
        self.told += reflections
        out = torch.as_tensor(images).clone()
        out[:, 2, 0, 0] += 1
        return out, [COST] * len(prompts), [64] * len(prompts)


class ScriptedReflector:
    """Aligned once an image was corrected `after[prompt]` times; otherwise a colour clause."""

    CLAUSE = Clause("colour", "star", 0, color="red", found_color="blue")

    def __init__(self, after: dict[str, int]):
        self.after, self.calls = after, 0

    def reflect(self, prompts, images):
        self.calls += len(prompts)
        out = []
        for prompt, image in zip(prompts, images, strict=True):
            ok = int(image[2, 0, 0]) >= self.after[prompt]
            clauses = () if ok else (self.CLAUSE,)
            out.append(Reflection(1.0 if ok else 0.0, clauses, critique_text(clauses, ok)))
        return out


LOOP_PROMPTS = PROMPTS + ["a photo of a cross"]
LOOP_SEEDS = SEEDS + [[32, 33, 34, 35]]


def _loop(name: str, max_rounds: int = 3, after=None, **kwargs):
    after = after or {LOOP_PROMPTS[0]: 0, LOOP_PROMPTS[1]: 2, LOOP_PROMPTS[2]: 99}
    generator, reflector = CorrectingMock(), ScriptedReflector(after)
    verifier = ParmPlusPlusVerifier(parm_verifiers()[2], reflector, max_rounds)
    results = run_strategy(name, generator, LOOP_PROMPTS, LOOP_SEEDS, verifier, **kwargs)
    parm = run_strategy("parm", MockGenerator(), LOOP_PROMPTS, LOOP_SEEDS, parm_verifiers()[2])
    return results, parm, generator, reflector


def test_the_loop_stops_when_aligned_or_at_the_round_limit():
    results, parm, generator, reflector = _loop("parm++")
    assert [len(r.rounds) - 1 for r in results] == [0, 2, 3]  # corrections made
    assert [int(r.image[2, 0, 0]) for r in results] == [0, 2, 3]
    assert [t.aligned for t in results[1].rounds] == [0.0, 0.0, 1.0]  # stopped because aligned
    assert [t.aligned for t in results[2].rounds] == [0.0, 0.0, 0.0, None]  # the last image is not judged again
    assert [t.chosen for t in results[2].rounds] == [False, False, False, True]  # the paper's answer: the last
    assert (
        results[2].rounds[1].critique == "the star is blue, not red"
        and results[2].rounds[1].clauses[0]["kind"] == "colour"
    )
    assert [r.strategy for r in results] == ["parm++"] * 3 and [r.chosen for r in results] == [p.chosen for p in parm]
    assert np.array_equal(results[0].image, parm[0].image) and np.array_equal(
        results[2].rounds[0].image, parm[2].image
    )
    reflections = [1, 3, 3]
    for r, p, k in zip(results, parm, reflections, strict=True):
        assert r.compute.verifier_calls == p.compute.verifier_calls + k
        assert r.compute.generator_forwards == p.compute.generator_forwards + COST * (len(r.rounds) - 1)
    assert reflector.calls == sum(reflections) and len(generator.told) == 5
    assert all(t.clauses == (ScriptedReflector.CLAUSE,) for t in generator.told)


def test_round_limits_and_the_variant_without_reflection():
    results, parm, generator, _ = _loop("parm++", max_rounds=1)
    assert [len(r.rounds) - 1 for r in results] == [0, 1, 1]
    results, parm, generator, reflector = _loop("parm++", max_rounds=0)
    assert reflector.calls == 0 and all(len(r.rounds) == 1 for r in results)
    assert [r.compute.verifier_calls for r in results] == [p.compute.verifier_calls for p in parm]
    results, _, generator, _ = _loop("parm++-noreflect")
    assert [len(r.rounds) - 1 for r in results] == [0, 2, 3]  # same judge, same stops
    assert all(t.clauses == () and t.patches is None for t in generator.told)  # no critique, nothing localised
    assert results[2].rounds[0].critique == "not aligned" and results[2].rounds[0].clauses == []
    assert STRATEGIES["parm++"].verifier == STRATEGIES["parm++-noreflect"].verifier == "parm++"


class FadingReflector(ScriptedReflector):
    """Never aligned; P(aligned) by corrections made: 0.45, 0.1, 0.3, 0.2."""

    def reflect(self, prompts, images):
        self.calls += len(prompts)
        p = {0: 0.45, 1: 0.1, 2: 0.3, 3: 0.2}
        return [Reflection(p[int(im[2, 0, 0])], (self.CLAUSE,), "") for im in images]


def test_best_selection_keeps_the_round_the_reflector_prefers():
    from imgcot.search.reflect import reflect_and_correct

    parm = run_strategy("parm", MockGenerator(), LOOP_PROMPTS[:1], LOOP_SEEDS[:1], parm_verifiers()[2])
    reflector, calls = FadingReflector({}), parm[0].compute.verifier_calls
    (best,) = reflect_and_correct(CorrectingMock(), parm, LOOP_SEEDS[:1], reflector, 3, select="best")
    assert [t.aligned for t in best.rounds] == [0.45, 0.1, 0.3, 0.2] and reflector.calls == 4
    assert [t.chosen for t in best.rounds] == [True, False, False, False] and int(best.image[2, 0, 0]) == 0
    assert best.compute.verifier_calls == calls + 4
    with pytest.raises(ValueError, match="unknown selection"):
        reflect_and_correct(CorrectingMock(), parm, LOOP_SEEDS[:1], reflector, 3, select="first")


class CountingJudge:
    """An outcome verifier: P(aligned) 0.9 once the image was corrected twice, else 0.2."""

    def __init__(self):
        self.calls = 0

    def score(self, prompts, images):
        self.calls += len(prompts)
        return torch.tensor([0.9 if int(im[2, 0, 0]) >= 2 else 0.2 for im in images])


def test_parm_can_answer_aligned_while_the_reflector_writes_the_critique():
    from imgcot.search.reflect import JudgedReflector, reflect_and_correct

    parm = run_strategy("parm", MockGenerator(), LOOP_PROMPTS[:1], LOOP_SEEDS[:1], parm_verifiers()[2])
    reflector, judge, calls = ScriptedReflector({LOOP_PROMPTS[0]: 0}), CountingJudge(), parm[0].compute.verifier_calls
    told = CorrectingMock()
    (res,) = reflect_and_correct(told, parm, LOOP_SEEDS[:1], JudgedReflector(reflector, judge), 3)
    # the reflector alone would stop at once (it calls every image aligned); the judge asks for two corrections
    assert [t.aligned for t in res.rounds] == pytest.approx([0.2, 0.2, 0.9]) and int(res.image[2, 0, 0]) == 2
    assert all(t.clauses == () for t in told.told)  # the critique is the reflector's (here: nothing failed)
    assert reflector.calls == judge.calls == 3 and res.compute.verifier_calls == calls + 2 * 3
    bundle = ParmPlusPlusVerifier(judge, reflector, 3, judge_with="parm")
    assert [a.aligned for a in bundle.reflect(LOOP_PROMPTS[:1], res.rounds[0].image[None])] == pytest.approx([0.2])
    assert bundle.calls_per_reflection == 2
    with pytest.raises(ValueError, match="unknown reflection judge"):
        ParmPlusPlusVerifier(judge, reflector, 3, judge_with="evaluator")


def test_the_loop_does_not_depend_on_batching():
    together, *_ = _loop("parm++")
    alone, *_ = _loop("parm++", prompts_per_batch=1)
    for a, b in zip(together, alone, strict=True):
        assert np.array_equal(a.image, b.image) and len(a.rounds) == len(b.rounds)


ROUND_KEYS = {"round", "image", "forwards", "redrawn", "aligned", "critique", "clauses", "chosen"}


def test_trace_schema_includes_every_round(tmp_path):
    results, parm, *_ = _loop("parm++", record_previews=True)
    page = write_trace(results, tmp_path).read_text()
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert doc["strategy"] == "parm++"
    rounds = doc["prompts"][2]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3] and all(set(r) == ROUND_KEYS for r in rounds)
    assert all((tmp_path / r["image"]).is_file() for r in rounds)
    assert rounds[0]["critique"] == "the star is blue, not red" and rounds[3]["aligned"] is None
    assert rounds[1]["forwards"] == COST and rounds[1]["redrawn"] == 64 and rounds[0]["clauses"][0]["obj"] == "star"
    assert [len(p["rounds"]) for p in doc["prompts"]] == [1, 3, 4]
    assert page.count("reflection and self-correction") == 3 and page.count("the star is blue, not red") == 5
    assert "rounds" not in trace_dict(parm)["prompts"][0]  # other strategies keep their schema


# --- end to end: tiny models through the command line ------------------------------------------------------------
def test_reflect_commands_and_parm_plus_plus_end_to_end(tmp_path):
    gen_folder = tmp_path / "gen"
    tiny_generator("maskgit", gen_folder)
    ShapesPARM(ShapesVerifierConfig(net=TINY_NET)).save_pretrained(tmp_path / "parm")
    net = json.dumps({"dim": 16, "depth": 1, "heads": 2, "stem_channels": 8})
    data = tmp_path / "data"
    assert runner.invoke(app, ["reflect", "build-data", "--out", str(data), "--model", str(gen_folder),
                               "--n-prompts", "6", "--images-per-prompt", "1"]).exit_code == 0  # fmt: skip
    result = runner.invoke(
        app,
        [
            "reflect",
            "train",
            "--data",
            str(data),
            "--heldout",
            str(data),
            "--out",
            str(tmp_path / "r"),
            "--max-steps",
            "2",
            "--set",
            f"net={net}",
            "--set",
            "batch=8",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["reflect", "eval", "--data", str(data), "--reflector", str(tmp_path / "r" / "final")])
    assert result.exit_code == 0 and "critique_exact" in result.output
    spec = f"{tmp_path / 'parm'},{tmp_path / 'r' / 'final'}"
    out = tmp_path / "g"
    result = runner.invoke(app, ["generate", "a photo of a red star", "--model", str(gen_folder), "--strategy",
                                 "parm++", "--verifier", spec, "--n", "2", "--max-rounds", "2", "--trace", "--out",
                                 str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rounds = json.loads((out / "trace.json").read_text())["prompts"][0]["rounds"]
    assert 1 <= len(rounds) <= 3 and (out / "0000.png").is_file()
    bad = runner.invoke(app, ["generate", "a photo of a red star", "--model", str(gen_folder), "--strategy", "parm++",
                              "--verifier", spec, "--max-rounds", "-1"])  # fmt: skip
    assert bad.exit_code == 1 and "error: --max-rounds must be >= 0" in bad.output
    judged = tmp_path / "j"
    result = runner.invoke(app, ["generate", "a photo of a red star", "--model", str(gen_folder), "--strategy",
                                 "parm++", "--verifier", spec, "--n", "2", "--reflect-judge", "parm", "--select",
                                 "best", "--trace", "--out", str(judged)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rounds = json.loads((judged / "trace.json").read_text())["prompts"][0]["rounds"]
    assert sum(r["chosen"] for r in rounds) == 1 and all(r["aligned"] is not None for r in rounds)  # best: all judged
    for flag, value in (("--reflect-judge", "evaluator"), ("--select", "first")):
        bad = runner.invoke(app, ["generate", "a photo of a red star", "--model", str(gen_folder), "--strategy",
                                  "parm++", "--verifier", spec, flag, value])  # fmt: skip
        assert bad.exit_code == 1 and f"error: unknown {flag} {value!r}" in bad.output
    missing = runner.invoke(app, ["generate", "a photo of a red star", "--model", str(gen_folder), "--strategy",
                                  "parm++", "--verifier", f"{tmp_path / 'parm'},{tmp_path / 'nope'}"])  # fmt: skip
    assert missing.exit_code == 1 and "error: no reflector" in missing.output


def test_train_self_correct_command_writes_a_loadable_generator(tmp_path):
    gen_folder = tmp_path / "gen"
    tiny_generator("ar", gen_folder)
    out = tmp_path / "sc"
    result = runner.invoke(app, ["train", "self-correct", "--model", str(gen_folder), "--out", str(out),
                                 "--max-steps", "2", "--set", "batch=8", "--set", "eval_groups=4",
                                 "--set", "eval_prompts_per_tag=1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"plain", "fix", "fix_no_critique"} <= set(metrics["after"]) and "base" in metrics["before"]
    assert supports_critique(load_generator(str(out / "final")))
    bad = runner.invoke(
        app, ["train", "self-correct", "--model", str(gen_folder), "--out", str(out), "--set", "kind=x"]
    )
    assert bad.exit_code == 1 and "unknown generator kind" in bad.output

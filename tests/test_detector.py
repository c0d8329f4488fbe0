"""The shapes detector under GenEval's rules: exact on ground truth, rejects mutated prompts, refuses non-shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from imgcot.geneval.rules import evaluate, keep_confident
from imgcot.geneval.spec import TAGS, validate
from imgcot.worlds.shapes import corrupt
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.geometry import shape_mask
from imgcot.worlds.shapes.mutate import APPLICABLE, KINDS, mutate, mutations
from imgcot.worlds.shapes.prompts import parse_prompt
from imgcot.worlds.shapes.sampler import random_metadata, sample_scene
from imgcot.worlds.shapes.scenes import Scene, SceneObject, render
from imgcot.worlds.shapes.vocab import BACKGROUND, COLORS, PALETTE

DETECTOR = ShapesDetector()


def score(meta: dict, image: np.ndarray) -> tuple[bool, str]:
    kept = keep_confident(DETECTOR.detect(image), meta["tag"])
    return evaluate(meta, kept, image, DETECTOR.classify_colors)


def gt_cases(n_per_tag: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    for tag in TAGS:
        for _ in range(n_per_tag):
            meta = random_metadata(tag, rng)
            scene = sample_scene(meta, rng)
            yield meta, scene, render(scene, size)


@pytest.mark.parametrize("size, n_per_tag", [(32, 60), (64, 30)])
def test_ground_truth_scenes_are_all_correct(size, n_per_tag):
    failures = []
    for meta, scene, image in gt_cases(n_per_tag, size, seed=size):
        ok, reason = score(meta, image)
        if not ok:
            failures.append((meta["prompt"], reason))
        # beyond the rules: every object is found once, with its class, colour, exact box and full confidence
        found = sorted((cls, d.color, d.box, d.score) for cls, dets in DETECTOR.detect(image).items() for d in dets)
        truth = sorted((o.cls, o.color, o.box(size), 1.0) for o in scene.objects)
        assert found == truth
    assert failures == []


@pytest.mark.parametrize("size", [32, 64])
def test_detections_carry_masks_matching_the_scene(size):
    for _meta, scene, image in gt_cases(3, size, seed=1):
        detected = DETECTOR.detect(image)
        for obj in scene.objects:
            (match,) = [d for d in detected[obj.cls] if d.box == obj.box(size)]
            assert np.array_equal(match.mask, obj.mask(size))
            assert DETECTOR.classify_colors(image, [match], obj.cls) == [obj.color]


def test_every_mutation_kind_is_rejected():
    rng = np.random.default_rng(11)
    seen = dict.fromkeys(KINDS, 0)
    accepted = []
    for meta, _scene, image in gt_cases(40, 32, seed=5):
        raw = DETECTOR.detect(image)
        for kind, mutated in mutations(meta, rng):
            validate(mutated)
            seen[kind] += 1
            if evaluate(mutated, keep_confident(raw, mutated["tag"]), image, DETECTOR.classify_colors)[0]:
                accepted.append((kind, mutated["prompt"]))
    assert accepted == []
    assert all(seen[k] > 0 for k in KINDS), seen


def test_mutations_per_tag_and_purity():
    rng = np.random.default_rng(0)
    for tag in TAGS:
        meta = random_metadata(tag, rng)
        before = repr(meta)
        kinds = [k for k, _ in mutations(meta, rng)]
        assert kinds == list(APPLICABLE[tag])
        assert repr(meta) == before  # the input line is never modified


@pytest.mark.parametrize(
    "prompt, kind, expected",
    [
        ("a photo of three stars", "count+1", ([{"class": "star", "count": 4}], [{"class": "star", "count": 5}])),
        ("a photo of three stars", "count-1", ([{"class": "star", "count": 2}], [{"class": "star", "count": 3}])),
        # count 2 -> 1: "include 1, exclude 2" at metadata level (no template says "one star")
        ("a photo of two stars", "count-1", ([{"class": "star", "count": 1}], [{"class": "star", "count": 2}])),
        ("a photo of a star", "count+1", ([{"class": "star", "count": 2}], [])),
        (
            "a photo of a red star and a blue heart",
            "swapped colours",
            ([{"class": "star", "count": 1, "color": "blue"}, {"class": "heart", "count": 1, "color": "red"}], []),
        ),
        (
            "a photo of a star above a heart",
            "flipped relation",
            ([{"class": "heart", "count": 1}, {"class": "star", "count": 1, "position": ["below", 0]}], []),
        ),
    ],
)
def test_mutation_content(prompt, kind, expected):
    out = mutate(parse_prompt(prompt), kind, np.random.default_rng(0))
    assert (out["include"], out.get("exclude", [])) == expected


def test_other_class_and_colour_differ_from_the_line():
    rng = np.random.default_rng(2)
    meta = parse_prompt("a photo of a red star and a blue heart")
    for _ in range(20):
        other = mutate(meta, "other class", rng)
        assert {c["class"] for c in other["include"]} - {"star", "heart"}
        recoloured = mutate(meta, "other colour", rng)
        assert [c["color"] for c in recoloured["include"]] != ["red", "blue"]
    counting = mutate(parse_prompt("a photo of two stars"), "other class", rng)
    assert counting["include"][0]["class"] == counting["exclude"][0]["class"] != "star"


def test_uniform_noise_yields_no_detection():
    rng = np.random.default_rng(0)
    for _ in range(50):
        image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
        assert DETECTOR.detect(image) == {}


def test_random_blobs_are_no_clean_detection():
    # smooth random blobs of one palette colour: no clear shape, so no detection or a low-confidence one
    rng = np.random.default_rng(0)
    scores = []
    for i in range(150):
        field = ndimage.gaussian_filter(rng.normal(size=(32, 32)), 2.5)
        image = np.empty((32, 32, 3), dtype=np.uint8)
        image[:] = BACKGROUND
        image[field > np.quantile(field, 0.8)] = PALETTE[COLORS[i % len(COLORS)]]
        scores.append(max((d.score for dets in DETECTOR.detect(image).values() for d in dets), default=0.0))
    scores = np.array(scores)
    assert scores.max() < 0.9  # never a counting-grade (> 0.9) detection
    assert np.median(scores) < 0.3  # most blob images have nothing GenEval would keep


def paint(image: np.ndarray, cls: str, color: str, x: int, y: int, scale: int = 1) -> None:
    """Paint a shape's cell with its top-left at (x, y) pixels, ignoring the scene grid (so shapes may touch)."""
    mask = shape_mask(cls, scale)
    region = image[y : y + mask.shape[0], x : x + mask.shape[1]]
    region[mask[: region.shape[0], : region.shape[1]]] = PALETTE[color]


def width(cls: str) -> int:
    cols = np.nonzero(shape_mask(cls).any(axis=0))[0]
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("cls", ["square", "circle", "cross", "heart"])
def test_touching_same_colour_shapes_are_not_two_clean_detections(cls):
    image = np.empty((32, 32, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    paint(image, cls, "red", 2, 8)
    paint(image, cls, "red", 2 + width(cls), 8)  # the second starts on the column after the first ends
    clean = [d for dets in DETECTOR.detect(image).values() for d in dets if d.score > 0.9]
    assert len(clean) < 2
    assert score(parse_prompt(f"a photo of two {cls}{'es' if cls.endswith('s') else 's'}"), image)[0] is False
    # the same two shapes with a one-pixel gap are two clean detections again
    apart = np.empty_like(image)
    apart[:] = BACKGROUND
    paint(apart, cls, "red", 2, 8)
    paint(apart, cls, "red", 3 + width(cls), 8)
    assert [d.score for d in DETECTOR.detect(apart)[cls]] == [1.0, 1.0]


def test_touching_different_colours_stay_separate():
    image = np.empty((32, 32, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    paint(image, "square", "red", 2, 8)
    paint(image, "circle", "blue", 2 + width("square"), 8)  # touching, different colours: two regions
    assert score(parse_prompt("a photo of a red square and a blue circle"), image)[0] is True


def test_corruptions_are_pure_and_shaped():
    rng = np.random.default_rng(0)
    scene = sample_scene(parse_prompt("a photo of three hearts"), 0)
    image = render(scene)
    before = image.copy()
    for out in (
        corrupt.gaussian_noise(image, 20, rng),
        corrupt.gaussian_blur(image, 1.0),
        corrupt.box_blur(image, 1.5),
        corrupt.shift(image, 2, -3),
        corrupt.shift_objects(scene, 2, rng),
        corrupt.jpeg(image, 75),
        corrupt.quantize(image, 8),
    ):
        assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, before)
    assert np.array_equal(corrupt.gaussian_noise(image, 0, rng), image)
    assert np.array_equal(corrupt.shift(image, 0, 0), image)
    assert np.array_equal(corrupt.shift(corrupt.shift(image, 2, 1), -2, -1)[1:-1, 2:-2], image[1:-1, 2:-2])
    assert np.array_equal(corrupt.render_with_offsets(scene, [(0, 0)] * 3), image)
    # a whole-image shift moves every detection's box by the same amount
    moved = corrupt.shift(image, 1, 2)
    boxes = sorted(d.box for d in DETECTOR.detect(moved)["heart"])
    assert boxes == sorted((x1 + 1, y1 + 2, x2 + 1, y2 + 2) for x1, y1, x2, y2 in (o.box() for o in scene.objects))


def test_box_blur_matches_pil():
    from PIL import Image, ImageFilter

    image = render(sample_scene(parse_prompt("a photo of a red star and a blue heart"), 3))
    for radius in (1.0, 2.0):
        ours = corrupt.box_blur(image, radius).astype(int)
        theirs = np.asarray(Image.fromarray(image).filter(ImageFilter.BoxBlur(radius))).astype(int)
        assert np.abs(ours - theirs)[3:-3, 3:-3].max() <= 1  # rounding differences only, away from the border


def test_scene_objects_shifted_off_grid_still_detected():
    scene = Scene((SceneObject("star", "red", 0, 0), SceneObject("heart", "blue", 16, 16)))
    image = corrupt.render_with_offsets(scene, [(1, 1), (-1, 2)])
    assert score(parse_prompt("a photo of a red star and a blue heart"), image)[0] is True

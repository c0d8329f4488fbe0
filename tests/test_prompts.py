"""Prompt text <-> GenEval metadata for the six templates, and every bad-input error class."""

from __future__ import annotations

import numpy as np
import pytest

from imgcot.geneval.spec import TAGS, MetadataError, dumps, parse_lines, validate
from imgcot.worlds.shapes.prompts import PromptError, parse_prompt, prompt_text
from imgcot.worlds.shapes.sampler import UnsatisfiableError, random_metadata, sample_scene
from imgcot.worlds.shapes.vocab import UnknownWordError

EXAMPLES = {
    "single_object": ("a photo of a cross", [{"class": "cross", "count": 1}], None),
    "two_object": ("a photo of a star and a circle", [{"class": "star", "count": 1}, {"class": "circle", "count": 1}],
                   None),
    "counting": ("a photo of three crosses", [{"class": "cross", "count": 3}], [{"class": "cross", "count": 4}]),
    "colors": ("a photo of an orange star", [{"class": "star", "count": 1, "color": "orange"}], None),
    "position": (
        "a photo of a cross below a square",
        [{"class": "square", "count": 1}, {"class": "cross", "count": 1, "position": ["below", 0]}],
        None,
    ),
    "color_attr": (
        "a photo of a red heart and a blue triangle",
        [{"class": "heart", "count": 1, "color": "red"}, {"class": "triangle", "count": 1, "color": "blue"}],
        None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("tag", TAGS)
def test_each_template_parses_to_geneval_metadata_and_back(tag: str) -> None:
    text, include, exclude = EXAMPLES[tag]
    meta = parse_prompt(text)
    expected = {"tag": tag, "include": include, **({"exclude": exclude} if exclude else {}), "prompt": text}
    assert meta == expected
    assert validate(meta) is meta
    assert prompt_text(meta) == text


@pytest.mark.parametrize("tag", TAGS)
def test_random_metadata_round_trips_through_text(tag: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        meta = random_metadata(tag, rng)
        assert meta["tag"] == tag
        assert parse_prompt(prompt_text(meta)) == meta
        assert dumps(parse_prompt(meta["prompt"])) == dumps(meta)


def test_case_and_spacing_are_normalised() -> None:
    assert parse_prompt("  A photo of   TWO  Stars ")["prompt"] == "a photo of two stars"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a drawing of a star",
        "a photo of five stars",
        "a photo of star",
        "a photo of a red star and a circle",
        "a photo of a red star left of a circle",
        "a photo of two",
    ],
)
def test_off_template_text_is_a_prompt_error(text: str) -> None:
    with pytest.raises(PromptError) as err:
        parse_prompt(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("a photo of an apple", "apple"),
        ("a photo of a magenta star", "magenta"),
        ("a photo of three apples", "apple"),
        ("a photo of a star and a dog", "dog"),
        ("a photo of a cat left of a star", "cat"),
    ],
)
def test_unknown_words_list_what_the_world_knows(text: str, word: str) -> None:
    with pytest.raises(UnknownWordError) as err:
        parse_prompt(text)
    message = str(err.value)
    assert word in message and "the shapes world knows" in message and "\n" not in message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", "malformed JSON"),
        ('{"tag": "nope", "include": [{"class": "star", "count": 1}], "prompt": "p"}', "tag"),
        ('{"tag": "single_object", "include": [], "prompt": "p"}', "include"),
        ('{"tag": "single_object", "include": [{"class": "star", "count": 0}], "prompt": "p"}', "count"),
        ('{"tag": "colors", "include": [{"class": "star", "count": 1, "color": "teal"}], "prompt": "p"}', "teal"),
        (
            '{"tag": "position", "include": [{"class": "star", "count": 1, "position": ["above", 0]}], "prompt": "p"}',
            "earlier",
        ),
    ],
)
def test_malformed_metadata_names_file_and_line(line: str, fragment: str) -> None:
    good = '{"tag": "single_object", "include": [{"class": "star", "count": 1}], "prompt": "a photo of a star"}'
    with pytest.raises(MetadataError) as err:
        parse_lines([good, line], "prompts.jsonl")
    assert str(err.value).startswith("prompts.jsonl:2:") and fragment in str(err.value)


@pytest.mark.parametrize(
    "meta",
    [
        {"tag": "counting", "include": [{"class": "star", "count": 5}], "prompt": "five stars"},
        {
            "tag": "counting",
            "include": [{"class": "star", "count": 2}],
            "exclude": [{"class": "star", "count": 2}],
            "prompt": "two but fewer than two stars",
        },
    ],
)
def test_unsatisfiable_metadata_is_an_error(meta: dict) -> None:
    with pytest.raises(UnsatisfiableError):
        sample_scene(meta, 0)


def test_every_error_class_is_a_value_error() -> None:
    for cls in (PromptError, UnknownWordError, MetadataError, UnsatisfiableError):
        assert issubclass(cls, ValueError)

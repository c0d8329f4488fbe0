"""The shipped shapes benchmark: rebuilt byte for byte by its script, GenEval's procedure, shapes vocabulary."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from imgcot.geneval.spec import TAGS, dumps, validate
from imgcot.worlds.shapes.benchmark import (
    benchmark_path,
    benchmark_text,
    build_benchmark,
    load_benchmark,
    read_shapes_metadata,
    subset,
)
from imgcot.worlds.shapes.prompts import parse_prompt
from imgcot.worlds.shapes.vocab import OBJECTS, UnknownWordError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_shapes_benchmark.py"


def _script():
    spec = importlib.util.spec_from_file_location("build_shapes_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_file_equals_a_rebuild_byte_for_byte() -> None:
    assert benchmark_path().read_bytes() == benchmark_text(build_benchmark()).encode("utf-8")


def test_shipped_file_has_six_tags_no_duplicates_and_valid_lines() -> None:
    lines = benchmark_path().read_text().splitlines()
    assert len(lines) == len(set(lines))
    entries = [validate(json.loads(line)) for line in lines]
    assert list(dict.fromkeys(m["tag"] for m in entries)) == list(TAGS)  # grouped in TAGS order
    assert entries == load_benchmark() == read_shapes_metadata(benchmark_path())
    assert [m["include"][0]["class"] for m in entries if m["tag"] == "single_object"] == list(OBJECTS)
    assert all(parse_prompt(m["prompt"]) == m for m in entries)


def test_build_is_deterministic_and_seeded() -> None:
    assert dumps(build_benchmark()[-1]) == dumps(build_benchmark()[-1])
    assert benchmark_text(build_benchmark(seed=1)) != benchmark_text(build_benchmark())


def test_script_check_passes_on_the_shipped_file_and_fails_on_a_changed_one(tmp_path: Path) -> None:
    script = _script()
    assert script.main(["--check"]) == 0
    copy = tmp_path / "benchmark.jsonl"
    assert script.main(["--out", str(copy)]) == 0
    assert copy.read_bytes() == benchmark_path().read_bytes()
    copy.write_text(copy.read_text().replace("star", "heart", 1))
    assert script.main(["--check", "--out", str(copy)]) == 1
    assert script.main(["--check", "--out", str(tmp_path / "missing.jsonl")]) == 1


def test_subset_takes_the_first_prompts_of_each_tag() -> None:
    chosen = subset(load_benchmark(), 2)
    assert Counter(m["tag"] for m in chosen) == dict.fromkeys(TAGS, 2)


def test_non_shapes_classes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    include = [{"class": "dog", "count": 1}, {"class": "star", "count": 1}]
    path.write_text(json.dumps({"tag": "two_object", "include": include, "prompt": "a photo of a dog and a star"}))
    with pytest.raises(UnknownWordError, match=r"m.jsonl: classes unknown to the shapes world: dog; it knows: circle"):
        read_shapes_metadata(path)


def test_dev_prompt_set_is_seeded_distinct_and_valid():
    from imgcot.worlds.shapes.benchmark import dev_prompts
    from imgcot.worlds.shapes.prompts import parse_prompt

    first, again = dev_prompts(), dev_prompts()
    assert first == again and len(first) == 151  # 240 draws from seed 7, repeats dropped
    assert len({m["prompt"] for m in first}) == len(first)
    assert all(parse_prompt(m["prompt"]) == m for m in first)
    assert dev_prompts(seed=8) != first

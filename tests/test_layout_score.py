"""GenEval folder layout, per-image scoring, and the summary computed exactly as GenEval's script does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgcot.geneval.layout import (
    list_prompt_dirs,
    list_samples,
    read_prompt_metadata,
    sample_path,
    stale_entries,
    write_prompt_folder,
    write_text_atomic,
)
from imgcot.geneval.score import (
    ScoreError,
    format_summary,
    load_image,
    read_results,
    score_folder,
    score_image,
    summarize,
)
from imgcot.geneval.spec import TAGS, MetadataError, dumps
from imgcot.worlds.shapes.benchmark import load_benchmark, render_ground_truth, subset
from imgcot.worlds.shapes.detector import ShapesDetector
from imgcot.worlds.shapes.prompts import parse_prompt

STAR = parse_prompt("a photo of a star")


def _image(value: int) -> np.ndarray:
    return np.full((32, 32, 3), value, dtype=np.uint8)


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """One prompt per tag, two ground-truth images each."""
    return render_ground_truth(subset(load_benchmark(), 1), tmp_path / "gt", seed=3, images_per_prompt=2)


# layout


def test_prompt_folder_is_written_in_geneval_layout(tmp_path: Path) -> None:
    folder = write_prompt_folder(tmp_path, 3, STAR, [_image(10), _image(200)])
    assert folder == tmp_path / "00003"
    assert (folder / "metadata.jsonl").read_text() == dumps(STAR) + "\n"
    assert [p.name for p in list_samples(folder)] == ["0000.png", "0001.png"]
    assert sample_path(tmp_path, 3, 1) == folder / "samples" / "0001.png"
    assert np.array_equal(load_image(sample_path(tmp_path, 3, 1)), _image(200))
    assert read_prompt_metadata(folder) == STAR
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_listing_is_numeric_and_ignores_other_entries(tmp_path: Path) -> None:
    for index in (10, 2, 0):
        write_prompt_folder(tmp_path, index, STAR, [_image(0)] * 2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "results.jsonl").write_text("")
    (tmp_path / "00002" / "samples" / "grid.png").write_bytes(b"")
    assert [p.name for p in list_prompt_dirs(tmp_path)] == ["00000", "00002", "00010"]
    assert [p.name for p in list_samples(tmp_path / "00002")] == ["0000.png", "0001.png"]
    assert list_samples(tmp_path / "notes") == []


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_stale_entries_are_what_a_smaller_write_would_leave(tmp_path: Path) -> None:
    for index in range(3):
        write_prompt_folder(tmp_path, index, STAR, [_image(0)] * 3)
    assert stale_entries(tmp_path, 3, 3) == []
    stale = stale_entries(tmp_path, 2, 2)
    assert tmp_path / "00002" in stale and sample_path(tmp_path, 0, 2) in stale and len(stale) == 3
    assert stale_entries(tmp_path / "missing", 1, 1) == []


@pytest.mark.parametrize("text", ["{broken\n", dumps(STAR) + "\n" + dumps(STAR) + "\n"])
def test_bad_prompt_metadata_names_the_file(tmp_path: Path, text: str) -> None:
    folder = write_prompt_folder(tmp_path, 0, STAR, [_image(0)])
    (folder / "metadata.jsonl").write_text(text)
    with pytest.raises(MetadataError, match=r"00000/metadata.jsonl"):
        read_prompt_metadata(folder)


# scoring


def test_ground_truth_folder_scores_100_percent(rendered: Path) -> None:
    records, summary = score_folder(rendered, ShapesDetector())
    assert len(records) == 12 and all(r["correct"] for r in records)
    assert summary["overall"] == summary["images"] == summary["prompts"] == 1.0
    assert list(summary["tasks"]) == list(TAGS) and set(summary["tasks"].values()) == {1.0}
    assert (summary["n_images"], summary["n_prompts"]) == (12, 6)
    assert json.loads((rendered / "summary.json").read_text()) == summary
    assert read_results(rendered / "results.jsonl") == records


def test_records_have_geneval_fields(rendered: Path) -> None:
    records, _ = score_folder(rendered, ShapesDetector(), out=rendered / "elsewhere" / "r.jsonl")
    assert (rendered / "elsewhere" / "r.jsonl").is_file() and not (rendered / "results.jsonl").exists()
    first = records[0]
    assert list(first) == ["filename", "tag", "prompt", "correct", "reason", "metadata", "details"]
    assert first["filename"] == str(rendered / "00000" / "samples" / "0000.png")
    assert json.loads(first["metadata"]) == read_prompt_metadata(rendered / "00000")
    details = json.loads(first["details"])
    assert set(details) == {json.loads(first["metadata"])["include"][0]["class"]}
    assert all(len(box) == 5 and 0.3 < box[4] <= 1.0 for boxes in details.values() for box in boxes)


@pytest.mark.parametrize("payload", [b"not a png", b"", "truncate"])
def test_unreadable_image_is_incorrect_and_the_rest_is_scored(rendered: Path, payload: bytes | str) -> None:
    broken = rendered / "00002" / "samples" / "0001.png"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2] if payload == "truncate" else payload)
    records, summary = score_folder(rendered, ShapesDetector())
    bad = [r for r in records if not r["correct"]]
    assert len(records) == 12 and len(bad) == 1
    assert bad[0]["filename"] == str(broken) and bad[0]["reason"].startswith("unreadable image: ")
    assert summary["images"] == pytest.approx(11 / 12) and summary["prompts"] == 1.0


def test_score_image_rejects_a_changed_prompt(rendered: Path) -> None:
    record = score_image(
        rendered / "00000" / "samples" / "0000.png", parse_prompt("a photo of two stars"), ShapesDetector()
    )
    assert record["correct"] is False and record["reason"]


def test_missing_or_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScoreError, match="no such folder"):
        score_folder(tmp_path / "missing", ShapesDetector())
    with pytest.raises(ScoreError, match="no prompt folders"):
        score_folder(tmp_path, ShapesDetector())
    (tmp_path / "00000").mkdir()
    (tmp_path / "00000" / "metadata.jsonl").write_text(dumps(STAR) + "\n")
    with pytest.raises(ScoreError, match="no sample images"):
        score_folder(tmp_path, ShapesDetector())


def test_malformed_metadata_in_a_folder_is_an_error_naming_file_and_line(rendered: Path) -> None:
    (rendered / "00004" / "metadata.jsonl").write_text('{"tag": "position",\n')
    with pytest.raises(MetadataError, match=r"00004/metadata.jsonl:1: malformed JSON"):
        score_folder(rendered, ShapesDetector())
    assert not (rendered / "results.jsonl").exists()


# summary


def _records(tag: str, prompt: str, correct: list[bool]) -> list[dict]:
    meta = json.dumps({"tag": tag, "prompt": prompt})
    return [{"tag": tag, "prompt": prompt, "correct": c, "metadata": meta} for c in correct]


HAND = (
    _records("colors", "p4", [False, True, False])
    + _records("counting", "p1", [True, False, False, False])
    + _records("position", "p3", [True, True])
    + _records("counting", "p2", [False] * 4)
)


def test_summary_matches_a_hand_computed_example() -> None:
    summary = summarize(HAND)
    # tags in order of first appearance; overall is the unweighted mean of tag accuracies
    assert list(summary["tasks"]) == ["colors", "counting", "position"]
    assert summary["tasks"] == pytest.approx({"colors": 1 / 3, "counting": 1 / 8, "position": 1.0})
    assert summary["overall"] == pytest.approx((1 / 3 + 1 / 8 + 1) / 3)
    assert summary["images"] == pytest.approx(4 / 13)  # image-weighted: differs from overall
    assert summary["prompts"] == pytest.approx(3 / 4)  # p2 has no correct image
    assert (summary["n_images"], summary["n_prompts"]) == (13, 4)
    assert summary["task_counts"]["counting"] == {"correct": 1, "total": 8}


def test_summary_table_is_geneval_text() -> None:
    assert format_summary(summarize(HAND)) == "\n".join(
        [
            "Summary",
            "=======",
            "Total images: 13",
            "Total prompts: 4",
            "% correct images: 30.77%",
            "% correct prompts: 75.00%",
            "",
            "Task breakdown",
            "==============",
            "colors           = 33.33% (1 / 3)",
            "counting         = 12.50% (1 / 8)",
            "position         = 100.00% (2 / 2)",
            "",
            "Overall score (avg. over tasks): 0.48611",
        ]
    )


def test_summary_of_nothing_is_an_error() -> None:
    with pytest.raises(ScoreError):
        summarize([])

"""trace.json schema and the self-contained trace.html page."""

from __future__ import annotations

import json
import re

import pytest

from imgcot.search import run_strategy
from imgcot.trace_html import write_trace
from test_search import PROMPTS, SEEDS, MockGenerator, ScriptedJudge, parm_verifiers

RUN_KEYS = {"version", "strategy", "n", "num_steps", "compute", "prompts"}
COMPUTE_KEYS = {"generator_forwards", "verifier_calls", "wall_seconds"}
PROMPT_KEYS = {"prompt", "chosen", "image", "compute", "candidates"}
CANDIDATE_KEYS = {"index", "seed", "chosen", "forwards", "pruned_at", "outcome", "final", "steps"}
STEP_KEYS = {"step", "clarity", "potential", "value", "kept", "preview"}


@pytest.fixture
def parm_results():
    return run_strategy("parm", MockGenerator(), PROMPTS, SEEDS, parm_verifiers()[2], record_previews=True)


def test_trace_json_schema_and_image_files(parm_results, tmp_path):
    write_trace(parm_results, tmp_path)
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert set(doc) == RUN_KEYS and set(doc["compute"]) == COMPUTE_KEYS
    assert (doc["strategy"], doc["n"], doc["num_steps"]) == ("parm", 4, 4)
    assert doc["compute"]["generator_forwards"] == sum(r.compute.generator_forwards for r in parm_results)
    for p, result in zip(doc["prompts"], parm_results, strict=True):
        assert set(p) == PROMPT_KEYS and set(p["compute"]) == COMPUTE_KEYS and (tmp_path / p["image"]).is_file()
        assert len(p["candidates"]) == 4 and p["chosen"] == result.chosen
        for c in p["candidates"]:
            assert set(c) == CANDIDATE_KEYS and c["chosen"] == (c["index"] == result.chosen)
            for s in c["steps"]:
                assert set(s) == STEP_KEYS and (tmp_path / s["preview"]).is_file()
            last = c["pruned_at"] if c["pruned_at"] is not None and not c["chosen"] else 4
            assert [s["step"] for s in c["steps"]] == list(range(1, last + 1))
    pruned = doc["prompts"][0]["candidates"][1]
    assert pruned["pruned_at"] == 1 and pruned["steps"][0]["potential"] == 0.2 and pruned["final"] is None


def test_trace_without_image_files(parm_results, tmp_path):
    write_trace(parm_results, tmp_path, images=False)
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert not (tmp_path / "images").exists() and doc["prompts"][0]["image"] is None
    assert all(s["preview"] is None for c in doc["prompts"][0]["candidates"] for s in c["steps"])


def test_trace_html_is_self_contained_with_one_row_per_candidate(parm_results, tmp_path):
    page = write_trace(parm_results, tmp_path).read_text()
    assert page.count('<tr class="candidate') == 8 and page.count('class="candidate chosen"') == 2
    assert not re.search(r"https?:", page) and "<script" not in page and "<link" not in page
    assert "image-rendering: pixelated" in page and "data:image/png;base64," in page
    assert page.count("&#9986; pruned") == 2 + 4  # prompt 0 prunes c1 and c2; prompt 1 all four
    assert "parm, N = 4" in page


def test_trace_html_for_prm_without_previews(tmp_path):
    judge = ScriptedJudge(value={(1, 1): 1.0})
    results = run_strategy("prm", MockGenerator(), PROMPTS, SEEDS, judge)
    page = write_trace(results, tmp_path).read_text()
    assert page.count('<tr class="candidate') == 8 and page.count("&#9733; kept") == 2 * 4
    assert page.count("data:image/png;base64,") == 2  # only the chosen images were kept

"""Search strategies against a scripted mock generator and scripted verifiers, then end to end on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcot.core import GenState, StepScore
from imgcot.generators.run import generate
from imgcot.search import STRATEGIES, candidate_seeds, get_strategy, run_strategy, total_compute
from imgcot.trace_html import trace_dict, trace_html
from imgcot.verifiers import Combined, OracleVerifier
from imgcot.worlds.shapes.scenes import Scene, SceneObject, render
from tiny import tiny_generator

STEPS, INIT_COST, STEP_COST = 4, 1, 2  # mock: init costs 1 pass per row (a prefill), each step 2 (CFG)


class MockGenerator:
    """Row i writes its seed into token `step` at each step; the image shows the tokens, so a verifier can read
    which seed decoded which step (PRM branches switch seeds). Forward passes are counted per row."""

    num_steps, image_size = STEPS, 8

    def init(self, prompts: list[str], seeds: list[int]) -> GenState:
        b = len(prompts)
        tokens = torch.full((b, STEPS), -1, dtype=torch.long)
        text = torch.zeros((b, 1), dtype=torch.long)
        return GenState(list(prompts), list(seeds), text, tokens, tokens.clone(), 0, forwards=[INIT_COST] * b)

    def step(self, s: GenState) -> GenState:
        tokens = s.tokens.clone()
        tokens[:, s.step] = torch.tensor(s.seeds)
        forwards = [f + STEP_COST for f in s.forwards]
        return GenState(s.prompts, s.seeds, s.text, tokens, tokens.clone(), s.step + 1, forwards=forwards)

    def is_done(self, s: GenState) -> bool:
        return s.step >= STEPS

    def preview(self, s: GenState) -> torch.Tensor:
        images = torch.zeros((s.batch, 8, 8, 3), dtype=torch.uint8)
        images[:, 0, :STEPS, 0] = s.tokens.clamp(min=0).to(torch.uint8)
        images[:, 1, 0, 0] = s.step
        return images

    decode = preview

    def revise(self, s, keep):  # pragma: no cover - not used by search
        raise NotImplementedError

    def log_prob(self, prompts, tokens, mask=None):  # pragma: no cover
        raise NotImplementedError


def seed_at(images: torch.Tensor, step: int) -> list[int]:
    """The seed that decoded `step` (1-based) of each mock image."""
    return images[:, 0, step - 1, 0].tolist()


class ScriptedOutcome:
    def __init__(self, scores: dict[int, float]):
        self.scores, self.seen = scores, 0

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        self.seen += len(prompts)
        return torch.tensor([self.scores.get(s, 0.0) for s in seed_at(images, 1)], dtype=torch.float64)


class ScriptedJudge:
    """clarity = 1 from step clear_at[seed] on; potential[seed]; value[(step, seed)]. Logs every (step, seed)."""

    def __init__(self, clear_at=None, potential=None, value=None):
        self.clear_at, self.potential, self.value = clear_at or {}, potential or {}, value or {}
        self.log: list[tuple[int, int]] = []

    def judge(self, prompts, previews, step, num_steps):
        assert num_steps == STEPS and bool((previews[:, 1, 0, 0] == step).all())
        seeds = seed_at(previews, step)
        self.log += [(step, s) for s in seeds]
        clarity = [1.0 if step >= self.clear_at.get(s, 99) else 0.0 for s in seeds]
        potential = [self.potential.get(s, 0.0) for s in seeds]
        value = [self.value.get((step, s), 0.0) for s in seeds]
        f64 = torch.float64
        return StepScore(
            torch.tensor(clarity, dtype=f64), torch.tensor(potential, dtype=f64), torch.tensor(value, dtype=f64)
        )


PROMPTS = ["a photo of a red star", "a photo of two hearts"]
SEEDS = [[16 * p + k for k in range(4)] for p in range(2)]  # prompt p, candidate k: seed 16p + k
FULL = INIT_COST + STEP_COST * STEPS  # forwards of one row decoded to the end


def test_baseline_is_candidate_zero_at_the_cost_of_one_row():
    (a, b) = run_strategy("baseline", MockGenerator(), PROMPTS, SEEDS)
    assert a.chosen == 0 and len(a.candidates) == 1 and a.candidates[0].chosen
    assert seed_at(torch.as_tensor(b.image)[None], 1) == [16]
    assert a.compute.generator_forwards == FULL and a.compute.verifier_calls == 0


@pytest.mark.parametrize("name", ["orm", "orm-zs"])
def test_best_of_n_picks_the_argmax(name):
    orm = ScriptedOutcome({0: 0.2, 1: 0.9, 2: 0.5, 3: 0.1, 16: 0.3, 17: 0.3, 18: 0.6, 19: 0.6})
    results = run_strategy(name, MockGenerator(), PROMPTS, SEEDS, orm)
    assert [r.chosen for r in results] == [1, 2]  # ties go to the lowest index
    assert [r.strategy for r in results] == [name, name]
    assert seed_at(torch.as_tensor(results[0].image)[None], 1) == [1]
    assert [c.outcome for c in results[0].candidates] == pytest.approx([0.2, 0.9, 0.5, 0.1])
    total = total_compute(results)
    assert total.generator_forwards == 8 * FULL and total.verifier_calls == 8 == orm.seen


def test_best_of_one_asks_nothing():
    orm = ScriptedOutcome({})
    (r,) = run_strategy("orm", MockGenerator(), PROMPTS[:1], [[5]], orm)
    assert r.chosen == 0 and r.compute.verifier_calls == 0 == orm.seen


class SeedImages(MockGenerator):
    """Decodes to a fixed rendered image per seed (for the GenEval oracle)."""

    def __init__(self, images: dict[int, np.ndarray]):
        self.images = images

    def decode(self, s: GenState) -> torch.Tensor:
        return torch.as_tensor(np.stack([self.images[seed] for seed in s.seeds]))


def test_oracle_picks_a_correct_image_when_one_exists():
    red_star, blue_star = (render(Scene((SceneObject("star", c, 4, 4),))) for c in ("red", "blue"))
    empty = render(Scene())
    gen = SeedImages({0: blue_star, 1: empty, 2: red_star, 3: red_star, 16: empty, 17: blue_star})
    oracle = OracleVerifier()
    results = run_strategy("oracle", gen, ["a photo of a red star"] * 2, [[0, 1, 2, 3], [16, 17]], oracle)
    assert results[0].chosen == 2 and np.array_equal(results[0].image, red_star)
    assert [c.outcome for c in results[0].candidates] == [0.0, 0.0, 1.0, 1.0]
    assert results[1].chosen == 0  # nothing correct: all tie at 0, lowest index
    assert total_compute(results).verifier_calls == 6


# PARM script (steps 1..3 are judged; the last step is judged by the outcome question):
#   prompt 0: c0 clear at 2, promising -> survives; c1 clear at 1, hopeless -> pruned at 1;
#             c2 clear at 3, hopeless -> pruned at 3; c3 never clear -> survives; outcome picks c3 (0.8 > 0.3).
#   prompt 1: every path hopeless (pruned at 2, 1, 2, 3); c1 has the highest potential -> finished and returned.
PARM_CLEAR = {0: 2, 1: 1, 2: 3, 16: 2, 17: 1, 18: 2, 19: 3}
PARM_POTENTIAL = {0: 0.9, 1: 0.2, 2: 0.1, 16: 0.3, 17: 0.45, 18: 0.1, 19: 0.2}
PARM_OUTCOME = {0: 0.3, 3: 0.8, 17: 0.99}


def parm_verifiers():
    judge, orm = ScriptedJudge(PARM_CLEAR, PARM_POTENTIAL), ScriptedOutcome(PARM_OUTCOME)
    return judge, orm, Combined(judge, orm)


def test_parm_prunes_hopeless_paths_and_stops_spending_on_them():
    judge, orm, verifier = parm_verifiers()
    r0, r1 = run_strategy("parm", MockGenerator(), PROMPTS, SEEDS, verifier)
    assert [c.pruned_at for c in r0.candidates] == [None, 1, 3, None]
    assert [c.pruned_at for c in r1.candidates] == [2, 1, 2, 3]
    cost = lambda steps: INIT_COST + STEP_COST * steps  # noqa: E731
    assert [c.forwards for c in r0.candidates] == [FULL, cost(1), cost(3), FULL]
    assert [c.forwards for c in r1.candidates] == [cost(2), FULL, cost(2), cost(3)]  # c1 finished as fallback
    assert r0.compute.generator_forwards == 2 * FULL + cost(1) + cost(3)
    assert r1.compute.generator_forwards == FULL + 2 * cost(2) + cost(3)
    # a pruned path is never judged again (the fallback resumes without questions)
    for seed, step in [(1, 1), (2, 3), (16, 2), (17, 1), (18, 2), (19, 3)]:
        assert max(st for st, s in judge.log if s == seed) == step
    assert max(st for st, _ in judge.log) == STEPS - 1


def test_parm_picks_the_best_survivor_and_falls_back_to_the_highest_potential():
    _, orm, verifier = parm_verifiers()
    r0, r1 = run_strategy("parm", MockGenerator(), PROMPTS, SEEDS, verifier)
    assert r0.chosen == 3 and [c.outcome for c in r0.candidates] == [0.3, None, None, 0.8]
    assert r1.chosen == 1 and all(c.outcome is None for c in r1.candidates)
    assert seed_at(torch.as_tensor(r1.image)[None], STEPS) == [17]  # decoded to the end
    assert r1.candidates[1].chosen and r1.candidates[1].pruned_at == 1
    assert orm.seen == 2


def test_parm_counts_every_question():
    judge, orm, verifier = parm_verifiers()
    r0, r1 = run_strategy("parm", MockGenerator(), PROMPTS, SEEDS, verifier)
    # prompt 0: clarity 2+1+3+3, potential 3, outcome 2; prompt 1: clarity 2+1+2+3, potential 4, no outcome
    assert (r0.compute.verifier_calls, r1.compute.verifier_calls) == (14, 12)
    clear_answers = sum(1 for c in r0.candidates + r1.candidates for j in c.judgments if j.potential is not None)
    assert len(judge.log) + clear_answers + orm.seen == 26


def test_parm_without_clear_steps_is_best_of_n():
    orm = ScriptedOutcome({0: 0.2, 1: 0.9})
    (r,) = run_strategy("parm", MockGenerator(), PROMPTS[:1], [[0, 1, 2]], Combined(ScriptedJudge(), orm))
    assert r.chosen == 1 and all(c.pruned_at is None for c in r.candidates)
    assert r.compute.generator_forwards == 3 * FULL and r.compute.verifier_calls == 3 * (STEPS - 1) + 3


# keep (beyond the paper): prompt 0 with five paths, all promising; c0 and c1 clear at 1, c2..c4 clear at 2.
KEEP_CLEAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2}
KEEP_POTENTIAL = {0: 0.6, 1: 0.7, 2: 0.95, 3: 0.9, 4: 0.95}


@pytest.mark.parametrize(
    ("keep", "survive"),
    [(None, [0, 1, 2, 3, 4]), (5, [0, 1, 2, 3, 4]), (3, [0, 1, 2]), (2, [0, 1]), (1, [1])],
)
def test_parm_keep_truncates_promising_paths_beyond_the_limit(keep, survive):
    """Paths judged promising first claim the room; within a step the higher potential wins, ties to the lower
    index (c2 over c4); every path over the limit stops costing at the step it was judged."""
    judge = ScriptedJudge(KEEP_CLEAR, KEEP_POTENTIAL)
    orm = ScriptedOutcome({k: 0.1 * k for k in range(5)})
    options = {} if keep is None else {"keep": keep}
    (r,) = run_strategy("parm", MockGenerator(), PROMPTS[:1], [list(range(5))], Combined(judge, orm), options=options)
    cost = lambda steps: INIT_COST + STEP_COST * steps  # noqa: E731
    expect = [None if k in survive else KEEP_CLEAR[k] for k in range(5)]
    assert [c.pruned_at for c in r.candidates] == expect
    assert [c.forwards for c in r.candidates] == [FULL if k in survive else cost(KEEP_CLEAR[k]) for k in range(5)]
    assert r.chosen == max(survive)  # the outcome question picks among the survivors only
    assert [c.outcome is not None for c in r.candidates] == [k in survive and len(survive) > 1 for k in range(5)]
    assert all(st <= 2 for st, s in judge.log if s not in survive)  # a truncated path is never judged again
    marks = trace_html([r]).count("pruned (over keep)")
    assert marks == 5 - len(survive)  # the trace says why a promising path was truncated


def test_parm_keep_must_be_positive():
    with pytest.raises(ValueError, match="keep must be >= 1"):
        run_strategy("parm", MockGenerator(), PROMPTS[:1], [[0]], Combined(ScriptedJudge(), ScriptedOutcome({})),
                     options={"keep": 0})  # fmt: skip


def test_prm_follows_the_highest_value_branch():
    # prompt 0 lanes 0..2 (seeds 0, 1, 2): best per step = lane 1, 2, 0, 2; prompt 1 always lane 0 (ties)
    value = {(1, 1): 0.9, (2, 2): 0.7, (2, 1): 0.6, (3, 0): 0.5, (4, 2): 0.8, (4, 0): 0.1}
    judge = ScriptedJudge(value=value)
    seeds = [[0, 1, 2], [16, 17, 18]]
    r0, r1 = run_strategy("prm", MockGenerator(), PROMPTS, seeds, judge)
    assert seed_at(torch.as_tensor(r0.image)[None].expand(1, 8, 8, 3), 1) == [1]
    assert r0.image[0, :STEPS, 0].tolist() == [1, 2, 0, 2] and r0.chosen == 2
    assert r1.image[0, :STEPS, 0].tolist() == [16, 16, 16, 16] and r1.chosen == 0
    kept = [[j.step for j in c.judgments if j.kept] for c in r0.candidates]
    assert kept == [[3], [1], [2, 4]]
    assert [j.value for j in r0.candidates[2].judgments] == [0.0, 0.7, 0.0, 0.8]
    for r in (r0, r1):
        assert r.compute.generator_forwards == INIT_COST + 3 * STEP_COST * STEPS
        assert r.compute.verifier_calls == 3 * STEPS
    assert len(judge.log) == 2 * 3 * STEPS


def _comparable(results):
    doc = trace_dict(results)
    for p in doc["prompts"]:
        p["compute"].pop("wall_seconds")
    doc.pop("compute")
    return doc, [r.image.tolist() for r in results]


def _verifier_for(name):
    if name == "prm":
        return ScriptedJudge(value={(s, seed): ((seed * 7 + s * 3) % 10) / 10 for s in range(5) for seed in range(40)})
    if name == "parm":
        return parm_verifiers()[2]
    return ScriptedOutcome({k: (k * 37 % 11) / 11 for k in range(40)})


@pytest.mark.parametrize("name", ["baseline", "orm", "prm", "parm"])
def test_results_do_not_depend_on_batching_across_prompts(name):
    prompts = PROMPTS + ["a photo of a cross"]
    seeds = SEEDS + [[32, 33, 34, 35]]
    together = run_strategy(name, MockGenerator(), prompts, seeds, _verifier_for(name))
    alone = run_strategy(name, MockGenerator(), prompts, seeds, _verifier_for(name), prompts_per_batch=1)
    assert _comparable(together) == _comparable(alone)


def test_registry_names_roles_and_errors():
    assert set(STRATEGIES) == {"baseline", "orm-zs", "orm", "prm", "parm", "parm++", "parm++-noreflect", "oracle"}
    assert {n: s.verifier for n, s in STRATEGIES.items()}["orm-zs"] == "orm-zs"
    assert get_strategy("orm-zs").run is get_strategy("orm").run
    with pytest.raises(ValueError, match="unknown strategy 'beam'; known: baseline, orm-zs"):
        get_strategy("beam")
    with pytest.raises(ValueError, match="needs a verifier"):
        run_strategy("orm", MockGenerator(), PROMPTS, SEEDS)
    seeds = candidate_seeds(1234, 20)
    assert seeds[0] == 1234 and len(set(seeds)) == 20 and seeds == candidate_seeds(1234, 20)


# --- end to end on tiny random generators --------------------------------------------------------------------------
class Brightness:
    """Outcome = mean brightness; clarity grows with the step; potential = a hash of the preview in [0, 1)."""

    def score(self, prompts, images):
        return images.float().mean((1, 2, 3)) / 255

    def judge(self, prompts, previews, step, num_steps):
        b = len(prompts)
        potential = (previews.float().mean((1, 2, 3)) * 997) % 1
        return StepScore(torch.full((b,), step / num_steps), potential, self.score(prompts, previews))


class Flat:
    def judge(self, prompts, previews, step, num_steps):
        zeros = torch.zeros(len(prompts))
        return StepScore(zeros, zeros, zeros)


@pytest.fixture(params=["maskgit", "ar"], scope="module")
def tiny(request, tmp_path_factory):
    return tiny_generator(request.param, tmp_path_factory.mktemp(request.param))


def test_every_strategy_runs_end_to_end_on_tiny_generators(tiny):
    prompts = ["a photo of a red star", "a photo of three hearts"]
    seeds = [candidate_seeds(100 + p, 3) for p in range(2)]
    plain, _ = generate(tiny, prompts, [s[0] for s in seeds])
    everything, _ = generate(tiny, [p for p in prompts for _ in range(3)], [s for row in seeds for s in row])
    spent = {}
    for name in [n for n, s in STRATEGIES.items() if s.verifier != "parm++"]:  # parm++: tests/test_reflection.py
        results = run_strategy(name, tiny, prompts, seeds, Brightness(), record_previews=True)
        spent[name] = total_compute(results).generator_forwards
        for p, r in enumerate(results):
            assert r.image.shape == (32, 32, 3) and r.image.dtype == np.uint8
            for c in r.candidates:
                decoded = tiny.num_steps if c.pruned_at is None or c.chosen else c.pruned_at
                has_final = c.chosen if name == "prm" else decoded == tiny.num_steps  # PRM decodes the path only
                assert len(c.previews) == decoded and (c.final is not None) == has_final
            if name == "baseline":
                assert np.array_equal(r.image, plain[p].numpy())
            if name in ("orm", "orm-zs", "oracle"):
                assert np.array_equal(r.image, everything[3 * p + r.chosen].numpy())
            if name == "orm":
                brightness = [float(everything[3 * p + k].float().mean()) for k in range(3)]
                assert r.chosen == int(np.argmax(brightness))
    ties = run_strategy("prm", tiny, prompts, seeds, Flat())  # all values tie: branch 0 every step
    assert all(np.array_equal(r.image, plain[p].numpy()) for p, r in enumerate(ties))
    per_row = spent["baseline"] // 2
    assert spent["orm"] == 3 * spent["baseline"] and spent["parm"] <= spent["orm"] + per_row

"""Strategy names -> the loop to run and the verifier role it needs; one entry point for the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core import StepwiseGenerator
from ..sampling import row_seed
from .best_of_n import baseline, best_of_n
from .parm import parm
from .reflect import parm_plus_plus, parm_plus_plus_judge_only
from .result import SearchResult
from .step_search import step_search

StrategyFn = Callable[..., list[SearchResult]]

# Verifier roles: which verifier object a strategy is handed. 'parm' needs judge() (clarity, potential) and
# score() (the outcome question) on one object; 'parm++' also reflect() and max_rounds (search/reflect.py);
# 'oracle' is imgcot.verifiers.OracleVerifier.
VERIFIER_ROLES = ("orm", "orm-zs", "prm", "parm", "parm++", "oracle")


@dataclass(frozen=True)
class Strategy:
    name: str
    run: StrategyFn
    verifier: str | None  # role of the verifier it needs (None: no verifier)
    summary: str


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("baseline", baseline, None, "plain generation: candidate 0, one row per prompt"),
        Strategy("orm-zs", best_of_n, "orm-zs", "best-of-N with the zero-shot outcome verifier"),
        Strategy("orm", best_of_n, "orm", "best-of-N with the fine-tuned outcome verifier"),
        Strategy("prm", step_search, "prm", "step-level search: fork N branches per step, keep the best value"),
        Strategy("parm", parm, "parm", "clarity -> potential once -> truncate -> best-of-N' on survivors"),
        Strategy("parm++", parm_plus_plus, "parm++", "PARM, then reflect and self-correct from the critique"),
        Strategy(
            "parm++-noreflect",
            parm_plus_plus_judge_only,
            "parm++",
            "PARM++ without reflection: the reflector only judges, a rejected image is redrawn from scratch",
        ),
        Strategy("oracle", best_of_n, "oracle", "best-of-N with the GenEval evaluator as verifier (upper bound)"),
    )
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def candidate_seeds(base: int, n: int) -> list[int]:
    """N candidate seeds for one image: candidate 0 is `base` itself (so it is the plain generation of that
    seed, and baseline == candidate 0 of every strategy's N), the others are hashed from (base, k)."""
    return [base] + [row_seed(base, k, salt=0x5EED) % 2**48 for k in range(1, n)]


def run_strategy(
    name: str,
    generator: StepwiseGenerator,
    prompts: list[str],
    seeds: list[list[int]],
    verifier: object | None = None,
    *,
    record_previews: bool = False,
    prompts_per_batch: int | None = None,
    options: dict | None = None,
) -> list[SearchResult]:
    """Run strategy `name` over prompts (seeds[i]: the N candidate seeds of prompt i), `prompts_per_batch`
    prompts at a time (all their candidates share one batch); results are the same for any batching.
    `options`: the strategy's own keyword settings (parm: keep)."""
    strategy = get_strategy(name)
    if strategy.verifier is not None and verifier is None:
        raise ValueError(f"strategy {name!r} needs a verifier (role {strategy.verifier!r})")
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seed lists")
    chunk = prompts_per_batch or max(1, len(prompts))
    results = []
    for start in range(0, len(prompts), chunk):
        part = strategy.run(generator, prompts[start : start + chunk], seeds[start : start + chunk], verifier,
                            record_previews=record_previews, **(options or {}))  # fmt: skip
        for result in part:
            result.strategy = name
        results.extend(part)
    return results

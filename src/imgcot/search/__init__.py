"""Test-time search over a step-wise generator: baseline, best-of-N (ORM / oracle), PRM step search, PARM."""

from .best_of_n import baseline, best_of_n
from .parm import parm
from .registry import STRATEGIES, VERIFIER_ROLES, Strategy, candidate_seeds, get_strategy, run_strategy
from .result import CandidateTrace, Judgment, SearchResult, total_compute
from .step_search import step_search

__all__ = [
    "STRATEGIES",
    "VERIFIER_ROLES",
    "CandidateTrace",
    "Judgment",
    "SearchResult",
    "Strategy",
    "baseline",
    "best_of_n",
    "candidate_seeds",
    "get_strategy",
    "parm",
    "run_strategy",
    "step_search",
    "total_compute",
]

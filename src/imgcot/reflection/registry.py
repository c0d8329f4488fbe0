"""Loading what the `parm++` strategies are handed: PARM's verifier and the reflection model, by name or folder."""

from __future__ import annotations

from ..search.reflect import MAX_ROUNDS, ParmPlusPlusVerifier
from .model import load_reflector


def load_parmpp_verifier(spec: str | None = None, max_rounds: int = MAX_ROUNDS, **options) -> ParmPlusPlusVerifier:
    """`spec` = "PARM[,REFLECTOR]": a PARM verifier and a reflector, each a shipped name or a folder; an empty part
    is the shipped one (shapes-parm, shapes-reflector). `options`: `localize`, `select` (search/reflect.py)."""
    from ..verifiers.registry import load_verifier

    parm_part, _, reflector_part = (spec or "").partition(",")
    parm = load_verifier("parm", parm_part.strip() or None)
    return ParmPlusPlusVerifier(parm, load_reflector(reflector_part.strip() or None), max_rounds, **options)

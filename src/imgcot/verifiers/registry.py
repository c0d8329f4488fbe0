"""Verifier roles -> verifier objects: the GenEval oracle, or learned verifiers (shipped names or folders)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..geneval.spec import Metadata
from ..nn.io import CheckpointError
from .oracle import OracleVerifier

# The shipped learned verifier of each role (folders under worlds/shapes/weights/).
SHIPPED = {"orm-zs": "shapes-orm-zs", "orm": "shapes-orm", "prm": "shapes-prm", "parm": "shapes-parm"}


def load_verifier(role: str, name_or_path: str | None = None, metadata: Callable[[str], Metadata] | None = None):
    """The verifier for a strategy's role; `name_or_path` overrides the shipped one."""
    if role == "oracle":
        return OracleVerifier(metadata=metadata)
    if role not in SHIPPED:
        raise ValueError(f"unknown verifier role {role!r}; known: oracle, {', '.join(SHIPPED)}")
    from ..generators.registry import registered_models, weights_root

    name = name_or_path or SHIPPED[role]
    folder = weights_root() / name if name in registered_models() else Path(name)
    if not folder.is_dir():
        raise CheckpointError(f"no verifier {name!r} for role {role!r}: not shipped and not a folder")
    from .shapes import load_role  # the shapes-world networks

    return load_role(role, folder)

"""Verifier roles -> verifier objects: the GenEval oracle, or learned verifiers (shipped names or folders)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..geneval.spec import Metadata
from ..hf import is_hf_verifier
from ..nn.io import CheckpointError
from .oracle import OracleVerifier

# The shipped learned verifier of each role (folders under worlds/shapes/weights/).
SHIPPED = {"orm-zs": "shapes-orm-zs", "orm": "shapes-orm", "prm": "shapes-prm", "parm": "shapes-parm"}


def own_verifier(role: str, generator: object) -> str | None:
    """The shipped verifier `<generator kind>-<role>` trained on that kind's samples where one exists (the AR models:
    shapes-ar-orm, shapes-ar-parm), else None (the role's shipped default, trained on shapes-maskgit samples)."""
    from ..generators.registry import registered_models

    kind = getattr(generator, "KIND", None)
    name = f"{kind}-{role}"
    return name if kind is not None and name in registered_models() else None


def load_verifier(role: str, name_or_path: str | None = None, metadata: Callable[[str], Metadata] | None = None):
    """The verifier for a strategy's role; `name_or_path` overrides the shipped one: a shipped name, a folder,
    `hf-vlm:<hub id or folder>` (a vision-language judge) or `hf-clip:<hub id or folder>` (CLIP score)."""
    if role == "oracle":
        return OracleVerifier(metadata=metadata)
    if role == "parm++":  # PARM's verifier and the reflector, "PARM[,REFLECTOR]" (reflection/registry.py)
        from ..reflection.registry import load_parmpp_verifier

        return load_parmpp_verifier(name_or_path)
    if role not in SHIPPED:
        raise ValueError(f"unknown verifier role {role!r}; known: oracle, {', '.join(SHIPPED)}")
    if is_hf_verifier(name_or_path):  # real models over transformers (imported lazily)
        from ..hf import load_hf_verifier

        return load_hf_verifier(role, name_or_path)
    from ..generators.registry import registered_models, weights_root

    name = name_or_path or SHIPPED[role]
    folder = weights_root() / name if name in registered_models() else Path(name)
    if not folder.is_dir():
        raise CheckpointError(f"no verifier {name!r} for role {role!r}: not shipped and not a folder")
    from .shapes import load_role  # the shapes-world networks

    return load_role(role, folder)

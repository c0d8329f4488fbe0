"""GenEval metadata: one JSON object per prompt (`tag`, `include`, optional `exclude`, `prompt`).

Semantics (GenEval, Ghosh et al. 2023): include clauses are ANDed, exclude clauses ORed; a clause has `class`,
`count`, optional `color` and optional `position: [relation, index of an earlier include clause]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

Metadata = dict[str, Any]


class MetadataError(ValueError):
    """A metadata line breaks the GenEval format; the message names where."""


def _check_clause(clause: Any, where: str, index: int, include: bool) -> None:
    if not isinstance(clause, dict):
        raise MetadataError(f"{where}: clause {index} is not an object")
    unknown = set(clause) - ({"class", "count", "color", "position"} if include else {"class", "count"})
    if unknown:
        raise MetadataError(f"{where}: clause {index} has unknown keys {sorted(unknown)}")
    if not isinstance(clause.get("class"), str) or not clause["class"].strip():
        raise MetadataError(f"{where}: clause {index} needs a non-empty string 'class'")
    count = clause.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise MetadataError(f"{where}: clause {index} needs an integer 'count' >= 1")
    if "color" in clause and clause["color"] not in COLORS:
        raise MetadataError(f"{where}: clause {index} colour {clause['color']!r} is not one of {', '.join(COLORS)}")
    if "position" in clause:
        pos = clause["position"]
        if not (isinstance(pos, list) and len(pos) == 2 and pos[0] in RELATIONS and isinstance(pos[1], int)):
            raise MetadataError(f"{where}: clause {index} position must be [relation, earlier index], got {pos!r}")
        if not 0 <= pos[1] < index:
            raise MetadataError(f"{where}: clause {index} position refers to clause {pos[1]}, not an earlier one")


def validate(meta: Any, where: str = "metadata") -> Metadata:
    """Return `meta` if it is a well-formed GenEval metadata object, else raise MetadataError naming `where`."""
    if not isinstance(meta, dict):
        raise MetadataError(f"{where}: expected a JSON object")
    unknown = set(meta) - {"tag", "include", "exclude", "prompt"}
    if unknown:
        raise MetadataError(f"{where}: unknown keys {sorted(unknown)}")
    if meta.get("tag") not in TAGS:
        raise MetadataError(f"{where}: tag {meta.get('tag')!r} is not one of {', '.join(TAGS)}")
    if not isinstance(meta.get("prompt"), str) or not meta["prompt"].strip():
        raise MetadataError(f"{where}: 'prompt' must be a non-empty string")
    include = meta.get("include")
    if not isinstance(include, list) or not include:
        raise MetadataError(f"{where}: 'include' must be a non-empty list")
    for i, clause in enumerate(include):
        _check_clause(clause, where, i, include=True)
    exclude = meta.get("exclude", [])
    if not isinstance(exclude, list):
        raise MetadataError(f"{where}: 'exclude' must be a list")
    for i, clause in enumerate(exclude):
        _check_clause(clause, where, i, include=False)
    return meta


def parse_lines(lines: Iterable[str], source: str) -> list[Metadata]:
    entries = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as err:
            raise MetadataError(f"{where}: malformed JSON ({err.msg})") from None
        entries.append(validate(meta, where))
    return entries


def read_metadata(path: str | Path) -> list[Metadata]:
    """Parse and validate a metadata JSONL file; every error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MetadataError(f"{path}: cannot read ({err})") from None
    entries = parse_lines(text.splitlines(), str(path))
    if not entries:
        raise MetadataError(f"{path}: no metadata lines")
    return entries


def dumps(meta: Metadata) -> str:
    """One metadata line, keys in GenEval's order."""
    ordered = {k: meta[k] for k in ("tag", "include", "exclude", "prompt") if k in meta}
    return json.dumps(ordered)


def unknown_classes(entries: Iterable[Metadata], known: Iterable[str]) -> list[str]:
    known = set(known)
    found = {c["class"] for m in entries for c in m["include"] + m.get("exclude", [])}
    return sorted(found - known)

"""Metadata mutations: changes to a prompt's metadata that a ground-truth image of the original must fail.

Each mutation is pure (the input is never modified) and keeps the GenEval format valid:

- ``other class``: one include clause names a class absent from every clause of the line (for counting, the
  exclude clause follows it);
- ``count+1``: counting "exactly n" becomes include n+1 / exclude n+2; elsewhere one count-1 clause asks for 2;
- ``count-1``: counting only: include n-1 / exclude n (a count-1 clause has no n-1 >= 1);
- ``other colour``: one coloured clause asks for a different colour;
- ``flipped relation``: left of <-> right of, above <-> below;
- ``swapped colours``: colour attribution: the two clauses exchange colours.

`mutations(meta, rng)` returns every kind that applies to the line's tag, one mutated line per kind.
"""

from __future__ import annotations

import copy

import numpy as np

from ...geneval.spec import Metadata, MetadataError, validate
from .vocab import COLORS, OBJECTS

KINDS: tuple[str, ...] = (
    "other class",
    "count+1",
    "count-1",
    "other colour",
    "flipped relation",
    "swapped colours",
)
FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _finish(meta: Metadata, kind: str, detail: str) -> Metadata:
    """Re-title the mutated line (its template text when one exists) and validate it."""
    from .prompts import parse_prompt, prompt_text  # local: prompts may later import from here

    try:
        text = prompt_text(meta)
        back = parse_prompt(text)
        faithful = back["include"] == meta["include"] and back.get("exclude", []) == meta.get("exclude", [])
    except (KeyError, ValueError, IndexError):
        faithful = False
    # A line no template can say (count 1 or 5, two of a single object) keeps its old text, annotated.
    meta["prompt"] = text if faithful else f"{meta['prompt']} [{kind}: {detail}]"
    return validate(meta, where=f"mutation {kind!r}")


def other_class(meta: Metadata, rng: np.random.Generator) -> Metadata:
    out = copy.deepcopy(meta)
    used = {c["class"] for c in out["include"] + out.get("exclude", [])}
    absent = [o for o in OBJECTS if o not in used]
    if not absent:
        raise ValueError(f"{meta['prompt']!r}: every class is already named")
    index = int(rng.integers(len(out["include"])))
    old, new = out["include"][index]["class"], absent[rng.integers(len(absent))]
    out["include"][index]["class"] = new
    if out["tag"] == "counting":
        for clause in out.get("exclude", []):
            if clause["class"] == old:
                clause["class"] = new
    return _finish(out, "other class", f"{old} -> {new}")


def _counting_clause(meta: Metadata) -> tuple[dict, dict]:
    include = meta["include"][0]
    exclude = next(c for c in meta.get("exclude", []) if c["class"] == include["class"])
    return include, exclude


def count_plus(meta: Metadata, rng: np.random.Generator) -> Metadata:
    out = copy.deepcopy(meta)
    if out["tag"] == "counting":
        include, exclude = _counting_clause(out)
        include["count"] += 1
        exclude["count"] = include["count"] + 1
        return _finish(out, "count+1", f"exactly {include['count']}")
    index = int(rng.integers(len(out["include"])))
    out["include"][index]["count"] += 1
    return _finish(out, "count+1", f"{out['include'][index]['count']} {out['include'][index]['class']}")


def count_minus(meta: Metadata, rng: np.random.Generator) -> Metadata:
    out = copy.deepcopy(meta)
    if out["tag"] != "counting":
        raise ValueError("count-1 applies to counting lines only (a count-1 clause has no n-1 >= 1)")
    include, exclude = _counting_clause(out)
    if include["count"] < 2:
        raise ValueError(f"{meta['prompt']!r}: count {include['count']} has no n-1 >= 1")
    include["count"] -= 1
    exclude["count"] = include["count"] + 1
    return _finish(out, "count-1", f"exactly {include['count']}")


def other_colour(meta: Metadata, rng: np.random.Generator) -> Metadata:
    out = copy.deepcopy(meta)
    coloured = [i for i, c in enumerate(out["include"]) if "color" in c]
    if not coloured:
        raise ValueError(f"{meta['prompt']!r}: no clause names a colour")
    clause = out["include"][coloured[rng.integers(len(coloured))]]
    choices = [c for c in COLORS if c != clause["color"]]
    old, clause["color"] = clause["color"], choices[rng.integers(len(choices))]
    return _finish(out, "other colour", f"{old} -> {clause['color']}")


def flipped_relation(meta: Metadata, rng: np.random.Generator) -> Metadata:
    out = copy.deepcopy(meta)
    positioned = [c for c in out["include"] if "position" in c]
    if not positioned:
        raise ValueError(f"{meta['prompt']!r}: no clause has a position")
    clause = positioned[rng.integers(len(positioned))]
    old = clause["position"][0]
    clause["position"] = [FLIP[old], clause["position"][1]]
    return _finish(out, "flipped relation", f"{old} -> {FLIP[old]}")


def other_relations(meta: Metadata) -> list[Metadata]:
    """The positioned clause under each of the three other relations (the flip and both orthogonal ones)."""
    out = []
    for relation in FLIP:
        line = copy.deepcopy(meta)
        clause = next((c for c in line["include"] if "position" in c), None)
        if clause is None:
            raise ValueError(f"{meta['prompt']!r}: no clause has a position")
        old = clause["position"][0]
        if relation != old:
            clause["position"] = [relation, clause["position"][1]]
            out.append(_finish(line, "other relation", f"{old} -> {relation}"))
    return out


def swapped_colours(meta: Metadata, rng: np.random.Generator) -> Metadata:
    out = copy.deepcopy(meta)
    coloured = [c for c in out["include"] if "color" in c]
    if len(coloured) < 2 or coloured[0]["color"] == coloured[1]["color"]:
        raise ValueError(f"{meta['prompt']!r}: needs two clauses of different colours")
    coloured[0]["color"], coloured[1]["color"] = coloured[1]["color"], coloured[0]["color"]
    return _finish(out, "swapped colours", "")


_MUTATORS = {
    "other class": other_class,
    "count+1": count_plus,
    "count-1": count_minus,
    "other colour": other_colour,
    "flipped relation": flipped_relation,
    "swapped colours": swapped_colours,
}

# Which kinds apply to which GenEval tag.
APPLICABLE: dict[str, tuple[str, ...]] = {
    "single_object": ("other class", "count+1"),
    "two_object": ("other class", "count+1"),
    "counting": ("other class", "count+1", "count-1"),
    "colors": ("other class", "count+1", "other colour"),
    "position": ("other class", "count+1", "flipped relation"),
    "color_attr": ("other class", "count+1", "other colour", "swapped colours"),
}


def mutate(meta: Metadata, kind: str, rng: np.random.Generator) -> Metadata:
    """One mutated copy of `meta` of the given kind; ValueError when the kind does not apply."""
    if kind not in _MUTATORS:
        raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(KINDS)}")
    return _MUTATORS[kind](meta, rng)


def mutations(meta: Metadata, rng: np.random.Generator) -> list[tuple[str, Metadata]]:
    """(kind, mutated line) for every kind that applies to `meta`'s tag and content."""
    out = []
    for kind in APPLICABLE.get(meta["tag"], KINDS):
        try:
            out.append((kind, mutate(meta, kind, rng)))
        except MetadataError:
            raise  # a mutation that breaks the format is a bug, not an inapplicable kind
        except ValueError:
            continue
    return out


__all__ = ["APPLICABLE", "FLIP", "KINDS", "mutate", "mutations", "other_relations"]

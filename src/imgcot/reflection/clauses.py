"""Failed clauses: the evaluator's teacher signal, the critique sentence, and the reflection network's targets.

PARM++ (shared/method.md section 3) reflects on PARM's image: "aligned", or a short explanation of what is wrong
(wrong count, wrong colour on which object, wrong relation, missing object). Here the explanation is structured
first (`core.Clause`) and the sentence is a pure function of the clauses, so the critique the generator reads
and the one a person reads in the trace are the same words.

- `teacher_clauses(meta, correct, reason)`: GenEval's `reason` lines (geneval/rules.py) -> clauses.
- `critique_text(clauses)`: clauses -> one sentence; `critique_words` its words for the generator's vocabulary.
- `targets_of(meta, clauses)` / `clauses_of(meta, outputs)`: the reflection network's output layout, both ways
  (teacher clauses -> targets -> one-hot outputs -> the same clauses; tests/test_reflection.py).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..core import Clause
from ..geneval.spec import Metadata
from ..worlds.shapes.vocab import COLORS, plural

ALIGNED_TEXT = "the image matches the prompt"
GENERIC_TEXT = "the image does not match the prompt"
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")  # found counts >= 6 read "six"
MAX_COUNT = len(NUMBER_WORDS) - 1

_EXTRA = re.compile(r"^expected (?P<cls>.+)<(?P<count>\d+), found (?P<n>\d+)$")
_COLOUR = re.compile(
    r"^expected (?P<color>\w+) (?P<cls>.+)>=(?P<count>\d+), found (?P<k>\d+) (?P=color); and ?(?P<rest>.*)$"
)
_SHORT = re.compile(r"^expected (?P<cls>.+)>=(?P<count>\d+), found (?P<n>\d+)$")
_RELATION = re.compile(
    r"^expected (?P<cls>.+) (?P<rel>left of|right of|above|below) target, found (?P<rels>.*) target$"
)
_NO_TARGET = re.compile(r"^no target for (?P<cls>.+) to be (?P<rel>.+)$")


# --- the teacher: GenEval's reasons -> clauses ----------------------------------------------------------------------
def _slot(meta: Metadata, cls: str) -> int:
    for i, clause in enumerate(meta["include"]):
        if clause["class"] == cls:
            return i
    return -1


def _seen_instead(rest: str, wanted: str) -> str | None:
    """The most frequent other colour in GenEval's "1 blue, 2 red" list (ties: the list's order)."""
    counts = [(int(n), c) for n, c in re.findall(r"(\d+) (\w+)", rest) if c != wanted]
    return max(counts, key=lambda nc: nc[0])[1] if counts else None


def _short_clause(meta: Metadata, cls: str, count: int, found: int) -> Clause:
    slot = _slot(meta, cls)
    color = meta["include"][slot].get("color") if slot >= 0 else None
    kind = "missing" if count == 1 else "count"
    return Clause(kind, cls, slot, color=color, count=count, found_count=found)


def _line_clause(meta: Metadata, line: str) -> Clause | None:
    if m := _EXTRA.match(line):
        cls = m["cls"]
        return Clause("extra", cls, _slot(meta, cls), count=int(m["count"]) - 1, found_count=int(m["n"]))
    if m := _COLOUR.match(line):
        cls, wanted = m["cls"], m["color"]
        found = _seen_instead(m["rest"], wanted)
        return Clause("colour", cls, _slot(meta, cls), color=wanted, count=int(m["count"]), found_color=found)
    if m := _RELATION.match(line):
        cls = m["cls"]
        slot = _slot(meta, cls)
        target = meta["include"][meta["include"][slot]["position"][1]]["class"]
        return Clause("relation", cls, slot, relation=m["rel"], target=target)
    if _NO_TARGET.match(line):
        return None  # the target's own clause already failed and is reported on its line
    if m := _SHORT.match(line):
        return _short_clause(meta, m["cls"], int(m["count"]), int(m["n"]))
    raise ValueError(f"unreadable GenEval reason line {line!r}")


def teacher_clauses(meta: Metadata, correct: bool, reason: str) -> tuple[Clause, ...]:
    """The failed clauses of an evaluation (correct, reason) of one image under `meta`; () when correct."""
    if correct:
        return ()
    clauses = tuple(c for line in reason.splitlines() if line.strip() for c in [_line_clause(meta, line.strip())] if c)
    if not clauses:
        raise ValueError(f"an incorrect evaluation without a readable reason: {reason!r}")
    return clauses


# --- the critique sentence ----------------------------------------------------------------------------------------
def _number(n: int) -> str:
    return NUMBER_WORDS[min(max(n, 0), MAX_COUNT)]


def _noun(obj: str, n: int) -> str:
    return obj if n == 1 else plural(obj)


def clause_text(c: Clause) -> str:
    """One clause as words, e.g. "the star is blue, not red" or "there are two hearts, not three"."""
    if c.kind == "missing":
        return f"the {c.color + ' ' if c.color else ''}{c.obj} is missing"
    if c.kind in ("count", "extra"):
        n = c.found_count if c.found_count is not None else (0 if c.kind == "count" else c.count + 1)
        verb = "is" if n == 1 else "are"
        return f"there {verb} {_number(n)} {_noun(c.obj, n)}, not {_number(c.count)}"
    if c.kind == "colour":
        seen = f"{c.found_color}, " if c.found_color else ""
        return f"the {c.obj} is {seen}not {c.color}"
    return f"the {c.obj} is not {c.relation} the {c.target}"


def critique_text(clauses: tuple[Clause, ...] | list[Clause], aligned: bool = False) -> str:
    """The reflection sentence: "the image matches the prompt", or the failed clauses joined by "and"."""
    if aligned:
        return ALIGNED_TEXT
    if not clauses:
        return GENERIC_TEXT
    return " and ".join(clause_text(c) for c in clauses)


def critique_words(clauses: tuple[Clause, ...] | list[Clause]) -> list[str]:
    """The critique as the generator reads it: lower-case words, punctuation dropped ([] without clauses)."""
    return critique_text(clauses).replace(",", "").split() if clauses else []


# --- the reflection network's outputs ---------------------------------------------------------------------------
# Binary questions (sigmoid) then categorical ones (softmax), per include slot j of the prompt's metadata.
BINARY: tuple[str, ...] = ("aligned", "short0", "short1", "colour0", "colour1", "relation", "extra")
CATEGORICAL: dict[str, int] = {
    "found_colour0": len(COLORS),
    "found_colour1": len(COLORS),
    "found_count": MAX_COUNT + 1,
}
TARGETS: tuple[str, ...] = BINARY + tuple(CATEGORICAL)


def output_slices() -> dict[str, slice]:
    """Where each question sits in the network's logit vector."""
    out, start = {}, 0
    for name in BINARY:
        out[name], start = slice(start, start + 1), start + 1
    for name, size in CATEGORICAL.items():
        out[name], start = slice(start, start + size), start + size
    return out


NUM_OUTPUTS = sum(s.stop - s.start for s in output_slices().values())


def targets_of(meta: Metadata, clauses: tuple[Clause, ...]) -> dict[str, float]:
    """Training targets of one (prompt, image): 0/1 per binary question, a class index per categorical one,
    NaN where the question does not apply (no such slot, or an earlier failure hides it, as in GenEval)."""
    out = {name: math.nan for name in TARGETS}
    out["aligned"] = float(not clauses)
    include, counting = meta["include"], meta["tag"] == "counting"
    by = {(c.kind, c.slot): c for c in clauses}
    short = [any((k, j) in by for k in ("missing", "count")) for j in range(len(include))]
    for j, clause in enumerate(include[:2]):
        out[f"short{j}"] = float(short[j])
        if "color" in clause and not short[j]:
            wrong = by.get(("colour", j))
            out[f"colour{j}"] = float(wrong is not None)
            seen = wrong.found_color if wrong is not None else clause["color"]
            out[f"found_colour{j}"] = float(COLORS.index(seen)) if seen in COLORS else math.nan
    if any("position" in c for c in include) and not any(short):
        out["relation"] = float(any(c.kind == "relation" for c in clauses))
    if counting:
        extra = next((c for c in clauses if c.kind == "extra"), None)
        few = next((c for c in clauses if c.kind in ("missing", "count")), None)
        out["extra"] = math.nan if few is not None else float(extra is not None)
        n = (few or extra).found_count if (few or extra) is not None else include[0]["count"]
        out["found_count"] = float(min(n, MAX_COUNT))
    return out


def clauses_of(meta: Metadata, outputs: dict[str, np.ndarray | float], threshold: float = 0.5) -> tuple[Clause, ...]:
    """Decode one row of network outputs (probabilities: a float per binary question, a distribution per
    categorical one) into failed clauses, in GenEval's order; questions hidden by an earlier failure are not read."""
    include, clauses = meta["include"], []
    counting = meta["tag"] == "counting"
    short = [float(outputs[f"short{j}"]) >= threshold for j in range(min(2, len(include)))]
    for j, clause in enumerate(include[:2]):
        cls, count, color = clause["class"], clause["count"], clause.get("color")
        if short[j]:
            found = _argmax_below(outputs["found_count"], count) if counting else 0
            clauses.append(Clause("missing" if count == 1 else "count", cls, j, color=color, count=count,
                                  found_count=found))  # fmt: skip
        elif color is not None and float(outputs[f"colour{j}"]) >= threshold:
            seen = _argmax_except(outputs[f"found_colour{j}"], COLORS.index(color))
            clauses.append(Clause("colour", cls, j, color=color, count=count, found_color=COLORS[seen]))
        if "position" in clause and not any(short) and float(outputs["relation"]) >= threshold:
            relation, target = clause["position"]
            clauses.append(Clause("relation", cls, j, relation=relation, target=include[target]["class"]))
    if counting and not any(short) and float(outputs["extra"]) >= threshold:
        count = include[0]["count"]
        found = _argmax_above(outputs["found_count"], count)
        clauses.append(Clause("extra", include[0]["class"], 0, count=count, found_count=found))
    return tuple(clauses)


def _argmax_below(probs, limit: int) -> int:
    return int(np.argmax(np.asarray(probs)[:limit])) if limit > 0 else 0


def _argmax_above(probs, limit: int) -> int:
    probs = np.asarray(probs)
    return limit + 1 + int(np.argmax(probs[limit + 1 :])) if limit + 1 < len(probs) else len(probs) - 1


def _argmax_except(probs, index: int) -> int:
    probs = np.asarray(probs, dtype=float).copy()
    probs[index] = -np.inf
    return int(np.argmax(probs))


def one_hot_outputs(targets: dict[str, float]) -> dict[str, np.ndarray | float]:
    """Targets as the probabilities a perfect network would give (NaN questions answer 0 / uniform)."""
    out: dict[str, np.ndarray | float] = {}
    for name in BINARY:
        out[name] = 0.0 if math.isnan(targets[name]) else targets[name]
    for name, size in CATEGORICAL.items():
        probs = np.full(size, 1.0 / size)
        if not math.isnan(targets[name]):
            probs = np.eye(size)[int(targets[name])]
        out[name] = probs
    return out


def clause_dict(c: Clause) -> dict:
    """A clause as JSON (for traces): only the fields that are set."""
    fields = ("kind", "obj", "slot", "color", "count", "found_color", "found_count", "relation", "target")
    return {k: getattr(c, k) for k in fields if getattr(c, k) is not None}

"""Prompt text <-> GenEval metadata for GenEval's six templates, over the shapes vocabulary."""

from __future__ import annotations

import re

from ...geneval.spec import RELATIONS, Metadata
from .vocab import COLORS, OBJECTS, UnknownWordError, article, check_color, check_object, plural

NUMBERS = {"two": 2, "three": 3, "four": 4}
NUMBER_WORDS = {v: k for k, v in NUMBERS.items()}
_PREFIX = "a photo of "
_PLURALS = {plural(o): o for o in OBJECTS}


class PromptError(ValueError):
    """A prompt that is none of GenEval's six templates."""


def _template_help() -> str:
    return (
        "expected one of GenEval's six templates, e.g. 'a photo of a star', 'a photo of a star and a circle', "
        "'a photo of three hearts', 'a photo of a red star', 'a photo of a cross below a square', "
        "'a photo of a red star and a blue circle'"
    )


def _phrase(words: list[str]) -> tuple[str | None, str]:
    """An article-led noun phrase -> (colour or None, object). Unknown words raise with the vocabulary."""
    if len(words) < 2 or words[0] not in ("a", "an"):
        raise PromptError(f"expected 'a' or 'an' before {' '.join(words) or 'an object'}; {_template_help()}")
    rest = words[1:]
    if len(rest) >= 2 and rest[0] in COLORS:
        return rest[0], check_object(" ".join(rest[1:]))
    if len(rest) == 2 and rest[1] in OBJECTS:  # e.g. "a magenta star": the first word must be a colour
        return check_color(rest[0]), rest[1]
    return None, check_object(" ".join(rest))


def _singular(word: str) -> str:
    if word in _PLURALS:
        return _PLURALS[word]
    stem = word[:-2] if word.endswith("es") and word[:-2] in OBJECTS else word.rstrip("s")
    return check_object(stem)


def parse_prompt(text: str) -> Metadata:
    """GenEval metadata for a shapes prompt; one-line errors for empty, unknown or off-template text."""
    prompt = " ".join(text.strip().lower().split())
    if not prompt:
        raise PromptError("empty prompt; " + _template_help())
    if not prompt.startswith(_PREFIX):
        raise PromptError(f"cannot read {text!r}: {_template_help()}")
    words = prompt[len(_PREFIX) :].split()
    if words and words[0] in NUMBERS:
        if len(words) != 2:
            raise PromptError(f"cannot read {text!r}: {_template_help()}")
        cls, n = _singular(words[1]), NUMBERS[words[0]]
        return _meta("counting", [{"class": cls, "count": n}], prompt, exclude=[{"class": cls, "count": n + 1}])
    if "and" in words:
        cut = words.index("and")
        (c1, a), (c2, b) = _phrase(words[:cut]), _phrase(words[cut + 1 :])
        if c1 is None and c2 is None:
            return _meta("two_object", [{"class": a, "count": 1}, {"class": b, "count": 1}], prompt)
        if c1 is None or c2 is None:
            raise PromptError(f"cannot read {text!r}: give both objects a colour or neither; {_template_help()}")
        return _meta(
            "color_attr", [{"class": a, "count": 1, "color": c1}, {"class": b, "count": 1, "color": c2}], prompt
        )
    joined = " ".join(words)
    for relation in RELATIONS:
        match = re.fullmatch(rf"(.+) {relation} (.+)", joined)
        if match:
            (ca, a), (cb, b) = _phrase(match.group(1).split()), _phrase(match.group(2).split())
            if ca or cb:
                raise PromptError(f"cannot read {text!r}: position prompts name no colours; {_template_help()}")
            include = [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [relation, 0]}]
            return _meta("position", include, prompt)
    color, cls = _phrase(words)
    if color is None:
        return _meta("single_object", [{"class": cls, "count": 1}], prompt)
    return _meta("colors", [{"class": cls, "count": 1, "color": color}], prompt)


def _meta(tag: str, include: list[dict], prompt: str, exclude: list[dict] | None = None) -> Metadata:
    """A metadata line whose prompt is the canonical template text (articles and plurals fixed)."""
    if len(include) == 2 and include[0]["class"] == include[1]["class"]:
        # GenEval draws two different classes: both clauses would take the same top detection and never pass
        raise PromptError(f"{prompt!r} names {include[0]['class']} twice; the two objects must differ")
    meta: Metadata = {"tag": tag, "include": include}
    if exclude:
        meta["exclude"] = exclude
    meta["prompt"] = prompt
    meta["prompt"] = prompt_text(meta)
    return meta


def _np(cls: str, color: str | None = None) -> str:
    words = f"{color} {cls}" if color else cls
    return f"{article(words)} {words}"


def prompt_text(meta: Metadata) -> str:
    """The template sentence for a metadata line of one of the six tags (inverse of parse_prompt)."""
    tag, inc = meta["tag"], meta["include"]
    for clause in inc:
        check_object(clause["class"])
        if "color" in clause:
            check_color(clause["color"])
    if tag == "single_object":
        return _PREFIX + _np(inc[0]["class"])
    if tag == "two_object":
        return _PREFIX + f"{_np(inc[0]['class'])} and {_np(inc[1]['class'])}"
    if tag == "counting":
        return _PREFIX + f"{NUMBER_WORDS[inc[0]['count']]} {plural(inc[0]['class'])}"
    if tag == "colors":
        return _PREFIX + _np(inc[0]["class"], inc[0]["color"])
    if tag == "position":
        return _PREFIX + f"{_np(inc[1]['class'])} {inc[1]['position'][0]} {_np(inc[0]['class'])}"
    if tag == "color_attr":
        return _PREFIX + f"{_np(inc[0]['class'], inc[0]['color'])} and {_np(inc[1]['class'], inc[1]['color'])}"
    raise PromptError(f"no template for tag {tag!r}")


__all__ = ["PromptError", "UnknownWordError", "parse_prompt", "prompt_text", "NUMBERS"]

"""GenEval's rule engine against a hand-made table of detections (shared/method.md section 6).

Expected outcomes are worked out by hand in the comments; nothing here calls the function under test to get them.
"""

from __future__ import annotations

import pytest

from imgcot.geneval.rules import (
    COUNTING_THRESHOLD,
    MAX_OBJECTS,
    POSITION_THRESHOLD,
    THRESHOLD,
    Detection,
    evaluate,
    keep_confident,
    relative_position,
)


def box(cx: float, cy: float, w: float = 10.0, h: float = 10.0) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 of a w x h box centred on (cx, cy); the test values keep every coordinate exact in binary."""
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def det(score: float = 1.0, color: str | None = None, cx: float = 50.0, cy: float = 50.0, **size) -> Detection:
    return Detection(box(cx, cy, **size), score, None, color)


class FakeColors:
    """Colour classifier that reads each detection's `color` field and logs what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, image, detections, classname):
        self.calls.append((classname, len(detections)))
        return [d.color for d in detections]


def run(meta: dict, detected: dict, tag: str | None = None) -> tuple[bool, str]:
    kept = keep_confident(detected, tag or meta["tag"])
    return evaluate(meta, kept, None, FakeColors())


def test_constants_are_genevals():
    assert (THRESHOLD, COUNTING_THRESHOLD, MAX_OBJECTS, POSITION_THRESHOLD) == (0.3, 0.9, 16, 0.1)


# --- keep_confident: strict thresholds, sorting, the cap of 16, empty classes dropped ---------------------------


@pytest.mark.parametrize(
    "tag, scores, kept",
    [
        ("single_object", [0.3], []),  # exactly 0.3 is dropped: GenEval keeps scores strictly above
        ("single_object", [0.30001], [0.30001]),
        ("single_object", [0.29999, 0.5, 0.9], [0.9, 0.5]),  # sorted by confidence, highest first
        ("position", [0.31, 0.95, 0.6], [0.95, 0.6, 0.31]),
        ("counting", [0.9], []),  # counting uses 0.9, again strictly
        ("counting", [0.90001, 0.89999, 0.5], [0.90001]),
        ("colors", [0.89999], [0.89999]),  # 0.9 is only for counting
    ],
)
def test_keep_confident_thresholds(tag, scores, kept):
    out = keep_confident({"circle": [det(s) for s in scores]}, tag)
    assert [d.score for d in out.get("circle", [])] == kept
    if not kept:
        assert "circle" not in out  # a class with nothing left is absent, as in GenEval


def test_keep_confident_caps_at_16_per_class_keeping_the_most_confident():
    scores = [0.31 + 0.01 * i for i in range(20)]  # 0.31 .. 0.50
    out = keep_confident({"circle": [det(s) for s in scores], "star": [det(0.4)] * 3}, "single_object")
    assert len(out["circle"]) == 16
    # the 16 highest of 0.31..0.50 are 0.35..0.50, in descending order
    assert [round(d.score, 2) for d in out["circle"]] == [round(0.50 - 0.01 * i, 2) for i in range(16)]
    assert len(out["star"]) == 3  # the cap is per class


# --- include AND, exclude OR, top-`count` detections, counting ---------------------------------------------------

TWO = {"tag": "two_object", "include": [{"class": "circle", "count": 1}, {"class": "star", "count": 1}], "prompt": "p"}


def counting(n: int) -> dict:
    return {
        "tag": "counting",
        "include": [{"class": "circle", "count": n}],
        "exclude": [{"class": "circle", "count": n + 1}],
        "prompt": "p",
    }


@pytest.mark.parametrize(
    "meta, detected, expected",
    [
        # include clauses are ANDed: both present
        (TWO, {"circle": [det()], "star": [det()]}, (True, "")),
        # one missing
        (TWO, {"circle": [det()]}, (False, "expected star>=1, found 0")),
        # both missing: every failed clause gives a reason, joined by newlines
        (TWO, {}, (False, "expected circle>=1, found 0\nexpected star>=1, found 0")),
        # a detection at or below 0.3 does not count
        (TWO, {"circle": [det()], "star": [det(0.3)]}, (False, "expected star>=1, found 0")),
        # other classes do not matter to a two_object line
        (TWO, {"circle": [det()], "star": [det()], "heart": [det()] * 5}, (True, "")),
        # counting, exactly 3: three confident circles
        (counting(3), {"circle": [det(0.95)] * 3}, (True, "")),
        # only two are above 0.9 (0.9 itself is dropped): "found" counts the kept ones
        (counting(3), {"circle": [det(0.95), det(0.95), det(0.9)]}, (False, "expected circle>=3, found 2")),
        # the same detections pass at 0.3 on a non-counting tag (three circles then count)
        (
            {**counting(3), "tag": "two_object"},
            {"circle": [det(0.95), det(0.95), det(0.9)]},
            (True, ""),
        ),
        # four confident circles break "exclude 4": found reports every kept detection
        (counting(3), {"circle": [det(0.95)] * 4}, (False, "expected circle<4, found 4")),
        # a fourth below 0.9 is ignored
        (counting(3), {"circle": [det(0.95)] * 3 + [det(0.85)]}, (True, "")),
        # low-confidence extras count for neither the include nor the exclude clause
        (counting(2), {"circle": [det(0.95)] * 1 + [det(0.5)] * 4}, (False, "expected circle>=2, found 1")),
        # include and exclude can both fail: include reasons come first
        (
            {**TWO, "exclude": [{"class": "heart", "count": 1}]},
            {"circle": [det()], "heart": [det()]},
            (False, "expected star>=1, found 0\nexpected heart<1, found 1"),
        ),
    ],
)
def test_include_and_exclude(meta, detected, expected):
    assert run(meta, detected) == expected


def test_exclude_clauses_are_ored():
    meta = {
        "tag": "single_object",
        "include": [{"class": "circle", "count": 1}],
        "exclude": [{"class": "star", "count": 1}, {"class": "heart", "count": 2}],
        "prompt": "p",
    }
    assert run(meta, {"circle": [det()], "heart": [det()]}) == (True, "")  # 1 heart < 2, no star
    assert run(meta, {"circle": [det()], "heart": [det()] * 2}) == (False, "expected heart<2, found 2")
    assert run(meta, {"circle": [det()], "star": [det()]}) == (False, "expected star<1, found 1")
    assert run(meta, {"circle": [det()], "star": [det()], "heart": [det()] * 3}) == (
        False,
        "expected star<1, found 1\nexpected heart<2, found 3",
    )


def test_exclude_counts_after_the_cap_of_16():
    # 20 circles, all confident: only 16 survive the cap, so "fewer than 17" holds
    meta = {
        "tag": "single_object",
        "include": [{"class": "circle", "count": 1}],
        "exclude": [{"class": "circle", "count": 17}],
        "prompt": "p",
    }
    assert run(meta, {"circle": [det(0.99)] * 20}) == (True, "")
    meta["exclude"][0]["count"] = 16
    assert run(meta, {"circle": [det(0.99)] * 20}) == (False, "expected circle<16, found 16")


# --- colour: top-`count` crops, at least `count` of the colour ---------------------------------------------------


def colored(n: int, color: str = "red") -> dict:
    return {"tag": "colors", "include": [{"class": "circle", "count": n, "color": color}], "prompt": "p"}


@pytest.mark.parametrize(
    "meta, detections, expected",
    [
        (colored(1), [det(0.9, "red")], (True, "")),
        (colored(1), [det(0.9, "blue")], (False, "expected red circle>=1, found 0 red; and 1 blue")),
        # only the top-1 (most confident) detection is classified: a red one below it does not help
        (colored(1), [det(0.5, "red"), det(0.9, "blue")], (False, "expected red circle>=1, found 0 red; and 1 blue")),
        # ... and a blue one below a red one does not hurt
        (colored(1), [det(0.5, "blue"), det(0.9, "red")], (True, "")),
        # count 2 needs two red crops among the top 2; the summary lists colours in GenEval's colour order
        (colored(2), [det(0.9, "red"), det(0.8, "red")], (True, "")),
        (
            colored(2),
            [det(0.9, "white"), det(0.8, "red")],
            (False, "expected red circle>=2, found 1 red; and 1 red, 1 white"),
        ),
        (colored(2), [det(0.9, "red"), det(0.8, "red"), det(0.7, "blue")], (True, "")),
        # too few detections: the count reason, and no colour classification at all
        (colored(2), [det(0.9, "red")], (False, "expected circle>=2, found 1")),
    ],
)
def test_color_rule(meta, detections, expected):
    assert run(meta, {"circle": detections}) == expected


def test_color_classifier_sees_only_the_top_count_detections():
    fake = FakeColors()
    kept = keep_confident({"circle": [det(0.4, "red"), det(0.9, "red"), det(0.6, "blue")]}, "colors")
    assert evaluate(colored(2), kept, None, fake) == (False, "expected red circle>=2, found 1 red; and 1 red, 1 blue")
    assert fake.calls == [("circle", 2)]
    fake.calls.clear()
    assert evaluate(colored(1), {}, None, fake)[0] is False
    assert fake.calls == []  # a missing class is never sent to the colour classifier


# --- relative_position: margin 0.1 x (size_A + size_B) per axis, normalised by |offset| -------------------------
# B is a 10x10 box centred at (50, 50); A is 10x10 unless given. With both 10 wide, the margin is
# 0.1 * (10 + 10) = 2 px per axis. y grows downward, so a positive dy is "below".

POSITION_CASES = [
    # (A centre offset dx, dy, A size (w, h), expected relations)  -- worked by hand
    (0.0, 0.0, (10, 10), set()),  # equal centres: offset 0, revised 0 -> no relation (and no division by 0)
    (2.0, 0.0, (10, 10), set()),  # |dx| = margin: revised 0 -> no relation
    (2.0009765625, 0.0, (10, 10), set()),  # revised 0.00098 < 1e-3 -> still no relation
    (3.75, 0.0, (10, 10), set()),  # revised 1.75, / 3.75 = 0.467 <= 0.5 -> none (just inside)
    (4.0, 0.0, (10, 10), set()),  # revised 2, / 4 = 0.5 exactly; the test is strict (> 0.5) -> none
    (4.25, 0.0, (10, 10), {"right of"}),  # revised 2.25 / 4.25 = 0.529 > 0.5 (just outside)
    (-4.25, 0.0, (10, 10), {"left of"}),  # dx = -0.529 < -0.5
    (0.0, 4.25, (10, 10), {"below"}),  # dy = +0.529: A lower on the image
    (0.0, -4.25, (10, 10), {"above"}),
    (10.0, 10.0, (10, 10), {"right of", "below"}),  # revised (8, 8) / 14.14 = (0.566, 0.566): both hold
    (-10.0, -10.0, (10, 10), {"left of", "above"}),
    (10.0, -10.0, (10, 10), {"right of", "above"}),
    (10.0, 5.0, (10, 10), {"right of"}),  # revised (8, 3) / 11.18 = (0.716, 0.268): only x holds
    (6.0, 6.0, (10, 10), set()),  # revised (4, 4) / 8.49 = (0.471, 0.471): far apart, yet no relation
    (8.0, 0.0, (30, 10), set()),  # A 30 wide: x margin 0.1 * (30 + 10) = 4; revised 4 / 8 = 0.5 -> none
    (8.5, 0.0, (30, 10), {"right of"}),  # revised 4.5 / 8.5 = 0.529
    (0.0, 20.0, (10, 10), {"below"}),  # overlapping boxes still relate: revised 18 / 20 = 0.9
    (-30.0, 1.0, (10, 10), {"left of"}),  # revised (-28, 0 since 1 < 2) / 30.02 = (-0.933, 0)
]


@pytest.mark.parametrize("dx, dy, size, expected", POSITION_CASES)
def test_relative_position_table(dx, dy, size, expected):
    a = box(50.0 + dx, 50.0 + dy, *size)
    assert relative_position(a, box(50.0, 50.0)) == expected


# --- the position clause: every kept A against every kept B, target failure, reasons ----------------------------


def position(relation: str = "left of", count_a: int = 1, count_b: int = 1, color_b: str | None = None) -> dict:
    target = {"class": "square", "count": count_b}
    if color_b:
        target["color"] = color_b
    return {
        "tag": "position",
        "include": [target, {"class": "circle", "count": count_a, "position": [relation, 0]}],
        "prompt": "p",
    }


@pytest.mark.parametrize(
    "meta, detected, expected",
    [
        # circle at x=20, square at x=50: offset -30 -> left of
        (position(), {"square": [det(cx=50)], "circle": [det(cx=20)]}, (True, "")),
        # circle at x=80: offset +30 -> right of
        (
            position(),
            {"square": [det(cx=50)], "circle": [det(cx=80)]},
            (False, "expected circle left of target, found right of target"),
        ),
        # equal centres: no relation; GenEval prints the empty set as nothing between two spaces
        (
            position(),
            {"square": [det()], "circle": [det()]},
            (False, "expected circle left of target, found  target"),
        ),
        # diagonal (-30, -30): left of and above both hold, so "left of" passes ...
        (position(), {"square": [det()], "circle": [det(cx=20, cy=20)]}, (True, "")),
        # ... and "below" fails listing both relations (sorted here; GenEval joins a set, order unspecified)
        (
            position("below"),
            {"square": [det()], "circle": [det(cx=20, cy=20)]},
            (False, "expected circle below target, found above and left of target"),
        ),
        # every kept A against every kept B: two squares (x=50 and x=10), circle at x=20 is left of the first only
        (
            position(count_b=2),
            {"square": [det(0.9, cx=50), det(0.8, cx=10)], "circle": [det(cx=20)]},
            (False, "expected circle left of target, found right of target"),
        ),
        # with count 1 only the top square (x=50) is the target: the lower-scored one at x=10 is ignored
        (position(), {"square": [det(0.9, cx=50), det(0.8, cx=10)], "circle": [det(cx=20)]}, (True, "")),
        # two circles must both be left of the square: x=20 is, x=60 is right of it
        (
            position(count_a=2),
            {"square": [det(cx=50)], "circle": [det(0.9, cx=20), det(0.8, cx=60)]},
            (False, "expected circle left of target, found right of target"),
        ),
        # ... both at x=20 and x=30 are
        (position(count_a=2), {"square": [det(cx=50)], "circle": [det(0.9, cx=20), det(0.8, cx=30)]}, (True, "")),
        # only the first bad pair is reported (GenEval breaks out of both loops)
        (
            position(count_a=2),
            {"square": [det(cx=50)], "circle": [det(0.9, cx=80), det(0.8, cx=50, cy=80)]},
            (False, "expected circle left of target, found right of target"),
        ),
        # the target clause failed (no square): the position clause fails with GenEval's "no target" reason
        (
            position(),
            {"circle": [det(cx=20)]},
            (False, "expected square>=1, found 0\nno target for circle to be left of"),
        ),
        # the target failed its colour: still no target
        (
            position(color_b="red"),
            {"square": [det(color="blue")], "circle": [det(cx=20)]},
            (False, "expected red square>=1, found 0 red; and 1 blue\nno target for circle to be left of"),
        ),
        # A itself missing: only the count reason, no position reason
        (position(), {"square": [det()]}, (False, "expected circle>=1, found 0")),
        # a target scoring exactly 0.3 is dropped first, so there is no target
        (
            position("right of"),
            {"square": [det(0.3, cx=20)], "circle": [det(cx=80)]},
            (False, "expected square>=1, found 0\nno target for circle to be right of"),
        ),
    ],
)
def test_position_clause(meta, detected, expected):
    assert run(meta, detected) == expected


def test_position_margin_edge_through_the_clause():
    # 4.25 px apart (10x10 boxes): dx = 2.25 / 4.25 = 0.529 -> right of holds; at 4.0 px it is exactly 0.5 -> fails
    meta = position("right of")
    assert run(meta, {"square": [det(cx=50)], "circle": [det(cx=54.25)]}) == (True, "")
    assert run(meta, {"square": [det(cx=50)], "circle": [det(cx=54.0)]}) == (
        False,
        "expected circle right of target, found  target",
    )


def test_position_after_own_colour_failure_is_not_checked():
    meta = position()
    meta["include"][1]["color"] = "red"
    # the circle is blue and on the wrong side: only the colour reason is given (position needs `matched`)
    assert run(meta, {"square": [det()], "circle": [det(color="blue", cx=80)]}) == (
        False,
        "expected red circle>=1, found 0 red; and 1 blue",
    )

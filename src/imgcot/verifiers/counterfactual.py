"""Counterfactual prompts for verifier data: the same image (a sample or a render) judged by the evaluator under
changed prompts.

Why: held-out, the learned verifiers ranked the images of one position prompt at chance and those of a colour
binding prompt barely above it (benchmarks/verifier_tags.py), although most rejected images of those prompts fail
only on the relation or the binding. A sampled image shown once, with one prompt, teaches which prompts are hard;
the same image under "left of", "right of", "above" and "below" (or with its two colours exchanged), each labelled
by the evaluator, teaches what the words ask of the picture. The teacher is unchanged (the GenEval evaluator, as
for every sample row), so no label is invented: a changed prompt that the image happens to satisfy is a positive.

Rows copied per path: its final image (``outcome``) and its clear steps, whose potential inherits the final
image's verdict under the new prompt (the paper's rule, shared/method.md section 3), for both clarity rules.
Clarity columns are left unlabelled: clarity is a property of the image, already taught by the source rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..geneval.spec import Metadata
from ..worlds.shapes.mutate import mutate, other_relations
from ..worlds.shapes.prompts import parse_prompt
from .data import PARM_COLUMNS, Evaluator, RowBuffer, VerifierData, is_template, shapes_evaluator

# Changed prompts per tag: the failure modes the verifiers missed. The easy tags (single and two objects) get none.
KINDS_BY_TAG: dict[str, tuple[str, ...]] = {
    "counting": ("count+1", "count-1"),
    "colors": ("other colour",),
    "position": ("other relations",),
    "color_attr": ("swapped colours", "other colour", "other colour"),
}


def counterfactual_prompts(meta: Metadata, rng: np.random.Generator) -> list[Metadata]:
    """Changed copies of a line that keep its objects: other relations, exchanged or other colours, counts +-1."""
    out: list[Metadata] = []
    for kind in KINDS_BY_TAG.get(meta["tag"], ()):
        if kind == "other relations":
            out.extend(other_relations(meta))
            continue
        try:
            out.append(mutate(meta, kind, rng))
        except ValueError:
            continue  # the kind does not apply to this line (e.g. count-1 of one object)
    # Only template sentences: the verifiers read prompt words, and a count no template says (5) is annotated.
    unique = {m["prompt"]: m for m in out if m["prompt"] != meta["prompt"] and is_template(m)}
    return list(unique.values())


def _paths(data: VerifierData) -> dict[int, torch.Tensor]:
    """Row indices of every path, step order: sampled paths (`build-data orm|parm`, with path_id), or final images
    only (`build-data orm-zs` renders), each its own path."""
    if "path_id" not in data.extras:
        if not bool((data.step >= data.num_steps).all()):
            raise ValueError("counterfactual rows need sampled paths (path_id) or final images only")
        return {i: torch.tensor([i]) for i in range(len(data))}
    order = torch.argsort(data.extras["path_id"] * 10_000 + data.step, stable=True)
    ids = data.extras["path_id"][order].long()
    cuts = torch.nonzero(ids[1:] != ids[:-1]).flatten() + 1
    return {int(ids[part[0]]): part for part in torch.tensor_split(order, cuts.tolist()) if len(part)}


def _clear(data: VerifierData, row: int, rule: str) -> bool:
    return bool(data.label(f"clarity_{rule}")[row] == 1.0)


def build_counterfactual(
    data: VerifierData,
    *,
    seed: int = 0,
    evaluate: Evaluator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifierData:
    """For every sampled path of `data`, its final image and clear steps under each counterfactual prompt."""
    evaluate = evaluate or shapes_evaluator()
    rng = np.random.default_rng(seed)
    parm = "potential_fixed" in data.labels
    rows, paths, counts = RowBuffer(), _paths(data), {"prompts": 0, "positive": 0}
    for done, (pid, index) in enumerate(paths.items(), 1):
        final = int(index[-1])
        meta = parse_prompt(data.prompts[int(data.prompt_id[final])])
        for changed in counterfactual_prompts(meta, rng):
            correct = float(evaluate(changed, data.images[final].numpy())[0])
            counts["prompts"] += 1
            counts["positive"] += int(correct)
            for row in index.tolist():
                labels = {"outcome": correct} if row == final else {}
                for rule in ("fixed", "learned"):
                    if parm and (row == final or _clear(data, row, rule)):
                        labels[f"potential_{rule}"] = correct
                if labels:
                    step, total = int(data.step[row]), int(data.num_steps[row])
                    rows.add(changed["prompt"], data.images[row].numpy(), step, total, path_id=pid, **labels)
        if progress is not None:
            progress(done, len(paths))
    names = list(PARM_COLUMNS) if parm else ["outcome"]
    info = {"role": "counterfactual", "seed": seed, "source": data.info, "paths": len(paths), **counts}
    return rows.to_data(names, info)  # clarity columns stay NaN: not labelled here

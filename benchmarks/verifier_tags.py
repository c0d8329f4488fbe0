"""Per-tag agreement of outcome verifiers with the evaluator on held-out samples, including the within-prompt AUC:
how often a verifier ranks an accepted image of a prompt above a rejected image of the same prompt, which is what
best-of-N selection depends on (a verifier can have a good pooled AUC by learning which prompts are hard).

    python benchmarks/verifier_tags.py --heldout runs/verifiers/maskgit/parm-heldout --verifiers shapes-orm shapes-parm
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from imgcot.train.verifier import auc
from imgcot.verifiers.data import VerifierData
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.prompts import parse_prompt

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def within_prompt_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Pairs (accepted, rejected) of the same prompt ordered correctly, ties half; NaN without such pairs."""
    right = pairs = 0.0
    for g in np.unique(groups):
        s, y = scores[groups == g], labels[groups == g].astype(bool)
        pos, neg = s[y][:, None], s[~y][None, :]
        right += float((pos > neg).sum() + 0.5 * (pos == neg).sum())
        pairs += pos.size * neg.size
    return right / pairs if pairs else float("nan")


def tag_table(verifier, data: VerifierData) -> dict[str, dict[str, float]]:
    final = (data.step >= data.num_steps).nonzero().flatten()
    rows = data.select(final)
    prompts = [rows.prompts[i] for i in rows.prompt_id.tolist()]
    with torch.no_grad():
        scores = verifier.score(prompts, rows.images).numpy()
    labels, groups = rows.label("outcome").numpy(), rows.prompt_id.numpy()
    tags = np.array([parse_prompt(p)["tag"] for p in prompts])
    out = {}
    for tag in (*TAGS, "all"):
        m = tags == tag if tag != "all" else np.ones(len(tags), bool)
        if m.any():
            out[tag] = {"n": int(m.sum()), "accepted": float(labels[m].mean()), "auc": auc(scores[m], labels[m]),
                        "within_prompt_auc": within_prompt_auc(scores[m], labels[m], groups[m])}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", required=True, help="a data folder from `imgcot verifiers build-data parm`")
    parser.add_argument("--verifiers", nargs="+", required=True, help="outcome verifiers: shipped names or folders")
    parser.add_argument("--role", default="orm", help="role the verifiers load as (orm reads the outcome head)")
    args = parser.parse_args()
    data = VerifierData.load(args.heldout)
    results = defaultdict(dict)
    for name in args.verifiers:
        for tag, row in tag_table(load_verifier(args.role, name), data).items():
            results[tag][name] = row
    print(f"held-out: {args.heldout}; AUC pooled / within prompt (what best-of-N needs)\n")
    print("| tag | n | accepted | " + " | ".join(args.verifiers) + " |")
    print("|---|---|---|" + "---|" * len(args.verifiers))
    for tag, by in results.items():
        first = next(iter(by.values()))
        cells = " | ".join(f"{by[v]['auc']:.3f} / {by[v]['within_prompt_auc']:.3f}" for v in args.verifiers)
        print(f"| {tag} | {first['n']} | {first['accepted']:.2f} | {cells} |")


if __name__ == "__main__":
    main()

"""Per-tag agreement of outcome verifiers with the evaluator on held-out samples, including the within-prompt AUC:
how often a verifier ranks an accepted image of a prompt above a rejected image of the same prompt, which is what
best-of-N selection depends on (a verifier can have a good pooled AUC by learning which prompts are hard).

    python benchmarks/verifier_tags.py --heldout runs/verifiers/maskgit/parm-heldout --verifiers shapes-orm shapes-parm

With `--counterfactual DIR` (from `imgcot verifiers counterfactual <heldout>`) a third number per cell: the
within-image AUC, how often a verifier ranks a prompt an image satisfies above a changed prompt it fails (same
image): whether the verifier reads the relation, the colours and the count in the words at all.
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


def _finals(verifier, data: VerifierData) -> tuple[np.ndarray, ...]:
    """Scores, labels, prompt ids, path ids and tags of the data's final images."""
    rows = data.select((data.step >= data.num_steps).nonzero().flatten())
    prompts = [rows.prompts[i] for i in rows.prompt_id.tolist()]
    with torch.no_grad():
        scores = verifier.score(prompts, rows.images).numpy()
    paths = rows.extras["path_id"].numpy() if "path_id" in rows.extras else np.arange(len(rows))
    tags = np.array([parse_prompt(p)["tag"] for p in prompts])
    return scores, rows.label("outcome").numpy(), rows.prompt_id.numpy(), paths, tags


def tag_table(verifier, data: VerifierData, changed: VerifierData | None = None) -> dict[str, dict[str, float]]:
    scores, labels, groups, paths, tags = _finals(verifier, data)
    if changed is not None:  # the same images under changed prompts: group by image (path) instead of prompt
        c_scores, c_labels, _, c_paths, _ = _finals(verifier, changed)
        image_tag = dict(zip(paths.tolist(), tags.tolist(), strict=True))
        keep = np.array([p in image_tag for p in c_paths.tolist()], bool)
        all_scores, all_labels = np.concatenate([scores, c_scores[keep]]), np.concatenate([labels, c_labels[keep]])
        all_paths = np.concatenate([paths, c_paths[keep]])
        all_tags = np.array([image_tag[p] for p in all_paths.tolist()])
    out = {}
    for tag in (*TAGS, "all"):
        m = tags == tag if tag != "all" else np.ones(len(tags), bool)
        if m.any():
            out[tag] = {"n": int(m.sum()), "accepted": float(labels[m].mean()), "auc": auc(scores[m], labels[m]),
                        "within_prompt_auc": within_prompt_auc(scores[m], labels[m], groups[m])}  # fmt: skip
            if changed is not None:
                w = all_tags == tag if tag != "all" else np.ones(len(all_tags), bool)
                out[tag]["within_image_auc"] = within_prompt_auc(all_scores[w], all_labels[w], all_paths[w])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", required=True, help="a data folder from `imgcot verifiers build-data parm`")
    parser.add_argument("--verifiers", nargs="+", required=True, help="outcome verifiers: shipped names or folders")
    parser.add_argument("--role", default="orm", help="role the verifiers load as (orm reads the outcome head)")
    parser.add_argument("--counterfactual", help="`imgcot verifiers counterfactual` of --heldout: within-image AUC")
    args = parser.parse_args()
    data = VerifierData.load(args.heldout)
    changed = VerifierData.load(args.counterfactual) if args.counterfactual else None
    results = defaultdict(dict)
    for name in args.verifiers:
        for tag, row in tag_table(load_verifier(args.role, name), data, changed).items():
            results[tag][name] = row
    what = "pooled / within prompt (what best-of-N needs)" + (" / within image" if changed is not None else "")
    print(f"held-out: {args.heldout}; AUC {what}\n")
    print("| tag | n | accepted | " + " | ".join(args.verifiers) + " |")
    print("|---|---|---|" + "---|" * len(args.verifiers))
    for tag, by in results.items():
        first = next(iter(by.values()))
        cells = " | ".join(_cell(by[v]) for v in args.verifiers)
        print(f"| {tag} | {first['n']} | {first['accepted']:.2f} | {cells} |")


def _cell(row: dict) -> str:
    parts = [row["auc"], row["within_prompt_auc"], *([row["within_image_auc"]] if "within_image_auc" in row else [])]
    return " / ".join("n/a" if v is None or np.isnan(v) else f"{v:.3f}" for v in parts)


if __name__ == "__main__":
    main()

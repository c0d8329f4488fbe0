"""How well candidate guides order a round's pairs: the share of pairs in which a verifier scores the accepted image
above the rejected one of the same prompt (ties count half), per tag. A guided round re-ranks exactly such
images, so this is the within-prompt AUC that matters for choosing its guide, measured on the model being aligned
rather than on the base model's held-out samples.

    python benchmarks/guide_agreement.py runs/dpo/mg-traj-r2/round1/pairs.parquet \
        --verifiers shapes-parm shapes-parm-located shapes-parm-evidence

Use pairs built without a guide (plain pairing takes the samples in their random order); a guided file's pairs
were already picked by one of the verifiers.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image

from imgcot.dpo.pairs import read_pairs, score_images
from imgcot.geneval.spec import TAGS
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.prompts import parse_prompt


def decode(pngs: list[bytes]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in pngs]))


def agreement(chosen: np.ndarray, rejected: np.ndarray) -> float:
    return float(((chosen > rejected) + 0.5 * (chosen == rejected)).mean()) if len(chosen) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", help="a pairs.parquet built without a guide")
    parser.add_argument("--verifiers", nargs="+", required=True, help="PARM names or folders")
    args = parser.parse_args()
    pairs = read_pairs(args.pairs)
    if pairs.guided:
        print("warning: a guide picked these pairs; its own agreement is inflated")
    tags = np.array([parse_prompt(p)["tag"] for p in pairs.prompts])
    table = {}
    for name in args.verifiers:
        verifier = load_verifier("parm", name)
        with torch.no_grad():
            chosen = score_images(verifier, pairs.prompts, decode(pairs.chosen_png)).numpy()
            rejected = score_images(verifier, pairs.prompts, decode(pairs.rejected_png)).numpy()
        table[name] = {t: agreement(chosen[tags == t], rejected[tags == t]) for t in TAGS}
        table[name]["all"] = agreement(chosen, rejected)
    print(f"pairs: {args.pairs} ({len(pairs)}); share of pairs ordered correctly\n")
    print("| tag | pairs | " + " | ".join(args.verifiers) + " |")
    print("|---|---|" + "---|" * len(args.verifiers))
    for tag in (*TAGS, "all"):
        n = len(tags) if tag == "all" else int((tags == tag).sum())
        print(f"| {tag} | {n} | " + " | ".join(f"{table[v][tag]:.3f}" for v in args.verifiers) + " |")


if __name__ == "__main__":
    main()

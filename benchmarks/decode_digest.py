"""One SHA-256 over a generator's images: 16 candidates for each of 4 prompts batched, the same prompts one at a
time, and the PRM and PARM picks among 6 candidates. Run it in two checkouts to show a speed change kept the images.

    python benchmarks/decode_digest.py --model shapes-ar
    PYTHONPATH=<other checkout>/src python benchmarks/decode_digest.py --model shapes-ar
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import torch

from imgcot.generators.registry import load_generator
from imgcot.generators.run import generate
from imgcot.search import candidate_seeds, run_strategy
from imgcot.verifiers.registry import load_verifier

PROMPTS = [
    "a photo of a red star and a blue circle",
    "a photo of three hearts",
    "a photo of a cross below a square",
    "a photo of a green triangle",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-ar")
    parser.add_argument("--parm", default="shapes-ar-parm", help="PARM verifier for the PARM picks")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    generator = load_generator(args.model)
    digest = hashlib.sha256()
    batched, _ = generate(generator, [p for p in PROMPTS for _ in range(16)], list(range(64)), 64)
    single, _ = generate(generator, PROMPTS, [0, 16, 32, 48], 1)
    digest.update(batched.numpy().tobytes())
    digest.update(single.numpy().tobytes())
    seeds = [candidate_seeds(5 + i, 6) for i in range(len(PROMPTS))]
    for name, verifier in (("prm", load_verifier("prm")), ("parm", load_verifier("parm", args.parm))):
        for result in run_strategy(name, generator, PROMPTS, seeds, verifier):
            digest.update(np.ascontiguousarray(result.image).tobytes())
    print(f"{args.model}: {digest.hexdigest()}")


if __name__ == "__main__":
    main()

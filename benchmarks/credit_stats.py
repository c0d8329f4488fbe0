"""How a step-judged pairs file credits its rejected images: where the guide first calls each path hopeless, and
which share of tokens `--credit until-failure` and `--credit failure-preview` score.

    python benchmarks/credit_stats.py runs/dpo/mg-r3-fpreview-s0/round1/pairs.parquet
"""

from __future__ import annotations

import argparse

import torch

from imgcot.dpo.pairs import POTENTIAL_THRESHOLD, credited_tokens, failure_steps, previewed_tokens, read_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", help="a pairs.parquet built with --judge-steps")
    pairs = read_pairs(parser.parse_args().pairs, images=False)
    if pairs.rejected_potential is None or pairs.rejected_previews is None:
        raise SystemExit("error: the pairs hold no step judgments with previews (build them with --judge-steps)")
    failure = failure_steps(pairs.rejected_potential)
    steps = pairs.rejected_potential.shape[1]
    hopeless = (pairs.rejected_potential < POTENTIAL_THRESHOLD).any(1).float().mean()
    modal = failure.mode().values
    until = credited_tokens(pairs.rejected_order, failure)
    shown = previewed_tokens(pairs.rejected_order, failure, pairs.rejected_tokens, pairs.rejected_previews)
    later = pairs.rejected_order >= failure[:, None]
    print(f"pairs: {len(pairs)}")
    print(f"rejected images called hopeless at some step: {hopeless:.3f}")
    print(f"most common failure step: {int(modal)} of {steps} ({(failure == modal).float().mean():.3f} of them)")
    print(f"tokens credited: until-failure {until.float().mean():.3f}, failure-preview {shown.float().mean():.3f}")
    kept = (shown & later).sum().item() / max(later.sum().item(), 1)
    print(f"tokens committed after the failure step whose final value the failing preview showed: {kept:.3f}")
    final = pairs.rejected_tokens[:, None]
    shown_by_step = (pairs.rejected_previews == final).float().mean((0, 2))
    committed_by_step = (pairs.rejected_order[:, None] < torch.arange(1, steps + 1)[:, None]).float().mean((0, 2))
    judged = (~pairs.rejected_potential.isnan()).float().mean(0)  # clear ones, or all with --judge-unclear
    print("\n| step | final tokens the preview shows | tokens committed | previews given a potential |")
    print("|---|---|---|---|")
    for step in range(steps):
        print(f"| {step + 1} | {shown_by_step[step]:.3f} | {committed_by_step[step]:.3f} | {judged[step]:.3f} |")


if __name__ == "__main__":
    main()

"""The paper's Table 5 layout on the shapes world (PARM++, shared/method.md section 3), plus the per-round curve.

    python benchmarks/parmpp_table.py --model runs/reflect/sc-maskgit/final --base shapes-maskgit \
        --n 4 --out runs/parmpp/maskgit

Rows: the base generator alone (the shipped one, before self-correction tuning), the self-correction-tuned
generator alone, + ORM (best-of-N), + PARM, + PARM++ without reflection (the reflector only judges; a rejected
image is redrawn from scratch), + PARM++ with reflection (critique-driven correction), at N candidates per image
and `--images-per-prompt` images per prompt, scored with GenEval's rules (overall = mean of the tag accuracies).
The curve gives overall after rounds 0..max_rounds (round 0 = PARM's image; a loop that stopped keeps its image;
with `--select best`, the round judged most aligned so far). `--judge parm` lets PARM's outcome question say
aligned or not, the reflector still writing the critique.
Slots (prompt i, image k) use the candidates candidate_seeds(image_seed(seed, i, k), N) of `imgcot eval`.
Records are appended per chunk of prompts to OUT/records.jsonl, so a killed run resumes where it stopped;
`--prompts dev` uses a prompt set of our own (seed 7), never the benchmark.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from imgcot.generators.registry import load_generator
from imgcot.geneval.judge import judge, tag_accuracies
from imgcot.geneval.spec import TAGS
from imgcot.pipeline import image_seed
from imgcot.reflection.correct import LOCALIZE
from imgcot.reflection.model import load_reflector
from imgcot.search import candidate_seeds, run_strategy
from imgcot.search.reflect import (
    JUDGES,
    MAX_ROUNDS,
    SELECT,
    ParmPlusPlusVerifier,
    as_corrector,
    best_round,
    reflect_and_correct,
)
from imgcot.trace_html import write_trace
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.benchmark import dev_prompts, load_benchmark, subset
from imgcot.worlds.shapes.detector import ShapesDetector

ROWS = ("base", "plain", "orm", "parm", "parm++ w/o reflection", "parm++")
LABELS = {
    "base": "base generator alone",
    "plain": "self-correction-tuned generator alone",
    "orm": "+ ORM (best-of-N)",
    "parm": "+ PARM",
    "parm++ w/o reflection": "+ PARM++ w/o reflection",
    "parm++": "+ PARM++ (reflection)",
}


def _correct(detector, metas, images) -> list[bool]:
    return [bool(judge(m, np.asarray(im), detector)[0]) for m, im in zip(metas, images, strict=True)]


def _per_image(results) -> tuple[list[int], list[int]]:
    return [r.compute.generator_forwards for r in results], [r.compute.verifier_calls for r in results]


def _round_images(result, rounds: int, select: str = "last") -> list[np.ndarray]:
    """The answer had the loop stopped after 0..rounds corrections: the image in hand ("last"; a stopped loop keeps
    its last image) or the round judged most aligned so far ("best")."""
    kept = result.rounds
    if select == "best":
        return [best_round(kept[: r + 1]).image for r in range(rounds + 1)]
    return [kept[min(r, len(kept) - 1)].image for r in range(rounds + 1)]


def run_chunk(args, models, verifiers, metas, slots) -> tuple[list[dict], list]:
    """Records of the slots [(prompt index, image index)] of one chunk."""
    base, tuned = models
    orm, parm_verifier, reflector = verifiers
    detector = ShapesDetector()
    prompts = [metas[i]["prompt"] for i, _ in slots]
    slot_metas = [metas[i] for i, _ in slots]
    seeds = [candidate_seeds(image_seed(args.seed, i, k), args.n) for i, k in slots]
    rows: dict[str, dict] = {}
    if base is not None:
        res = run_strategy("baseline", base, prompts, seeds)
        rows["base"] = {"correct": _correct(detector, slot_metas, [r.image for r in res]), "cost": _per_image(res)}
    res = run_strategy("baseline", tuned, prompts, seeds)
    rows["plain"] = {"correct": _correct(detector, slot_metas, [r.image for r in res]), "cost": _per_image(res)}
    res = run_strategy("orm", tuned, prompts, seeds, orm)
    rows["orm"] = {"correct": _correct(detector, slot_metas, [r.image for r in res]), "cost": _per_image(res)}
    parm = run_strategy("parm", tuned, prompts, seeds, parm_verifier)
    rows["parm"] = {"correct": _correct(detector, slot_metas, [r.image for r in parm]), "cost": _per_image(parm)}
    traced = None
    for name, reflection in (("parm++ w/o reflection", False), ("parm++", True)):
        corrector = as_corrector(tuned, args.localize if reflection else "none")
        res = reflect_and_correct(corrector, copy.deepcopy(parm), seeds, reflector, args.max_rounds, reflection,
                                  args.select)  # fmt: skip
        per_round = [_correct(detector, slot_metas, [_round_images(r, args.max_rounds, args.select)[k] for r in res])
                     for k in range(args.max_rounds + 1)]  # fmt: skip
        final = _correct(detector, slot_metas, [r.image for r in res])  # the answer: last or best round
        rows[name] = {"correct": final, "cost": _per_image(res), "rounds": per_round,
                      "corrections": [len(r.rounds) - 1 for r in res]}  # fmt: skip
        traced = res if reflection else traced
    records = []
    for j, (i, k) in enumerate(slots):
        rec = {"prompt": i, "image": k, "tag": metas[i]["tag"]}
        for name, row in rows.items():
            rec[name] = {"correct": row["correct"][j], "forwards": row["cost"][0][j], "calls": row["cost"][1][j]}
            if "rounds" in row:
                rec[name]["rounds"] = [r[j] for r in row["rounds"]]
                rec[name]["corrections"] = row["corrections"][j]
        records.append(rec)
    return records, traced


def table(records: list[dict], max_rounds: int) -> tuple[str, dict]:
    tags = [r["tag"] for r in records]
    names = [n for n in ROWS if n in records[0]]
    out, lines = {}, []
    head = "| generator / strategy | " + " | ".join(TAGS) + " | overall | fwd / image | verifier calls / image |"
    lines += [head, "|" + "---|" * (len(TAGS) + 4)]
    for name in names:
        acc = tag_accuracies(tags, [r[name]["correct"] for r in records])
        fwd = float(np.mean([r[name]["forwards"] for r in records]))
        calls = float(np.mean([r[name]["calls"] for r in records]))
        out[name] = {**{k: round(v, 4) for k, v in acc.items()}, "forwards_per_image": round(fwd, 1),
                     "verifier_calls_per_image": round(calls, 2)}  # fmt: skip
        cells = " | ".join(f"{acc.get(t, float('nan')):.3f}" for t in TAGS)
        lines.append(f"| {LABELS[name]} | {cells} | **{acc['overall']:.3f}** | {fwd:,.0f} | {calls:.1f} |")
    rounds = " | ".join(str(r) for r in range(max_rounds + 1))
    lines += ["", f"| overall after round | {rounds} | corrected images |", "|" + "---|" * (max_rounds + 3)]
    for name in ("parm++ w/o reflection", "parm++"):
        curve = [tag_accuracies(tags, [r[name]["rounds"][k] for r in records])["overall"]
                 for k in range(max_rounds + 1)]  # fmt: skip
        corrected = float(np.mean([r[name]["corrections"] > 0 for r in records]))
        out[name]["rounds"] = [round(c, 4) for c in curve]
        out[name]["corrected_fraction"] = round(corrected, 4)
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{c:.3f}" for c in curve) + f" | {corrected:.1%} |")
    return "\n".join(lines), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="The self-correction-tuned generator (name or folder).")
    parser.add_argument("--base", default=None, help="The generator before tuning (its plain row; optional).")
    parser.add_argument("--n", type=int, default=4, help="Candidates per image (ORM, PARM).")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--prompts", choices=("benchmark", "dev"), default="benchmark")
    parser.add_argument("--orm", default=None, help="ORM verifier name or folder (default: shipped).")
    parser.add_argument("--parm", default=None, help="PARM verifier name or folder (default: shipped).")
    parser.add_argument("--reflector", default=None, help="Reflector name or folder (default: shipped).")
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS)
    parser.add_argument("--localize", choices=LOCALIZE, default="objects", help="What a correction redraws.")
    parser.add_argument("--select", choices=SELECT, default="last", help="The answer: last image or best round.")
    parser.add_argument("--threshold", type=float, default=None, help="Reflector's P(aligned) cut (default 0.5).")
    parser.add_argument("--judge", choices=JUDGES, default="reflector",
                        help="Who says aligned or not: the reflector, or PARM's outcome question.")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=8, help="Prompts per chunk (one record line each).")
    parser.add_argument("--per-tag", type=int, default=None, help="Only the first prompts of each tag (a quick look).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metas = load_benchmark() if args.prompts == "benchmark" else dev_prompts()
    metas = subset(metas, args.per_tag) if args.per_tag else metas
    models = (load_generator(args.base) if args.base else None, load_generator(args.model))
    reflector = load_reflector(args.reflector)
    if args.threshold is not None:
        reflector.config = replace(reflector.config, threshold=args.threshold)
    parm_verifier = load_verifier("parm", args.parm)
    judged = ParmPlusPlusVerifier(parm_verifier, reflector, args.max_rounds, judge_with=args.judge)
    verifiers = (load_verifier("orm", args.orm), parm_verifier, judged)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "records.jsonl"
    done = (
        {(r["prompt"], r["image"]) for r in map(json.loads, path.read_text().splitlines())}
        if path.is_file()
        else set()
    )
    for start in range(0, len(metas), args.chunk):
        slots = [(i, k) for i in range(start, min(start + args.chunk, len(metas)))
                 for k in range(args.images_per_prompt) if (i, k) not in done]  # fmt: skip
        if not slots:
            continue
        records, traced = run_chunk(args, models, verifiers, metas, slots)
        if start == 0:
            write_trace(traced, args.out / "trace")
        with path.open("a") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
        print(f"prompts {start}..{start + args.chunk - 1} done", file=sys.stderr, flush=True)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    text, summary = table(records, args.max_rounds)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "table.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                     "rows": summary}, indent=1) + "\n")  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

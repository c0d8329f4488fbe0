"""The paper's Tables 1/3 layout on the shapes world: baseline, ORM (zero-shot / fine-tuned), PARM, oracle at N,
from one decoding pass (search/replay.py, checked equal to the live strategies), plus the scaling plot.

    python benchmarks/verification_table.py --model shapes-maskgit --n 20 --out runs/table/maskgit

Each image slot (prompt i, image k) has the N candidates candidate_seeds(image_seed(seed, i, k), N), the same ones
`imgcot eval --strategy S --n N` decodes. Records are cached per chunk under --out, so a killed run resumes.
`--prompts dev` uses a second prompt set of our own (drawn with seed 7), never the benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from imgcot.generators.registry import load_generator
from imgcot.geneval.judge import tag_accuracies
from imgcot.geneval.score import score_folder
from imgcot.geneval.spec import TAGS, dumps, read_metadata
from imgcot.pipeline import eval_generate, image_seed
from imgcot.search.parm import first_clarity_step
from imgcot.search.replay import SlotRecord, choose_baseline, choose_best_of_n, choose_parm, record_slots
from imgcot.verifiers.registry import load_verifier
from imgcot.worlds.shapes.benchmark import dev_prompts, load_benchmark
from imgcot.worlds.shapes.detector import ShapesDetector

SCALING_N = (1, 2, 4, 8, 16, 20)


def _save_chunk(path: Path, slots: list[SlotRecord]) -> None:
    arrays = {"finals": np.stack([s.finals for s in slots]), "correct": np.stack([s.correct for s in slots]),
              "forwards": np.stack([s.forwards for s in slots])}  # fmt: skip
    for field in ("clarity", "potential", "outcome"):
        for name in getattr(slots[0], field):
            arrays[f"{field}.{name}"] = np.stack([getattr(s, field)[name] for s in slots])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps([dumps(s.meta) for s in slots]))


def _load_chunk(path: Path) -> list[SlotRecord]:
    data = np.load(path, allow_pickle=False)
    metas = [json.loads(m) for m in json.loads(path.with_suffix(".json").read_text())]
    fields = {f: {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith(f + ".")}
              for f in ("clarity", "potential", "outcome")}  # fmt: skip
    return [SlotRecord(m, data["finals"][i], data["correct"][i], {k: v[i] for k, v in fields["clarity"].items()},
                       {k: v[i] for k, v in fields["potential"].items()}, data["forwards"][i],
                       {k: v[i] for k, v in fields["outcome"].items()}) for i, m in enumerate(metas)]  # fmt: skip


def collect(args, generator, metas, judges, outcomes) -> list[SlotRecord]:
    slots_meta = [(i, k, m) for i, m in enumerate(metas) for k in range(args.images_per_prompt)]
    records, out = [], args.out / "records"
    out.mkdir(parents=True, exist_ok=True)
    check_settings(args, out)
    detector = ShapesDetector()
    for c, start in enumerate(range(0, len(slots_meta), args.chunk)):
        path = out / f"chunk_{c:05d}.npz"
        if not path.is_file():
            part = slots_meta[start : start + args.chunk]
            bases = [image_seed(args.seed, i, k) for i, k, _ in part]
            chunk = record_slots(generator, [m for _, _, m in part], bases, args.n, judges, outcomes, detector)
            _save_chunk(path, chunk)
            print(f"  chunk {c}: {start + len(part)}/{len(slots_meta)} slots", file=sys.stderr, flush=True)
        records.extend(_load_chunk(path))
    return records


def check_settings(args, out: Path) -> None:
    """Cached records hold the verifiers' scores: refuse to mix them with other settings (exit with one line)."""
    keys = ("model", "n", "images_per_prompt", "seed", "prompts", "chunk", "parm", "orm", "orm_zs")
    settings = {k: getattr(args, k) for k in keys}
    path = out / "settings.json"
    if path.is_file() and json.loads(path.read_text()) != settings:
        sys.exit(f"error: {out} holds records made with other settings ({path}); use another --out")
    path.write_text(json.dumps(settings, indent=1))


def score_extra_orms(records: list[SlotRecord], extras: dict) -> None:
    """Outcome scores of more ORMs on the cached final images (best-of-N needs nothing else; no decoding)."""
    for name, verifier in extras.items():
        for slot in records:
            finals = torch.from_numpy(slot.finals)
            slot.outcome[name] = verifier.score([slot.meta["prompt"]] * len(finals), finals).numpy()


def rows_for(records: list[SlotRecord], n: int, parms: dict[str, int], keeps: tuple[int, ...] = ()) -> dict[str, list]:
    """Each strategy's choice per slot; `parms` maps each PARM judge to its first clarity step; each K in `keeps`
    adds the row NAME-keepK: PARM letting at most K promising paths per image go past the gate."""
    rows = {"baseline": [choose_baseline(s) for s in records]}
    for name in [k for k in records[0].outcome if k.startswith("orm")]:
        rows[name] = [choose_best_of_n(s, n, s.outcome[name]) for s in records]
    for name in parms:
        rows[name] = [choose_parm(s, n, name, s.outcome[name], parms[name]) for s in records]
        for k in keeps:
            rows[f"{name}-keep{k}"] = [choose_parm(s, n, name, s.outcome[name], parms[name], k) for s in records]
    rows["oracle"] = [choose_best_of_n(s, n, s.correct.astype(float)) for s in records]
    return rows


def first_steps(generator, verifiers: dict) -> dict[str, int]:
    """Each PARM judge's first clarity step (search/parm.py), as the live strategy applies it."""
    return {k: first_clarity_step(v, generator.num_steps) for k, v in verifiers.items() if k.startswith("parm")}


def summarize(records, choices) -> dict:
    acc = tag_accuracies([s.meta["tag"] for s in records], [c.correct for c in choices])
    acc["generator_forwards"] = int(sum(c.generator_forwards for c in choices))
    acc["verifier_calls"] = int(sum(c.verifier_calls for c in choices))
    return acc


LABELS = {"baseline": "Baseline (no verifier)", "orm-zs": "+ ORM, zero-shot analogue", "orm": "+ ORM, fine-tuned",
          "oracle": "Oracle (evaluator as verifier)"}  # fmt: skip


def print_table(table: dict[str, dict], n: int) -> None:
    print(f"\n| N = {n} | " + " | ".join(TAGS) + " | overall | generator forwards | verifier calls |")
    print("|---" * (len(TAGS) + 4) + "|")
    for name, acc in table.items():
        label = LABELS.get(name, f"+ {name.upper()}" if not name.startswith("parm") else f"+ {name}")
        cells = " | ".join(f"{acc[t]:.3f}" if t in acc else "-" for t in TAGS)
        print(
            f"| {label} | {cells} | **{acc['overall']:.3f}** | {acc['generator_forwards']:,} | "
            f"{acc['verifier_calls']:,} |"
        )


def plot(scaling: dict[int, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(next(iter(scaling.values())))
    for name in names:
        ns = sorted(scaling)
        left.plot(ns, [scaling[k][name]["overall"] for k in ns], marker="o", label=name)
        right.plot([scaling[k][name]["generator_forwards"] for k in ns], [scaling[k][name]["overall"] for k in ns],
                   marker="o", label=name)  # fmt: skip
    left.set_xlabel("N (candidates per image)")
    right.set_xlabel("generator forward passes (whole benchmark)")
    right.set_xscale("log")
    for ax in (left, right):
        ax.set_ylabel("overall (GenEval rules)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def live_rows(args, generator, metas, records, verifiers: dict) -> dict[str, dict]:
    """Run strategies for real (eval_generate) on the first image of the first --live-prompts prompts: PRM (which
    replay cannot do, it changes the path) and wall time, which only a live run measures. Replayed rows on the same
    slots are printed beside them; a replayed PARM spends exactly the live PARM's forward passes."""
    count = min(args.live_prompts or len(metas), len(metas))
    subset, table = metas[:count], {}
    slots = records[: count * args.images_per_prompt : args.images_per_prompt]  # image 0 of each prompt
    for name in args.live:
        role = "parm" if name.startswith("parm") else name
        folder = args.out / "live" / (name if args.live_batch_size == 64 else f"{name}-b{args.live_batch_size}")
        batch, (judge, _, keep) = args.live_batch_size, name.partition("-keep")  # parm-keepK: PARM with keep=K
        options = {"keep": int(keep)} if keep else None
        compute = eval_generate(
            generator, subset, folder, 1, args.seed, batch, role, args.n, verifiers.get(judge), options=options
        )
        _, summary = score_folder(folder, ShapesDetector())
        table[name] = {"overall": summary["overall"], **compute}
        print(f"  live {name}: {summary['overall']:.3f}", file=sys.stderr, flush=True)
    chosen = rows_for(slots, args.n, first_steps(generator, verifiers), tuple(args.keep))
    replayed = {k: summarize(slots, v) for k, v in chosen.items()}
    print(f"\nlive runs, first image of {count} prompts, N = {args.n}:\n")
    print(
        "| strategy | overall (live) | generator forwards | verifier calls | wall seconds "
        "| overall (replayed) | forwards (replayed) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, row in table.items():
        again = replayed.get(name, {})
        print(
            f"| {name} | {row['overall']:.3f} | {row['generator_forwards']:,} | {row['verifier_calls']:,} | "
            f"{row['wall_seconds']:.1f} | {again.get('overall', float('nan')):.3f} | "
            f"{again.get('generator_forwards', 0):,} |"
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-maskgit")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompts", default="benchmark", help="'benchmark', 'dev' or a metadata file")
    parser.add_argument("--chunk", type=int, default=16, help="image slots decoded together")
    parser.add_argument("--parm", nargs="+", default=["parm=shapes-parm"], help="NAME=VERIFIER for each PARM")
    parser.add_argument("--orm", default="shapes-orm")
    parser.add_argument("--orm-zs", default="shapes-orm-zs")
    parser.add_argument("--prm", default="shapes-prm")
    parser.add_argument("--orm-extra", nargs="*", default=[], help="NAME=VERIFIER: more ORM rows (orm-NAME), scored "
                        "on the cached final images")  # fmt: skip
    parser.add_argument("--keep", nargs="*", type=int, default=[], help="K: also PARM rows with at most K promising "
                        "paths per image past the gate (NAME-keepK; live: parm-keepK)")  # fmt: skip
    parser.add_argument("--live", nargs="*", default=[], help="strategies to also run live: prm, orm, parm, ...")
    parser.add_argument("--live-prompts", type=int, default=0, help="live runs on the first K prompts (0: all)")
    parser.add_argument("--live-batch-size", type=int, default=64, help="live runs: rows per forward pass")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print("command: python " + " ".join(sys.argv))
    metas = {"benchmark": load_benchmark, "dev": dev_prompts}.get(args.prompts, lambda: read_metadata(args.prompts))()
    generator = load_generator(args.model)
    judges = dict(spec.split("=", 1) for spec in args.parm)
    judges = {name: load_verifier("parm", path) for name, path in judges.items()}
    outcomes = {"orm-zs": load_verifier("orm-zs", args.orm_zs), "orm": load_verifier("orm", args.orm), **judges}
    records = collect(args, generator, metas, judges, outcomes)
    extras = {f"orm-{k}": load_verifier("orm", v) for k, v in (spec.split("=", 1) for spec in args.orm_extra)}
    score_extra_orms(records, extras)
    sizes = sorted({n for n in SCALING_N if n <= args.n} | {args.n})
    keeps = tuple(args.keep)
    scaling = {
        n: {k: summarize(records, v) for k, v in rows_for(records, n, first_steps(generator, judges), keeps).items()}
        for n in sizes
    }
    print(f"\nmodel {args.model}, prompts {args.prompts} ({len(metas)}), {args.images_per_prompt} images per prompt")
    print_table(scaling[args.n], args.n)
    print("\nscaling (overall):\n\n| N | " + " | ".join(scaling[1]) + " |\n" + "|---" * (len(scaling[1]) + 1) + "|")
    for n, table in scaling.items():
        print(f"| {n} | " + " | ".join(f"{acc['overall']:.3f}" for acc in table.values()) + " |")
    plot(scaling, args.out / "scaling.png")
    result = {str(k): v for k, v in scaling.items()}
    if args.live:
        lookup = {m["prompt"]: m for m in metas}
        verifiers = {
            **outcomes,
            "prm": load_verifier("prm", args.prm),
            "oracle": load_verifier("oracle", None, lookup.get),
        }
        result["live"] = live_rows(args, generator, metas, records, verifiers)
    (args.out / "table.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out / 'scaling.png'} and {args.out / 'table.json'}")


if __name__ == "__main__":
    main()

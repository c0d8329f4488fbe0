"""Rebuild the shipped shapes benchmark (src/imgcot/worlds/shapes/data/benchmark.jsonl) byte for byte.

python scripts/build_shapes_benchmark.py            # rewrite the shipped file
python scripts/build_shapes_benchmark.py --check    # exit 1 if the shipped file differs from a rebuild
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from imgcot.geneval.layout import write_text_atomic
from imgcot.worlds.shapes.benchmark import SEED, benchmark_path, benchmark_text, build_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=benchmark_path(), help="where to write (default: shipped file)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"generation seed (default: {SEED})")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    entries = build_benchmark(args.seed)
    text = benchmark_text(entries)
    if args.check:
        current = args.out.read_bytes() if args.out.is_file() else b""
        if current != text.encode("utf-8"):
            problem = "differs from" if current else "is missing; compare with"
            print(f"error: {args.out} {problem} a rebuild (seed {args.seed})", file=sys.stderr)
            return 1
        print(f"{args.out}: matches a rebuild ({len(entries)} prompts)")
        return 0
    write_text_atomic(args.out, text)
    counts = ", ".join(f"{tag} {n}" for tag, n in Counter(m["tag"] for m in entries).items())
    print(f"wrote {args.out}: {len(entries)} prompts ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

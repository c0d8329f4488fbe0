"""Judge speed: yes/no scoring from one batched forward pass vs a generate()-based judge, on a tiny VLM.

The judge is a tiny random LLaVA-OneVision (hf/tiny.py) first taught the answer format: `--teach` steps of
imgcot's judge fine-tuning (hf/judge_finetune.py) on the same images with coin-flip yes/no labels, so it answers
"yes"/"no" then its end-of-turn token, as a real judge does, with P(yes) near 0.5 (the hardest case for a sampled
judge's stability). Every judge asks the same outcome question about the same shapes-world renders:

- `one-forward`: imgcot's VLMJudge.score: one batched forward pass, P(yes) from the next-token logits of every
  single-token yes/no spelling, normalised (shared/method.md section 3). Decision: P(yes) >= 0.5.
- `generate, reference`: the paper's reference way: one image at a time, sample up to 100 new tokens at
  temperature 1, parse the answer (first word yes -> yes, no -> no, anything else "malformed").
- `generate, batched greedy`: text generation batched and greedy (deterministic), stopping at end-of-turn.

Speed is the median over `--repeats` runs; stability is the fraction of images with the same decision in every
run. Numbers measure mechanics (passes, batching, sampling), not judgment quality: the weights are random.

    .venv/bin/python benchmarks/judge_speed.py --n 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imgcot.fileio import save_png
from imgcot.geneval.spec import TAGS
from imgcot.hf.judge_finetune import JudgeTrainConfig, finetune_judge
from imgcot.hf.prompts import QUESTIONS
from imgcot.hf.tiny import tiny_llava_onevision
from imgcot.hf.vlm_judge import VLMJudge, VLMJudgeConfig
from imgcot.worlds.shapes.sampler import random_metadata, sample_scene
from imgcot.worlds.shapes.scenes import render

GOAL = 10.0


def shapes_inputs(n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    rng = np.random.default_rng(seed)
    metas = [random_metadata(TAGS[i % len(TAGS)], rng) for i in range(n)]
    images = np.stack([render(sample_scene(m, rng), 32) for m in metas])
    return [m["prompt"] for m in metas], torch.from_numpy(images)


def teach(base: Path, prompts: list[str], images: torch.Tensor, steps: int, tmp: Path, seed: int) -> Path:
    """Fine-tune the random judge a few steps on coin-flip yes/no labels: it learns the answer format only."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (prompt, image) in enumerate(zip(prompts, images.numpy(), strict=True)):
        save_png(image, tmp / "teach" / f"{i:04d}.png")
        rows.append({"image": f"teach/{i:04d}.png", "prompt": prompt, "kind": "orm",
                     "answer": "yes" if rng.random() < 0.5 else "no"})  # fmt: skip
    (tmp / "teach.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = JudgeTrainConfig(steps=steps, batch_size=8, lr=3e-3, checkpoint_every=steps)
    return finetune_judge(base, tmp / "teach.jsonl", tmp / "taught", cfg, VLMJudgeConfig(device="cpu"))


def parse_answer(text: str) -> str:
    words = text.strip().lower().replace(".", " ").replace(",", " ").split()
    return words[0] if words and words[0] in ("yes", "no") else "malformed"


@torch.inference_mode()
def generate_answers(judge: VLMJudge, prompts, images, batch: int, max_new: int, sample: bool, seed: int) -> tuple:
    """(parsed answers, new tokens per image) from model.generate over the outcome question, `batch` at a time."""
    torch.manual_seed(seed)  # benchmark only: the sampled reference judge draws from the global RNG
    answers, lengths = [], []
    for start in range(0, len(prompts), batch):
        part = slice(start, start + batch)
        prefix = judge.encode_prefix(prompts[part], images[part])
        ids, mask = judge.encode_suffixes([QUESTIONS["orm"] + judge.tail] * len(prompts[part]))
        inputs = {**judge._image_inputs(prefix), "input_ids": torch.cat([prefix["input_ids"], ids], 1)}
        inputs["attention_mask"] = torch.cat([prefix["attention_mask"], mask], 1)
        if "mm_token_type_ids" in inputs:
            inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ids)], 1)
        extra = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
        out = judge.model.generate(**inputs, max_new_tokens=max_new, pad_token_id=judge.tokenizer.pad_token_id,
                                   eos_token_id=judge.tokenizer.eos_token_id, **extra)  # fmt: skip
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += judge.tokenizer.batch_decode(new, skip_special_tokens=True)
        lengths += (new != judge.tokenizer.pad_token_id).sum(1).tolist()
    return [parse_answer(a) for a in answers], lengths


def timed(fn, repeats: int) -> tuple[float, list]:
    seconds, outputs = [], []
    for r in range(repeats):
        start = time.perf_counter()
        outputs.append(fn(r))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), outputs


def agreement(decisions: list[list]) -> float:
    """Fraction of images whose decision is the same in every run."""
    return float(np.mean([len(set(col)) == 1 for col in zip(*decisions, strict=True)]))


def compare(judge: VLMJudge, prompts, images, batch_size: int, repeats: int) -> tuple[list, bool]:
    """Table rows (name, seconds, stable, malformed, agrees with one-forward, new tokens) and bit-exactness."""
    judge.score(prompts[:2], images[:2])  # warm-up
    t, probs = timed(lambda r: judge.score(prompts, images), repeats)
    exact = all(torch.equal(probs[0], p) for p in probs)
    mine = [["yes" if x >= 0.5 else "no" for x in p.tolist()] for p in probs]
    rows = [("one-forward (imgcot)", t, agreement(mine), 0.0, 1.0, 1.0)]
    variants = [
        ("generate, reference (batch 1, sampled T=1, <=100 tok)", 1, 100, True),
        (f"generate, batched {batch_size} greedy, <=100 tok", batch_size, 100, False),
    ]
    for name, batch, max_new, sample in variants:
        t, runs = timed(lambda r, b=batch, m=max_new, s=sample: generate_answers(judge, prompts, images, b, m, s, r),
                        repeats)  # fmt: skip
        answers = [a for a, _ in runs]
        malformed = float(np.mean([a == "malformed" for run in answers for a in run]))
        same = float(np.mean([a == b for a, b in zip(answers[0], mine[0], strict=True)]))
        tokens = float(np.mean([n for _, lengths in runs for n in lengths]))
        rows.append((name, t, agreement(answers), malformed, same, tokens))
    return rows, exact


def print_table(title: str, rows: list, n: int) -> None:
    base = rows[0][1]
    print(f"\n{title}\n")
    print("| judge | seconds | images/s | one-forward is faster by | same decision in every run | malformed "
          "| agrees with one-forward | new tokens / image |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, t, agree, malformed, same, tokens in rows:
        print(f"| {name} | {t:.3f} | {n / t:.1f} | {t / base:.1f}x | {agree:.0%} | {malformed:.0%} | {same:.0%} "
              f"| {tokens:.1f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--teach", type=int, default=60, help="fine-tuning steps that teach the answer format")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    prompts, images = shapes_inputs(args.n, args.seed)
    config = VLMJudgeConfig(device="cpu", batch_size=args.batch_size)
    print(f"judge speed: {args.n} shapes-world images, tiny LLaVA-OneVision (hf/tiny.py), cpu, {args.threads} "
          f"thread(s), median of {args.repeats} runs")  # fmt: skip
    print(f"command: .venv/bin/python benchmarks/judge_speed.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        random = tiny_llava_onevision(Path(tmp) / "llava")
        taught = teach(random, prompts, images, args.teach, Path(tmp), args.seed)
        judges = [("random weights: generate() runs to the token cap", random),
                  (f"answer-trained ({args.teach} steps): generate() stops after yes/no", taught)]  # fmt: skip
        for label, folder in judges:
            rows, exact = compare(VLMJudge.from_pretrained(folder, "orm", config), prompts, images,
                                  args.batch_size, args.repeats)  # fmt: skip
            print_table(label, rows, args.n)
            results[label] = (rows[1][1] / rows[0][1], exact)
    print()
    for label, (ratio, exact) in results.items():
        status = "met" if ratio >= GOAL else "NOT met"
        print(f"{label}: one-forward {ratio:.1f}x faster than the reference's generate() judge (goal >= {GOAL:.0f}x: "
              f"{status}); one-forward probabilities bit-identical across runs: {exact}")  # fmt: skip
    return 0 if all(exact for _, exact in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

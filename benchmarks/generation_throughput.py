"""Generation throughput: images/s batched vs one at a time, and achieved FLOP/s against a measured matmul peak.

    python benchmarks/generation_throughput.py --model shapes-maskgit --candidates 16

Batched: the 16 candidates of a prompt share every forward pass. One at a time: `--batch-size 1`, the reference
structure (the paper's code decodes candidates serially). FLOPs are counted analytically from the transformer's
shapes (matmuls and attention, forward only, x2 rows when guidance is on).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from imgcot.generators.registry import load_generator
from imgcot.generators.run import generate
from imgcot.nn import transformer


def forward_flops(generator, rows: int, query_tokens: int, context: int) -> float:
    """Multiply-adds x2 of one forward over `rows` sequences: `query_tokens` new tokens attending to `context`."""
    c = generator.config.transformer
    d, vocab = c.dim, c.image_vocab
    per_token = c.depth * (2 * 3 * d * d + 2 * d * d + 2 * 2 * c.mlp_ratio * d * d + 2 * 2 * context * d)
    return rows * query_tokens * per_token + rows * min(query_tokens, c.image_len) * 2 * d * vocab


def decode_flops(generator, images: int) -> float:
    c = generator.config.transformer
    rows = images * generator.passes_per_forward
    if not generator.causal:  # every step runs the full sequence
        return generator.num_steps * forward_flops(generator, rows, c.seq_len, c.seq_len)
    total = forward_flops(generator, rows, c.text_len + 1, c.text_len + 1)  # prefill
    for i in range(1, c.image_len):
        total += forward_flops(generator, rows, 1, c.text_len + 1 + i)
    return total


def kv_cache_bytes(generator, images: int) -> float:
    """Bytes of cached keys and values that raster decoding reads: every new token attends over all positions before
    it, in every layer, for the cond and uncond rows (fp32). Zero for MaskGIT, which keeps no cache."""
    if not generator.causal:
        return 0.0
    c = generator.config.transformer
    rows = images * generator.passes_per_forward
    positions = sum(c.text_len + 1 + i for i in range(1, c.image_len))
    return 2 * c.depth * rows * c.dim * positions * 4


def memory_bandwidth(megabytes: int = 256, repeats: int = 10) -> float:
    """Bytes/s of a large tensor copy (read + write), the bound on reading a KV cache that does not fit in cache."""
    a = torch.empty(megabytes * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    start = time.perf_counter()
    for _ in range(repeats):
        b.copy_(a)
    return 2 * a.numel() * 4 * repeats / (time.perf_counter() - start)


def matmul_peak(size: int = 1024, repeats: int = 20, trials: int = 5) -> float:
    """FLOP/s of a square fp32 matmul, the best of `trials` timings (the machine is shared: a peak is a maximum)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best


def profile_operators(generator, prompts, seeds, rows: int = 8) -> None:
    """Share of decoding time per torch operator (self time), one batched run of `prompts`."""
    with torch.profiler.profile() as prof:
        generate(generator, prompts, seeds, len(prompts))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"profile of {len(prompts)} images batched (self time):")
    for e in events[:rows]:
        print(f"  {e.key:<55} {100 * e.self_cpu_time_total / total:5.1f}%")


def attention_table(generator, rows_list=(32, 128, 256, 512), repeats: int = 3) -> None:
    """Microseconds per decoded token of one layer's attention, SDPA over the attended prefix of the KV buffers
    against one masked product over the whole buffers (nn.transformer.attend_full_buffer), at several batch rows."""
    c = generator.config.transformer
    heads, head = c.heads, c.dim // c.heads
    positions = range(c.text_len + 1, c.seq_len)

    def prefix(q, keys, values, position):
        return torch.nn.functional.scaled_dot_product_attention(
            q, keys[:, :, : position + 1], values[:, :, : position + 1]
        )

    print("\n| rows | buffer MiB (keys) | SDPA over the prefix, us/token | whole buffer, masked, us/token |")
    print("|---|---|---|---|")
    for rows in rows_list:
        gen = torch.Generator().manual_seed(0)
        keys, values = (torch.randn(rows, heads, c.seq_len, head, generator=gen) for _ in range(2))
        q = torch.randn(rows, heads, 1, head, generator=gen)
        cells = []
        for attend in (prefix, transformer.attend_full_buffer):
            attend(q, keys, values, positions[0])
            start = time.perf_counter()
            for _ in range(repeats):
                for position in positions:
                    attend(q, keys, values, position)
            cells.append(1e6 * (time.perf_counter() - start) / repeats / len(positions))
        print(f"| {rows} | {keys.numel() * 4 / 2**20:.1f} | {cells[0]:.0f} | {cells[1]:.0f} |")
    print(f"(decoding attends whole buffers from {transformer.FULL_BUFFER_ATTENTION_ELEMENTS * 4 / 2**20:.0f} MiB)")


def timed(generator, prompts, seeds, batch_size: int, repeats: int) -> float:
    generate(generator, prompts, seeds, batch_size)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        generate(generator, prompts, seeds, batch_size)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-maskgit")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=4, help="prompts for the large-batch row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top operators (large batch)")
    parser.add_argument(
        "--attention", action="store_true", help="time the two ways raster decoding attends (causal models)"
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    generator = load_generator(args.model)
    prompt = "a photo of a red star and a blue circle"
    seeds = list(range(args.candidates))
    batched = timed(generator, [prompt] * args.candidates, seeds, args.candidates, args.repeats)
    single = timed(generator, [prompt] * args.candidates, seeds, 1, args.repeats)
    many = args.candidates * args.prompts
    big = timed(generator, [prompt] * many, list(range(many)), many, args.repeats)
    peak, bandwidth = matmul_peak(), memory_bandwidth()
    if args.profile:
        profile_operators(generator, [prompt] * many, list(range(many)))
    big_images = generate(generator, [prompt] * many, list(range(many)), many)[0]
    small_images = generate(generator, [prompt] * many, list(range(many)), args.candidates)[0]
    same = torch.equal(big_images, small_images)
    print("command: python " + " ".join(sys.argv))
    print(f"\nmodel {args.model}: {generator.num_steps} steps, guidance {generator.config.decoding.guidance}\n")
    print("| setting | images | seconds | images/s | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|")
    for name, count, seconds in (
        ("one at a time (--batch-size 1)", args.candidates, single),
        (f"batched ({args.candidates} candidates)", args.candidates, batched),
        (f"batched ({args.prompts} prompts x {args.candidates})", many, big),
    ):
        flops = decode_flops(generator, count) / seconds
        print(
            f"| {name} | {count} | {seconds:.3f} | {count / seconds:.1f} | {flops / 1e9:.1f} | "
            f"{100 * flops / peak:.1f}% |"
        )
    print(
        f"\nbatched / one-at-a-time speed-up: {single / batched:.1f}x; "
        f"fp32 matmul peak (1024x1024, best of 5, same run): {peak / 1e9:.1f} GFLOP/s; "
        f"copy bandwidth (256 MB, same run): {bandwidth / 1e9:.1f} GB/s"
    )
    print(f"the {many} images batched are identical to batches of {args.candidates}: {'yes' if same else 'NO'}")
    flops_single = decode_flops(generator, args.candidates) / single
    print(f"speed-up bound (batched at 100% of the matmul peak): {peak / flops_single:.1f}x")
    if generator.causal:  # roofline: the slower of the FLOPs at the matmul peak and the KV cache read at bandwidth
        floor = max(decode_flops(generator, many) / peak, kv_cache_bytes(generator, many) / bandwidth)
        print(
            f"roofline bound for {many} images: {many / floor:.0f} img/s, "
            f"{100 * decode_flops(generator, many) / floor / peak:.0f}% of the matmul peak "
            f"(KV cache read: {kv_cache_bytes(generator, many) / 1e9:.2f} GB)"
        )
    if args.attention and generator.causal:
        attention_table(generator)


if __name__ == "__main__":
    main()

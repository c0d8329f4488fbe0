"""Preference pairs: sample K images per prompt from the current model, label them, pair one accepted with one
rejected image per prompt (shared/method.md section 4), saved as parquet in TRL's preference schema.

Columns: `prompt`, `chosen`, `rejected` (PNG bytes), `chosen_score`, `rejected_score` (the labeller's scores),
`chosen_guide`, `rejected_guide` (the guiding verifier's scores, NaN without one), `chosen_tokens`,
`rejected_tokens` (the generator's token ids, what DPO trains on), `chosen_order`, `rejected_order` (the step at
which the sampler committed each token, for trajectory log-probabilities; optional: older files lack them),
`chosen_potential`, `rejected_potential` (the guide's potential of every step's preview, NaN before the step it
judges clear; only when the guide judged the steps, for step-credited DPO), `rejected_previews` (the rejected image's
token map of every step's preview, T x N flattened; likewise). The file's schema metadata
(`imgcot`) holds the model, labeller, guide and the statistics of the run.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..core import GenState, OutcomeVerifier, StepVerifier
from ..fileio import png_bytes, write_bytes_atomic
from ..generators.base import TokenGenerator
from ..generators.run import run_recording_order
from ..geneval.spec import TAGS, Metadata
from ..pipeline import image_seed
from ..worlds.shapes.benchmark import SEED as BENCHMARK_SEED
from ..worlds.shapes.benchmark import load_benchmark
from ..worlds.shapes.sampler import random_metadata
from .config import DEV_SEED, TRAIN_PROMPT_SEED, PairConfig

COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_score",
    "rejected_score",
    "chosen_guide",
    "rejected_guide",
    "chosen_tokens",
    "rejected_tokens",
)
SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("chosen", pa.binary()),
        ("rejected", pa.binary()),
        ("chosen_score", pa.float64()),
        ("rejected_score", pa.float64()),
        ("chosen_guide", pa.float64()),
        ("rejected_guide", pa.float64()),
        ("chosen_tokens", pa.list_(pa.int32())),
        ("rejected_tokens", pa.list_(pa.int32())),
    ]
)
ORDER_COLUMNS = ("chosen_order", "rejected_order")
ORDER_FIELDS = [(name, pa.list_(pa.int16())) for name in ORDER_COLUMNS]
POTENTIAL_COLUMNS = ("chosen_potential", "rejected_potential")
POTENTIAL_FIELDS = [(name, pa.list_(pa.float32())) for name in POTENTIAL_COLUMNS]
PREVIEWS_FIELD = ("rejected_previews", pa.list_(pa.int32()))
POTENTIAL_THRESHOLD = 0.5  # PARM's cut: a clear step with potential below it is a path PARM would prune
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class PairsError(ValueError):
    """A pairs file is missing, unreadable or lacks the preference schema."""


@dataclass
class Pairs:
    """Pairs in memory: token ids as (P, N) tensors, scores as (P,) float tensors, PNGs optional."""

    prompts: list[str]
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    chosen_score: torch.Tensor
    rejected_score: torch.Tensor
    chosen_guide: torch.Tensor
    rejected_guide: torch.Tensor
    chosen_png: list[bytes] = field(default_factory=list)
    rejected_png: list[bytes] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    chosen_order: torch.Tensor | None = None  # (P, N) decoding step of each token, or None when not recorded
    rejected_order: torch.Tensor | None = None
    chosen_potential: torch.Tensor | None = None  # (P, T) the guide's potential per step, NaN where not judged clear
    rejected_potential: torch.Tensor | None = None
    rejected_previews: torch.Tensor | None = None  # (P, T, N) the token map each step's preview showed

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def guided(self) -> bool:
        return len(self) > 0 and not bool(torch.isnan(self.chosen_guide).any())

    def ranking_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The verifier scores that rank the pair: the guide's where there is one, else the labeller's."""
        if self.guided:
            return self.chosen_guide, self.rejected_guide
        return self.chosen_score, self.rejected_score


def failure_steps(potentials: torch.Tensor, threshold: float = POTENTIAL_THRESHOLD) -> torch.Tensor:
    """(P,) for each trajectory the 1-based step at which its judge first called a clear preview hopeless (potential
    below `threshold`: where PARM's search would prune it), or T when it never did. NaN (not judged clear) never
    counts."""
    steps = potentials.shape[1]
    hopeless = potentials < threshold  # NaN compares False
    first = torch.where(hopeless, torch.arange(1, steps + 1), torch.full_like(hopeless, steps + 1, dtype=torch.long))
    return first.min(1).values.clamp(max=steps)


def credited_tokens(order: torch.Tensor, failure: torch.Tensor) -> torch.Tensor:
    """(P, N) bool: the tokens committed at steps 1..failure (order is 0-based), the decisions that made the path
    fail; the tokens decoded after it are not blamed."""
    return order < failure[:, None]


def previewed_tokens(
    order: torch.Tensor, failure: torch.Tensor, tokens: torch.Tensor, previews: torch.Tensor
) -> torch.Tensor:
    """(P, N) bool: the tokens committed at steps 1..failure, and the later ones whose final value the failing step's
    preview already showed (previews: (P, T, N)). A masked-token preview shows predictions for the tokens not yet
    committed; the failure the judge saw is in them where later steps kept them, and not where they were redrawn.
    For raster order the preview holds only committed tokens, so this equals `credited_tokens`."""
    failing_preview = previews[torch.arange(len(failure)), failure - 1]  # failure is 1-based
    return credited_tokens(order, failure) | (failing_preview == tokens)


# --- prompts -------------------------------------------------------------------------------------------------------
def training_prompts(n: int, seed: int = TRAIN_PROMPT_SEED, exclude_benchmark: bool = False) -> list[Metadata]:
    """`n` tag-balanced prompts drawn by the shapes grammar's sampler from rng(seed); never read from the benchmark.

    Text can coincide with a benchmark prompt (every single_object and counting prompt of the shapes world is in
    it); `exclude_benchmark` drops those, which leaves no single_object or counting prompts at all.
    """
    if seed in (BENCHMARK_SEED, DEV_SEED):
        raise ValueError(f"prompt seed {seed} is the benchmark's ({BENCHMARK_SEED}) or the dev set's ({DEV_SEED})")
    if n < 1:
        raise ValueError(f"the number of prompts must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    held_out = {m["prompt"] for m in load_benchmark()} if exclude_benchmark else set()
    drawn: list[Metadata] = []
    for i in range(100 * n + 1000):
        meta = random_metadata(TAGS[i % len(TAGS)], rng)
        if meta["prompt"] not in held_out:
            drawn.append(meta)
            if len(drawn) == n:
                return drawn
    raise ValueError(f"could not draw {n} prompts outside the benchmark")


# --- sampling and labelling ----------------------------------------------------------------------------------------
@torch.no_grad()
def sample_tokens(
    generator: TokenGenerator,
    prompts: list[str],
    seeds: list[int],
    batch_size: int = 64,
    progress: Progress | None = None,
    judge: StepVerifier | None = None,
    gated: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Final token maps (B, N), images (B, H, W, 3) uint8, decoding orders (B, N), `batch_size` rows per batch, and
    with a step `judge` its potential of every step's preview (B, T), NaN where it did not judge the preview clear
    (unless not `gated`), with the token map each preview showed (B, T, N)."""
    tokens, images, orders, potentials, previews = [], [], [], [], []
    for start in range(0, len(prompts), batch_size):
        part = slice(start, start + batch_size)
        judged: list[torch.Tensor] = []
        shown: list[torch.Tensor] = []
        on_step = None if judge is None else _potential_recorder(generator, judge, judged, shown, gated)
        state, order = run_recording_order(generator, generator.init(prompts[part], seeds[part]), on_step)
        tokens.append(state.tokens.clone())
        images.append(generator.decode(state))
        orders.append(order)
        if judge is not None:
            potentials.append(torch.stack(judged, 1))
            previews.append(torch.stack(shown, 1))
        if progress:
            progress("sampling", min(start + batch_size, len(prompts)), len(prompts))
    judged_steps = (torch.cat(potentials), torch.cat(previews)) if potentials else None
    return torch.cat(tokens), torch.cat(images), torch.cat(orders), judged_steps


def _potential_recorder(
    generator: TokenGenerator,
    judge: StepVerifier,
    into: list[torch.Tensor],
    shown: list[torch.Tensor],
    gated: bool = True,
):
    """A step callback appending the judge's (B,) potential of each preview to `into`, NaN where not judged clear
    (PARM asks the potential question only of clear steps; `gated=False` keeps every potential), and the (B, N) token
    map the preview decodes to `shown`."""

    def record(state: GenState) -> None:
        score = judge.judge(state.prompts, generator.preview(state), state.step, generator.num_steps)
        potential = score.potential.float().cpu()
        if gated:
            potential = torch.where(score.clarity.float().cpu() >= POTENTIAL_THRESHOLD, potential, math.nan)
        into.append(potential)
        shown.append(state.predicted.cpu().clone())

    return record


def score_images(
    verifier: OutcomeVerifier,
    prompts: list[str],
    images: torch.Tensor,
    batch_size: int = 256,
    stage: str = "labelling",
    progress: Progress | None = None,
) -> torch.Tensor:
    """(B,) outcome scores in [0, 1] (the oracle's 0/1, or a learned verifier's P(yes))."""
    scores = []
    for start in range(0, len(prompts), batch_size):
        part = slice(start, start + batch_size)
        scores.append(verifier.score(prompts[part], images[part]).float().cpu())
        if progress:
            progress(stage, min(start + batch_size, len(prompts)), len(prompts))
    return torch.cat(scores) if scores else torch.zeros(0)


def choose_pairs(
    labels: torch.Tensor,
    threshold: float,
    guide: torch.Tensor | None = None,
    per_prompt: int = 1,
    rank: str = "clearest",
    fill: str = "none",
    fill_gap: float = 0.2,
) -> list[tuple[int, int, int]]:
    """(prompt, chosen sample, rejected sample) for every prompt that has both a "yes" and a "no" among its K samples.

    labels, guide: (P, K) scores. Plain: the accepted and the rejected samples in sample order (samples are in
    random order, as in the paper's "pair one yes with one no"). Guided: the accepted ones by the guide's score,
    highest first, and the rejected ones lowest first (`rank="clearest"`) or highest first (`"blind-spots"`: the
    failures the guide mistakes for successes). The i-th accepted pairs with the i-th rejected, up to
    `per_prompt` disjoint pairs per prompt (1: the paper's one pair per prompt). With a guide, `fill` also pairs
    the prompts whose samples were all rejected ("failed"), all accepted ("passed") or either ("both"): the guide's
    best-scored sample against its worst-scored one, if their scores differ by at least `fill_gap`.
    """
    pairs = []
    for p in range(labels.shape[0]):
        accepted = (labels[p] >= threshold).nonzero()[:, 0]
        rejected = (labels[p] < threshold).nonzero()[:, 0]
        if guide is not None and _fills(fill, len(accepted), len(rejected)):
            pairs.extend(_guide_pair(p, guide[p], fill_gap))
            continue
        if guide is not None:
            accepted = accepted[guide[p, accepted].argsort(descending=True, stable=True)]
            rejected = rejected[guide[p, rejected].argsort(descending=rank == "blind-spots", stable=True)]
        count = min(per_prompt, len(accepted), len(rejected))
        pairs.extend((p, int(accepted[i]), int(rejected[i])) for i in range(count))
    return pairs


def _fills(fill: str, n_accepted: int, n_rejected: int) -> bool:
    """Whether `fill` asks the guide to pair a prompt with this many accepted and rejected samples."""
    return (n_accepted == 0 and fill in ("failed", "both")) or (n_rejected == 0 and fill in ("passed", "both"))


def _guide_pair(prompt: int, scores: torch.Tensor, min_gap: float) -> list[tuple[int, int, int]]:
    """The guide's best- against its worst-scored sample of one prompt, or nothing when it barely tells them apart."""
    order = scores.argsort(descending=True, stable=True)
    best, worst = int(order[0]), int(order[-1])
    return [(prompt, best, worst)] if float(scores[best] - scores[worst]) >= min_gap else []


def build_pairs(
    generator: TokenGenerator,
    prompts: list[str],
    config: PairConfig,
    labeler: OutcomeVerifier,
    guide: OutcomeVerifier | None = None,
    progress: Progress | None = None,
) -> Pairs:
    """Sample K images per prompt, label them, pair accepted with rejected images (one pair per prompt by default)."""
    k = config.images_per_prompt
    rows = [p for p in prompts for _ in range(k)]
    seeds = [image_seed(config.sample_seed, i, j) for i in range(len(prompts)) for j in range(k)]
    start = time.perf_counter()
    if config.guide_fill != "none" and guide is None:
        raise ValueError("filling unpaired prompts (guide_fill) needs a guide")
    if config.judge_steps and not callable(getattr(guide, "judge", None)):
        raise ValueError("judging the steps needs a guide that judges steps (a PARM or PRM)")
    step_judge = guide if config.judge_steps else None
    tokens, images, orders, judged = sample_tokens(
        generator, rows, seeds, config.batch_size, progress, step_judge, not config.judge_unclear
    )
    potentials, previews = (None, None) if judged is None else judged
    sampled = time.perf_counter()
    labels = score_images(labeler, rows, images, progress=progress).view(len(prompts), k)
    guides = None if guide is None else score_images(guide, rows, images, stage="guiding", progress=progress)
    guides = None if guides is None else guides.view(len(prompts), k)
    labelled = time.perf_counter()
    chosen = choose_pairs(labels, config.threshold, guides, config.pairs_per_prompt, config.guide_rank,
                          config.guide_fill, config.guide_fill_gap)  # fmt: skip
    index_w = torch.tensor([p * k + w for p, w, _ in chosen], dtype=torch.long)
    index_l = torch.tensor([p * k + l_ for p, _, l_ in chosen], dtype=torch.long)
    nan = torch.full((len(chosen),), math.nan, dtype=torch.float64)
    flat_guides = None if guides is None else guides.reshape(-1).double()
    pixels = images.numpy()
    yes = (labels >= config.threshold).reshape(-1)
    stats = {
        "prompts": len(prompts),
        "images": len(rows),
        "accepted_fraction": round(float((labels >= config.threshold).float().mean()), 4) if len(rows) else 0.0,
        "prompts_all_accepted": int((labels >= config.threshold).all(1).sum()),
        "prompts_all_rejected": int((labels < config.threshold).all(1).sum()),
        "pairs": len(chosen),
        # a filled pair is one the labeller calls the same on both sides
        "guide_filled_pairs": int((yes[index_w] == yes[index_l]).sum()),
        "sample_seconds": round(sampled - start, 2),
        "label_seconds": round(labelled - sampled, 2),
        "images_per_second": round(len(rows) / max(sampled - start, 1e-9), 2),
        "pairs_per_second": round(len(chosen) / max(labelled - start, 1e-9), 3),
    }
    return Pairs(
        prompts=[prompts[p] for p, _, _ in chosen],
        chosen_tokens=tokens[index_w],
        rejected_tokens=tokens[index_l],
        chosen_score=labels.reshape(-1).double()[index_w],
        rejected_score=labels.reshape(-1).double()[index_l],
        chosen_guide=nan if flat_guides is None else flat_guides[index_w],
        rejected_guide=nan.clone() if flat_guides is None else flat_guides[index_l],
        chosen_png=[png_bytes(pixels[i]) for i in index_w.tolist()],
        rejected_png=[png_bytes(pixels[i]) for i in index_l.tolist()],
        info={"config": asdict(config), "stats": stats},
        chosen_order=orders[index_w],
        rejected_order=orders[index_l],
        chosen_potential=None if potentials is None else potentials[index_w],
        rejected_potential=None if potentials is None else potentials[index_l],
        rejected_previews=None if previews is None else previews[index_l],
    )


# --- parquet -------------------------------------------------------------------------------------------------------
def write_pairs(pairs: Pairs, path: str | Path) -> Path:
    """Write the pairs as one parquet file, atomically (a temp sibling, then a rename)."""
    if len(pairs.chosen_png) != len(pairs) or len(pairs.rejected_png) != len(pairs):
        raise ValueError("pairs without their PNG images cannot be written")
    columns = {
        "prompt": pairs.prompts,
        "chosen": pairs.chosen_png,
        "rejected": pairs.rejected_png,
        "chosen_score": pairs.chosen_score.double().tolist(),
        "rejected_score": pairs.rejected_score.double().tolist(),
        "chosen_guide": pairs.chosen_guide.double().tolist(),
        "rejected_guide": pairs.rejected_guide.double().tolist(),
        "chosen_tokens": pairs.chosen_tokens.tolist(),
        "rejected_tokens": pairs.rejected_tokens.tolist(),
    }
    schema = SCHEMA
    if pairs.chosen_order is not None and pairs.rejected_order is not None:
        columns.update({"chosen_order": pairs.chosen_order.tolist(), "rejected_order": pairs.rejected_order.tolist()})
        schema = pa.schema(list(SCHEMA) + [pa.field(n, t) for n, t in ORDER_FIELDS])
    if pairs.chosen_potential is not None and pairs.rejected_potential is not None:
        columns.update({n: getattr(pairs, n).tolist() for n in POTENTIAL_COLUMNS})
        schema = pa.schema(list(schema) + [pa.field(n, t) for n, t in POTENTIAL_FIELDS])
    if pairs.rejected_previews is not None:
        columns[PREVIEWS_FIELD[0]] = pairs.rejected_previews.flatten(1).tolist()
        schema = pa.schema(list(schema) + [pa.field(*PREVIEWS_FIELD)])
    schema = schema.with_metadata({"imgcot": json.dumps(pairs.info)})
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


def read_pairs(path: str | Path, images: bool = True) -> Pairs:
    """Load a pairs file written by `write_pairs` (the PNG columns only when `images`)."""
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"{path}: no such pairs file")
    try:
        schema = pq.read_schema(path)
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise PairsError(f"{path}: not a pairs file (missing columns {', '.join(missing)})")
        wanted = [c for c in COLUMNS if images or c not in ("chosen", "rejected")]
        wanted += [c for c in (*ORDER_COLUMNS, *POTENTIAL_COLUMNS, PREVIEWS_FIELD[0]) if c in schema.names]
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise PairsError(f"{path}: unreadable parquet ({err})") from None
    data = table.to_pydict()
    meta = (schema.metadata or {}).get(b"imgcot")
    info = json.loads(meta) if meta else {}
    try:
        tokens = [_token_tensor(data[c]) for c in COLUMNS[-2:]]
        orders = [_token_tensor(data[c]) if c in data else None for c in ORDER_COLUMNS]
        potentials = [_float_tensor(data[c]) if c in data else None for c in POTENTIAL_COLUMNS]
        previews = _token_tensor(data[PREVIEWS_FIELD[0]]) if PREVIEWS_FIELD[0] in data else None
        if previews is not None and potentials[1] is not None:
            previews = previews.view(len(previews), potentials[1].shape[1], -1)
    except (ValueError, TypeError, RuntimeError):
        raise PairsError(f"{path}: token lists of different lengths") from None
    floats = [torch.tensor(data[c], dtype=torch.float64) for c in COLUMNS[3:7]]
    return Pairs(
        list(data["prompt"]),
        *tokens,
        *floats,
        chosen_png=data.get("chosen", []),
        rejected_png=data.get("rejected", []),
        info=info,
        chosen_order=orders[0],
        rejected_order=orders[1],
        chosen_potential=potentials[0],
        rejected_potential=potentials[1],
        rejected_previews=previews,
    )


def _token_tensor(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long) if rows else torch.zeros((0, 0), dtype=torch.long)


def _float_tensor(rows: list[list[float | None]]) -> torch.Tensor:
    values = [[math.nan if v is None else v for v in row] for row in rows]
    return torch.tensor(values, dtype=torch.float32) if values else torch.zeros((0, 0))

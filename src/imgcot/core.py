"""Shared types: the generator state and the contracts strategies program against (design.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file


@dataclass
class Compute:
    """What a run spent: generator forward passes (rows x passes, CFG counted), verifier calls, seconds."""

    generator_forwards: int = 0
    verifier_calls: int = 0
    wall_seconds: float = 0.0

    def add(self, other: Compute) -> None:
        self.generator_forwards += other.generator_forwards
        self.verifier_calls += other.verifier_calls
        self.wall_seconds += other.wall_seconds


@dataclass(eq=False)
class KVBuffers:
    """Full-length key/value buffers per layer (cond rows, then uncond rows) that raster decoding writes in place, and
    how many positions hold values. Only a state whose cache ends at `written` extends them; any other state (a
    second branch from the same parent, a selection) copies them first, so no state's cache is ever overwritten."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    written: int


@dataclass
class GenState:
    """Decoding state of a batch of rows. Every tensor field has the batch first, so rows select and fork."""

    prompts: list[str]
    seeds: list[int]
    text: torch.Tensor  # (B, L) prompt ids
    tokens: torch.Tensor  # (B, N) committed tokens; generator-specific id for "not yet decided"
    predicted: torch.Tensor  # (B, N) full predicted token map of the last step (the step's preview)
    step: int = 0
    cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # raster AR: KV cache, cond rows
    uncond_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    next_logits: torch.Tensor | None = None  # raster AR: guided logits of the next token (B, V)
    forwards: list[int] = field(default_factory=list)  # per-row generator forward passes so far
    kv_buffers: KVBuffers | None = None  # raster AR: the buffers `cache` views, when this state may extend them

    @property
    def batch(self) -> int:
        return len(self.prompts)

    def select(self, index: list[int] | torch.Tensor) -> GenState:
        """Rows `index` (with repeats allowed) as a new state; tensors are indexed, caches too."""
        idx = torch.as_tensor(index, dtype=torch.long)
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                picked[f.name] = value[idx]
            elif f.name in ("cache", "uncond_cache") and value is not None:
                picked[f.name] = [(k[idx], v[idx]) for k, v in value]
            elif isinstance(value, list):
                picked[f.name] = [value[i] for i in idx.tolist()]
        return replace(self, **picked, kv_buffers=None)  # the indexed cache is a copy

    def fork(self, index: list[int], seeds: list[int]) -> GenState:
        """Copies of rows `index` that continue with new seeds (so branches diverge)."""
        forked = self.select(index)
        forked.seeds = list(seeds)
        return forked


def concat_states(states: list[GenState]) -> GenState:
    """Stack states at the same step into one batch."""
    first = states[0]
    if any(s.step != first.step for s in states):
        raise ValueError("cannot concatenate states at different steps")
    merged = {}
    for f in fields(first):
        values = [getattr(s, f.name) for s in states]
        if isinstance(values[0], torch.Tensor):
            merged[f.name] = torch.cat(values)
        elif f.name in ("cache", "uncond_cache") and values[0] is not None:
            merged[f.name] = [
                (torch.cat([v[i][0] for v in values]), torch.cat([v[i][1] for v in values]))
                for i in range(len(values[0]))
            ]
        elif isinstance(values[0], list):
            merged[f.name] = [x for v in values for x in v]
    return replace(first, **merged, kv_buffers=None)


class StepwiseGenerator(Protocol):
    num_steps: int
    image_size: int

    def init(self, prompts: list[str], seeds: list[int]) -> GenState: ...

    def step(self, state: GenState) -> GenState: ...

    def is_done(self, state: GenState) -> bool: ...

    def preview(self, state: GenState) -> torch.Tensor: ...  # (B, H, W, 3) uint8: the step's intermediate image

    def decode(self, state: GenState) -> torch.Tensor: ...  # (B, H, W, 3) uint8 final images

    def revise(self, state: GenState, keep: torch.Tensor) -> GenState: ...  # redo positions where keep is False

    def log_prob(self, prompts: list[str], tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor: ...


def save_state(state: GenState, folder: str | Path) -> None:
    """Write a decoding state (tensors as safetensors, the rest as JSON) so a run can resume mid-decoding."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"text": state.text, "tokens": state.tokens, "predicted": state.predicted.clone()}
    if state.next_logits is not None:
        tensors["next_logits"] = state.next_logits
    for name in ("cache", "uncond_cache"):
        for i, (k, v) in enumerate(getattr(state, name) or []):
            tensors[f"{name}.{i}.k"], tensors[f"{name}.{i}.v"] = k, v
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "state.safetensors"))
    meta = {"prompts": state.prompts, "seeds": state.seeds, "step": state.step, "forwards": state.forwards}
    (folder / "state.json").write_text(json.dumps(meta))


def load_state(folder: str | Path) -> GenState:
    folder = Path(folder)
    tensors = load_file(str(folder / "state.safetensors"))
    meta = json.loads((folder / "state.json").read_text())
    caches = {}
    for name in ("cache", "uncond_cache"):
        layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith(name + ".")})
        caches[name] = [(tensors[f"{name}.{i}.k"], tensors[f"{name}.{i}.v"]) for i in layers] or None
    return GenState(
        meta["prompts"],
        meta["seeds"],
        tensors["text"],
        tensors["tokens"],
        tensors["predicted"],
        meta["step"],
        caches["cache"],
        caches["uncond_cache"],
        tensors.get("next_logits"),
        meta["forwards"],
    )


@dataclass
class StepScore:
    """A step judge's answers per row, each a probability of "yes" in [0, 1] (shared/method.md section 3)."""

    clarity: torch.Tensor  # (B,) is the step's image clear enough to judge its potential?
    potential: torch.Tensor  # (B,) can this path still end in an image that satisfies the prompt?
    value: torch.Tensor  # (B,) PRM value of the step: will some continuation end correct?


class OutcomeVerifier(Protocol):
    """ORM: P(final image matches prompt)."""

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor: ...  # (B,H,W,3) uint8 -> (B,)


class StepVerifier(Protocol):
    """PRM / PARM: judges a step's intermediate image (the preview) of each row."""

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore: ...


# --- reflection (PARM++, shared/method.md section 3) ---------------------------------------------------------------
CLAUSE_KINDS: tuple[str, ...] = ("missing", "count", "extra", "colour", "relation")


@dataclass(frozen=True)
class Clause:
    """One failed requirement of a prompt, as GenEval's rules find it (geneval/rules.py reasons).

    kinds: ``missing`` (an object asked once is absent), ``count`` (fewer than asked), ``extra`` (more than
    allowed), ``colour`` (present in another colour), ``relation`` (present, wrongly placed)."""

    kind: str
    obj: str  # the object the clause is about
    slot: int = 0  # index of its include clause in the metadata (-1: none)
    color: str | None = None  # the colour the prompt asks for
    count: int = 1  # the count the prompt asks for
    found_color: str | None = None  # colour: the colour seen instead
    found_count: int | None = None  # missing / count / extra: how many were seen
    relation: str | None = None  # relation: what the prompt asks, e.g. "left of"
    target: str | None = None  # relation: the reference object

    def __post_init__(self) -> None:
        if self.kind not in CLAUSE_KINDS:
            raise ValueError(f"unknown clause kind {self.kind!r}; known: {', '.join(CLAUSE_KINDS)}")


@dataclass
class Reflection:
    """A reflector's answer about one image: P(aligned), the failed clauses and the critique built from them."""

    aligned: float  # probability that the image matches the prompt
    clauses: tuple[Clause, ...] = ()
    critique: str = ""
    patches: object | None = None  # (grid, grid) int array: object index seen per token patch (0 none, 1..6)
    threshold: float = 0.5  # the reflector's cut: aligned at or above it is a "yes"

    @property
    def ok(self) -> bool:
        return self.aligned >= self.threshold


class Reflector(Protocol):
    """PARM++'s reflection: per image, aligned or not, what failed, and a critique sentence."""

    def reflect(self, prompts: list[str], images: torch.Tensor) -> list[Reflection]: ...  # (B,H,W,3) uint8


class SelfCorrector(Protocol):
    """Regenerates from (prompt, previous image, reflection): (B,H,W,3) uint8 images, per-row generator forward
    passes and per-row number of image tokens redrawn."""

    def correct(
        self, prompts: list[str], seeds: list[int], images: torch.Tensor, reflections: list[Reflection]
    ) -> tuple[torch.Tensor, list[int], list[int]]: ...

"""DPO training of a generator on preference pairs (shared/method.md section 4): a shapes model or a real one
(`hf-janus:`, `hf-showo:`), whose network is `generator.model` either way.

A frozen copy of the starting model is the reference; AdamW with linear warm-up then cosine decay, gradient
clipping, TRL-style metrics as JSON lines, a checkpoint every `checkpoint_every` steps (policy weights and AdamW
moments as safetensors, counters and config as JSON; no pickle) from which a killed run resumes to the same
weights. Batches and masks are functions of (seed, step), so a resumed run sees what an uninterrupted one saw.
The result is written as a normal generator folder by the generator's own `save_pretrained`: `load_generator(out)`
for a shapes model, `load_generator("hf-janus:<out>")` for a real one (registry.saved_model_name).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..fileio import write_text_atomic
from ..generators.base import TokenGenerator
from ..sampling import row_seed
from ..train.state import has_state, optimizer_tensors, read_state, restore_optimizer, write_state
from .config import DPOConfig
from .logprob import bind, dpo_logps, exact_reference_logps
from .losses import blind_spot_weights, dpo_objective, gap_weights
from .pairs import Pairs, credited_tokens, failure_steps, previewed_tokens

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
RUN_FILE = "dpo.json"
_MASK_SALT = 0xD90


ProgressFn = Callable[[int, int, dict], None]  # (step, total, metrics of the step)


def lr_at(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps (at most a tenth of the run), then cosine decay to 0 at `total`."""
    warmup = min(warmup, total // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """Rows of step `step`: positions [step*B, (step+1)*B) of an endless stream of epochs, each epoch a permutation
    of the n pairs drawn from (seed, epoch). A pure function of its arguments, so a resumed run sees the same data."""
    rows = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(row_seed(seed, epoch, salt=1)))
        rows.append(int(perm[offset]))
    return torch.tensor(rows, dtype=torch.long)


def token_space(generator: TokenGenerator) -> tuple[int, int]:
    """(image tokens, codebook size) of a generator: the shapes models' config, or the real adapters' (imgcot.hf)
    `num_tokens` and `codebook_size`."""
    config = generator.config
    if hasattr(config, "transformer"):
        return config.transformer.image_len, generator.tokenizer.vocab_size
    return generator.num_tokens, generator.codebook_size


def same_tokens(a: TokenGenerator, b: TokenGenerator) -> bool:
    """Whether two generators share kind and tokens (a reference must: DPO compares their log-probs of one image)."""
    if type(a) is not type(b) or token_space(a) != token_space(b):
        return False
    if hasattr(a.config, "tokenizer"):  # the shapes models: the patch tokenizer's settings
        return a.config.tokenizer == b.config.tokenizer
    return a.tokenizer.get_vocab() == b.tokenizer.get_vocab()  # a real model: the same prompt tokens


def check_pairs(pairs: Pairs, generator: TokenGenerator) -> None:
    if len(pairs) == 0:
        raise ValueError("no preference pairs to train on (no prompt had both an accepted and a rejected image)")
    n, vocab = token_space(generator)
    if pairs.chosen_tokens.shape[1] != n or pairs.rejected_tokens.shape[1] != n:
        raise ValueError(f"pairs hold {pairs.chosen_tokens.shape[1]} tokens per image; the model expects {n}")
    for tokens in (pairs.chosen_tokens, pairs.rejected_tokens):
        if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
            raise ValueError(f"pairs hold token ids outside the model's codebook (0..{vocab - 1})")


def check_trajectory(pairs: Pairs, generator: TokenGenerator, config: DPOConfig) -> None:
    """`logp="trajectory"` needs a masked-token generator and pairs that recorded its decoding orders."""
    if config.logp != "trajectory":
        return
    if generator.causal:
        raise ValueError("--logp trajectory is for masked-token generators; the AR log-likelihood is already exact")
    if pairs.chosen_order is None or pairs.rejected_order is None:
        raise ValueError("these pairs hold no decoding orders (built before they were recorded); rebuild them for "
                         "--logp trajectory")  # fmt: skip
    orders = torch.cat([pairs.chosen_order, pairs.rejected_order])
    if int(orders.min()) < 0 or int(orders.max()) >= generator.num_steps:
        raise ValueError(f"the pairs' decoding orders span steps {int(orders.min())}..{int(orders.max())}; "
                         f"the model decodes in {generator.num_steps}")  # fmt: skip


def rejected_credit(pairs: Pairs, generator: TokenGenerator, config: DPOConfig) -> torch.Tensor | None:
    """(P, N) bool: the rejected images' tokens DPO scores under `credit="until-failure"` (those committed up to the
    step where the guide first judged the path hopeless) or "failure-preview" (also the later ones that failing
    preview already showed), or None for plain credit (every token)."""
    if config.credit == "all":
        return None
    if pairs.rejected_potential is None or pairs.rejected_order is None:
        raise ValueError(f"--credit {config.credit} needs pairs whose guide judged every step (build them with a "
                         "PARM guide and --judge-steps)")  # fmt: skip
    if not generator.causal and config.logp != "trajectory":
        raise ValueError(f"--credit {config.credit} on a masked-token model needs --logp trajectory (the random-mask "
                         "estimate has no decoding steps)")  # fmt: skip
    if pairs.rejected_potential.shape[1] != generator.num_steps:
        raise ValueError(f"the pairs' step judgments cover {pairs.rejected_potential.shape[1]} steps; the model "
                         f"decodes in {generator.num_steps}")  # fmt: skip
    failure = failure_steps(pairs.rejected_potential)
    if config.credit == "until-failure":
        return credited_tokens(pairs.rejected_order, failure)
    if pairs.rejected_previews is None:
        raise ValueError("--credit failure-preview needs pairs that recorded every step's preview (built by this "
                         "version with --judge-steps)")  # fmt: skip
    return previewed_tokens(pairs.rejected_order, failure, pairs.rejected_tokens, pairs.rejected_previews)


def pair_guidance(pairs: Pairs, config: DPOConfig) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Per-pair weights (None: plain DPO) and margins from the verifier's score gap (verifier-guided DPO)."""
    chosen, rejected = pairs.ranking_scores()
    gap = (chosen - rejected).float().clamp(min=0.0)
    weights = None
    if config.weighting == "gap":
        weights = gap_weights(chosen.float(), rejected.float(), float(gap.mean()))
    elif config.weighting == "blind":
        if not pairs.guided:  # the labeller's score of a rejected image is below its threshold: nothing to weigh by
            raise ValueError("--weighting blind needs pairs built with a guide (build-pairs --guide parm)")
        weights = blind_spot_weights(rejected.float())
    return weights, config.margin * gap


# --- checkpoints ---------------------------------------------------------------------------------------------------
def unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The state dict with each tensor once (safetensors refuses shared memory) and the names left out: a tied
    weight, e.g. a real model's LM head sharing the token embedding, is stored under its first name only."""
    seen, state, aliases = set(), {}, set()
    for name, value in model.state_dict().items():
        key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.stride())
        if key in seen:
            aliases.add(name)
        else:
            seen.add(key)
            state[name] = value
    return state, aliases


def save_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict) -> None:
    """Policy weights and AdamW moments as safetensors, counters and config as JSON; each file atomically."""
    tensors = {f"policy.{k}": v for k, v in unique_state(model)[0].items()}
    write_state(folder, {**tensors, **optimizer_tensors(optimizer)}, meta)


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    tensors, meta = read_state(folder)
    policy = {k[7:]: v for k, v in tensors.items() if k.startswith("policy.")}
    missing, unexpected = model.load_state_dict(policy, strict=False)
    if unexpected or set(missing) != unique_state(model)[1]:  # only tied aliases may be absent
        raise ValueError(f"{folder}: the checkpoint does not match the model ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected weights)")  # fmt: skip
    restore_optimizer(optimizer, tensors)
    return meta


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a run resumes from."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        write_text_atomic(path, "".join(line + "\n" for line in lines))


# --- the loop ------------------------------------------------------------------------------------------------------
def train_dpo(
    generator: TokenGenerator,
    pairs: Pairs,
    out: str | Path,
    config: DPOConfig,
    reference: TokenGenerator | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    source: dict | None = None,
) -> TokenGenerator:
    """Train a copy of `generator` with DPO against a frozen reference (default: `generator` itself, whose weights
    stay as they are); write the aligned generator to `out` (its save_pretrained folder), metrics.jsonl and
    checkpoint/. `reference` must share the generator's kind and tokenizer."""
    out = Path(out)
    check_pairs(pairs, generator)
    check_trajectory(pairs, generator, config)
    total = config.total_steps(len(pairs))
    policy_model = copy.deepcopy(generator.model).requires_grad_(True)
    policy = bind(generator, policy_model)
    ref = reference or generator  # frozen: only ever run under no_grad, never handed to the optimiser
    if not same_tokens(ref, generator):
        raise ValueError("the reference must be a generator of the same kind with the same tokenizer")
    policy_model.train()  # bind() leaves it in eval mode (the network has no dropout; set for clarity)
    optimizer = torch.optim.AdamW(policy_model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    meta = {"config": asdict(config), "pairs": len(pairs), "total_steps": total, "source": source or {}}
    ckpt, metrics_path = out / CHECKPOINT_DIR, out / METRICS_FILE
    step, elapsed = 0, 0.0
    if has_state(ckpt):
        if not resume:
            raise ValueError(f"{out} holds a DPO checkpoint; pass --resume to continue it or choose another --out")
        saved = json.loads((ckpt / "state.json").read_text())
        differing = sorted(k for k in meta if saved.get(k) != meta[k])
        if differing:
            raise ValueError(f"{ckpt}: made with other settings ({', '.join(differing)}); choose another --out")
        saved = load_training_state(ckpt, policy_model, optimizer)
        step, elapsed = saved["step"], saved["seconds"]
        _truncate_metrics(metrics_path, step)
    elif metrics_path.exists():
        metrics_path.unlink()
    weights, margins = pair_guidance(pairs, config)  # refuses a weighting the pairs cannot give, before any write
    credit = rejected_credit(pairs, generator, config)  # likewise a credit rule
    out.mkdir(parents=True, exist_ok=True)
    ref_cache = None
    if generator.causal:  # exact reference log-likelihoods do not change: compute them once
        ref_cache = exact_reference_logps(ref, pairs.prompts, pairs.chosen_tokens, pairs.rejected_tokens, credit)
    started = time.perf_counter() - elapsed
    while step < total:
        rows = batch_indices(step, config.batch_size, len(pairs), config.seed)
        masks = torch.Generator().manual_seed(row_seed(config.seed, step, _MASK_SALT))
        logps = dpo_logps(
            policy,
            ref,
            [pairs.prompts[i] for i in rows.tolist()],
            pairs.chosen_tokens[rows],
            pairs.rejected_tokens[rows],
            masks,
            config.mask_draws,
            None if ref_cache is None else (ref_cache[0][rows], ref_cache[1][rows]),
            None if config.logp != "trajectory" else (pairs.chosen_order[rows], pairs.rejected_order[rows]),
            config.trajectory_steps,
            None if credit is None else credit[rows],
        )
        batch_weights = None if weights is None else weights[rows]
        loss, metrics = dpo_objective(
            config.loss,
            logps,
            config.beta,
            batch_weights,
            margins[rows],
            config.nll_weight,
            pairs.chosen_tokens.shape[1],
        )
        lr = lr_at(step, config.lr, config.warmup, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(policy_model.parameters(), config.clip))
        optimizer.step()
        step += 1
        seconds = time.perf_counter() - started
        metrics = {"step": step, **metrics, "lr": lr, "grad_norm": grad_norm, "seconds": round(seconds, 3)}
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        if step % config.checkpoint_every == 0 or step == total:
            save_training_state(ckpt, policy_model, optimizer, {**meta, "step": step, "seconds": seconds})
        if progress is not None:
            progress(step, total, metrics)
    aligned = bind(generator, policy_model.eval())
    aligned.save_pretrained(out)
    summary = {**meta, "steps_done": step, "seconds": round(time.perf_counter() - started, 2)}
    write_text_atomic(out / RUN_FILE, json.dumps(summary, indent=2) + "\n")
    return aligned

"""`imgcot dpo ...`: build preference pairs, train DPO, run iterative and verifier-guided DPO (method.md section 4).

Registered in cli.py with `app.add_typer(dpo_app, name="dpo")`; the shared CLI helpers are imported inside the
commands (cli.py imports this module at load time).

Real models (`--model hf-janus:...` / `hf-showo:...`) take the same commands: prompts from any GenEval metadata
file, labels from a real-image verifier (`--verifier hf-vlm:<id>` or `hf-clip:<id>`; the shapes oracle and the
shipped shapes verifiers cannot judge real images), `--device/--dtype` for the generator and
`--judge-device/--judge-dtype` for the verifier, as in `imgcot eval`.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .dpo.config import GUIDE_FILLS, GUIDE_RANKS, TRAIN_PROMPT_SEED, DPOConfig, PairConfig

dpo_app = typer.Typer(
    help="Preference alignment: pairs, DPO, iterative and verifier-guided DPO.", no_args_is_help=True
)

_LABELERS = ("oracle", "orm-zs", "orm", "prm", "parm")
_D_PAIRS, _D_DPO = PairConfig(), DPOConfig()
_MODEL_OPT = typer.Option("shapes-maskgit", "--model", help="Registered model name or generator folder.")
_PROMPTS_OPT = typer.Option(
    "default",
    "--prompts",
    help=f"'default' (prompts drawn by the shapes sampler from --prompt-seed, {TRAIN_PROMPT_SEED}: not the benchmark's"
    " 43 nor the dev set's 7) or a metadata JSONL file (its first --n-prompts lines).",
)
_N_PROMPTS_OPT = typer.Option(_D_PAIRS.n_prompts, "--n-prompts", help="Training prompts.")
_K_OPT = typer.Option(_D_PAIRS.images_per_prompt, "--images-per-prompt", help="Samples K per prompt.")
_LABELER_OPT = typer.Option("oracle", "--labeler", help=f"Who says yes/no: {', '.join(_LABELERS)}.")
_VERIFIER_OPT = typer.Option(
    None,
    "--verifier",
    help="The labeller's verifier: a folder (default: the shipped one), or hf-vlm:<id> / hf-clip:<id> (real models).",
)
_GUIDE_VERIFIER_OPT = typer.Option(
    None, "--guide-verifier", help="The guide's verifier: a folder (default shipped), or hf-vlm:<id> / hf-clip:<id>."
)
_GUIDE_RANK_OPT = typer.Option(
    _D_PAIRS.guide_rank,
    "--guide-rank",
    help="With a guide: clearest (its best yes vs its worst no) or blind-spots (its best yes vs the no it scores"
    " highest; iterate then weighs pairs by that score instead of the score gap).",
)
_GUIDE_FILL_OPT = typer.Option(
    _D_PAIRS.guide_fill,
    "--guide-fill",
    help=f"With a guide ({', '.join(GUIDE_FILLS)}): also pair the prompts whose samples the labeller all rejected"
    " (failed), all accepted (passed) or either (both), the guide's best-scored sample against its worst.",
)
_GUIDE_FILL_GAP_OPT = typer.Option(
    _D_PAIRS.guide_fill_gap, "--guide-fill-gap", help="The guide's least score gap for such a filled pair."
)
_THRESHOLD_OPT = typer.Option(
    _D_PAIRS.threshold,
    "--threshold",
    help="A labeller score >= this is a yes (hf-clip scores are 2.5 x cosine: 0.5 means cosine 0.2).",
)
_PROMPT_SEED_OPT = typer.Option(TRAIN_PROMPT_SEED, "--prompt-seed", help="Seed of the default prompts.")
_SAMPLE_SEED_OPT = typer.Option(_D_PAIRS.sample_seed, "--sample-seed", help="Image seeds image_seed(S, i, k).")
_SAMPLE_BATCH_OPT = typer.Option(_D_PAIRS.batch_size, "--sample-batch-size", help="Rows per decoding batch.")
_PER_PROMPT_OPT = typer.Option(
    _D_PAIRS.pairs_per_prompt, "--pairs-per-prompt", help="Disjoint (yes, no) pairs per prompt (paper: 1)."
)
_EXCLUDE_OPT = typer.Option(
    False, "--exclude-benchmark", help="Drop default prompts whose text is in the shipped benchmark."
)
_LOSS_OPT = typer.Option(_D_DPO.loss, "--loss", help="sigmoid (DPO), ipo or hinge.")
_BETA_OPT = typer.Option(_D_DPO.beta, "--beta", help="DPO temperature beta.")
_LR_OPT = typer.Option(_D_DPO.lr, "--lr", help="Peak learning rate (AdamW, warm-up then cosine).")
_STEPS_OPT = typer.Option(_D_DPO.steps, "--steps", help="Optimisation steps (0: --epochs passes over the pairs).")
_EPOCHS_OPT = typer.Option(_D_DPO.epochs, "--epochs", help="Passes over the pairs when --steps is 0.")
_BATCH_OPT = typer.Option(_D_DPO.batch_size, "--batch-size", help="Pairs per optimisation step.")
_WARMUP_OPT = typer.Option(_D_DPO.warmup, "--warmup", help="Warm-up steps (at most a tenth of the run).")
_DRAWS_OPT = typer.Option(_D_DPO.mask_draws, "--mask-draws", help="Masked model: shared masks averaged.")
_LOGP_OPT = typer.Option(
    _D_DPO.logp, "--logp", help="Masked model: masked (random shared masks) or trajectory (its own decoding order)."
)
_TRAJ_OPT = typer.Option(
    _D_DPO.trajectory_steps, "--trajectory-steps", help="--logp trajectory: steps drawn per pair (0: all)."
)
_NLL_OPT = typer.Option(_D_DPO.nll_weight, "--nll-weight", help="RPO: + this x the chosen images' NLL per token.")
_CREDIT_OPT = typer.Option(
    _D_DPO.credit,
    "--credit",
    help="Tokens of a rejected image DPO pushes down: all; until-failure (those decoded up to the step where the "
    "guide's PARM first judged it hopeless; pairs built with step judgments); or failure-preview (also the later "
    "tokens that failing preview already showed).",
)
_JUDGE_STEPS_OPT = typer.Option(
    False, "--judge-steps", help="The guide also judges every step of every sample (for --credit until-failure)."
)
_JUDGE_UNCLEAR_OPT = typer.Option(
    False,
    "--judge-unclear",
    help="With step judgments, keep the guide's potential of previews it does not judge clear too (so a path can "
    "fail before its preview is clear).",
)
_MARGIN_OPT = typer.Option(_D_DPO.margin, "--margin", help="Per-pair margin = MARGIN x verifier score gap.")
_CKPT_OPT = typer.Option(_D_DPO.checkpoint_every, "--checkpoint-every", help="Steps between checkpoints.")
_SEED_OPT = typer.Option(_D_DPO.seed, "--seed", help="Seed of the data order and the masks.")
# as in `imgcot eval` (cli.py); defined here because cli.py imports this module while it loads
_DEVICE_OPT = typer.Option("auto", "--device", help="Generator device: auto, cpu, cuda or cuda:N (real models).")
_DTYPE_OPT = typer.Option(
    "fp32", "--dtype", help="Generator dtype: fp32, fp16 or bf16 (GPU only; DPO updates want fp32 weights)."
)
_JUDGE_DEVICE_OPT = typer.Option("auto", "--judge-device", help="hf-vlm/hf-clip labeller device (auto: its default).")
_JUDGE_DTYPE_OPT = typer.Option("auto", "--judge-dtype", help="hf-vlm/hf-clip labeller dtype: auto, fp32, fp16, bf16.")


def _bar() -> Progress:
    from .cli import _stderr

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=_stderr, transient=True)


@contextmanager
def _errors():
    from .cli import _user_errors

    with _user_errors():
        yield


def _metas(prompts: str, n_prompts: int, seed: int, exclude: bool, real: bool = False) -> list:
    """Training prompts: the shapes sampler's, or a metadata file's first lines (shapes classes only for a shapes
    model; any GenEval metadata for a real one). Never the shipped benchmark."""
    from .cli import InputError
    from .dpo.pairs import training_prompts
    from .geneval.spec import read_metadata
    from .worlds.shapes.benchmark import benchmark_path, read_shapes_metadata

    if prompts == "default":
        return training_prompts(n_prompts, seed, exclude)
    path = Path(prompts)
    if path.is_file() and path.resolve() == benchmark_path().resolve():
        raise InputError("training prompts must not come from the shipped benchmark; use --prompts default")
    return (read_metadata(path) if real else read_shapes_metadata(path))[:n_prompts]


def _verifier(role: str, name: str | None, metas: list, option: str, model: str = "", judge=None):
    """The labeller (or guide) of role `role`: for a real model only a real-image verifier (hf-vlm: / hf-clip:),
    loaded by `judge` (cli._judge: its own device and dtype) when given."""
    from .cli import InputError, _load_real_judge
    from .generators.registry import is_hf_model
    from .hf import is_hf_verifier
    from .verifiers.registry import load_verifier

    if role not in _LABELERS:
        raise InputError(f"unknown {option} {role!r}; known: {', '.join(_LABELERS)}")
    flag = "--verifier" if option == "--labeler" else "--guide-verifier"
    if is_hf_model(model) and role == "oracle":
        raise InputError(
            f"{option} oracle is the shapes world's evaluator and cannot judge real images; with {model} use "
            f"{option} orm {flag} hf-vlm:<id> (or hf-clip:<id>)"
        )
    if is_hf_model(model) and not is_hf_verifier(name):
        raise InputError(
            f"{option} {role} with {model} needs {flag} hf-vlm:<id> or hf-clip:<id> (the shipped verifiers judge "
            f"shapes-world images only)"
        )
    if judge is not None:
        return _load_real_judge(judge, role, name, flag)
    lookup = {m["prompt"]: m for m in metas}
    return load_verifier(role, name, metadata=lookup.__getitem__)


def _pair_progress(bar: Progress):
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, info="")
        bar.update(tasks[stage], completed=done, total=total)

    return update


def _train_progress(bar: Progress, label: str = "dpo"):
    seen = {"task": None, "last": 0}

    def update(step: int, total: int, metrics: dict) -> None:
        if seen["task"] is None or step <= seen["last"]:  # first call, or a new round's run
            seen["task"] = bar.add_task(label, total=total, info="")
        seen["last"] = step
        m = metrics
        info = f"loss {m['loss']:.3f} margin {m['rewards/margins']:+.3f} acc {m['rewards/accuracies']:.2f}"
        bar.update(seen["task"], completed=step, info=info)

    return update


def _pair_config(
    n_prompts,
    k,
    sample_seed,
    batch,
    exclude,
    prompt_seed,
    per_prompt,
    threshold,
    guide_rank="clearest",
    steps=False,
    unclear=False,
    fill="none",
    fill_gap=0.2,
) -> PairConfig:
    from .cli import InputError, _positive

    _positive("--n-prompts", n_prompts)
    _positive("--sample-batch-size", batch)
    _positive("--pairs-per-prompt", per_prompt)
    if k < 2:
        raise InputError(f"--images-per-prompt must be >= 2 to form pairs, got {k}")
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"--threshold must be in (0, 1] (scores are in [0, 1]), got {threshold}")
    if guide_rank not in GUIDE_RANKS:
        raise InputError(f"unknown --guide-rank {guide_rank!r}; known: {', '.join(GUIDE_RANKS)}")
    if fill not in GUIDE_FILLS:
        raise InputError(f"unknown --guide-fill {fill!r}; known: {', '.join(GUIDE_FILLS)}")
    if not 0.0 < fill_gap <= 1.0:
        raise InputError(f"--guide-fill-gap must be in (0, 1] (scores are in [0, 1]), got {fill_gap}")
    if unclear and not steps:
        raise InputError("--judge-unclear needs step judgments (--judge-steps, or --credit with iterate)")
    return PairConfig(n_prompts=n_prompts, images_per_prompt=k, prompt_seed=prompt_seed, sample_seed=sample_seed,
                      batch_size=batch, threshold=threshold, pairs_per_prompt=per_prompt,
                      exclude_benchmark=exclude, guide_rank=guide_rank, judge_steps=steps,
                      judge_unclear=unclear, guide_fill=fill, guide_fill_gap=fill_gap)  # fmt: skip


@dpo_app.command("build-pairs")
def build_pairs_cmd(
    model: str = _MODEL_OPT,
    prompts: str = _PROMPTS_OPT,
    n_prompts: int = _N_PROMPTS_OPT,
    images_per_prompt: int = _K_OPT,
    labeler: str = _LABELER_OPT,
    verifier: str | None = _VERIFIER_OPT,
    guide: str | None = typer.Option(None, "--guide", help="Re-rank each prompt's samples with this verifier role."),
    guide_verifier: str | None = _GUIDE_VERIFIER_OPT,
    guide_rank: str = _GUIDE_RANK_OPT,
    guide_fill: str = _GUIDE_FILL_OPT,
    guide_fill_gap: float = _GUIDE_FILL_GAP_OPT,
    judge_steps: bool = _JUDGE_STEPS_OPT,
    judge_unclear: bool = _JUDGE_UNCLEAR_OPT,
    prompt_seed: int = _PROMPT_SEED_OPT,
    sample_seed: int = _SAMPLE_SEED_OPT,
    sample_batch_size: int = _SAMPLE_BATCH_OPT,
    pairs_per_prompt: int = _PER_PROMPT_OPT,
    exclude_benchmark: bool = _EXCLUDE_OPT,
    threshold: float = _THRESHOLD_OPT,
    out: Path = typer.Option(..., "--out", help="Pairs parquet file to write."),
    device: str = _DEVICE_OPT,
    dtype: str = _DTYPE_OPT,
    judge_device: str = _JUDGE_DEVICE_OPT,
    judge_dtype: str = _JUDGE_DTYPE_OPT,
) -> None:
    """Sample K images per prompt, label them, pair one accepted with one rejected image per prompt."""
    from .cli import InputError, _judge, _placement
    from .dpo.pairs import build_pairs, write_pairs
    from .generators.registry import is_hf_model, load_generator

    with _errors():
        if judge_steps and guide is None:
            raise InputError("--judge-steps needs --guide parm (the guide judges the steps)")
        if guide_fill != "none" and guide is None:
            raise InputError("--guide-fill needs --guide (the guide pairs the prompts the labeller leaves unpaired)")
        config = _pair_config(n_prompts, images_per_prompt, sample_seed, sample_batch_size, exclude_benchmark,
                              prompt_seed, pairs_per_prompt, threshold, guide_rank, judge_steps,
                              judge_unclear, guide_fill, guide_fill_gap)  # fmt: skip
        place, loader = _placement(device, dtype), _judge(judge_device, judge_dtype)
        metas = _metas(prompts, n_prompts, prompt_seed, exclude_benchmark, is_hf_model(model))
        judge = _verifier(labeler, verifier, metas, "--labeler", model, loader)
        ranker = None if guide is None else _verifier(guide, guide_verifier, metas, "--guide", model, loader)
        generator = load_generator(model, place)
        with _bar() as bar:
            pairs = build_pairs(generator, [m["prompt"] for m in metas], config, judge, ranker, _pair_progress(bar))
        pairs.info.update({"model": model, "labeler": labeler, "verifier": verifier, "guide": guide,
                           "guide_verifier": guide_verifier, "prompts": prompts})  # fmt: skip
        write_pairs(pairs, out)
    s = pairs.info["stats"]
    typer.echo(
        f"wrote {s['pairs']} pairs from {s['prompts']} prompts x {images_per_prompt} images to {out} "
        f"(accepted {s['accepted_fraction']:.1%}; all-yes {s['prompts_all_accepted']}, all-no "
        f"{s['prompts_all_rejected']}; sampling {s['images_per_second']} images/s, {s['pairs_per_second']} pairs/s)"
    )


def _dpo_config(
    loss,
    beta,
    lr,
    steps,
    epochs,
    batch,
    warmup,
    draws,
    weighting,
    margin,
    every,
    seed,
    nll=0.0,
    logp="masked",
    traj=0,
    credit="all",
) -> DPOConfig:
    return DPOConfig(loss=loss, beta=beta, lr=lr, steps=steps, epochs=epochs, batch_size=batch, warmup=warmup,
                     mask_draws=draws, weighting=weighting, margin=margin, checkpoint_every=every,
                     seed=seed, nll_weight=nll, logp=logp, trajectory_steps=traj, credit=credit)  # fmt: skip


@dpo_app.command("train")
def train_cmd(
    model: str = _MODEL_OPT,
    pairs: Path = typer.Option(..., "--pairs", help="Pairs parquet file (imgcot dpo build-pairs)."),
    out: Path = typer.Option(..., "--out", help="Run folder; becomes a generator folder usable as --model."),
    reference: str | None = typer.Option(
        None, "--reference", help="Reference model (default: --model), on the same --device/--dtype."
    ),
    loss: str = _LOSS_OPT,
    beta: float = _BETA_OPT,
    lr: float = _LR_OPT,
    steps: int = _STEPS_OPT,
    epochs: float = _EPOCHS_OPT,
    batch_size: int = _BATCH_OPT,
    warmup: int = _WARMUP_OPT,
    mask_draws: int = _DRAWS_OPT,
    logp: str = _LOGP_OPT,
    trajectory_steps: int = _TRAJ_OPT,
    weighting: str = typer.Option(
        _D_DPO.weighting, "--weighting", help="none, gap (verifier score gap) or blind (its score of the rejected)."
    ),
    margin: float = _MARGIN_OPT,
    credit: str = _CREDIT_OPT,
    nll_weight: float = _NLL_OPT,
    checkpoint_every: int = _CKPT_OPT,
    seed: int = _SEED_OPT,
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpoint in --out."),
    device: str = _DEVICE_OPT,
    dtype: str = _DTYPE_OPT,
) -> None:
    """Train DPO from --model on the pairs against a frozen reference; write a generator folder to --out."""
    from .cli import _placement
    from .dpo.pairs import read_pairs
    from .dpo.train import train_dpo
    from .generators.registry import load_generator, saved_model_name

    with _errors():
        config = _dpo_config(loss, beta, lr, steps, epochs, batch_size, warmup, mask_draws, weighting, margin,
                             checkpoint_every, seed, nll_weight, logp, trajectory_steps, credit)  # fmt: skip
        place = _placement(device, dtype)
        data = read_pairs(pairs, images=False)
        generator = load_generator(model, place)
        ref = load_generator(reference, place) if reference is not None else None
        source = {"model": model, "pairs": str(pairs), "reference": reference or model}
        with _bar() as bar:
            train_dpo(generator, data, out, config, ref, resume, _train_progress(bar), source)
    last = (out / "metrics.jsonl").read_text().splitlines()[-1]
    typer.echo(f"aligned generator: {out} (use --model {saved_model_name(model, out)}); last step: {last}")


@dpo_app.command("iterate")
def iterate_cmd(
    model: str = _MODEL_OPT,
    rounds: int = typer.Option(3, "--rounds", help="Rounds of sample -> label -> pair -> train."),
    guided: bool = typer.Option(False, "--guided", help="Verifier-guided: re-rank and weight pairs by --guide."),
    guide: str = typer.Option("parm", "--guide", help="Guiding verifier role for --guided."),
    guide_verifier: str | None = _GUIDE_VERIFIER_OPT,
    guide_rank: str = _GUIDE_RANK_OPT,
    guide_fill: str = _GUIDE_FILL_OPT,
    guide_fill_gap: float = _GUIDE_FILL_GAP_OPT,
    reference: str = typer.Option("round", "--reference", help="round (each round's start model) or base."),
    out: Path = typer.Option(..., "--out", help="Run folder (round1/..); becomes the final generator folder."),
    prompts: str = _PROMPTS_OPT,
    n_prompts: int = _N_PROMPTS_OPT,
    images_per_prompt: int = _K_OPT,
    labeler: str = _LABELER_OPT,
    verifier: str | None = _VERIFIER_OPT,
    prompt_seed: int = _PROMPT_SEED_OPT,
    sample_seed: int = _SAMPLE_SEED_OPT,
    sample_batch_size: int = _SAMPLE_BATCH_OPT,
    pairs_per_prompt: int = _PER_PROMPT_OPT,
    exclude_benchmark: bool = _EXCLUDE_OPT,
    loss: str = _LOSS_OPT,
    beta: float = _BETA_OPT,
    lr: float = _LR_OPT,
    steps: int = _STEPS_OPT,
    epochs: float = _EPOCHS_OPT,
    batch_size: int = _BATCH_OPT,
    warmup: int = _WARMUP_OPT,
    mask_draws: int = _DRAWS_OPT,
    logp: str = _LOGP_OPT,
    trajectory_steps: int = _TRAJ_OPT,
    margin: float = _MARGIN_OPT,
    credit: str = _CREDIT_OPT,
    judge_unclear: bool = _JUDGE_UNCLEAR_OPT,
    nll_weight: float = _NLL_OPT,
    checkpoint_every: int = _CKPT_OPT,
    seed: int = _SEED_OPT,
    threshold: float = _THRESHOLD_OPT,
    device: str = _DEVICE_OPT,
    dtype: str = _DTYPE_OPT,
    judge_device: str = _JUDGE_DEVICE_OPT,
    judge_dtype: str = _JUDGE_DTYPE_OPT,
) -> None:
    """Iterative DPO over --rounds rounds (rerun the same command to resume); --guided for verifier-guided DPO."""
    from .cli import InputError, _judge, _placement, _positive
    from .dpo.iterate import IterateConfig, iterate_dpo
    from .generators.registry import is_hf_model, saved_model_name

    with _errors():
        _positive("--rounds", rounds)
        if credit != "all" and not guided:
            raise InputError(f"--credit {credit} needs --guided (the guide's PARM judges every step)")
        if guide_fill != "none" and not guided:
            raise InputError("--guide-fill needs --guided (the guide pairs the prompts the labeller leaves unpaired)")
        pair_cfg = _pair_config(n_prompts, images_per_prompt, sample_seed, sample_batch_size, exclude_benchmark,
                                prompt_seed, pairs_per_prompt, threshold, guide_rank,
                                credit != "all", judge_unclear, guide_fill, guide_fill_gap)  # fmt: skip
        weighting = ("gap" if guide_rank == "clearest" else "blind") if guided else "none"
        dpo_cfg = _dpo_config(loss, beta, lr, steps, epochs, batch_size, warmup, mask_draws, weighting, margin,
                              checkpoint_every, seed, nll_weight, logp, trajectory_steps, credit)  # fmt: skip
        config = IterateConfig(rounds, reference, pair_cfg, dpo_cfg)
        place, loader = _placement(device, dtype), _judge(judge_device, judge_dtype)
        metas = _metas(prompts, n_prompts, prompt_seed, exclude_benchmark, is_hf_model(model))
        judge = _verifier(labeler, verifier, metas, "--labeler", model, loader)
        ranker = _verifier(guide, guide_verifier, metas, "--guide", model, loader) if guided else None
        describe = {"labeler": labeler, "verifier": verifier, "guide": guide if guided else None,
                    "guide_verifier": guide_verifier if guided else None, "prompts_source": prompts}  # fmt: skip

        def report(r: int, record: dict) -> None:
            p, t = record["pairs"], record["train"]
            typer.echo(f"round {r}: {p.get('pairs')} pairs (accepted {p.get('accepted_fraction', 0):.1%}), "
                       f"{t['steps_done']} steps in {t['seconds']:.0f} s")  # fmt: skip

        with _bar() as bar:
            iterate_dpo(model, [m["prompt"] for m in metas], out, config, judge, ranker, describe,
                        _pair_progress(bar), _train_progress(bar), report, place)  # fmt: skip
    typer.echo(f"aligned generator after {rounds} round(s): {out} (use --model {saved_model_name(model, out)})")

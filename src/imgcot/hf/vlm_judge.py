"""A vision-language model as the judge behind every verifier role (`--verifier hf-vlm:<hub id or folder>`).

Any transformers image-text-to-text model with a chat template works (tested: LLaVA-OneVision, Qwen2-VL). Every
answer is P("yes") at the first answer token from ONE forward pass, never sampled (shared/method.md section 3):
the next-token probabilities of every single-token spelling of yes ("yes", "Yes", " yes", ...) and of no are
summed and normalised, P(yes) / (P(yes) + P(no)), computed stably as sigmoid(logsumexp(yes) - logsumexp(no)).

Roles (core.OutcomeVerifier / core.StepVerifier, as verifiers/shapes.py implements them for the shapes world):
- ``orm-zs``, ``orm``: score = the outcome question.
- ``prm``: judge gives value = potential = the PRM question, clarity 1 (a PRM judges every step).
- ``parm``: judge gives clarity and potential (value = potential) from one prefix pass; score = the outcome
  question (PARM's best-of-N').
Every role also answers `reflect` (PARM++): the outcome probability, and for images judged misaligned a critique
generated greedily with a token cap.

Batching: rows are left-padded (decoder-only), and the question is left-padded after the image-and-prompt prefix,
so the last position of every row is its answer position. Position ids come from the attention mask (M-RoPE ids
from the model's own `get_rope_index` for Qwen2-VL), so padding does not move a row's positions. Clarity and
potential share the prefix: it runs once with a KV cache that is then repeated per question, and both question
suffixes run in one more pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..core import Reflection, StepScore
from .loading import load_processor, load_vlm, resolve_device, resolve_dtype
from .prompts import QUESTIONS, describe

JUDGE_CONFIG = "imgcot_judge.json"  # optional judge settings saved next to fine-tuned weights
ROLES = ("orm-zs", "orm", "prm", "parm")
SLOT = "IMGCOTQUESTIONSLOT"  # stands in for the question while the chat template is split around it


@dataclass(frozen=True)
class VLMJudgeConfig:
    batch_size: int = 8  # images per forward pass
    max_critique_tokens: int = 48  # reflection: length cap of the generated critique
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: bf16 on a GPU, fp32 on cpu


# --- pure pieces -------------------------------------------------------------------------------------------------
def answer_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Ids of every spelling of yes and of no that is a single token (lower/capitalised/upper, with/without space)."""

    def single(word: str) -> list[int]:
        ids = set()
        for form in (word, word.capitalize(), word.upper()):
            for text in (form, " " + form):
                tokens = tokenizer.encode(text, add_special_tokens=False)
                if len(tokens) == 1:
                    ids.add(tokens[0])
        return sorted(ids)

    yes, no = single("yes"), single("no")
    if not yes or not no or set(yes) & set(no):
        raise ValueError("the tokenizer has no single-token 'yes' and 'no' answers; this model cannot be a judge")
    return yes, no


def yes_probability(logits: torch.Tensor, yes: list[int], no: list[int]) -> torch.Tensor:
    """(N, V) next-token logits -> (N,) P(yes) / (P(yes) + P(no)), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits[:, yes].logsumexp(-1) - logits[:, no].logsumexp(-1))


def split_template(processor) -> tuple[str, str]:
    """(head, tail) of one user turn holding an image then text, rendered by the model's chat template."""
    if not getattr(processor, "chat_template", None):
        raise ValueError("the processor has no chat template; a judge needs one to phrase its questions")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SLOT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if text.count(SLOT) != 1:
        raise ValueError("the chat template does not place the question text once")
    head, tail = text.split(SLOT)
    return head, tail


def to_pil(images: torch.Tensor | np.ndarray | list) -> list:
    """(B, H, W, 3) uint8 (a tensor, an array, or a list of (H, W, 3) arrays of any sizes) -> PIL images."""
    from PIL import Image

    rows = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    return [Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8)) for a in rows]


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """1D position ids that skip padding: (B, L) mask -> (B, L), 0 at pads."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


# --- the judge ---------------------------------------------------------------------------------------------------
class VLMJudge:
    def __init__(self, model, processor, config: VLMJudgeConfig | None = None, role: str = "parm"):
        if role not in ROLES:
            raise ValueError(f"unknown verifier role {role!r}; known: {', '.join(ROLES)}")
        self.model, self.processor, self.role = model.eval(), processor, role
        self.config = config or VLMJudgeConfig()
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.yes, self.no = answer_token_ids(self.tokenizer)
        self.head, self.tail = split_template(processor)

    @classmethod
    def from_pretrained(cls, path: str | Path, role: str = "parm", config: VLMJudgeConfig | None = None) -> VLMJudge:
        """A hub id or a folder (e.g. written by `finetune_judge`); remote code is never run."""
        config = config or read_judge_config(path)
        device = resolve_device(config.device)
        model = load_vlm(path, device, resolve_dtype(config.dtype, device))
        return cls(model, load_processor(path), config, role)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- encoding ---------------------------------------------------------------------------------------------
    def encode_prefix(self, prompts: list[str], images) -> dict[str, torch.Tensor]:
        """The image and prompt line of every row, left-padded (the processor expands the image placeholder)."""
        texts = [self.head + describe(p) for p in prompts]
        enc = self.processor(images=to_pil(images), text=texts, padding=True, return_tensors="pt")
        dtype = self.model.dtype  # pixel values in the model's dtype (bf16/fp16 on a GPU)
        return {k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device) for k, v in enc.items()}

    def encode_suffixes(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain-text continuations (question, end of turn, assistant header), left-padded: (ids, mask)."""
        enc = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def positions(self, ids: torch.Tensor, mask: torch.Tensor, prefix: dict, repeats: int = 1) -> torch.Tensor:
        """Position ids of rows `ids` whose first part is `prefix` repeated `repeats` times (M-RoPE where used)."""
        rope_index = getattr(getattr(self.model, "model", None), "get_rope_index", None)
        if rope_index is None or "image_grid_thw" not in prefix:
            return mask_positions(mask)
        types = prefix["mm_token_type_ids"].repeat_interleave(repeats, 0)
        types = torch.cat([types, types.new_zeros(ids.shape[0], ids.shape[1] - types.shape[1])], 1)
        grid = prefix["image_grid_thw"].repeat_interleave(repeats, 0)
        return rope_index(ids, mm_token_type_ids=types, image_grid_thw=grid, attention_mask=mask)[0]

    def _image_inputs(self, prefix: dict) -> dict:
        return {k: v for k, v in prefix.items() if k not in ("input_ids", "attention_mask")}

    # --- yes/no probabilities ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def yes_probabilities(self, prompts: list[str], images, kinds: list[str], shared: bool = True) -> torch.Tensor:
        """(B, Q) P(yes) of question kind q about image b, `batch_size` images per pass.

        shared=True: one prefix pass (image + prompt) with a KV cache, then all Q suffixes in one pass.
        shared=False: one full pass per question (the reference computation the shared one must equal).
        """
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        suffixes = [QUESTIONS[k] + self.tail for k in kinds]
        out = []
        for start in range(0, len(prompts), self.config.batch_size):
            part = slice(start, start + self.config.batch_size)
            prefix = self.encode_prefix(prompts[part], images[part])
            if shared and len(kinds) > 1:
                out.append(self._shared(prefix, suffixes))
            else:
                out.append(torch.stack([self._full(prefix, s) for s in suffixes], 1))
        return torch.cat(out).cpu() if out else torch.zeros(0, len(kinds))

    def _full(self, prefix: dict, suffix: str) -> torch.Tensor:
        """One forward pass over prefix + suffix; (B,) P(yes)."""
        batch = prefix["input_ids"].shape[0]
        ids, mask = self.encode_suffixes([suffix] * batch)
        ids = torch.cat([prefix["input_ids"], ids], 1)
        mask = torch.cat([prefix["attention_mask"], mask], 1)
        pos = self.positions(ids, mask, prefix)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=1,
            **self._image_inputs(prefix),
        )  # fmt: skip
        return yes_probability(out.logits[:, -1], self.yes, self.no)

    def _shared(self, prefix: dict, suffixes: list[str]) -> torch.Tensor:
        """Prefix pass with a KV cache, cache repeated per question, one pass over all suffixes; (B, Q)."""
        batch, q = prefix["input_ids"].shape[0], len(suffixes)
        ids, mask = self.encode_suffixes([s for _ in range(batch) for s in suffixes])  # row b*q + k
        full_ids = torch.cat([prefix["input_ids"].repeat_interleave(q, 0), ids], 1)
        full_mask = torch.cat([prefix["attention_mask"].repeat_interleave(q, 0), mask], 1)
        pos = self.positions(full_ids, full_mask, prefix, repeats=q)
        n = prefix["input_ids"].shape[1]
        first = self.model(
            input_ids=prefix["input_ids"], attention_mask=prefix["attention_mask"], position_ids=pos[..., ::q, :n],
            use_cache=True, logits_to_keep=1, **self._image_inputs(prefix),
        )  # fmt: skip
        cache = first.cache
        cache.batch_repeat_interleave(q)
        out = self.model(
            input_ids=ids, attention_mask=full_mask, position_ids=pos[..., n:], cache=cache, use_cache=True,
            logits_to_keep=1,
        )  # fmt: skip
        return yes_probability(out.logits[:, -1], self.yes, self.no).view(batch, q)

    # --- verifier contracts -----------------------------------------------------------------------------------
    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        """(B,) P(the image shows what the prompt asks for): the ORM question, and PARM's final best-of-N'."""
        return self.yes_probabilities(prompts, images, ["orm"])[:, 0]

    def judge(self, prompts: list[str], previews: torch.Tensor, step: int, num_steps: int) -> StepScore:
        if self.role == "prm":
            value = self.yes_probabilities(prompts, previews, ["prm"])[:, 0]
            return StepScore(clarity=torch.ones_like(value), potential=value, value=value.clone())
        probs = self.yes_probabilities(prompts, previews, ["clarity", "potential"])
        return StepScore(clarity=probs[:, 0], potential=probs[:, 1], value=probs[:, 1].clone())

    # --- reflection (PARM++) ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def critique(self, prompts: list[str], images) -> list[str]:
        """What is wrong with each image, generated greedily (never sampled), at most `max_critique_tokens`."""
        texts = []
        for start in range(0, len(prompts), self.config.batch_size):
            part = slice(start, start + self.config.batch_size)
            prefix = self.encode_prefix(prompts[part], images[part])
            ids, mask = self.encode_suffixes([QUESTIONS["reflection"] + self.tail] * len(prompts[part]))
            inputs = {**self._image_inputs(prefix), "input_ids": torch.cat([prefix["input_ids"], ids], 1)}
            inputs["attention_mask"] = torch.cat([prefix["attention_mask"], mask], 1)
            if "mm_token_type_ids" in inputs:
                inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ids)], 1)
            new = self.model.generate(
                **inputs, max_new_tokens=self.config.max_critique_tokens, do_sample=False, num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
            )[:, inputs["input_ids"].shape[1]:]  # fmt: skip
            texts += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return texts

    def reflect(self, prompts: list[str], images) -> list[Reflection]:
        """core.Reflector: P(aligned) of every image (the outcome question); a critique only for the images judged
        misaligned (aligned ones get ''). A VLM names no structured clauses, so `clauses` stays empty."""
        found = [Reflection(aligned=p) for p in self.score(prompts, images).tolist()]
        bad = [i for i, r in enumerate(found) if not r.ok]
        critiques = self.critique([prompts[i] for i in bad], [images[i] for i in bad]) if bad else []
        for i, text in zip(bad, critiques, strict=True):
            found[i].critique = text
        return found


def read_judge_config(path: str | Path) -> VLMJudgeConfig:
    """The judge settings saved in a folder, or the defaults (a hub id or a plain model folder)."""
    file = Path(path) / JUDGE_CONFIG
    if not file.is_file():
        return VLMJudgeConfig()
    data = json.loads(file.read_text())
    known = set(VLMJudgeConfig.__dataclass_fields__)
    return VLMJudgeConfig(**{k: v for k, v in data.get("judge", {}).items() if k in known})


def write_judge_config(folder: str | Path, config: VLMJudgeConfig, extra: dict | None = None) -> None:
    (Path(folder) / JUDGE_CONFIG).write_text(json.dumps({"judge": asdict(config), **(extra or {})}, indent=2))

"""Word-level text tokenizer for shapes prompts: the grammar's closed vocabulary, fixed ids."""

from __future__ import annotations

import torch

from .prompts import NUMBERS, parse_prompt
from .vocab import COLORS, OBJECTS, plural

PAD, NULL = 0, 1  # padding; the "no prompt" token used for classifier-free guidance
SPECIAL = ("<pad>", "<null>")
WORDS: tuple[str, ...] = (
    SPECIAL
    + ("a", "an", "photo", "of", "and", "left", "right", "above", "below")
    + tuple(NUMBERS)
    + OBJECTS
    + tuple(plural(o) for o in OBJECTS)
    + COLORS
)
WORD_IDS = {w: i for i, w in enumerate(WORDS)}
MAX_WORDS = 12


def word_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """Per word id: 1 + the index of the object it names (singular or plural) and 1 + the index of the colour it
    names, 0 for any other word; numbered like the detector's per-patch labels (verifiers.data.patch_labels)."""
    singular = {o: o for o in OBJECTS} | {plural(o): o for o in OBJECTS}
    objects = [1 + OBJECTS.index(singular[w]) if w in singular else 0 for w in WORDS]
    colors = [1 + COLORS.index(w) if w in COLORS else 0 for w in WORDS]
    return torch.tensor(objects), torch.tensor(colors)


def encode_prompt(prompt: str, length: int = MAX_WORDS) -> list[int]:
    """Ids of a canonical shapes prompt, padded to `length`; the prompt is validated by the grammar first."""
    words = parse_prompt(prompt)["prompt"].split()
    if len(words) > length:
        raise ValueError(f"prompt {prompt!r} has {len(words)} words; at most {length} fit")
    return [WORD_IDS[w] for w in words] + [PAD] * (length - len(words))


def encode_prompts(prompts: list[str], length: int = MAX_WORDS) -> torch.Tensor:
    """(B, length) long tensor of prompt ids."""
    return torch.tensor([encode_prompt(p, length) for p in prompts], dtype=torch.long)


def null_prompts(batch: int, length: int = MAX_WORDS) -> torch.Tensor:
    """(B, length) ids of the empty prompt: one NULL then padding."""
    ids = torch.full((batch, length), PAD, dtype=torch.long)
    ids[:, 0] = NULL
    return ids

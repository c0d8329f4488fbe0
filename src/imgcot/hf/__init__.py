"""Real models behind the project's contracts, over transformers (the optional `[hf]` extra; imported lazily).

- vlm_judge.py: `hf-vlm:<hub id or folder>`, a vision-language judge for every verifier role and reflection.
- clip_verifier.py: `hf-clip:<hub id or folder>`, CLIP score as a cheap verifier.
- judge_data.py / judge_finetune.py: training data from a scored GenEval folder and judge fine-tuning (full or LoRA).
- tiny.py: tiny random judges of the real architectures, for tests and benchmarks only.
- beside them: the real generators, the real-image GenEval detector and device placement (devices.py).
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
PREFIXES = ("hf-vlm:", "hf-clip:")


def is_hf_verifier(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIXES)


def _source(spec: str, path: str) -> str:
    """A local folder (user-expanded), or a string that can be a hub id ("name" or "owner/name"); else an error."""
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local)
    if local.exists():
        raise ValueError(f"{spec}: {path} is a file; name a model folder or a hub id")
    if path.startswith((".", "/", "~")) or not HUB_ID.fullmatch(path):
        raise ValueError(f"{spec}: no such folder {path!r} (and not a hub id of the form owner/name)")
    return path


def load_hf_verifier(role: str, spec: str):
    """`hf-vlm:<id or folder>` -> VLMJudge for `role`; `hf-clip:<id or folder>` -> CLIPVerifier (any role)."""
    kind, _, path = spec.partition(":")
    if not path:
        raise ValueError(f"{spec!r}: name a hub id or a folder after '{kind}:'")
    source = _source(spec, path)
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ValueError(f"{spec!r} needs transformers: pip install 'imgcot[hf]'") from None
    try:
        if kind == "hf-vlm":
            from .vlm_judge import VLMJudge

            return VLMJudge.from_pretrained(source, role=role)
        from .clip_verifier import CLIPVerifier

        return CLIPVerifier.from_pretrained(source)
    except OSError as err:  # hub errors: not found, not cached while offline, missing files
        raise OSError(f"{spec}: cannot load: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None

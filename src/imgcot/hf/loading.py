"""Loading and saving transformers models and processors: local folders or hub ids, never remote code.

transformers' LLaVA-OneVision and Qwen2-VL processors also hold a video processor, which needs torchvision. Where
torchvision is missing (a CPU-only torch, e.g. this project's CI), the judge only needs images, so the processor is
rebuilt from its tokenizer and image processor with no video processor (`image_only_processor`); with torchvision
installed, `AutoProcessor` loads it as usual. Both read the same files, so a folder saved either way loads either way.
"""

from __future__ import annotations

import inspect
import json
from importlib.util import find_spec
from pathlib import Path

import torch

PROCESSOR_CONFIG = "processor_config.json"
CHAT_TEMPLATE = "chat_template.jinja"


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; names are checked by hf/devices.py (cpu, cuda, cuda:N)."""
    from .devices import resolve_device as checked

    return checked(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on a GPU, float32 on CPU; otherwise fp32 / bf16 / fp16 (half precision only on a GPU)."""
    from .devices import resolve_dtype as checked

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return checked({"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype), device)


def _sub_processors(cls) -> list[str]:
    return list(cls.get_attributes())


def _optional_file(path: str | Path, name: str) -> str | None:
    """Local path of `name` in a folder or a hub repo (cached or offline-aware), or None when absent."""
    from transformers.utils import cached_file

    return cached_file(
        str(path), name, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False
    )


def _processor_class(path: str | Path, config: dict):
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = config.get("processor_class")
    if name is None:
        model_type = AutoConfig.from_pretrained(str(path), trust_remote_code=False).model_type
        name = PROCESSOR_MAPPING_NAMES.get(model_type)
    cls = getattr(transformers, name or "", None)
    if cls is None:
        raise ValueError(f"{path}: no transformers processor class for this model (found {name!r})")
    return cls


def image_only_class(cls):
    """Processor class `cls`, minus its check that a video processor was given (None is then allowed)."""

    class ImageOnly(cls):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None and "video" in argument_name:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnly.__name__ = ImageOnly.__qualname__ = cls.__name__
    return ImageOnly


def image_only_processor(path: str | Path):
    """The model's own processor class, built from its tokenizer and image processor, without a video processor."""
    from transformers import AutoImageProcessor, AutoTokenizer

    config_file = _optional_file(path, PROCESSOR_CONFIG)
    config = json.loads(Path(config_file).read_text()) if config_file else {}
    cls = _processor_class(path, config)
    parts = _sub_processors(cls)
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in config.items() if k in params and k not in parts and k != "chat_template"}
    template_file = _optional_file(path, CHAT_TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    template = Path(template_file).read_text() if template_file else getattr(tokenizer, "chat_template", None)
    image_processor = AutoImageProcessor.from_pretrained(str(path), trust_remote_code=False)
    given = {"tokenizer": tokenizer, "image_processor": image_processor}
    return image_only_class(cls)(**{p: given.get(p) for p in parts}, chat_template=template, **kwargs)


def load_processor(path: str | Path):
    if find_spec("torchvision") is not None:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(path), trust_remote_code=False)
    return image_only_processor(path)


def save_processor(processor, folder: str | Path) -> None:
    """`save_pretrained`, or for an image-only processor its parts, its settings and its chat template."""
    folder = Path(folder)
    parts = _sub_processors(type(processor))
    if all(getattr(processor, p, None) is not None for p in parts):
        processor.save_pretrained(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    processor.tokenizer.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)
    params = inspect.signature(type(processor).__init__).parameters
    settings = {
        k: getattr(processor, k)
        for k in params
        if k not in parts and k not in ("self", "chat_template", "kwargs") and hasattr(processor, k)
    }
    settings = {k: v for k, v in settings.items() if isinstance(v, (str, int, float, bool, type(None)))}
    (folder / PROCESSOR_CONFIG).write_text(json.dumps({"processor_class": type(processor).__name__, **settings}))
    if processor.chat_template:
        (folder / CHAT_TEMPLATE).write_text(processor.chat_template)


def model_type(path: str | Path) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path), trust_remote_code=False).model_type


def check_model_type(path: str | Path, allowed, what: str) -> None:
    """A clear error when a folder or hub id holds another kind of model than the one asked for."""
    found = model_type(path)
    if found not in allowed:
        raise ValueError(f"{path}: a {found!r} model is not {what}")


def load_vlm(path: str | Path, device: torch.device, dtype: torch.dtype):
    """An image-text-to-text model (AutoModelForImageTextToText) in eval mode; remote code stays off."""
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    check_model_type(
        path, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, "an image-text-to-text model (use hf-clip: for CLIP)"
    )

    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype, trust_remote_code=False)
    return model.to(device).eval()

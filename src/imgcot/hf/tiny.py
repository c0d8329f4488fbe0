"""Tiny random vision-language judges of the real architectures, for tests and benchmarks only.

Each builder makes a random model of a transformers architecture (LLaVA-OneVision, Qwen2-VL, CLIP) from config
objects, with a small byte-level BPE tokenizer trained in memory on the judge's own wording and the shapes
vocabulary, a processor with a chat template of the real model's shape, and saves everything with
`save_pretrained`, so it loads through exactly the path a user's checkpoint takes (`hf-vlm:<folder>`). Nothing is
downloaded. The weights are random: these models test plumbing and numerics, never judgment quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..worlds.shapes.text import WORDS
from .loading import image_only_class, save_processor
from .prompts import QUESTIONS, describe

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAVA_IMAGE = ["<image>", "<video>"]
QWEN_IMAGE = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Chat templates of the real models' shape (a user turn holding an image and text, then the assistant's turn).
_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}IMAGE{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = _TEMPLATE.replace("IMAGE", "<image>\n")
QWEN_TEMPLATE = _TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: the judge's questions, prompt descriptions and both casings of yes/no."""
    words = " ".join(WORDS)
    lines = [describe(f"a photo of {words}")] + list(QUESTIONS.values())
    lines += ["yes no Yes No", " yes no Yes No"] * 50 + ["The image shows the wrong count and colour."]
    return lines


def tiny_tokenizer(specials: list[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer trained in memory; `specials` are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS + specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def _text_config(tokenizer, **extra) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **extra,
    )


def tiny_llava_onevision(folder: str | Path, seed: int = 0) -> Path:
    """A random LLaVA-OneVision (SigLIP vision tower + Qwen2 language model) saved to `folder`."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
    )

    tokenizer = tiny_tokenizer(LLAVA_IMAGE)
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=16,
        patch_size=8,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=dict(model_type="qwen2", **_text_config(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[16, 16], [16, 32], [32, 16], [32, 32]],
        vision_aspect_ratio="anyres_max_4",
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": 16, "width": 16}, image_grid_pinpoints=config.image_grid_pinpoints, do_pad=True
    )
    processor = image_only_class(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=(16 // 8) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_4",
        chat_template=LLAVA_TEMPLATE,
    )
    model.save_pretrained(folder)
    save_processor(processor, folder)
    return Path(folder)


def tiny_qwen2_vl(folder: str | Path, seed: int = 0, version: str = "2") -> Path:
    """A random Qwen2-VL (version "2") or Qwen2.5-VL ("2.5"): a ViT with 2D RoPE and a patch merger (2.5: windowed
    attention) + an M-RoPE language model, saved to `folder`."""
    import transformers as tf

    if version not in ("2", "2.5"):
        raise ValueError(f"unknown Qwen-VL version {version!r}; known: 2, 2.5")
    tokenizer = tiny_tokenizer(QWEN_IMAGE)
    ids = tokenizer.convert_tokens_to_ids
    text = _text_config(tokenizer, rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2]})
    vision = dict(depth=2, hidden_size=32, num_heads=4, patch_size=8, spatial_merge_size=2)
    if version == "2":
        config_cls, model_cls = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration
        processor_cls = tf.Qwen2VLProcessor
        vision.update(embed_dim=32)
    else:
        config_cls, model_cls = tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration
        processor_cls = tf.Qwen2_5_VLProcessor
        vision.update(intermediate_size=64, out_hidden_size=32, window_size=32, fullatt_block_indexes=[1])
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    image_processor = tf.Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=32 * 32
    )
    processor = image_only_class(processor_cls)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE
    )
    model.save_pretrained(folder)
    save_processor(processor, folder)
    return Path(folder)


def tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A random CLIP (ViT image tower + text tower pooled at the end-of-text token) saved to `folder`."""
    from tokenizers.processors import TemplateProcessing
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = tiny_tokenizer(["<|startoftext|>"])
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    ids = tokenizer.convert_tokens_to_ids
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, ids(bos)), (eos, ids(eos))]
    )
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = bos, eos, eos
    tokenizer.padding_side = "right"
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=64, bos_token_id=ids(bos), eos_token_id=ids(eos),
                pad_token_id=ids(eos))  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)  # fmt: skip
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)

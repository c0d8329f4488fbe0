"""Tiny random Janus-Pro and Show-o checkpoints (and a tiny Mask2Former + CLIP pair) for tests and dry runs.

Each builder makes a random model of the real architecture from config objects, saves it in the layout a user's
checkpoint has, and returns the folder, so it loads through exactly the path real weights take (`hf-janus:<folder>`,
`hf-showo:<folder>`, `--detector hf-mask2former:<folder> --clip <folder>`). Nothing is downloaded. The weights are
random: these models test plumbing and numerics, never image quality or scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..worlds.shapes.text import WORDS

JANUS_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜▁pad▁｜>", "<begin_of_image>", "<end_of_image>"]
JANUS_SPECIALS += ["<image_placeholder>"]
PHI_SPECIALS = ["<|endoftext|>"]


def _corpus() -> list[str]:
    words = " ".join(WORDS)
    return [f"a photo of {words}", "a photo of a red star and a blue circle", "<|User|>: \n\n<|Assistant|>:"] * 20


def bpe_tokenizer(specials: list[str], vocab_size: int, **tokens):
    """A byte-level BPE tokenizer trained in memory on shapes prompts; `specials` stay single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)


def tiny_janus(folder: str | Path, seed: int = 0, grid: int = 4) -> Path:
    """A random Janus (Llama LM + SigLIP tower + VQ decoder), `grid` x `grid` image tokens, 16x16 px per grid 4."""
    from transformers import JanusConfig, JanusForConditionalGeneration

    tokenizer = bpe_tokenizer(JANUS_SPECIALS, 320, bos_token=JANUS_SPECIALS[0], pad_token=JANUS_SPECIALS[1])
    config = JanusConfig(
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=8 * grid,
            patch_size=8,
            projection_dim=32,
            num_image_tokens=grid * grid,
        ),
        vq_config=dict(
            embed_dim=8,
            num_embeddings=64,
            base_channels=32,
            channel_multiplier=[1, 1, 2],
            num_res_blocks=1,
            latent_channels=32,
            projection_dim=32,
            image_token_embed_dim=32,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def tiny_showo(folder: str | Path, seed: int = 0) -> Path:
    """A random Show-o in the published layout: config.json + model.safetensors (`showo.*`), llm/ (Phi config and
    a tokenizer without Show-o's additions, like Phi-1.5's), vq/ (MAGVIT-v2 config + `decoder.*`, `encoder.*`,
    `quantize.*` weights). 4x4 image tokens, a 16-code LFQ codebook, 16x16 px images."""
    from safetensors.torch import save_file
    from transformers import PhiConfig, PhiForCausalLM

    from .magvit import MagvitConfig, MagvitDecoder
    from .showo import ShowoLayout

    folder = Path(folder)
    tokenizer = bpe_tokenizer(PHI_SPECIALS, 200, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    layout = ShowoLayout(
        vocab_size=len(tokenizer) + 10 + 16 + 1, llm_vocab_size=len(tokenizer), codebook_size=16, num_vq_tokens=16
    )
    phi = PhiConfig(
        vocab_size=layout.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        partial_rotary_factor=0.5,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    magvit = MagvitConfig(
        ch=32, ch_mult=(1, 1, 2), num_res_blocks=(1, 1, 1), attn_resolutions=(4,), z_channels=4, resolution=16
    )
    torch.manual_seed(seed)
    lm, vq = PhiForCausalLM(phi).eval(), MagvitDecoder(magvit).eval()
    (folder / "llm").mkdir(parents=True, exist_ok=True)
    (folder / "vq").mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "Showo", "w_clip_vit": False, "llm_model_path": "microsoft/phi-1_5", **vars(layout)}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({f"showo.{k}": v.contiguous() for k, v in lm.state_dict().items()}, str(folder / "model.safetensors"))
    PhiConfig(**{**phi.to_dict(), "vocab_size": len(tokenizer)}).save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    (folder / "vq" / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2", **vars(magvit)}) + "\n")
    weights = {f"decoder.{k}": v.contiguous() for k, v in vq.state_dict().items()}
    weights["encoder.conv_in.weight"] = torch.zeros(32, 3, 3, 3)  # the encoder half is present and ignored
    weights["quantize.embedding"] = torch.zeros(16, 4)
    save_file(weights, str(folder / "vq" / "model.safetensors"))
    return folder


def tiny_mask2former(folder: str | Path, seed: int = 0, favour: tuple[str, ...] = ()) -> Path:
    """A random Mask2Former (tiny Swin backbone) with GenEval's 80 COCO labels, saved with save_pretrained. With
    `favour`, the first class gets a large class-logit bias (the next ones smaller) and the mask logits are scaled
    up, so queries detect those classes with scores well above GenEval's thresholds (a detector that finds things)."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    from .geneval_real import COCO_CLASSES

    swin = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=7,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=swin,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        num_queries=8,
        id2label=dict(enumerate(COCO_CLASSES)),
        label2id={n: i for i, n in enumerate(COCO_CLASSES)},
    )
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():
        for rank, name in enumerate(favour):
            model.class_predictor.bias[COCO_CLASSES.index(name)] += 14.0 - 3.0 * rank
        if favour:
            embedder = model.model.transformer_module.decoder.mask_predictor.mask_embedder
            embedder.get_submodule("2.0").weight.mul_(100.0)
    model.save_pretrained(folder)
    return Path(folder)


def tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A random CLIP (ViT + text transformer, 32x32 input) with a BPE tokenizer adding <|startoftext|> and
    <|endoftext|> around each text, saved with save_pretrained."""
    from tokenizers.processors import TemplateProcessing
    from transformers import CLIPConfig, CLIPModel

    specials = ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = bpe_tokenizer(specials, 300, bos_token=specials[0], eos_token=specials[1], pad_token=specials[1])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{specials[0]} $A {specials[1]}", special_tokens=[(specials[0], bos), (specials[1], eos)]
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)

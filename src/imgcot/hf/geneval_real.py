"""GenEval on real images without mmdet: transformers' Mask2Former (COCO instance) + CLIP for colour.

`imgcot geneval score DIR --detector hf-mask2former:<hub id or folder> --clip <hub id or folder>` plugs this
detector into the same rule engine (geneval/rules.py: thresholds 0.3 / 0.9 for counting, at most 16 detections per
class, top-`count` per include clause, position margin 0.1). It follows the official evaluator (Ghosh et al. 2023;
shared/method.md section 6) step by step:

- preprocessing as the official mmdet test pipeline: keep-ratio resize to fit (1333, 800), ImageNet mean/std
  normalisation, zero padding to a multiple of 32;
- Mask2Former's instance post-processing as mmdet's: softmax over classes without "no object", the top 100
  (query, class) pairs over all queries, mask logits upsampled (bilinear) to the padded input, cropped, resized to
  the image, binarised at 0; score = class probability x mean mask probability inside the mask; the box is the
  mask's extent (x2, y2 exclusive). Pairs whose class probability is at most 0.3 are dropped before the mask work:
  their score cannot pass GenEval's lowest threshold (score <= class probability), so no decision changes;
- the overlap rule: the official default `max_overlap = 1` disables it, so none is applied;
- colour: each kept detection's masked crop (object pixels kept, the rest #999999 grey, cropped to its box) goes
  through CLIP (shorter side resized to the CLIP input size, bicubic, centre crop, OpenAI mean/std) and is classified
  among GenEval's ten colours by a zero-shot head: per colour the normalised text embeddings of "a photo of a {c}
  {object}", "a photo of a {c}-colored {object}" and "a photo of a {c} object" averaged and re-normalised; the
  colour with the highest cosine similarity wins.

Class k of the detector is GenEval's k-th COCO name (the detector must have 80 labels in COCO order).

Parity gap with the official tool (not measured here: no real weights on this machine). The official detector is
mmdet 2.x's Mask2Former Swin-S COCO checkpoint; transformers' facebook/mask2former-swin-small-coco-instance is a
conversion of the original Mask2Former Swin-S weights, a different training run from mmdet's, so its detections and
scores differ somewhat (expect GenEval scores within a few points, not identical). Resizing and interpolation are
done in torch rather than OpenCV (sub-pixel differences), CLIP runs through transformers' CLIPModel with our own
preprocessing instead of open_clip, and scores depend on the GPU and dtype as the official ones do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..geneval.rules import Detection, Detections
from ..geneval.spec import COLORS
from .devices import Placement, check_fits, count_parameters
from .gen_common import check_ref, quiet_transformers

# GenEval's object_names.txt (the 80 COCO classes in the detector's label order).
_COCO = """\
person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,
parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,handbag,tie,
suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,
tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,
hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,laptop,computer mouse,tv remote,
computer keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,
hair drier,toothbrush"""
COCO_CLASSES: tuple[str, ...] = tuple(_COCO.replace("\n", "").split(","))
COLOR_TEMPLATES = ("a photo of a {c} {obj}", "a photo of a {c}-colored {obj}", "a photo of a {c} object")
GREY = 0x99  # the official crop background #999999
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class RealDetectorConfig:
    scale: tuple[int, int] = (1333, 800)  # mmdet's test scale: fit the long side in 1333 and the short in 800
    size_divisor: int = 32
    max_per_image: int = 100  # mmdet Mask2Former test_cfg
    min_class_score: float = 0.3  # exact shortcut: GenEval never keeps a score at or below 0.3


# --- pure pieces --------------------------------------------------------------------------------------------------
def mmdet_resize_shape(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio size that fits (long, short) = scale, rounded half up like mmcv's rescale_size."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def preprocess(image: np.ndarray, config: RealDetectorConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1, 3, Hp, Wp) normalised, zero-padded input and the resized (unpadded) size."""
    h, w = mmdet_resize_shape(image.shape[0], image.shape[1], config.scale)
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    x = (x - mean) / std
    d = config.size_divisor
    hp, wp = math.ceil(h / d) * d, math.ceil(w / d) * d
    return F.pad(x, (0, wp - w, 0, hp - h)), (h, w)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool -> (K, 4) boxes x1, y1, x2, y2 of each mask's extent (x2, y2 exclusive; zeros if empty)."""
    k, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)  # (K, W), (K, H)
    xs, ys = torch.arange(w, device=masks.device), torch.arange(h, device=masks.device)
    x1 = torch.where(cols, xs, w).amin(1)
    x2 = torch.where(cols, xs + 1, 0).amax(1)
    y1 = torch.where(rows, ys, h).amin(1)
    y2 = torch.where(rows, ys + 1, 0).amax(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(cols.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def instance_results(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    padded: tuple[int, int],
    resized: tuple[int, int],
    original: tuple[int, int],
    config: RealDetectorConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mmdet's Mask2Former instance post-processing of one image: (labels, scores, boxes, masks (K, H, W) bool).
    class_logits (Q, C + 1), mask_logits (Q, h, w) at a quarter of the padded input."""
    probs = class_logits.float().softmax(-1)[:, :-1]  # (Q, C)
    num_classes = probs.shape[1]
    top, index = probs.flatten().topk(min(config.max_per_image, probs.numel()), sorted=True)
    keep = top > config.min_class_score
    top, index = top[keep], index[keep]
    labels, queries = index % num_classes, index // num_classes
    if len(index) == 0:
        empty = torch.zeros((0, *original), dtype=torch.bool)
        return labels, top, torch.zeros((0, 4)), empty
    m = mask_logits[queries].float()[None]
    m = F.interpolate(m, size=padded, mode="bilinear", align_corners=False)[..., : resized[0], : resized[1]]
    m = F.interpolate(m, size=original, mode="bilinear", align_corners=False)[0]
    binary = m > 0
    mask_score = (m.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return labels, top * mask_score, mask_boxes(binary), binary


def masked_crop(image: np.ndarray, mask: np.ndarray, box: tuple[float, float, float, float]) -> Image.Image:
    """The official colour crop: object pixels kept, the rest #999999, cropped to the (rounded) box."""
    grey = np.full_like(image, GREY)
    composite = np.where(mask[..., None], image, grey)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return Image.fromarray(composite).crop((x1, y1, x2, y2))


def clip_pixels(crops: list[Image.Image], size: int) -> torch.Tensor:
    """OpenAI CLIP preprocessing: shorter side to `size` (bicubic), centre crop, OpenAI mean/std. -> (B, 3, S, S)."""
    out = []
    for crop in crops:
        w, h = crop.size
        short, long = min(w, h), max(w, h)
        other = int(size * long / short)
        resized = crop.convert("RGB").resize((size, other) if w <= h else (other, size), Image.Resampling.BICUBIC)
        left, top = int(round((resized.width - size) / 2.0)), int(round((resized.height - size) / 2.0))
        arr = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (torch.stack(out) - mean) / std


def _features(output) -> torch.Tensor:
    """Projected CLIP features from get_*_features (a tensor, or an output whose pooler_output is projected)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class RealImageDetector:
    """The Detector protocol (geneval/detector.py) over Mask2Former + CLIP; see the module docstring."""

    classes = COCO_CLASSES

    def __init__(self, segmenter, clip, clip_tokenizer, config: RealDetectorConfig = RealDetectorConfig()):
        if segmenter.config.num_labels != len(COCO_CLASSES):
            raise ValueError(
                f"the detector has {segmenter.config.num_labels} labels; GenEval needs a COCO instance model (80)"
            )
        self.segmenter, self.clip, self.clip_tokenizer, self.config = segmenter, clip, clip_tokenizer, config
        self._color_heads: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls, detector: str, clip: str, placement: Placement | None = None, config: RealDetectorConfig | None = None
    ) -> RealImageDetector:
        quiet_transformers()
        from transformers import AutoTokenizer, CLIPConfig, CLIPModel, Mask2FormerConfig
        from transformers import Mask2FormerForUniversalSegmentation as Segmenter

        device, dtype = (placement or Placement()).resolve()
        detector, clip = check_ref(detector, "hf-mask2former"), check_ref(clip, "--clip")
        seg_config, clip_config = Mask2FormerConfig.from_pretrained(detector), CLIPConfig.from_pretrained(clip)
        size = count_parameters(lambda: Segmenter(seg_config)) + count_parameters(lambda: CLIPModel(clip_config))
        check_fits(f"hf-mask2former:{detector} + CLIP {clip}", size, device, dtype)
        segmenter = Segmenter.from_pretrained(detector, dtype=dtype).to(device).eval()
        clip_model = CLIPModel.from_pretrained(clip, dtype=dtype).to(device).eval()
        return cls(segmenter, clip_model, AutoTokenizer.from_pretrained(clip), config or RealDetectorConfig())

    @property
    def device(self) -> torch.device:
        return next(self.segmenter.parameters()).device

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> Detections:
        """Every detection above the exact 0.3 pre-cut, per GenEval class name, with its mask."""
        pixels, resized = preprocess(image, self.config)
        dtype = next(self.segmenter.parameters()).dtype
        pixel_mask = torch.ones(pixels.shape[0], *pixels.shape[2:], dtype=torch.long, device=self.device)
        out = self.segmenter(pixel_values=pixels.to(self.device, dtype), pixel_mask=pixel_mask)
        labels, scores, boxes, masks = instance_results(
            out.class_queries_logits[0],
            out.masks_queries_logits[0],
            tuple(pixels.shape[2:]),
            resized,
            tuple(image.shape[:2]),
            self.config,
        )
        found: Detections = {}
        masks_np = masks.cpu().numpy()
        for k, (label, score, box) in enumerate(zip(labels.tolist(), scores.tolist(), boxes.tolist(), strict=True)):
            found.setdefault(COCO_CLASSES[label], []).append(Detection(tuple(box), float(score), masks_np[k]))
        return found

    def _color_head(self, classname: str) -> torch.Tensor:
        """(10, D) zero-shot colour classifier of one object class: three templates averaged per colour."""
        if classname not in self._color_heads:
            texts = [t.format(c=c, obj=classname) for c in COLORS for t in COLOR_TEMPLATES]
            tokens = self.clip_tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
            with torch.no_grad():
                emb = F.normalize(_features(self.clip.get_text_features(**tokens)).float(), dim=-1)
            head = F.normalize(emb.view(len(COLORS), len(COLOR_TEMPLATES), -1).mean(1), dim=-1)
            self._color_heads[classname] = head
        return self._color_heads[classname]

    @torch.no_grad()
    def classify_colors(self, image: np.ndarray, detections: list[Detection], classname: str) -> list[str]:
        if not detections:
            return []
        crops = [masked_crop(image, d.mask, d.box) for d in detections]
        size = self.clip.config.vision_config.image_size
        pixels = clip_pixels(crops, size).to(self.device, next(self.clip.parameters()).dtype)
        feats = F.normalize(_features(self.clip.get_image_features(pixel_values=pixels)).float(), dim=-1)
        return [COLORS[i] for i in (100 * feats @ self._color_head(classname).T).argmax(-1).tolist()]

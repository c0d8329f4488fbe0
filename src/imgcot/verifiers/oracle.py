"""The GenEval evaluator as an outcome verifier: the upper bound of best-of-N at a given N."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..geneval.detector import Detector
from ..geneval.judge import judge
from ..geneval.spec import Metadata


class OracleVerifier:
    """score = 1.0 where the evaluator judges the image correct for the prompt's metadata, else 0.0.

    `metadata` maps a prompt to its GenEval metadata (default: the shapes prompt grammar; for a benchmark file
    pass e.g. `{m["prompt"]: m for m in metas}.__getitem__`); `detector` defaults to the shapes detector.
    """

    def __init__(self, metadata: Callable[[str], Metadata] | None = None, detector: Detector | None = None):
        if metadata is None or detector is None:
            from ..worlds.shapes.detector import ShapesDetector
            from ..worlds.shapes.prompts import parse_prompt

            metadata, detector = metadata or parse_prompt, detector or ShapesDetector()
        self.metadata, self.detector = metadata, detector

    def score(self, prompts: list[str], images: torch.Tensor) -> torch.Tensor:
        arrays = images.cpu().numpy()
        correct = [judge(self.metadata(p), image, self.detector)[0] for p, image in zip(prompts, arrays, strict=True)]
        return torch.tensor(correct, dtype=torch.float32)

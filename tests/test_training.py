"""Training recipes: a killed run resumes from its checkpoint to the same weights; losses fall on tiny runs."""

from __future__ import annotations

import json

import pytest
import torch

from imgcot.generators.base import DecodingConfig
from imgcot.train.generator import TrainConfig, lr_at, train_generator
from tiny import tiny_tokenizer


class Killed(Exception):
    pass


def _cfg(kind: str) -> TrainConfig:
    return TrainConfig(
        kind=kind, dim=32, depth=1, heads=2, batch=8, max_steps=6, warmup=2, checkpoint_every=3, eval_every=10**9
    )


@pytest.mark.parametrize("kind", ["maskgit", "ar"])
def test_killed_training_resumes_to_identical_weights(kind, tmp_path):
    tokenizer = tiny_tokenizer()
    whole = train_generator(_cfg(kind), tokenizer, tmp_path / "whole", DecodingConfig(num_steps=4))

    def kill_at_four(step, total, loss, minutes):
        if step == 4:  # one step after the checkpoint at step 3: that step is lost and redone
            raise Killed

    with pytest.raises(Killed):
        train_generator(
            _cfg(kind), tokenizer, tmp_path / "resumed", DecodingConfig(num_steps=4), progress=kill_at_four
        )
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())["step"] == 3
    resumed = train_generator(_cfg(kind), tokenizer, tmp_path / "resumed", DecodingConfig(num_steps=4))
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (tmp_path / "resumed" / "final" / "model.safetensors").is_file()


def test_learning_rate_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_training_device_errors_are_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imgcot.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("cuda", "no CUDA GPU is visible"), ("tpu", "unknown device 'tpu'")):
        result = CliRunner().invoke(app, ["train", "maskgit", "--out", str(tmp_path / "x"), "--device", device])
        assert result.exit_code == 1 and result.output.startswith("error:") and message in result.output
        assert len(result.output.strip().splitlines()) == 1

"""Shared test setup: no test may reach the network."""

from __future__ import annotations

import os
import socket

import pytest

# Hub clients (huggingface_hub, transformers) read these at import: set them before any test imports them, so a
# model name that is not a local folder fails at once instead of trying to download (the connect guard below
# would stop it anyway).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connect on a non-AF_UNIX socket raises, so a test that downloads fails loudly."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _guard(real):
        def connect(self: socket.socket, address):
            if self.family == getattr(socket, "AF_UNIX", None):
                return real(self, address)
            raise RuntimeError(f"network access is blocked in tests (connect to {address!r})")

        return connect

    monkeypatch.setattr(socket.socket, "connect", _guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guard(real_connect_ex))

    def _no_connection(address, *args, **kwargs):
        raise RuntimeError(f"network access is blocked in tests (create_connection to {address!r})")

    monkeypatch.setattr(socket, "create_connection", _no_connection)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests run tiny models: one intra-op thread avoids oversubscribing a 2-core machine."""
    import torch

    torch.set_num_threads(1)

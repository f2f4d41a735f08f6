"""Test-session settings for every package: one torch thread, since the tests train tiny models."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts on one thread, whatever an earlier test or benchmark set."""
    torch.set_num_threads(1)

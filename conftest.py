"""Test-session settings for every package: one torch thread, since the tests train tiny models."""

import torch

torch.set_num_threads(1)

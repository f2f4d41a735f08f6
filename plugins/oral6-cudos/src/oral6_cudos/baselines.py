"""Baselines: a β-VAE trained on the stream in sequence, and a β-VAE with plain generative replay."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from .common import StreamVAE, StreamVAEConfig


class BetaVAEConfig(StreamVAEConfig):
    beta: float = Field(4.0, ge=0, description="Weight β of KL(q(z|x) ‖ N(0, I)).")


class BetaVAE(StreamVAE):
    """β-VAE (Higgins et al., 2017) trained on each environment in turn, without replay."""

    name = "beta-vae"
    Config = BetaVAEConfig
    citation = "Higgins et al. beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework. ICLR 2017."

    def build_extra(self) -> None:
        self.optimizer = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=self.config.lr)

    def elbo_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``BCE(x, x̂) + β·KL(N(μ, σ²) ‖ N(0, I))`` per image, batch mean; also returns μ."""
        mu, logvar = self.encoder(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return (recon + self.config.beta * kl).mean(), mu

    def train_step(self, x: Tensor, index: int) -> dict[str, float]:
        loss = self.elbo_loss(x)[0] + self.extra_loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def extra_loss(self, x: Tensor) -> Tensor | float:
        """Added to the ELBO (replay in subclasses)."""
        return 0.0

    def sample(self, n: int) -> Tensor:
        """Decode ``z ~ N(0, I)``."""
        self.require_built()
        return self.decode(torch.randn(n, self.config.latent_dim, device=self.device))

    def state(self) -> dict[str, Any]:
        return {**super().state(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.optimizer.load_state_dict(state["optimizer"])


class BetaVAEReplayConfig(BetaVAEConfig):
    replay_weight: float = Field(1.0, ge=0, description="Weight of the ELBO on replayed images.")


class BetaVAEReplay(BetaVAE):
    """β-VAE with plain generative replay: a frozen copy decodes prior samples that join each new batch."""

    name = "beta-vae-replay"
    Config = BetaVAEReplayConfig

    def build_extra(self) -> None:
        super().build_extra()
        self.old_decoder: nn.Module | None = None

    def begin_environment(self, index: int) -> None:
        """Freeze the decoder learnt so far; its samples stand for the earlier environments."""
        if index > 0:
            self.old_decoder = self.frozen_copy(self.decoder)  # type: ignore[arg-type]

    def extra_loss(self, x: Tensor) -> Tensor | float:
        """``replay_weight · ELBO(x_r)`` with ``x_r = sigmoid(old_decoder(z))``, ``z ~ N(0, I)``."""
        if self.old_decoder is None:
            return 0.0
        with torch.no_grad():
            replay = torch.sigmoid(self.old_decoder(torch.randn(x.shape[0], self.config.latent_dim, device=x.device)))
        return self.config.replay_weight * self.elbo_loss(replay)[0]

    def state(self) -> dict[str, Any]:
        return {**super().state(), "old_decoder": None if self.old_decoder is None else self.old_decoder.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state["old_decoder"] is not None:
            self.old_decoder = self.frozen_copy(self.decoder)  # type: ignore[arg-type]
            self.old_decoder.load_state_dict(state["old_decoder"])

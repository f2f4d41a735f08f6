"""CUDOS: a VAE with per-environment spike vectors and a self-organising spike-and-slab prior, trained on a stream."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from .common import StreamVAE, StreamVAEConfig
from .som import SOMPrior, annealed_sigma, spike_slab_log_density
from .spike_slab import bernoulli_kl, expected_selection, gaussian_kl, logit, spike_and_slab_sample


def combined_code(shared: Tensor, prototype: Tensor, z: Tensor, kind: str = "prototype-shared") -> Tensor:
    """The code both decoders must agree on: ``shared`` (in [0, 1] per dim) selects the prototype's mean
    (``prototype-shared``) or the encoder's sample ``z`` (``encoder-shared``), the other fills the remaining dims."""
    on_shared, elsewhere = (prototype, z) if kind == "prototype-shared" else (z, prototype)
    return shared * on_shared + (1 - shared) * elsewhere


class CUDOSConfig(StreamVAEConfig):
    som_rows: int = Field(20, ge=2, description="Rows of the SOM grid (a torus).")
    som_cols: int = Field(20, ge=2, description="Columns of the SOM grid.")
    gamma: float = Field(1.0, ge=0, description="Weight γ of the slab KL to the SOM components.")
    sharpness: float = Field(10.0, gt=0, description="c in the relaxed spike selection sigmoid(c(η + s − 1)).")
    spike_init: float = Field(0.2, gt=0, lt=1, description="Initial value α₀ of each environment's spike vector.")
    spike_prior: float = Field(0.2, gt=0, lt=1, description="Bernoulli prior of the SOM slab probabilities.")
    active_threshold: float = Field(0.5, gt=0, lt=1, description="A dimension is active in an environment when its spike exceeds this.")
    spike_lr: float = Field(5e-4, gt=0, description="Adam learning rate of the per-environment spike vectors (the VAE's rate in the reference).")
    som_lr: float = Field(5e-4, gt=0, description="Adam learning rate of the SOM means, slab probabilities and weights.")
    som_winner: Literal["likelihood", "joint"] = Field(
        "likelihood", description="Centre of the SOM loss's neighbourhood: the best by likelihood (default; the map spreads) or by "
        "log π + likelihood (the reference; its π feeds back and the map collapses onto a few nodes, see the README).")
    som_var_lr: float = Field(5e-6, gt=0, description="Adam learning rate of the SOM log-variances.")
    vae_steps_per_batch: int = Field(2, ge=1, description="VAE updates per batch before the SOM update.")
    sigma_start: float = Field(5.0, gt=0, description="Initial neighbourhood width σ (grid units).")
    sigma_end: float = Field(0.05, gt=0, description="Final neighbourhood width σ.")
    anneal_begin: int = Field(750, ge=0, description="Global step at which σ starts to shrink.")
    anneal_end: int = Field(2000, ge=1, description="Global step at which σ reaches sigma_end.")
    replay_weight: float = Field(1.0, ge=0, description="Weight of the replayed-data losses.")
    decoder_replay_weight: float = Field(0.25, ge=0, description="Weight of the new decoder reconstructing replay images from old z.")
    shared_weight: float = Field(0.35, ge=0, description="Weight of old and new decoders agreeing on the combined code.")
    combined_code: Literal["prototype-shared", "encoder-shared"] = Field(
        "prototype-shared", description="Combined code of the agreement loss: the prototype on the shared dims and the encoder's "
        "sample elsewhere (our reading of the paper), or the encoder's sample on the shared dims and the prototype elsewhere "
        "(the reference code).")
    max_environments: int = Field(8, ge=1, description="Spike-vector slots (environments the model can hold).")
    boundaries: Literal["given", "detect"] = Field("given", description="Environment boundaries from the stream, or detected from reconstruction loss.")
    detect_ratio: float = Field(1.5, gt=1, description="detect: open a new environment when the best reconstruction loss exceeds this × its running mean.")
    refractory_steps: int = Field(50, ge=1, description="detect: steps after a boundary during which no new one opens.")


class CUDOS(StreamVAE):
    """CUDOS (Li et al., ICLR 2023): continual disentangling with a self-organising spike-and-slab prior."""

    name = "cudos"
    Config = CUDOSConfig
    legacy_options: ClassVar[dict[str, Any]] = {"som_winner": "joint"}
    citation = "Li, Jiang, Missel, Gyawali, Kumar, Wang. Continual Unsupervised Disentangling of Self-Organizing Representations. ICLR 2023."

    # ------------------------------------------------------------------ building

    def build_extra(self) -> None:
        c = self.config
        g = torch.Generator().manual_seed(c.seed + 1)
        self.som = SOMPrior(c.som_rows, c.som_cols, c.latent_dim, generator=g, winner=c.som_winner).to(self.device)
        self.spike_logits = nn.Parameter(torch.full((c.max_environments, c.latent_dim), logit(c.spike_init), device=self.device))
        self.vae_optimizer = torch.optim.Adam([
            {"params": [*self.encoder.parameters(), *self.decoder.parameters()], "lr": c.lr},
            {"params": [self.spike_logits], "lr": c.spike_lr},
        ])
        self.som_optimizer = self.som.make_optimizer(c.som_lr, c.som_var_lr)
        self.node_hits = torch.zeros(self.som.num_components, c.max_environments, device=self.device)
        self.slots = 1  # spike-vector slots in use
        self.current_slot = 0
        self.old: dict[str, nn.Module] | None = None
        self.old_spikes: Tensor | None = None
        self.old_holding: Tensor | None = None
        self.old_replay_slot: Tensor | None = None
        self.last_boundary_step = 0
        self.recon_mean: float | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder, "som": getattr(self, "som", None)}  # type: ignore[dict-item]

    def spikes(self) -> Tensor:
        """Spike vectors ``s_e ∈ (0, 1)^D`` of every slot: sigmoid of the learned logits."""
        return torch.sigmoid(self.spike_logits)

    def active_dims(self, slot: int) -> Tensor:
        """Dimensions active in environment slot ``slot``: ``s_e,j > threshold``."""
        return self.spikes()[slot].detach() > self.config.active_threshold

    def code_scale(self) -> Tensor:
        """Mean code ``E[z|x] = E[selection]·μ`` under the union (max) of the spikes of the environments seen."""
        union = self.spikes()[: max(self.slots, 1)].detach().max(dim=0).values
        return expected_selection(union, self.config.sharpness)

    def sigma(self) -> float:
        c = self.config
        return annealed_sigma(self.global_step, c.sigma_start, c.sigma_end, c.anneal_begin, c.anneal_end)

    # ------------------------------------------------------------------ losses

    def vae_terms(self, x: Tensor, slots: Tensor) -> dict[str, Tensor]:
        """BCE + γ Σ_c q(c|z) Σ_j s_j KL(N(μ_j,σ_j²)‖N(μ_cj,σ_cj²)) + Σ_c q(c|z) Σ_j KL(Bern(s_j)‖Bern(α_cj)) + Σ_c (1/C − q(c|z))²."""
        c = self.config
        mu, logvar = self.encoder(x)
        spike = self.spikes()[slots]
        z = spike_and_slab_sample(mu, logvar, spike, c.sharpness)
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        som_means, som_logvars = self.som.means.detach(), self.som.logvars.detach()
        alpha = self.som.slab_probability().detach()
        joint = self.som.log_mixture_weights().detach()[None] + spike_slab_log_density(z, som_means, som_logvars, alpha)
        q = torch.softmax(joint, dim=-1)
        q_fixed = q.detach()
        slab_kl = (spike[:, None, :] * gaussian_kl(mu[:, None, :], logvar[:, None, :], som_means[None], som_logvars[None])).sum(-1)
        spike_kl = bernoulli_kl(spike[:, None, :], alpha[None]).sum(-1)
        balance = ((1.0 / self.som.num_components - q) ** 2).sum(-1)
        parts = {"recon": recon.mean(), "slab_kl": c.gamma * (q_fixed * slab_kl).sum(-1).mean(),
                 "spike_kl": (q_fixed * spike_kl).sum(-1).mean(), "balance": balance.mean()}
        return {"loss": sum(parts.values()), "parts": parts, "recon": parts["recon"], "z": z, "mu": mu, "logvar": logvar,
                "logits": logits}

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """Images decoded by the old decoder from z drawn from old SOM components that hold data, with their slots."""
        assert self.old is not None and self.old_holding is not None and self.old_replay_slot is not None
        holding = self.old_holding.nonzero().squeeze(1)
        weights = self.old["som"].log_mixture_weights()[holding].exp()
        components = holding[torch.multinomial(weights, n, replacement=True)]
        z = self.old["som"].sample(components)
        with torch.no_grad():
            images = torch.sigmoid(self.old["decoder"](z))
        return images, z, self.old_replay_slot[components]

    def continual_terms(self, new: dict[str, Tensor], slot: int, replayed: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
        """Replay (VAE loss + encoder/decoder consistency) and shared-dimension losses against the frozen model, weighted,
        by name (their sum is added to the new data's VAE loss)."""
        c = self.config
        assert self.old is not None and self.old_holding is not None
        x_replay, z_old, replay_slots = replayed
        replay = self.vae_terms(x_replay, replay_slots)
        encoder_consistency = ((replay["mu"] * expected_selection(self.spikes()[replay_slots], c.sharpness) - z_old) ** 2).sum(1).mean()
        decoder_consistency = F.binary_cross_entropy_with_logits(self.decoder(z_old), x_replay, reduction="none").flatten(1).sum(1).mean()
        old_som = self.old["som"]
        with torch.no_grad():
            bmu = old_som.bmu(new["z"].detach(), self.old_holding)
        proto_mu, proto_logvar = old_som.means[bmu], old_som.logvars[bmu]
        shared = torch.sigmoid(c.sharpness * (old_som.slab_probability()[bmu] * self.spikes()[slot][None] - 0.5))
        shared_kl = (shared * gaussian_kl(new["mu"], new["logvar"], proto_mu, proto_logvar)).sum(1).mean()
        combined = combined_code(shared, proto_mu, new["z"], c.combined_code)
        with torch.no_grad():
            old_pixels = torch.sigmoid(self.old["decoder"](combined.detach()))
        agreement = F.binary_cross_entropy_with_logits(self.decoder(combined), old_pixels, reduction="none").flatten(1).sum(1).mean()
        return {"replay": c.replay_weight * (replay["loss"] + encoder_consistency + c.decoder_replay_weight * decoder_consistency),
                "shared_kl": shared_kl, "agreement": c.shared_weight * agreement}

    # ------------------------------------------------------------------ training

    def train_step(self, x: Tensor, index: int) -> dict[str, float]:
        """Two VAE steps on the batch (plus half a batch of replay in the continual phase), then one SOM step per code."""
        slot = self.choose_slot(x, index)
        slots = torch.full((x.shape[0],), slot, dtype=torch.long, device=x.device)
        replayed = self.replay_batch(max(x.shape[0] // 2, 1)) if self.old is not None else None
        for _ in range(self.config.vae_steps_per_batch):
            terms = self.vae_terms(x, slots)
            loss = terms["loss"]
            if replayed is not None:
                loss = loss + sum(self.continual_terms(terms, slot, replayed).values())
            self.vae_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.vae_optimizer.step()
        z = terms["z"].detach()
        if replayed is not None:
            z = torch.cat([z, replayed[1]])
        som_loss = self.som.update(self.som_optimizer, z, self.sigma(), self.config.spike_prior)
        with torch.no_grad():
            hits = torch.bincount(self.som.bmu(terms["z"].detach()), minlength=self.som.num_components)
            self.node_hits[:, slot] += hits
        recon = float(terms["recon"].detach())
        self.recon_mean = recon if self.recon_mean is None else 0.9 * self.recon_mean + 0.1 * recon
        return {"loss": float(loss.detach()), "recon": recon, "som": som_loss}

    @torch.no_grad()
    def reconstruction_under(self, x: Tensor, slot: int) -> float:
        """Mean BCE of ``x`` decoded from its mean code under slot ``slot``'s spike vector."""
        mu, _ = self.encoder(x)
        z = mu * expected_selection(self.spikes()[slot], self.config.sharpness)
        return float(F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").flatten(1).sum(1).mean())

    def choose_slot(self, x: Tensor, index: int) -> int:
        """The environment slot of a batch: the stream's index, or (detect) the best slot / a new one."""
        c = self.config
        if c.boundaries == "given":
            return min(index, c.max_environments - 1)
        was_training = self.encoder.training
        self.eval_mode()
        losses = [self.reconstruction_under(x, s) for s in range(self.slots)]
        if was_training:
            self.train_mode()
        best = min(range(self.slots), key=losses.__getitem__)
        settled = self.global_step - self.last_boundary_step > c.refractory_steps
        if (settled and self.recon_mean is not None and losses[best] > c.detect_ratio * self.recon_mean
                and self.slots < c.max_environments):
            self.open_slot()
            best = self.slots - 1
        self.current_slot = best
        return best

    def open_slot(self) -> None:
        """A new environment: freeze the current model as the old one and start a fresh spike slot."""
        self.freeze_old()
        self.slots += 1
        self.last_boundary_step = self.global_step
        self.recon_mean = None

    def freeze_old(self) -> None:
        """Copy encoder, decoder, SOM and spikes; label SOM nodes (holding data, replay slot = closest spike to α)."""
        seen = max(self.slots, 1)
        self.old = {k: self.frozen_copy(v) for k, v in self.networks().items()}
        self.old_spikes = self.spikes()[:seen].detach().clone()
        self.old_holding = self.node_hits[:, :seen].sum(1) > 0
        alpha = self.old["som"].slab_probability()
        self.old_replay_slot = torch.cdist(alpha, self.old_spikes).argmin(1)

    def begin_environment(self, index: int) -> None:
        """With given boundaries, each environment after the first opens a new slot (while slots remain)."""
        if self.config.boundaries == "given" and 0 < index < self.config.max_environments and self.slots <= index:
            self.open_slot()

    def end_environment(self, index: int, x: Tensor) -> None:
        """Nothing extra: node hits are counted online; the stored spike is the slot's learned vector."""

    def sample(self, n: int) -> Tensor:
        """Decode z drawn from SOM components that hold data (any component before training has hit one)."""
        self.require_built()
        self.eval_mode()
        holding = self.node_hits.sum(1) > 0
        pool = holding.nonzero().squeeze(1) if holding.any() else torch.arange(self.som.num_components, device=self.device)
        weights = self.som.log_mixture_weights().detach()[pool].exp()
        components = pool[torch.multinomial(weights, n, replacement=True)]
        return self.decode(self.som.sample(components))

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        state = super().state()
        state.update({
            "spike_logits": self.spike_logits.detach().clone(), "node_hits": self.node_hits.clone(), "slots": self.slots,
            "current_slot": self.current_slot, "last_boundary_step": self.last_boundary_step, "recon_mean": self.recon_mean,
            "vae_optimizer": self.vae_optimizer.state_dict(), "som_optimizer": self.som_optimizer.state_dict(),
            "old": None if self.old is None else {k: v.state_dict() for k, v in self.old.items()},
            "old_spikes": self.old_spikes, "old_holding": self.old_holding, "old_replay_slot": self.old_replay_slot,
        })
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        with torch.no_grad():
            self.spike_logits.copy_(state["spike_logits"])
        self.node_hits = state["node_hits"].to(self.device)
        self.slots, self.current_slot = state["slots"], state["current_slot"]
        self.last_boundary_step, self.recon_mean = state["last_boundary_step"], state["recon_mean"]
        self.vae_optimizer.load_state_dict(state["vae_optimizer"])
        self.som_optimizer.load_state_dict(state["som_optimizer"])
        if state["old"] is not None:
            self.old = {k: self.frozen_copy(v) for k, v in self.networks().items()}
            for key, module in self.old.items():
                module.load_state_dict(state["old"][key])
        self.old_spikes, self.old_holding, self.old_replay_slot = state["old_spikes"], state["old_holding"], state["old_replay_slot"]

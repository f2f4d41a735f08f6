"""What every stream VAE here shares: options, networks built from the first environment, the loop over a stream, save/load."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from oral6_core.components import Environment, GenerativeModel
from oral6_core.config import ComponentConfig
from oral6_core.errors import CheckpointError, DataError, ShapeError
from oral6_core.io import load_torch, save_torch
from oral6_core.progress import report, track
from oral6_core.training import resolve_device

from .networks import ConvDecoder, ConvEncoder


class StreamVAEConfig(ComponentConfig):
    latent_dim: int = Field(15, ge=1, description="Latent dimensions (15 in the reference).")
    channels: tuple[int, ...] = Field((16, 32, 32, 64), description="Conv widths of the encoder (the reference: 32, 64, 128, 256).")
    hidden: int = Field(128, ge=8, description="Width of the two fully connected layers (the reference: 1024).")
    lr: float = Field(5e-4, gt=0, description="Adam learning rate of the VAE.")
    batch_size: int = Field(64, ge=2, description="Minibatch size.")
    epochs_first: int = Field(4, ge=1, description="Epochs on the first environment (the reference: 100).")
    epochs_next: int = Field(2, ge=1, description="Epochs on each later environment (the reference: 15, 10).")
    seed: int = Field(0, description="Seed of initialisation, data order and sampling.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; auto picks cuda when present.")

    @field_validator("channels")
    @classmethod
    def _positive_widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not 1 <= len(value) <= 6 or min(value) < 1:
            raise ValueError("give 1 to 6 positive conv widths, e.g. [32, 32, 64, 64]")
        return value


class StreamVAE(GenerativeModel):
    """Base of the stream VAEs: builds encoder/decoder for the data, loops over environments, saves its state."""

    Config = StreamVAEConfig
    legacy_options: ClassVar[dict[str, Any]] = {}  # an option's value for saved files written before it existed

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.device = resolve_device(c.device)
        self.image_shape: tuple[int, ...] | None = None
        self.environments_done = 0
        self.global_step = 0
        self.encoder: ConvEncoder | None = None
        self.decoder: ConvDecoder | None = None
        self.preview: Tensor | None = None
        self.generator = torch.Generator().manual_seed(c.seed)

    # ------------------------------------------------------------------ building

    def build(self, image_shape: tuple[int, ...]) -> None:
        """Create the networks (and optimisers) for images of ``image_shape`` = (C, H, W)."""
        if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
            raise ShapeError(f"Stream VAEs take square images [C, H, W]; got inputs of shape {image_shape}.")
        c = self.config
        torch.manual_seed(c.seed)
        self.image_shape = tuple(image_shape)
        self.encoder = ConvEncoder(image_shape[0], image_shape[1], c.channels, c.hidden, c.latent_dim).to(self.device)
        self.decoder = ConvDecoder(image_shape[0], image_shape[1], c.channels, c.hidden, c.latent_dim).to(self.device)
        self.build_extra()

    def build_extra(self) -> None:
        """Subclasses create their priors and optimisers here."""

    def require_built(self) -> None:
        if self.encoder is None:
            raise ShapeError(f"The {self.name} model has not seen data yet: call fit (or load a saved model) first.")

    # ------------------------------------------------------------------ the stream

    def fit(self, environments: Sequence[Environment],
            on_environment_end: Callable[[int, Environment], None] | None = None,
            on_epoch_end: Callable[[int, int], None] | None = None) -> None:
        """Train on each environment in turn (skipping those a loaded state has already learnt); call back after each
        environment with (index, environment) and, optionally, after each epoch with (environment index, epoch)."""
        if not environments:
            raise DataError("fit needs at least one environment; pick a stream dataset such as shapes3d-stream.")
        for index, env in enumerate(environments):
            x = getattr(env.data, "x", None)
            if x is None:
                raise DataError(f"Environment {env.name!r} must hold an ArrayDataset of images.")
            if self.encoder is None:
                self.build(tuple(x.shape[1:]))
            elif tuple(x.shape[1:]) != self.image_shape:
                raise ShapeError(f"Environment {env.name!r} has images {tuple(x.shape[1:])}, the model was built for {self.image_shape}.")
            if index < self.environments_done:
                continue
            self.preview = x[:8].clone()
            self.begin_environment(index)
            self.train_mode()
            epochs = self.config.epochs_first if index == 0 else self.config.epochs_next
            for epoch in track(range(epochs), f"{self.name} environment {index + 1}/{len(environments)}"):
                order, logs = torch.randperm(len(x), generator=self.generator), {}
                for batch in order.split(self.config.batch_size):
                    if len(batch) < 2:
                        continue
                    logs = self.train_step(x[batch].to(self.device, non_blocking=True), index)
                    self.global_step += 1
                report(**logs)
                if on_epoch_end is not None:
                    self.eval_mode()
                    on_epoch_end(index, epoch)
                    self.train_mode()
            self.end_environment(index, x)
            self.environments_done = index + 1
            if on_environment_end is not None:
                self.eval_mode()
                on_environment_end(index, env)

    def begin_environment(self, index: int) -> None:
        """Called before the first step on environment ``index``."""

    def end_environment(self, index: int, x: Tensor) -> None:
        """Called after the last step on environment ``index`` with its images."""

    def train_step(self, x: Tensor, index: int) -> dict[str, float]:
        raise NotImplementedError

    def eval_mode(self) -> None:
        for net in self.networks().values():
            net.eval()

    def train_mode(self) -> None:
        for net in self.networks().values():
            net.train()

    def networks(self) -> dict[str, nn.Module]:
        """The trainable modules by name (saved, switched between train and eval)."""
        return {"encoder": self.encoder, "decoder": self.decoder}  # type: ignore[dict-item]

    # ------------------------------------------------------------------ the protocol

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """The mean code ``E[z | x]``."""
        self.require_built()
        self.eval_mode()
        mu, _ = self.encoder(x.to(self.device))  # type: ignore[misc]
        return mu * self.code_scale()

    def code_scale(self) -> Tensor | float:
        """Multiplier of ``μ`` that gives the mean code (1 for a Gaussian posterior)."""
        return 1.0

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Pixel means ``sigmoid(decoder(z))`` in [0, 1]."""
        self.require_built()
        self.eval_mode()
        return torch.sigmoid(self.decoder(z.to(self.device)))  # type: ignore[misc]

    def sample(self, n: int) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """Everything needed to resume (subclasses add their own entries)."""
        return {"image_shape": self.image_shape, "environments_done": self.environments_done, "global_step": self.global_step,
                "generator": self.generator.get_state(), "preview": self.preview,
                "networks": {k: v.state_dict() for k, v in self.networks().items() if v is not None}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.build(tuple(state["image_shape"]))
        self.environments_done, self.global_step = state["environments_done"], state["global_step"]
        self.generator.set_state(state["generator"])
        self.preview = state["preview"]
        for key, net in self.networks().items():
            if net is not None and key in state["networks"]:
                net.load_state_dict(state["networks"][key])

    def save(self, path: Path) -> None:
        """Write config and full state atomically, so a stream can be resumed with ``load`` then ``fit``."""
        self.require_built()
        save_torch({"model": self.name, "config": self.config.model_dump(mode="json"), "state": self.state()}, path)

    def load(self, path: Path) -> None:
        """Restore a state written by ``save`` (the same model name and options)."""
        saved = load_torch(path, map_location=self.device)
        if saved.get("model") != self.name:
            raise CheckpointError(f"{path} holds a {saved.get('model')!r} model, not {self.name!r}; load it with that model.")
        mine = self.config.model_dump(mode="json")
        # options added since the file was written count at the behaviour the code had before them
        theirs = {**type(self.config)().model_dump(mode="json"), **self.legacy_options, **saved["config"]}
        differ = {k: theirs.get(k) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)}
        if differ:
            raise CheckpointError(f"{path} was saved with other options ({differ}); create the model with them to load it.")
        self.load_state(saved["state"])

    def frozen_copy(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` with gradients off and in eval mode (the 'old' model of the continual phase)."""
        frozen = copy.deepcopy(module).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        return frozen

    def save_visuals(self, out_dir: Path, env_index: int) -> list[Path]:
        """Reconstructions, samples, latent traversals (and the SOM map where there is one) as PNGs."""
        from .visuals import save_model_visuals

        return save_model_visuals(self, Path(out_dir), env_index)

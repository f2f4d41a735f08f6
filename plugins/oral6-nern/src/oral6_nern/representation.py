"""The ``nern`` representation component: fit, reconstruct, size, save and load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from oral6_core.components import Representation
from oral6_core.config import ComponentConfig
from oral6_core.data import DataBundle
from oral6_core.errors import CheckpointError, ShapeError
from oral6_core.io import load_torch, save_torch

from .architecture import build_architecture, check_same_structure, describe_architecture
from .feedback import training_progress, warn_if_far_from_original, warn_if_not_converged
from .fitting import PredictorTrainer, distillation_inputs
from .layout import RepresentedLayer, WeightLayout, select_layers
from .permutations import layer_permutation
from .predictor import KernelPredictor, predictor_parameters

FORMAT = "oral6-nern/1"
DEFAULT_STEPS = 13000  # the benchmark's fits: converged at ratio 0.6 on its width-8 ResNet-20 (see the README)
WARMUP_STEPS = 500  # a short reconstruction-only start, then distillation (at most a seventh of the steps)
KERNEL_SHARE = 0.14  # the paper's 4096 of a width-16 ResNet-20's 29,696 kernels


class NeRNConfig(ComponentConfig):
    hidden: int | None = Field(None, ge=1, description="Width h of the predictor's hidden layers (None: the widest predictor within `ratio` of the represented weights).")
    ratio: float = Field(0.44, gt=0, description="Predictor size / represented weights that sets h when hidden is None (0.44 gives the paper's h=160 on a width-16 ResNet-20).")
    depth: int = Field(5, ge=2, description="Linear layers in the predictor (the paper uses 5).")
    levels: int = Field(40, ge=1, description="Frequencies L of the positional encoding (6L inputs).")
    base: float = Field(0.76, gt=0, description="Base b of the encoding's frequencies π·b^k.")
    permutation: Literal["none", "infilter", "crossfilter"] = Field("crossfilter", description="Kernel ordering for smoothness.")
    keep_zeros: bool = Field(True, description="Weights that are exactly zero in the original (a pruned network's mask) stay exactly zero: the mask is stored (one bit a weight) and multiplies the predictions.")
    layers: list[str] = Field(["layer*.*.conv*"], description="Shell patterns of the conv modules to represent (default: the residual blocks' convs); the rest are stored as they are.")
    steps: int = Field(DEFAULT_STEPS, ge=1, description="Optimisation steps (the paper trains for ≈ 70k).")
    warmup_steps: int | None = Field(None, ge=0, description=f"First steps with the reconstruction loss only (None: {WARMUP_STEPS}, at most a seventh of the steps).")
    lr: float = Field(5e-3, gt=0, description="Initial learning rate of Ranger (RAdam + Lookahead).")
    final_lr: float = Field(1e-6, ge=0, description="Learning rate at the end of the cosine decay.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the predictor's gradient norm to this value (None: no clipping).")
    lookahead_k: int = Field(6, ge=1, description="Lookahead synchronisation period.")
    lookahead_alpha: float = Field(0.5, gt=0, le=1, description="Lookahead step toward the fast weights.")
    kernel_batch: int | None = Field(None, ge=1, description=f"Kernels per reconstruction-loss batch (None: {KERNEL_SHARE:.0%} of the kernels, between 256 and 4096, the paper's share).")
    uniform_prob: float = Field(0.8, ge=0, le=1, description="Probability of a uniform kernel batch (else sampled ∝ kernel norm).")
    distill_weight: float = Field(1e-4, ge=0, description="Weight of the output (KL) distillation loss.")
    attention_weight: float = Field(1e-4, ge=0, description="Weight of the attention feature-map loss.")
    distill_kernels: int | None = Field(None, ge=1, description="Kernels through which a distillation step's gradient reaches the predictor (None: all, the exact gradient; m: an unbiased estimate from m uniformly sampled kernels, faster on large networks).")
    batch_size: int = Field(16, ge=1, description="Images per distillation batch.")
    noise_size: int = Field(32, ge=1, description="Side of the noise images used without data (and the recorded input size).")
    log_every: int = Field(50, ge=1, description="Log the losses, the weight error and the probe accuracy every this many steps.")
    probe_samples: int = Field(500, ge=0, description="Validation (else test) images on which the rebuilt network's accuracy is logged (0: none).")
    progress: bool = Field(True, description="Show a progress bar with the loss, weight error and accuracy.")
    convergence_tol: float = Field(0.01, ge=0, description="Warn when the weight error still fell by more than this share over the last tenth of training.")
    accuracy_tol: float = Field(0.05, ge=0, description="Warn when the rebuilt network's final probe accuracy is more than this (absolute) below the original's.")
    seed: int = Field(0, description="Seed of the predictor's initialisation and of all sampling.")
    model: str | None = Field(None, description="Model builder that rebuilds the network (default: the one `oral6 represent` reads from the checkpoint; inferred for resnet20).")
    model_options: dict[str, Any] = Field(default_factory=dict, description="Options of that model builder.")


class NeRN(Representation):
    """NeRN: an MLP maps each kernel's (layer, filter, channel) coordinate to the 3×3 kernel."""

    name = "nern"
    Config = NeRNConfig
    citation = ("Ashkenazi, Rimon, Vainshtein, Levi, Richardson, Mintz, Treister. NeRN: Learning Neural "
                "Representations for Neural Networks. ICLR 2023.")

    def __init__(self, config: NeRNConfig | None = None) -> None:
        super().__init__(config)
        self.predictor: KernelPredictor | None = None
        self.layout: WeightLayout | None = None
        self.architecture: dict[str, Any] = {}
        self.stored: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []
        self.converged = True
        self.original_probe_accuracy: float | None = None

    def _new_predictor(self, device: torch.device | str, hidden: int) -> KernelPredictor:
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            predictor = KernelPredictor(hidden, c.levels, c.base, c.depth)
        return predictor.to(device)

    def prepare(self, model: nn.Module) -> None:
        """Choose the represented layers, compute their permutations and record everything else."""
        c = self.config
        self.architecture = describe_architecture(model, c.model, c.model_options, c.noise_size)
        check_same_structure(build_architecture(self.architecture), model, self.architecture)
        device = next(model.parameters()).device
        layers = select_layers(model, c.layers)
        params = dict(model.named_parameters())
        masks = {l.name: params[l.name].detach() != 0 for l in layers if c.keep_zeros and bool((params[l.name] == 0).any())}
        self.layout = WeightLayout(layers, [layer_permutation(params[l.name].detach(), c.permutation) for l in layers], masks)
        represented = {l.name for l in layers}
        self.stored = {k: v.detach().clone() for k, v in model.state_dict().items() if k not in represented}
        if c.hidden is None:
            c.hidden = width_for_ratio(c.ratio * self.layout.represented_parameters(), c.levels, c.depth)
        if c.kernel_batch is None:
            c.kernel_batch = min(4096, max(256, round(KERNEL_SHARE * self.layout.num_kernels)))
        if c.warmup_steps is None:
            c.warmup_steps = default_warmup(c.steps)
        self.predictor = self._new_predictor(device, c.hidden)

    def set_source(self, builder: str, options: dict[str, Any], input_shape: tuple[int, ...]) -> None:
        """Record how the network was built (unless representation.model is set) and size noise images like its inputs."""
        c = self.config
        if c.model is None:
            c.model, c.model_options = builder, dict(options)
        if len(input_shape) == 3 and "noise_size" not in c.model_fields_set:
            c.noise_size = input_shape[-1]

    def fit(self, model: nn.Module, data: DataBundle | None) -> None:
        """Fit the predictor to ``model``'s weights, distilling on ``data`` (or on noise when None)."""
        self.prepare(model)
        c = self.config
        device = next(model.parameters()).device
        inputs = distillation_inputs(model, data, c.batch_size, c.noise_size, c.seed, device)
        trainer = PredictorTrainer(self.predictor, self.layout, model, inputs, c)  # type: ignore[arg-type]
        probe = probe_batch(data, c.probe_samples, device)
        with training_progress(c.steps, c.progress) as monitor:
            self.history = trainer.run(monitor, probe)
        self.converged = not warn_if_not_converged(self.history, c.convergence_tol)
        self.original_probe_accuracy = None if probe is None else probe_accuracy(model, *probe)
        warn_if_far_from_original(self.history, self.original_probe_accuracy, c.accuracy_tol)

    def to(self, device: torch.device | str) -> "NeRN":
        """Move the predictor, permutations and stored parameters to ``device``."""
        predictor, layout = self._require_fitted()
        predictor.to(device)
        self.layout = layout.to(device)
        self.stored = {k: v.to(device) for k, v in self.stored.items()}
        return self

    def _require_fitted(self) -> tuple[KernelPredictor, WeightLayout]:
        if self.predictor is None or self.layout is None:
            raise CheckpointError("This NeRN representation is empty: call fit(model, data) or load(path) first.")
        return self.predictor, self.layout

    @torch.no_grad()
    def predicted_weights(self) -> dict[str, torch.Tensor]:
        """Every represented conv weight as the predictor reconstructs it."""
        predictor, layout = self._require_fitted()
        return layout.assemble(predictor(layout.coordinates()))

    @torch.no_grad()
    def reconstruct(self) -> nn.Module:
        """Rebuild the network from the architecture reference, the stored parameters and the predictor."""
        predictor, _ = self._require_fitted()
        device = next(predictor.parameters()).device
        net = build_architecture(self.architecture).to(device)
        net.load_state_dict({**self.stored, **self.predicted_weights()})
        return net.eval()

    def num_parameters(self) -> int:
        predictor, _ = self._require_fitted()
        return sum(p.numel() for p in predictor.parameters())

    def represented_parameters(self) -> int:
        """Weights the predictor stands for: the kept ones of a pruned network."""
        _, layout = self._require_fitted()
        return layout.represented_parameters()

    def storage_bytes(self) -> int:
        """What the representation must store of the represented layers: float32 predictor, packed masks, int32 permutations."""
        predictor, layout = self._require_fitted()
        return 4 * self.num_parameters() + math.ceil(layout.mask_bits() / 8) + 4 * layout.num_kernels

    def save(self, path: Path) -> None:
        """One file: predictor, permutations, represented layers, stored parameters and the architecture reference."""
        predictor, layout = self._require_fitted()
        save_torch({
            "format": FORMAT,
            "config": self.config.model_dump(mode="json"),
            "predictor": {k: v.cpu() for k, v in predictor.state_dict().items()},
            "layers": [(l.name, list(l.shape)) for l in layout.layers],
            "permutations": [p.to(torch.int32).cpu() for p in layout.permutations],
            "masks": {k: pack_bits(m) for k, m in layout.masks.items()},
            "stored": {k: v.cpu() for k, v in self.stored.items()},
            "architecture": self.architecture,
        }, path)

    def load(self, path: Path) -> None:
        """Read a file written by ``save``; the network can then be reconstructed without the original weights."""
        saved = load_torch(path)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a NeRN representation (expected format {FORMAT!r}); write one with `oral6 represent --method nern`.")
        self.config = self.Config(**saved["config"])
        layers = [RepresentedLayer(name, tuple(shape)) for name, shape in saved["layers"]]  # type: ignore[arg-type]
        try:
            masks = {name: unpack_bits(packed, shape) for name, shape in saved["layers"] if (packed := saved.get("masks", {}).get(name)) is not None}
            self.layout = WeightLayout(layers, [p.long() for p in saved["permutations"]], masks)
        except ShapeError as exc:
            raise CheckpointError(f"{path} is corrupt: {exc}") from None
        self.predictor = self._new_predictor("cpu", saved["predictor"]["mlp.0.weight"].shape[0])
        self.predictor.load_state_dict(saved["predictor"])
        self.predictor.eval()
        self.stored = saved["stored"]
        self.architecture = saved["architecture"]


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as uint8 bytes, eight entries a byte (row-major)."""
    return torch.from_numpy(np.packbits(mask.detach().cpu().flatten().numpy()))


def unpack_bits(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """The boolean tensor of ``shape`` that ``pack_bits`` stored."""
    count = math.prod(shape)
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=count).astype(bool)).view(shape)


def default_warmup(steps: int) -> int:
    """Reconstruction-only steps before distillation: ``WARMUP_STEPS``, at most a seventh of ``steps``."""
    return min(WARMUP_STEPS, steps // 7)


def width_for_ratio(budget: float, levels: int, depth: int) -> int:
    """The widest hidden width whose predictor has at most ``budget`` parameters (at least 1)."""
    hidden = 1
    while predictor_parameters(hidden + 1, levels, depth) <= budget:
        hidden += 1
    return hidden


@torch.no_grad()
def probe_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``model`` (in eval mode, restored afterwards) on (x, y)."""
    was_training = model.training
    model.eval()
    try:
        return (model(x).argmax(-1) == y).float().mean().item()
    finally:
        model.train(was_training)


def probe_batch(data: DataBundle | None, samples: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Up to ``samples`` labelled validation (else test) images for logging accuracy while fitting; None without data."""
    split = None if data is None else (data.val if data.val is not None else data.test)
    if split is None or samples == 0 or data.task.likelihood != "categorical" or not hasattr(split, "x"):  # type: ignore[union-attr]
        return None
    count = min(samples, len(split))  # type: ignore[arg-type]
    return split.x[:count].to(device), split.y[:count].to(device)  # type: ignore[attr-defined]

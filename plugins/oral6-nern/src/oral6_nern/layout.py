"""Which conv weights are represented, and how predicted kernels map onto them."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from oral6_core.errors import ConfigError, ShapeError

from .encoding import kernel_coordinates
from .permutations import inverse_permutation
from .predictor import KERNEL


@dataclass(frozen=True)
class RepresentedLayer:
    """A represented conv weight: its parameter name and shape (F, C, k, k) with k ∈ {1, 3}."""

    name: str
    shape: tuple[int, int, int, int]

    @property
    def kernels(self) -> int:
        return self.shape[0] * self.shape[1]


def select_layers(model: nn.Module, patterns: list[str]) -> list[RepresentedLayer]:
    """The conv layers whose module name matches one of the shell-style ``patterns``, in module order."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    chosen = [(name, m) for name, m in convs if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        raise ConfigError(
            f"No conv layer matches representation.layers={patterns}. The model's conv layers are: "
            f"{', '.join(n for n, _ in convs) or 'none'}; pass shell-style patterns such as [\"layer*.*.conv*\"]."
        )
    layers = []
    for name, module in chosen:
        if module.kernel_size not in ((1, 1), (KERNEL, KERNEL)):
            raise ConfigError(
                f"Layer {name!r} has {module.kernel_size} kernels; NeRN predicts 3×3 kernels (1×1 layers take the "
                f"centre). Leave it out of representation.layers: it is then stored as it is."
            )
        layers.append(RepresentedLayer(f"{name}.weight", tuple(module.weight.shape)))  # type: ignore[arg-type]
    return layers


class WeightLayout:
    """Represented layers with their permutations (and a pruned network's masks): query coordinates, targets, assembly.

    Global row ``g`` (layer l, rank r) is queried at coordinate (l, r // C, r % C) and predicts the kernel
    in slot ``perm_l[r]`` of layer l. ``masks`` (parameter name -> boolean tensor of the weight's shape, True =
    kept) make every assembled weight exactly zero where its mask is zero.
    """

    def __init__(self, layers: list[RepresentedLayer], permutations: list[Tensor], masks: dict[str, Tensor] | None = None) -> None:
        if len(layers) != len(permutations):
            raise ShapeError(f"{len(layers)} represented layers but {len(permutations)} permutations.")
        for layer, perm in zip(layers, permutations):
            if perm.shape != (layer.kernels,):
                raise ShapeError(f"The permutation of {layer.name} has shape {tuple(perm.shape)}, expected ({layer.kernels},).")
        self.layers = layers
        self.permutations = [p.long() for p in permutations]
        self.inverses = [inverse_permutation(p) for p in self.permutations]
        self.offsets = [0]
        for layer in layers:
            self.offsets.append(self.offsets[-1] + layer.kernels)
        self.sizes = [layer.kernels for layer in layers]
        self.gather = torch.cat([inv + start for inv, start in zip(self.inverses, self.offsets)])  # slot order -> global row
        self.masks = masks or {}
        for layer in layers:
            if layer.name in self.masks and tuple(self.masks[layer.name].shape) != layer.shape:
                raise ShapeError(f"The mask of {layer.name} has shape {tuple(self.masks[layer.name].shape)}, expected {layer.shape}.")
        self.keep: Tensor | None = None
        if self.masks:
            device = next(iter(self.masks.values())).device
            self.keep = self.rows({l.name: self.masks.get(l.name, torch.ones(l.shape, dtype=torch.bool, device=device)) for l in layers})

    @property
    def num_kernels(self) -> int:
        return self.offsets[-1]

    def represented_parameters(self) -> int:
        """Number of weights the predictor stands for (1×1 kernels count one each; masked-out weights not at all)."""
        return sum(int(self.masks[l.name].sum()) if l.name in self.masks else torch.Size(l.shape).numel() for l in self.layers)

    def mask_bits(self) -> int:
        """Bits the masks take when stored packed, one per weight of each masked layer."""
        return sum(m.numel() for m in self.masks.values())

    def to(self, device: torch.device | str) -> "WeightLayout":
        """Move the permutations and masks to ``device``."""
        return WeightLayout(self.layers, [p.to(device) for p in self.permutations], {k: m.to(device) for k, m in self.masks.items()})

    def coordinates(self) -> Tensor:
        """Query coordinates of every global row, (N, 3), on the permutations' device."""
        device = self.permutations[0].device
        return kernel_coordinates([layer.shape[:2] for layer in self.layers], device)

    def rows(self, weights: dict[str, Tensor]) -> Tensor:
        """Per-layer tensors of the weights' shapes by global row, (N, 3, 3), 1×1 kernels in the centre (zeros around)."""
        rows = []
        for layer, perm in zip(self.layers, self.permutations):
            w = weights[layer.name].detach().reshape(layer.kernels, layer.shape[2], layer.shape[3])[perm.to(weights[layer.name].device)]
            if layer.shape[2] == 1:
                padded = w.new_zeros(layer.kernels, KERNEL, KERNEL)
                padded[:, 1:2, 1:2] = w
                w = padded
            rows.append(w)
        return torch.cat(rows)

    def targets(self, weights: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Original kernels by global row and the mask of the entries that count: real (not 1×1 padding) and kept."""
        real = self.rows({l.name: torch.ones(l.shape, dtype=torch.bool, device=weights[l.name].device) for l in self.layers})
        return self.rows(weights), real if self.keep is None else real & self.keep.to(real.device)

    def assemble(self, predictions: Tensor) -> dict[str, Tensor]:
        """Conv weights from row predictions (N, 3, 3): W_l[perm_l[r]] = M_l[perm_l[r]]·P[offset_l + r] (M: the mask, if any);
        1×1 layers keep the centre.

        One gather by the inverse permutations puts every kernel in its slot; the layers are views of it.
        Differentiable, so losses on the network reach the predictor.
        """
        if predictions.shape != (self.num_kernels, KERNEL, KERNEL):
            raise ShapeError(f"Expected predictions of shape ({self.num_kernels}, 3, 3), got {tuple(predictions.shape)}.")
        if self.keep is not None:
            predictions = predictions * self.keep
        pieces = predictions.index_select(0, self.gather).split(self.sizes)
        return {layer.name: (p[:, 1:2, 1:2] if layer.shape[2] == 1 else p).reshape(layer.shape) for layer, p in zip(self.layers, pieces)}

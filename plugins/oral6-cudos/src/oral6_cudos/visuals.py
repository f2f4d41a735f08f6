"""Pictures of a trained stream VAE: reconstructions, samples (per SOM component), latent traversals, the SOM map."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from oral6_core.bench import new_figure, save_figure

from .som import hit_perplexity

if TYPE_CHECKING:
    from .common import StreamVAE


def image_grid(images: Tensor, rows: int) -> np.ndarray:
    """Tile [N, C, H, W] images in [0, 1] into one [rows·H, cols·W, 3] array (grey for one channel)."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, channels, h, w = images.shape
    cols = -(-n // rows)
    canvas = torch.ones(rows * cols, channels, h, w)
    canvas[:n] = images
    grid = canvas.view(rows, cols, channels, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, channels)
    return grid.repeat(1, 1, 3).numpy() if channels == 1 else grid.numpy()


def save_grid(images: Tensor, rows: int, path: Path, title: str) -> Path:
    fig, ax = new_figure(figsize=(max(3, images.shape[0] / rows * 0.6), max(1.5, rows * 0.6 + 0.4)))
    ax.imshow(image_grid(images, rows), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return save_figure(fig, path)


@torch.no_grad()
def traversals(model: "StreamVAE", base: Tensor, steps: int = 7, span: float = 2.0) -> Tensor:
    """Decode ``base`` with each latent dimension swept over ``[−span, span]`` (one row per dimension)."""
    dims = base.shape[-1]
    z = base.repeat(dims * steps, 1)
    values = torch.linspace(-span, span, steps, device=z.device).repeat(dims)
    rows = torch.arange(dims * steps, device=z.device)
    z[rows, torch.arange(dims, device=z.device).repeat_interleave(steps)] = values
    return model.decode(z)


@torch.no_grad()
def save_model_visuals(model: "StreamVAE", out_dir: Path, env_index: int) -> list[Path]:
    """Write ``env{k}-reconstructions.png``, ``-samples.png``, ``-traversals.png`` (and ``-som.png`` for CUDOS)."""
    model.require_built()
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / f"env{env_index + 1}"
    files = []
    if model.preview is not None:
        originals = model.preview.to(model.device)
        recon = model.decode(model.encode(originals))
        files.append(save_grid(torch.cat([originals, recon]), 2, Path(f"{prefix}-reconstructions.png"), "data (top), reconstructions (bottom)"))
        base = model.encode(originals[:1])
    else:
        base = torch.zeros(1, model.config.latent_dim, device=model.device)
    som = getattr(model, "som", None)
    if som is not None:
        files += save_som_visuals(model, prefix, env_index)
    else:
        files.append(save_grid(model.sample(32), 4, Path(f"{prefix}-samples.png"), "samples from the prior"))
    files.append(save_grid(traversals(model, base), base.shape[-1], Path(f"{prefix}-traversals.png"),
                           "latent traversals (row = dimension, −2 … 2)"))
    return files


@torch.no_grad()
def save_som_visuals(model, prefix: Path, env_index: int) -> list[Path]:
    """Decoded component means on the SOM grid, each node's environment label, mixture weight and its BMU hits
    during environment ``env_index`` (with the number of nodes used and their perplexity in the title)."""
    som = model.som
    rows, cols = som.rows, som.cols
    decoded = model.decode(som.means.detach())
    label = model.node_hits.argmax(1).float().cpu().numpy()
    label[(model.node_hits.sum(1) == 0).cpu().numpy()] = np.nan
    weights = som.log_mixture_weights().exp().cpu().numpy()
    hits = model.node_hits[:, min(env_index, model.node_hits.shape[1] - 1)].cpu()
    used, perplexity = int((hits > 0).sum()), hit_perplexity(hits)
    fig, axes = new_figure(1, 4, figsize=(16, 4))
    axes[0].imshow(image_grid(decoded, rows), interpolation="nearest")
    axes[0].set_title("decoded SOM component means", fontsize=9)
    image = axes[1].imshow(label.reshape(rows, cols), cmap="tab10", vmin=0, vmax=9)
    axes[1].set_title("environment holding each node (blank: none)", fontsize=9)
    fig.colorbar(image, ax=axes[1], fraction=0.046)
    image = axes[2].imshow(weights.reshape(rows, cols), cmap="viridis")
    axes[2].set_title("mixture weights π", fontsize=9)
    fig.colorbar(image, ax=axes[2], fraction=0.046)
    image = axes[3].imshow((hits / max(float(hits.sum()), 1.0)).numpy().reshape(rows, cols), cmap="magma")
    axes[3].set_title(f"BMU hits in env {env_index + 1}: {used} nodes, perplexity {perplexity:.1f}", fontsize=9)
    fig.colorbar(image, ax=axes[3], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    som_map = save_figure(fig, Path(f"{prefix}-som.png"))
    busiest = model.node_hits.sum(1).argsort(descending=True)[:8]
    z = som.sample(busiest.repeat_interleave(8))
    samples = save_grid(model.decode(z), len(busiest), Path(f"{prefix}-samples.png"),
                        "samples per SOM component (row = one of the components hit most)")
    return [som_map, samples]

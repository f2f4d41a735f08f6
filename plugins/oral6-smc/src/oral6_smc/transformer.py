"""A small pre-norm transformer encoder over token ids, split timm-style (features, then a [CLS] head)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Block(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)); all projections are ``nn.Linear``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, dim)
        x = x + self.proj(attended)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyTransformer(nn.Module):
    """Token + position embeddings, ``depth`` blocks, a final norm; the head reads position ``readout`` (the answer slot)."""

    def __init__(self, vocab: int, max_len: int, num_outputs: int, dim: int = 64, depth: int = 2, heads: int = 4,
                 mlp_ratio: int = 2, readout: int = -1) -> None:
        super().__init__()
        self.readout = readout
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = nn.Linear(dim, num_outputs)

    def forward_features(self, x: Tensor) -> Tensor:
        """Hidden states (N, L, dim) of token ids (N, L)."""
        positions = torch.arange(x.shape[1], device=x.device)
        return self.norm(self.blocks(self.tokens(x) + self.positions(positions)))

    def forward_head(self, f: Tensor, pre_logits: bool = False) -> Tensor:
        pooled = f[:, self.readout]
        return pooled if pre_logits else self.head(pooled)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

"""The FishLeg optimizer (Garcia et al., ICLR 2023) and its oral6 factory.

Each step (paper, Algorithm 1):
  g = ∇[NLL + ½·wd‖θ‖²];  ḡ ← βḡ + (1−β)g;
  every k steps: u = ḡ/‖ḡ‖, z = Q(λ)u, d = (F̂ + γI)z − u, one Adam step on λ along ∇_λ(d · Q(λ)u),
    the gradient of the auxiliary loss A(λ) = ½ uᵀQF_γQu − uᵀQu with d held fixed;
  θ ← θ − η Q(λ) ḡ  (ḡ bias-corrected by 1/(1−βᵗ)).
Q starts at Q₀ = s·I with s = ``init_scale`` (default 1/γ, the damped inverse Fisher of a direction
with no curvature), so the first step is SGD with lr η·s.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from oral6_core import distributed
from oral6_core.components import Batch, OptimizerFactory, Task
from oral6_core.config import ComponentConfig
from oral6_core.errors import ConfigError, Oral6Error
from pydantic import Field
from torch import Tensor, nn

from .blocks import QBlock, build_blocks
from .fisher import FvpMethod, fisher_vector_product
from .likelihoods import FishLikelihood, likelihood_for_task


class FishLegConfig(ComponentConfig):
    lr: float = Field(0.05, gt=0, description="η: step size of the natural-gradient update θ ← θ − η Q(λ) ḡ.")
    init_scale: float | None = Field(None, gt=0, description=(
        "s: Q starts at s·I, so the first step is SGD with lr η·s (None: 1/γ, the damped inverse Fisher of a "
        "direction without curvature)."))
    beta: float = Field(0.9, ge=0, lt=1, description="β: decay of the gradient average ḡ ← βḡ + (1−β)g.")
    bias_correction: bool = Field(True, description="Divide ḡ by 1−βᵗ (makes the first step exactly SGD with lr η·s).")
    damping: float = Field(0.1, gt=0, description="γ: damping of the Fisher that Q(λ) inverts, F_γ = F + γI.")
    weight_decay: float = Field(0.0, ge=0, description="wd: L2 penalty ½·wd‖θ‖² added to the loss.")
    aux_lr: float = Field(3e-3, gt=0, description="Adam learning rate on λ (the paper's code uses 1e-4 and sweeps to 1e-2).")
    aux_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas for the auxiliary parameters λ.")
    aux_eps: float = Field(1e-8, gt=0, description="Adam epsilon for the auxiliary parameters λ.")
    aux_every: int = Field(20, ge=1, description="k: update λ every k steps (the paper: 10).")
    aux_batch_size: int | None = Field(None, ge=1, description=(
        "Rows of the observed batch used for the Fisher-vector product (None: all)."))
    fvp: FvpMethod = Field("fisher", description=(
        "Fisher-vector product with sampled labels: the positive semi-definite outer-product form Jᵀ s sᵀ J v from one "
        "forward-mode and one backward pass (fisher), a Hessian-vector product through autograd (hvp), or an "
        "antithetic finite difference of gradients (antithetic)."))
    fd_eps: float = Field(1e-3, gt=0, description="Norm of the parameter perturbation of the antithetic finite difference.")
    elementwise_scale: bool = Field(False, description=(
        "Kronecker blocks: add the elementwise rescaling A ⊙ (RᵀR (A ⊙ U) LᵀL) of the public PyTorch code (the paper's "
        "experiments do without it)."))
    max_factor_size: int = Field(2048, ge=1, description=(
        "Layers whose Kronecker factor would be larger fall back to a diagonal Q."))
    seed: int = Field(0, description="Seed of the generator that samples labels from the model.")


class FishLeg(torch.optim.Optimizer):
    """FishLeg: θ ← θ − η Q(λ) ḡ with Q(λ) ≈ F_γ⁻¹ learned online from the Legendre dual of the Fisher."""

    def __init__(self, model: nn.Module, likelihood: FishLikelihood, config: FishLegConfig | None = None) -> None:
        config = config or FishLegConfig()
        self.blocks: list[QBlock] = build_blocks(model, config.elementwise_scale, config.max_factor_size)
        params = [p for block in self.blocks for p in block.params]
        if not params:
            raise ConfigError("FishLeg got a model with no trainable parameters; unfreeze some parameters first.")
        defaults = {"lr": config.lr, "beta": config.beta, "damping": config.damping,
                    "weight_decay": config.weight_decay, "aux_lr": config.aux_lr}
        super().__init__([{"params": params, "fishleg_step": 0, "fishleg_aux_steps": 0}], defaults)
        self.config = config
        self.model = model
        self.likelihood = likelihood
        self._aux_x: Tensor | None = None
        self._factors: list[dict[str, Tensor]] | None = None
        self._generator = torch.Generator(device=params[0].device).manual_seed(config.seed)
        self.init_scale = config.init_scale if config.init_scale is not None else 1.0 / config.damping
        for block in self.blocks:
            lead = block.params[0]
            state = self.state[lead]
            state["momentum"] = torch.zeros_like(block.gather([p.detach() for p in block.params]))
            for name, value in block.init_lambda(self.init_scale, lead).items():
                state[f"q_{name}"] = value
                state[f"q_{name}_exp_avg"] = torch.zeros_like(value)
                state[f"q_{name}_exp_avg_sq"] = torch.zeros_like(value)

    # ----------------------------------------------------------------------- public API

    def observe(self, batch: Batch | Tensor) -> None:
        """Keep the inputs of the current training batch as the auxiliary batch for the next λ update."""
        x = batch.x if isinstance(batch, Batch) else batch
        size = self.config.aux_batch_size
        self._aux_x = (x if size is None else x[:size]).detach()

    @torch.no_grad()
    def precondition(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        """Q(λ) v for per-parameter ``vectors`` (ordered as ``param_groups[0]['params']``)."""
        out: list[Tensor] = []
        for block, factors, v in zip(self.blocks, self._current_factors(), self._split(vectors)):
            out.extend(block.scatter(block.apply(factors, block.gather(v))))
        return out

    def momentum(self) -> list[Tensor]:
        """ḡ per parameter (ordered as ``param_groups[0]['params']``)."""
        return [t for b in self.blocks for t in b.scatter(self.state[b.params[0]]["momentum"])]

    def fisher_vector_product(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        """F̂ v on the observed batch with labels sampled from the model (averaged over ranks)."""
        x = self._require_aux_batch()
        params = self.param_groups[0]["params"]
        product = fisher_vector_product(self.model, self.likelihood, x, params, vectors, self._generator,
                                        self.config.fvp, self.config.fd_eps)
        if distributed.is_active():
            flat = torch.cat([t.reshape(-1) for t in product])
            distributed.all_reduce_mean_(flat)
            product = [t.view_as(p) for t, p in zip(flat.split([p.numel() for p in params]), params)]
        return product

    @torch.no_grad()
    def aux_update(self, directions: Sequence[Tensor] | None = None) -> Tensor:
        """One Adam step on λ along ∇_λ A at u = directions/‖directions‖ (default: ḡ); returns A(λ) before the step.

        The value stays a tensor on the parameters' device, so the training step never waits on it.
        """
        group = self.param_groups[0]
        if directions is None:
            u_blocks = [self.state[b.params[0]]["momentum"] for b in self.blocks]
        else:
            u_blocks = [b.gather(v) for b, v in zip(self.blocks, self._split(directions))]
        norm = torch.sqrt(sum((u * u).sum() for u in u_blocks))  # type: ignore[arg-type]
        u_blocks = [u / norm.clamp_min(torch.finfo(u.dtype).tiny) for u in u_blocks]
        factors = self._current_factors()
        z_blocks = [b.apply(f, u) for b, f, u in zip(self.blocks, factors, u_blocks)]
        fz = self.fisher_vector_product([t for b, z in zip(self.blocks, z_blocks) for t in b.scatter(z)])
        d_blocks = [b.gather(fv) + group["damping"] * z - u
                    for b, fv, z, u in zip(self.blocks, self._split(fz), z_blocks, u_blocks)]
        grads = []
        for block, f, u, d in zip(self.blocks, factors, u_blocks, d_blocks):
            block_grads = block.lambda_grads(self._lambda(block), f, u, d)
            grads.extend(block_grads[name] for name in block.lambda_names)
        aux_loss = 0.5 * torch.stack([torch.vdot((d - u).flatten(), z.flatten())
                                      for d, u, z in zip(d_blocks, u_blocks, z_blocks)]).sum()
        group["fishleg_aux_steps"] += 1
        self._adam_on_lambda(grads, group)
        self._factors = None
        return aux_loss

    @torch.no_grad()
    def step(self, closure: Any = None) -> Tensor | None:  # type: ignore[override]
        """One FishLeg step; the gradients of the NLL must be in ``.grad``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        group["fishleg_step"] += 1
        t = group["fishleg_step"]
        beta, wd = group["beta"], group["weight_decay"]
        active = []
        for block in self.blocks:
            if all(p.grad is None for p in block.params):
                continue
            g = block.gather([torch.zeros_like(p) if p.grad is None else p.grad for p in block.params])
            if wd:
                g.add_(block.gather([p for p in block.params]), alpha=wd)
            self.state[block.params[0]]["momentum"].mul_(beta).add_(g, alpha=1 - beta)
            active.append(block)
        if self._is_aux_step(t):
            self.aux_update()
        correction = 1 - beta**t if self.config.bias_correction else 1.0
        step_size = group["lr"] / correction
        factors = dict(zip(map(id, self.blocks), self._current_factors()))
        for block in active:
            z = block.apply(factors[id(block)], self.state[block.params[0]]["momentum"])
            for p, delta in zip(block.params, block.scatter(z)):
                p.add_(delta, alpha=-step_size)
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["fishleg_generator"] = self._generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        generator = state_dict.pop("fishleg_generator", None)
        super().load_state_dict(state_dict)
        if generator is not None:
            self._generator.set_state(generator.cpu())
        self._factors = None

    def describe(self) -> list[dict[str, Any]]:
        """One row per block: its parameters, which rule chose its form of Q, and its λ size."""
        return [{"block": b.label, "form": b.kind, "parameters": sum(p.numel() for p in b.params),
                 "lambda": sum(self.state[b.params[0]][f"q_{n}"].numel() for n in b.lambda_names)} for b in self.blocks]

    # ----------------------------------------------------------------------- internals

    def _is_aux_step(self, t: int) -> bool:
        return t % self.config.aux_every == 0

    def _require_aux_batch(self) -> Tensor:
        if self._aux_x is None:
            raise Oral6Error(
                "FishLeg needs an auxiliary batch to learn its inverse Fisher: call optimizer.observe(batch) with "
                "the training batch before optimizer.step() (oral6's training loop does this for you)."
            )
        return self._aux_x

    def _split(self, vectors: Sequence[Tensor]) -> list[list[Tensor]]:
        vectors = list(vectors)
        sizes = [len(b.params) for b in self.blocks]
        if len(vectors) != sum(sizes):
            raise ConfigError(f"Expected {sum(sizes)} tensors, one per FishLeg parameter, got {len(vectors)}.")
        out, start = [], 0
        for size in sizes:
            out.append(vectors[start : start + size])
            start += size
        return out

    def _current_factors(self) -> list[dict[str, Tensor]]:
        if self._factors is None:
            self._factors = [b.factors(self._lambda(b)) for b in self.blocks]
        return self._factors

    def _lambda(self, block: QBlock) -> dict[str, Tensor]:
        state = self.state[block.params[0]]
        return {n: state[f"q_{n}"] for n in block.lambda_names}

    @torch.no_grad()
    def _adam_on_lambda(self, grads: Sequence[Tensor], group: dict[str, Any]) -> None:
        beta1, beta2 = self.config.aux_betas
        n = group["fishleg_aux_steps"]
        step_size = group["aux_lr"] * math.sqrt(1 - beta2**n) / (1 - beta1**n)
        keys = [(self.state[b.params[0]], name) for b in self.blocks for name in b.lambda_names]
        values = [state[f"q_{name}"] for state, name in keys]
        exp_avg = [state[f"q_{name}_exp_avg"] for state, name in keys]
        exp_avg_sq = [state[f"q_{name}_exp_avg_sq"] for state, name in keys]
        torch._foreach_lerp_(exp_avg, list(grads), 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, list(grads), list(grads), value=1 - beta2)
        denominator = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_add_(denominator, self.config.aux_eps)
        torch._foreach_addcdiv_(values, exp_avg, denominator, value=-step_size)

class FishLegFactory(OptimizerFactory):
    """FishLeg: natural gradient with an inverse Fisher learned online (Garcia et al., ICLR 2023)."""

    name = "fishleg"
    Config = FishLegConfig
    citation = ("Garcia, Freddi, Fotiadis, Li, Vakili, Bernacchia, Hennequin. Fisher-Legendre (FishLeg) optimization "
                "of deep neural networks. ICLR 2023.")

    def build(self, model: nn.Module, task: Task) -> torch.optim.Optimizer:
        return FishLeg(model, likelihood_for_task(task), self.config)  # type: ignore[arg-type]

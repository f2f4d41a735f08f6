"""The FishLeg optimizer (Garcia et al., ICLR 2023) and its oral6 factory.

Each step (paper, Algorithm 1):
  g = ∇[NLL + ½·wd‖θ‖²];  ḡ ← βḡ + (1−β)g;
  every k steps: u = ḡ/‖ḡ‖, z = Q(λ)u, d = (F̂ + γI)z − u, one Adam step on λ along ∇_λ(d · Q(λ)u),
    the gradient of the auxiliary loss A(λ) = ½ uᵀQF_γQu − uᵀQu with d held fixed;
  θ ← θ − η Q(λ) ḡ  (ḡ bias-corrected by 1/(1−βᵗ)).
Q starts at Q₀ = s·I with s = ``init_scale`` (default 1/γ, the damped inverse Fisher of a direction
with no curvature), so the first step is SGD with lr η·s.

With a pruner's masks (``set_masks``) and ``sparse`` on, every product is restricted to the kept
coordinates S (P the projection onto them): u = Pḡ/‖Pḡ‖, z = PQ(λ)Pu, d = PF̂Pz + γz − u and
θ ← θ − η PQ(λ)Pḡ, so Q(λ) is fitted to the inverse damped Fisher of the sparse network,
(F_SS + γI)⁻¹, and the step is its natural gradient, zero at pruned weights.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from oral6_core import distributed
from oral6_core.components import Batch, OptimizerFactory, Task
from oral6_core.config import ComponentConfig
from oral6_core.errors import CheckpointError, ConfigError, Oral6Error
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
    sparse: bool = Field(True, description=(
        "With a pruner's masks, learn and apply the inverse Fisher of the sparse network: pruned coordinates are "
        "removed from u, from the Fisher-vector product and from Q(λ)u, so the step is (F_SS + γI)⁻¹ḡ on the kept "
        "weights S and zero elsewhere (false: the dense Q(λ)ḡ, which the pruner then projects onto the kept weights)."))


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
        self._block_masks: list[Tensor | None] = [None] * len(self.blocks)  # P in each block's layout (None: dense)
        self._param_masks: list[Tensor | None] = [None] * len(params)
        for block in self.blocks:
            self._block_state(block)

    # ----------------------------------------------------------------------- public API

    def observe(self, batch: Batch | Tensor) -> None:
        """Keep the inputs of the current training batch as the auxiliary batch for the next λ update."""
        x = batch.x if isinstance(batch, Batch) else batch
        size = self.config.aux_batch_size
        self._aux_x = (x if size is None else x[:size]).detach()

    @torch.no_grad()
    def set_masks(self, masks: Mapping[Tensor, Tensor]) -> None:
        """Restrict FishLeg to the kept weights of a sparse network: ``masks`` maps parameters to boolean masks.

        True keeps a weight; parameters without a mask stay dense. With ``sparse`` off this does nothing.
        oral6's training loop calls it before the first step (after the pruner's ``on_train_start`` and
        any resume) and after every ``on_step_end`` that changed the masks; used by hand, call it again
        after ``load_state_dict``. It zeroes ḡ at pruned weights, so calling it twice with the same
        masks changes nothing.
        """
        if not self.config.sparse:
            return
        given = {id(p): m for p, m in masks.items()}
        params = self.param_groups[0]["params"]
        for p in params:
            mask = given.get(id(p))
            if mask is not None and tuple(mask.shape) != tuple(p.shape):
                raise ConfigError(f"FishLeg got a mask of shape {tuple(mask.shape)} for a parameter of shape "
                                  f"{tuple(p.shape)}; a mask must have its parameter's shape.")
        self._param_masks = [self._as_mask(given.get(id(p)), p) for p in params]
        start = 0
        for i, block in enumerate(self.blocks):
            pieces = self._param_masks[start : start + len(block.params)]
            start += len(block.params)
            if all(m is None for m in pieces):
                self._block_masks[i] = None
                continue
            mask = block.gather([torch.ones_like(p) if m is None else m for p, m in zip(block.params, pieces)])
            self._block_masks[i] = mask
            self._block_state(block)["momentum"].mul_(mask)

    @torch.no_grad()
    def precondition(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        """Q(λ) v for per-parameter ``vectors`` (ordered as ``param_groups[0]['params']``); PQ(λ)Pv with masks."""
        out: list[Tensor] = []
        for i, (block, factors, v) in enumerate(zip(self.blocks, self._current_factors(), self._split(vectors))):
            out.extend(block.scatter(self._restrict(i, block.apply(factors, self._restrict(i, block.gather(v))))))
        return out

    def momentum(self) -> list[Tensor]:
        """ḡ per parameter (ordered as ``param_groups[0]['params']``)."""
        return [t for b in self.blocks for t in b.scatter(self._block_state(b)["momentum"])]

    def fisher_vector_product(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        """F̂ v on the observed batch with labels sampled from the model (averaged over ranks); PF̂Pv with masks."""
        x = self._require_aux_batch()
        params = self.param_groups[0]["params"]
        masks = self._param_masks
        vectors = [v if m is None else v * m for v, m in zip(vectors, masks)]
        product = fisher_vector_product(self.model, self.likelihood, x, params, vectors, self._generator,
                                        self.config.fvp, self.config.fd_eps)
        if distributed.is_active():
            flat = torch.cat([t.reshape(-1) for t in product])
            distributed.all_reduce_mean_(flat)
            product = [t.view_as(p) for t, p in zip(flat.split([p.numel() for p in params]), params)]
        return [t if m is None else t * m for t, m in zip(product, masks)]

    @torch.no_grad()
    def aux_update(self, directions: Sequence[Tensor] | None = None) -> Tensor:
        """One Adam step on λ along ∇_λ A at u = directions/‖directions‖ (default: ḡ); returns A(λ) before the step.

        The value stays a tensor on the parameters' device, so the training step never waits on it.
        """
        group = self.param_groups[0]
        if directions is None:
            u_blocks = [self._block_state(b)["momentum"] for b in self.blocks]
        else:
            u_blocks = [self._restrict(i, b.gather(v)) for i, (b, v) in enumerate(zip(self.blocks, self._split(directions)))]
        norm = torch.sqrt(sum((u * u).sum() for u in u_blocks))  # type: ignore[arg-type]
        u_blocks = [u / norm.clamp_min(torch.finfo(u.dtype).tiny) for u in u_blocks]
        factors = self._current_factors()
        z_blocks = [self._restrict(i, b.apply(f, u)) for i, (b, f, u) in enumerate(zip(self.blocks, factors, u_blocks))]
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
        for i, block in enumerate(self.blocks):
            if all(p.grad is None for p in block.params):
                continue
            g = block.gather([torch.zeros_like(p) if p.grad is None else p.grad for p in block.params])
            if wd:
                g.add_(block.gather([p for p in block.params]), alpha=wd)
            self._block_state(block)["momentum"].mul_(beta).add_(self._restrict(i, g), alpha=1 - beta)
            active.append(i)
        if self._is_aux_step(t):
            self.aux_update()
        correction = 1 - beta**t if self.config.bias_correction else 1.0
        step_size = group["lr"] / correction
        factors = self._current_factors()
        for i in active:
            block = self.blocks[i]
            z = self._restrict(i, block.apply(factors[i], self._block_state(block)["momentum"]))
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
        if any("momentum" in s and "lambda" not in s for s in state_dict.get("state", {}).values()):
            raise CheckpointError("This FishLeg state was saved by an earlier version that kept λ beside the momentum "
                                  "(q_* entries); it cannot be resumed by this one. Start the run again.")
        super().load_state_dict(state_dict)
        if generator is not None:
            self._generator.set_state(generator.cpu())
        self._factors = None

    def describe(self) -> list[dict[str, Any]]:
        """One row per block: its parameters, which rule chose its form of Q, and its λ size."""
        return [{"block": b.label, "form": b.kind, "parameters": sum(p.numel() for p in b.params),
                 "lambda": sum(v.numel() for v in self._lambda(b).values())} for b in self.blocks]

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

    def _block_state(self, block: QBlock) -> dict[str, Any]:
        """The block's state (ḡ, λ and Adam's moments on λ), set to ḡ = 0, Q = s·I if absent.

        λ and its moments sit in nested dicts: a pruner zeroes the pruned entries of every tensor of
        ``state[p]`` shaped like p, which must hit ḡ but never λ. The state is absent at the start and
        after a pruner restarts the optimizer (IMP's rewinding pops ``state[p]``).
        """
        lead = block.params[0]
        state = self.state[lead]
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(block.gather([p.detach() for p in block.params]))
            lam = block.init_lambda(self.init_scale, lead)
            state["lambda"] = lam
            state["lambda_exp_avg"] = {n: torch.zeros_like(v) for n, v in lam.items()}
            state["lambda_exp_avg_sq"] = {n: torch.zeros_like(v) for n, v in lam.items()}
            self._factors = None
        return state

    def _lambda(self, block: QBlock) -> dict[str, Tensor]:
        return self._block_state(block)["lambda"]

    def _restrict(self, index: int, matrix: Tensor) -> Tensor:
        """P·matrix in block ``index``'s layout (in place; unchanged where the block is dense)."""
        mask = self._block_masks[index]
        return matrix if mask is None else matrix.mul_(mask)

    @staticmethod
    def _as_mask(mask: Tensor | None, param: Tensor) -> Tensor | None:
        """A 0/1 mask in ``param``'s dtype and device, or None where every weight is kept."""
        if mask is None or bool(mask.all()):
            return None
        return mask.to(device=param.device, dtype=param.dtype)

    @torch.no_grad()
    def _adam_on_lambda(self, grads: Sequence[Tensor], group: dict[str, Any]) -> None:
        beta1, beta2 = self.config.aux_betas
        n = group["fishleg_aux_steps"]
        step_size = group["aux_lr"] * math.sqrt(1 - beta2**n) / (1 - beta1**n)
        keys = [(self._block_state(b), name) for b in self.blocks for name in b.lambda_names]
        values = [state["lambda"][name] for state, name in keys]
        exp_avg = [state["lambda_exp_avg"][name] for state, name in keys]
        exp_avg_sq = [state["lambda_exp_avg_sq"][name] for state, name in keys]
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

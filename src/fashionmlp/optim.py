"""Muon, with AdamW for the parameters it does not suit: the optimizer of the ``fast`` recipe.

Muon (Keller Jordan, 2024) takes the momentum of a weight matrix's gradient and replaces it
by the nearest semi-orthogonal matrix, found by a few Newton-Schulz iterations, before the
step; it reaches a given accuracy in far fewer passes than AdamW. It suits 2-D hidden
weight matrices only, so biases and the output layer take AdamW, in the same optimizer (as
Keller Jordan's ``MuonWithAuxAdam`` does): one object for ``train_epoch``, a learning-rate
schedule and a checkpoint.

Why not ``torch.optim.Muon`` (torch 2.9 and later)? It always runs the Newton-Schulz
iterations in bfloat16, which a CPU without native bfloat16 emulates slowly and which is
not the float32 arithmetic a float32 run promises; here their dtype is a setting, and
:func:`~fashionmlp.fit` uses the run's own precision. It also takes matrices only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .errors import InvalidArgumentError

__all__ = ["Muon", "muon_param_groups", "newton_schulz"]

#: Keller Jordan's quintic coefficients: the steepest slope at zero that still converges.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(
    matrix: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """An approximately semi-orthogonal matrix near ``matrix`` (its ``U V^T``), by ``steps``
    quintic Newton-Schulz iterations computed in ``dtype``; returned in ``matrix``'s dtype.

    Singular values end up at most about 1.2, and for a well-conditioned matrix at least
    about 0.7: close enough to 1 for Muon, at a fraction of an exact decomposition's cost.

    Example:
        >>> from fashionmlp.optim import newton_schulz
        >>> q = newton_schulz(torch.randn(64, 128))
        >>> bool((torch.linalg.svdvals(q) - 1).abs().max() < 0.35)
        True
    """
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + 1e-7)  # singular values now at most 1
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, polynomial, x, beta=a)
    return (x.T if tall else x).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups marked ``muon=True``, AdamW for the others.

    Each parameter group is either a Muon group (2-D weight matrices: ``lr``, ``momentum``,
    ``nesterov``, ``weight_decay``, ``ns_steps``) or an AdamW group (``lr``, ``betas``,
    ``eps``, ``weight_decay``), chosen by its ``muon`` key; :func:`muon_param_groups`
    makes both for a model. A Muon step is
    ``W -= lr * sqrt(max(1, rows / cols)) * newton_schulz(momentum)``, with decoupled weight
    decay ``W *= 1 - lr * weight_decay``.

    Args:
        params: Parameter groups (dicts with a ``muon`` key), or parameters (all Muon).
        lr: Default learning rate of the groups that give none.
        momentum: Muon's momentum (default 0.95).
        nesterov: Nesterov momentum for Muon (default on).
        weight_decay: Default decoupled weight decay.
        ns_steps: Newton-Schulz iterations per Muon step (default 5).
        ns_dtype: The dtype of the Newton-Schulz arithmetic: ``torch.float32`` (default),
            or ``torch.bfloat16`` where it is native (CUDA, CPUs with AVX-512 BF16 or AMX).
        betas: AdamW's betas (default ``(0.9, 0.999)``).
        eps: AdamW's epsilon.

    Example:
        >>> from fashionmlp import FashionMLP
        >>> from fashionmlp.optim import Muon, muon_param_groups
        >>> model = FashionMLP()
        >>> optimizer = Muon(muon_param_groups(model, muon_lr=0.04, lr=4e-3, weight_decay=0.2))
        >>> [group["muon"] for group in optimizer.param_groups]
        [True, False]
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        *,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.float32,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise InvalidArgumentError(f"lr must be above 0, got {lr}")
        if ns_steps < 1:
            raise InvalidArgumentError(f"ns_steps must be at least 1, got {ns_steps}")
        defaults = {
            "lr": lr,
            "muon": True,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "ns_steps": ns_steps,
            "betas": betas,
            "eps": eps,
        }
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise InvalidArgumentError(
                    "Muon groups take 2-D weight matrices only; give biases, 1-D and "
                    "output-layer parameters a group with muon=False (AdamW)"
                )

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict[str, Any]) -> None:
        for parameter in group["params"]:
            if parameter.grad is None:
                continue
            state = self.state[parameter]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(parameter)
            buffer = state["momentum_buffer"]
            buffer.mul_(group["momentum"]).add_(parameter.grad)
            update = (
                parameter.grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
            )
            orthogonal = newton_schulz(update, group["ns_steps"], self.ns_dtype)
            rows, cols = parameter.shape
            parameter.mul_(1 - group["lr"] * group["weight_decay"])
            parameter.add_(orthogonal, alpha=-group["lr"] * max(1.0, rows / cols) ** 0.5)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        for parameter in group["params"]:
            if parameter.grad is None:
                continue
            state = self.state[parameter]
            if not state:
                state["step"] = 0  # a Python number: counting steps reads nothing back
                state["exp_avg"] = torch.zeros_like(parameter)
                state["exp_avg_sq"] = torch.zeros_like(parameter)
            state["step"] += 1
            step = state["step"]
            grad = parameter.grad
            state["exp_avg"].lerp_(grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(group["eps"])
            parameter.mul_(1 - group["lr"] * group["weight_decay"])
            parameter.addcdiv_(
                state["exp_avg"], denominator, value=-group["lr"] / (1 - beta1**step)
            )


def muon_param_groups(
    model: nn.Module,
    *,
    muon_lr: float,
    lr: float,
    weight_decay: float,
    muon_weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """:class:`Muon`'s two groups for a model: its hidden layers' weight matrices (Muon), and
    everything else, the biases and the output layer (AdamW).

    The output layer is found by the model's structure, not the order its layers were
    made in: it is the ``nn.Linear`` whose output the model returns, seen in one forward
    pass of a zero ``(1, 1, 28, 28)`` image (in eval mode, with torch's random state left as
    it was). A model of another kind (a CNN, say) gets Muon for its hidden linear layers'
    matrices and AdamW for everything else, its convolutions included. A group left empty
    is left out.

    Raises:
        InvalidArgumentError: The model's outputs are not one linear layer's own (they are
            scaled, or come from another kind of layer), so which one is the output layer
            cannot be told: give :class:`Muon` its groups yourself.
    """
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    output = _output_layer(model) if linears else None
    hidden = {id(layer.weight) for layer in linears if layer is not output}
    matrices = [p for p in model.parameters() if id(p) in hidden]
    others = [p for p in model.parameters() if id(p) not in hidden]
    groups = [
        {"params": matrices, "muon": True, "lr": muon_lr, "weight_decay": muon_weight_decay},
        {"params": others, "muon": False, "lr": lr, "weight_decay": weight_decay},
    ]
    return [group for group in groups if group["params"]]


def _output_layer(model: nn.Module) -> nn.Module:
    """The linear layer whose output the model returns (see :func:`muon_param_groups`)."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []

    def note(layer: nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen.append((layer, output))

    hooks = [m.register_forward_hook(note) for m in model.modules() if isinstance(m, nn.Linear)]
    weight = next(p for p in model.parameters() if p.is_floating_point())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            logits = model(torch.zeros(1, 1, 28, 28, dtype=weight.dtype, device=weight.device))
    except Exception as exc:  # a model that takes no FashionMNIST image: we cannot look
        raise InvalidArgumentError(
            f"cannot tell which layer produces the model's outputs: it did not run on a "
            f"(1, 1, 28, 28) image ({type(exc).__name__}: {exc}); give Muon its groups "
            "yourself"
        ) from exc
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for layer, output in seen:
        if output is logits:
            return layer
    raise InvalidArgumentError(
        "cannot tell which layer produces the model's outputs: they are not one linear "
        "layer's own (scaled, or another kind of layer's); give Muon its groups yourself "
        "(Muon([{'params': [...], 'muon': True}, {'params': [...], 'muon': False}]))"
    )

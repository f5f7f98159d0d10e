"""A minimal training loop around a learner's `train_step`."""
from __future__ import annotations

import time

import torch

from .progress import progress


def fit(model: torch.nn.Module, x: torch.Tensor, step, *, epochs: int, batch_size: int, lr: float,
        generator: torch.Generator, device: torch.device) -> list[float]:
    """Train `model` on x (N, ...) with Adam, calling step(model, batch, optimizer) per batch.

    Returns the mean loss of every epoch. Batches are drawn with `generator` (CPU), so a run
    is reproducible for a given seed."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    t0 = time.time()
    bar = progress(range(epochs), desc=f"training {type(model).__name__}")
    for epoch in bar:
        perm = torch.randperm(len(x), generator=generator)
        losses = [step(model, x[idx].to(device), opt) for idx in perm.split(batch_size)]
        history.append(sum(losses) / len(losses))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    print(f"  trained {type(model).__name__} for {epochs} epoch(s) in {time.time() - t0:.1f} s, "
          f"final loss {history[-1]:.4f}")
    return history


@torch.no_grad()
def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor, device: torch.device,
                       batch_size: int = 1000) -> float:
    """Mean squared error per pixel of model(x) against x, in eval mode."""
    model.eval()
    total = sum(((model(b.to(device)) - b.to(device)) ** 2).sum().item() for b in x.split(batch_size))
    return total / x.numel()

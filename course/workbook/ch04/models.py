"""Chapter 04 given models and helpers (CLIP): what the notebook's narrative calls (data, models,
samplers and measurements that are not exercises).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- helpers

@torch.no_grad()
def embed(module: nn.Module, inputs: torch.Tensor, device, batch_size: int = 500) -> torch.Tensor:
    """module(inputs) in eval mode, in batches, on the CPU: (N, E)."""
    was = module.training
    module.eval()
    out = torch.cat([module(b.to(device)).cpu() for b in inputs.split(batch_size)])
    module.train(was)
    return out


def linear_probe(Z_train: torch.Tensor, y_train: torch.Tensor, Z_test: torch.Tensor, num_classes: int,
                 steps: int = 300, weight_decay: float = 1e-4) -> torch.Tensor:
    """A logistic-regression classifier on frozen features (standardised), trained full-batch
    with L-BFGS; returns the predicted classes of Z_test (N_test,)."""
    mean, std = Z_train.mean(0), Z_train.std(0) + 1e-6
    A, B = (Z_train - mean) / std, (Z_test - mean) / std
    lin = nn.Linear(A.shape[1], num_classes)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(A), y_train) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin(B).argmax(1)

"""Chapter 07 given models and helpers (flow matching and rectified flow): what the notebook's
narrative calls (data, models, samplers and measurements that are not exercises).
"""

from __future__ import annotations

import math

import torch
from torch import nn


# ----------------------------------------------------------------------------- data, model, measures

CENTRES = 1.5 * torch.tensor([[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)] for k in range(8)])


def toy_data(n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight Gaussian blobs on a circle of radius 1.5, std 0.1: points (n, 2) float32 and
    their blob index (n,) int64 (the class label)."""
    k = torch.randint(0, 8, (n,), generator=generator)
    x = CENTRES.double()[k] + 0.1 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.float(), k


class ToyVelocity(nn.Module):
    """An MLP velocity model for 2-D points: [x, features of t in [0, 1], class embedding]
    -> v (B, 2). Labels 0..num_classes-1; y = num_classes (or None) means "no label"."""

    def __init__(self, num_classes: int = 8, width: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes + 1, 16)
        self.net = nn.Sequential(nn.Linear(2 + 16 + 16, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        k = torch.arange(8, device=x.device, dtype=torch.float32)[None, :]
        u = t.float()[:, None]
        feats = torch.cat([torch.sin(math.pi * (2 ** k) * u / 2), torch.cos(math.pi * (2 ** k) * u / 2)], dim=1)
        return self.net(torch.cat([x.float(), feats, self.embed(y)], dim=1)).to(x.dtype)


def uniform_timesteps(n: int) -> torch.Tensor:
    """n equal steps from t = 1 (noise) to t = 0 (data): (n + 1,) float64."""
    if n < 1:
        raise ValueError(f"the number of steps must be at least 1, got {n}")
    return torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_proj: int = 256, seed: int = 0) -> float:
    """The sliced 1-Wasserstein distance between two equal-sized 2-D point sets: the mean,
    over `n_proj` random directions, of the mean gap between the sorted projections."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"need two point sets of the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(a.shape[1], n_proj, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=0, keepdim=True)
    pa, pb = (a.double().cpu() @ d).sort(dim=0).values, (b.double().cpu() @ d).sort(dim=0).values
    return (pa - pb).abs().mean().item()


class Recorded:
    """Wraps a velocity function and keeps every point it is evaluated at (for plots)."""

    def __init__(self, velocity):
        self.velocity, self.points = velocity, []

    def __call__(self, x, t):
        self.points.append(x.detach().cpu().clone())
        return self.velocity(x, t)

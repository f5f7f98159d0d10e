"""Chapter 05 given models and helpers (denoising diffusion): what the notebook's narrative calls
(data, models, samplers and measurements that are not exercises).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- data, models, samplers

def toy_data(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 2-D toy distribution (n, 2): eight Gaussian blobs on a circle of radius 1.5, std 0.1."""
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = k.double() * (2 * math.pi / 8)
    centres = 1.5 * torch.stack([angle.cos(), angle.sin()], dim=1)
    return (centres + 0.1 * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()


class ToyDenoiser(nn.Module):
    """An MLP noise predictor for 2-D points: [x_t, features of t / T] -> eps_hat (B, 2)."""

    def __init__(self, T: int, width: int = 128):
        super().__init__()
        self.T = T
        self.net = nn.Sequential(nn.Linear(2 + 16, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        u = t.float()[:, None] / self.T  # (B, 1) in [0, 1)
        k = torch.arange(8, device=x.device, dtype=torch.float32)[None, :]
        feats = torch.cat([torch.sin(math.pi * (2 ** k) * u / 8), torch.cos(math.pi * (2 ** k) * u / 8)], dim=1)
        return self.net(torch.cat([x, feats], dim=1))


class ToyDenoiserNoTime(ToyDenoiser):
    """`ToyDenoiser` blind to the noise level: the same MLP (same parameters), its time features
    always computed at t = 0, whatever t it is given."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return super().forward(x, torch.zeros_like(t))


def ddim_timesteps(T: int, num_steps: int) -> list[int]:
    """`num_steps` timesteps from T - 1 down, evenly spaced ("trailing" spacing, as diffusers'
    `timestep_spacing="trailing"`): 1 step -> [T-1]; T steps -> [T-1, ..., 0]."""
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in 1..{T}, got {num_steps}")
    return sorted({int(round(T - k * T / num_steps)) - 1 for k in range(num_steps)}, reverse=True)


def to_images(x: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Model space [-1, 1] at any resolution -> (N, 1, size, size) in [0, 1] for display and judging."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


class EMA:
    """An exponential moving average of a model's weights, with warm-up:
    decay_n = min(decay, (1 + n) / (10 + n)) at update n."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        import copy
        self.model = copy.deepcopy(model).eval()
        self.decay, self.n = decay, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)
        self.n += 1

"""Chapter 03 figures (variational autoencoders)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


# ----------------------------------------------------------------------------- plots

def scatter_latents(ax, Z: torch.Tensor, y: torch.Tensor, title: str):
    """Z (N, 2) codes coloured by digit label y (N,); returns the scatter for a colour bar."""
    Z = Z.detach().cpu()
    sc = ax.scatter(Z[:, 0], Z[:, 1], c=y.cpu(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    ax.set_title(title, fontsize=9)
    return sc


def image_rows(rows: dict[str, torch.Tensor], title: str, n: int = 10):
    """One row of n 28x28 images (flattened or not, values in [0, 1]) per entry of rows."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.8, len(rows) * 0.9), squeeze=False)
    for i, (label, imgs) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[j].reshape(28, 28).detach().cpu(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def manifold(decode_probs, z1: torch.Tensor, z2: torch.Tensor, title: str):
    """Decode a grid of 2-D codes (z1[j], z2[i]) into one image: rows run top to bottom
    from large to small z2. decode_probs maps (M, 2) codes to (M, 784) probabilities."""
    n1, n2 = len(z1), len(z2)
    grid = torch.stack(torch.meshgrid(z2.flip(0), z1, indexing="ij"), -1).reshape(-1, 2)[:, [1, 0]]
    with torch.no_grad():
        imgs = decode_probs(grid).detach().cpu().reshape(n2, n1, 28, 28)
    canvas = imgs.permute(0, 2, 1, 3).reshape(n2 * 28, n1 * 28)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return fig


def rate_distortion(betas, rates, distortions, title: str = "rate vs distortion (test set)"):
    """Rate (KL, nats) against distortion (-log p(x|z), nats), one point per beta."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(distortions, rates, "o-")
    for b, r, d in zip(betas, rates, distortions):
        ax.annotate(f"β={b:g}", (d, r), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set(xlabel="distortion  E[-log p(x|z)]  (nats)", ylabel="rate  KL[q(z|x) || p(z)]  (nats)", title=title)
    return fig

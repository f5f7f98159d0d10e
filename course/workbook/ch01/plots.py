"""Chapter 01 figures (PCA and autoencoders)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


# ----------------------------------------------------------------------------- plots

def show_reconstructions(x: torch.Tensor, rows: dict[str, torch.Tensor], n: int = 8):
    """x (B, 1, 28, 28) originals; rows: method name -> reconstructions of the same shape."""
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(n * 0.9, (1 + len(rows)) * 1.0))
    for j in range(n):
        for i, (label, imgs) in enumerate([("input", x), *rows.items()]):
            ax = axes[i, j]
            ax.imshow(imgs[j].reshape(28, 28).detach().cpu(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("test images and their reconstructions")
    return fig


def scatter_codes(ax, Z: torch.Tensor, y: torch.Tensor, title: str) -> None:
    """Z (N, 2) codes coloured by digit label y (N,)."""
    sc = ax.scatter(Z[:, 0].cpu(), Z[:, 1].cpu(), c=y.cpu(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    return sc

"""Chapter 02 figures (denoising autoencoders)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


# ----------------------------------------------------------------------------- plots

def show_rows(rows: dict[str, torch.Tensor], n: int = 8, title: str = ""):
    """rows: label -> images (B, 1, 28, 28) grey or (B, 3, 28, 28) RGB, B >= n; one row per
    label, shown in [0, 1]."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 0.95), squeeze=False)
    for i, (label, imgs) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            img = imgs[j].detach().cpu().clamp(0, 1)
            if img.shape[0] == 3:
                ax.imshow(img.permute(1, 2, 0).numpy())
            else:
                ax.imshow(img.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(ax, sigmas, curves: dict[str, list[float]], ylabel: str, title: str, marker_at=None) -> None:
    """On `ax`, one line per method: a value (PSNR, SSIM, ...) vs the noise level sigma."""
    for name, ys in curves.items():
        ax.plot(sigmas, ys, "o-", label=name, ms=4)
    if marker_at is not None:
        ax.axvline(marker_at, color="gray", ls=":", lw=1)
    ax.set(xlabel="noise level sigma", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)

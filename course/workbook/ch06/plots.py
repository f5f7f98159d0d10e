"""Chapter 06 figures (text-to-image latent diffusion)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


# ----------------------------------------------------------------------------- plots

def show_grid(rows: dict[str, torch.Tensor], col_titles: list[str] | None = None, size: float = 0.9):
    """A grid of colour images: one row per entry (label -> (N, 3, H, W) in [0, 1])."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n + 1.2, size * len(rows) + 0.3), squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[r, j]
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j].permute(1, 2, 0).cpu().clamp(0, 1))
            if r == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=7)
        axes[r, 0].text(-0.1, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return fig


def plot_attention(image01: torch.Tensor, maps: torch.Tensor, words: list[str], title: str = ""):
    """The image (3, H, W) and one attention map per token: maps (L, h, w), averaged over heads."""
    L = len(words)
    fig, axes = plt.subplots(1, L + 1, figsize=(1.3 * (L + 1), 1.6))
    axes[0].imshow(image01.permute(1, 2, 0).cpu().clamp(0, 1))
    axes[0].set_title(title, fontsize=7)
    for k in range(L):
        axes[k + 1].imshow(maps[k].cpu(), cmap="magma", vmin=0, vmax=float(maps[:L].max()))
        axes[k + 1].set_title(words[k], fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_curve(xs, series: dict[str, list[float]], xlabel: str, ylabel: str, title: str):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, ys in series.items():
        ax.plot(xs, ys, "o-", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, ylim=(0, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

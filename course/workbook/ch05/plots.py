"""Chapter 05 figures (denoising diffusion)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


# ----------------------------------------------------------------------------- plots

def plot_schedules(schedules: dict[str, torch.Tensor]):
    """alpha_bar_t and log-SNR = log(alpha_bar / (1 - alpha_bar)) against t, for each schedule."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, ab in schedules.items():
        ab = ab.double()
        axes[0].plot(ab.numpy(), label=name)
        axes[1].plot((ab / (1 - ab)).log().numpy(), label=name)
    axes[0].set(xlabel="t", ylabel="alpha_bar_t", title="signal kept: alpha_bar_t")
    axes[1].set(xlabel="t", ylabel="log SNR", title="log(alpha_bar / (1 - alpha_bar))")
    axes[0].legend()
    fig.tight_layout()
    return fig


def show_rows(rows: dict[str, torch.Tensor], col_titles: list[str] | None = None, size: float = 1.0):
    """A grid of images: one row per entry (label -> (N, 1, H, W) in [0, 1])."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n, size * len(rows) + 0.3), squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[r, j]
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            if r == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
        axes[r, 0].text(-0.1, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def plot_toy_steps(snapshots: list[tuple[str, torch.Tensor]], data: torch.Tensor):
    """Scatter plots of 2-D points at several steps of a chain (title -> (N, 2)), data in grey."""
    fig, axes = plt.subplots(1, len(snapshots), figsize=(2.2 * len(snapshots), 2.4), squeeze=False)
    for ax, (title, pts) in zip(axes[0], snapshots):
        ax.scatter(data[:, 0], data[:, 1], s=1, c="lightgrey")
        ax.scatter(pts[:, 0].cpu(), pts[:, 1].cpu(), s=1, c="tab:blue")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), title=title, xticks=[], yticks=[])
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def plot_toy_errors(samples: dict[str, torch.Tensor], data: torch.Tensor, ts: list[int],
                    errors: dict[str, list[float]], ylabel: str):
    """Samples of several 2-D models (name -> (N, 2), data in grey) and one error curve per model
    against t (name -> one value per entry of ts, log scale)."""
    n = len(samples)
    fig, axes = plt.subplots(1, n + 1, figsize=(2.4 * n + 4, 2.6), gridspec_kw={"width_ratios": [1] * n + [1.8]})
    for ax, (title, pts) in zip(axes, samples.items()):
        ax.scatter(data[:, 0], data[:, 1], s=1, c="lightgrey")
        ax.scatter(pts[:, 0].cpu(), pts[:, 1].cpu(), s=1, c="tab:blue")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), title=title, xticks=[], yticks=[])
        ax.set_aspect("equal")
    for name, ys in errors.items():
        axes[-1].plot(ts, ys, "o-", ms=3, label=name)
    axes[-1].set(xlabel="t", ylabel=ylabel, yscale="log", title="error against the noise level")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curve(xs, series: dict[str, list[float]], xlabel: str, ylabel: str, title: str, logx: bool = False):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, ys in series.items():
        ax.plot(xs, ys, "o-", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    return fig

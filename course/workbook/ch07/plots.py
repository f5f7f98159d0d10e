"""Chapter 07 figures (flow matching and rectified flow)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


# ----------------------------------------------------------------------------- plots

def plot_points(panels: list[tuple[str, torch.Tensor]], data: torch.Tensor):
    """Scatter plots of 2-D point sets (title -> (N, 2)), the data in grey."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6), squeeze=False)
    for ax, (title, pts) in zip(axes[0], panels):
        ax.scatter(data[:, 0], data[:, 1], s=1, c="lightgrey")
        ax.scatter(pts[:, 0].cpu(), pts[:, 1].cpu(), s=1, c="tab:blue")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), title=title, xticks=[], yticks=[])
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def plot_trajectories(panels: list[tuple[str, list[torch.Tensor]]], data: torch.Tensor, n_show: int = 60):
    """ODE trajectories (title -> the points of every step, each (N, 2)): lines from the
    noise (red dots) to the samples (blue dots), the data in grey."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, steps) in zip(axes[0], panels):
        path = torch.stack([s[:n_show] for s in steps])  # (steps, n_show, 2)
        ax.scatter(data[:, 0], data[:, 1], s=1, c="lightgrey")
        ax.plot(path[:, :, 0], path[:, :, 1], c="tab:gray", lw=0.6, alpha=0.7)
        ax.scatter(path[0, :, 0], path[0, :, 1], s=4, c="tab:red")
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=4, c="tab:blue")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), title=title, xticks=[], yticks=[])
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def plot_curve(xs, series: dict[str, list[float]], xlabel: str, ylabel: str, title: str, logx: bool = False):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, ys in series.items():
        ax.plot(xs, ys, "o-", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log", base=2)
    ax.legend()
    fig.tight_layout()
    return fig

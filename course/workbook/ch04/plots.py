"""Chapter 04 figures (CLIP)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F


def show_examples(x: torch.Tensor, texts: list[str], n: int = 8, cols: int = 8):
    """A grid of n images x (N, 3, S, S) with their captions."""
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i].permute(1, 2, 0).clamp(0, 1).cpu())
            words = texts[i].split()
            ax.set_title(" ".join(words[:4]) + ("\n" + " ".join(words[4:]) if len(words) > 4 else ""),
                         fontsize=7)
    fig.tight_layout()
    return fig


def plot_similarity(sim: torch.Tensor, x: torch.Tensor, texts: list[str]):
    """Cosine similarities sim (n, n) of n images x (rows) and their n captions (columns)."""
    n = sim.shape[0]
    fig = plt.figure(figsize=(0.55 * n + 3, 0.55 * n + 2.2))
    ax = fig.add_axes([0.25, 0.02, 0.7, 0.7])
    im = ax.imshow(sim.cpu(), cmap="viridis")
    ax.set_xticks(range(n), texts, rotation=60, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if sim[i, j] > sim.mean() else "white")
        thumb = fig.add_axes([0.25 - 0.7 / n, 0.72 - 0.7 * (i + 1) / n, 0.7 / n, 0.7 / n])
        thumb.imshow(x[i].permute(1, 2, 0).clamp(0, 1).cpu())
        thumb.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.04, label="cosine similarity")
    return fig


def plot_training(history: dict):
    """history: {"loss": [...], "scale": [...]} per step -> loss and exp(t) curves."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3))
    a0.plot(history["loss"], lw=0.8)
    a0.set(xlabel="step", ylabel="loss", title="contrastive loss")
    a1.plot(history["scale"], color="C1")
    a1.set(xlabel="step", ylabel="exp(t) = 1 / temperature", title="learned logit scale")
    fig.tight_layout()
    return fig


def plot_accuracy(acc: dict[str, dict[str, float]], title: str):
    """acc: {group (e.g. 'seen', 'held-out'): {attribute: accuracy}} as grouped bars."""
    groups = list(acc)
    attrs = list(acc[groups[0]])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    w = 0.8 / len(groups)
    for i, g in enumerate(groups):
        vals = [acc[g][a] for a in attrs]
        bars = ax.bar([j + i * w for j in range(len(attrs))], vals, w, label=g)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + w * (len(groups) - 1) / 2 for j in range(len(attrs))], attrs)
    ax.set(ylim=(0, 1.1), ylabel="accuracy", title=title)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


def plot_joint_pca(image_emb: torch.Tensor, panels: list[tuple]):
    """Unit image embeddings (dots) and class text embeddings (crosses) projected on the first
    two principal directions of the image embeddings. panels: one (labels (N,), class
    embeddings (C, E), class names, title[, palette]) per subplot; colour = label."""
    Z = F.normalize(image_emb, dim=1)
    mean = Z.mean(0)
    V = torch.linalg.svd(Z - mean, full_matrices=False).Vh[:2].T  # (E, 2)
    P = (Z - mean) @ V
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    axes = [axes] if len(panels) == 1 else axes
    cmap = plt.get_cmap("tab10")
    for ax, panel in zip(axes, panels):
        labels, text_emb, names, title = panel[:4]
        palette = panel[4] if len(panel) > 4 else [cmap(k % 10) for k in range(len(names))]
        Q = (F.normalize(text_emb, dim=1) - mean) @ V
        ax.scatter(P[:, 0], P[:, 1], c=[palette[int(l)] for l in labels], s=5, alpha=0.4)
        for k, name in enumerate(names):
            ax.scatter(Q[k, 0], Q[k, 1], color=palette[k], marker="X", s=130, edgecolor="black")
            ax.annotate(name, (Q[k, 0], Q[k, 1]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set(title=title, xticks=[], yticks=[])
    fig.tight_layout()
    return fig

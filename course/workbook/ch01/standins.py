"""Chapter 01 stand-ins: each exercise that later cells use, done by scikit-learn, SciPy (or
torch where no library has it), with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `pca_fit = ch01.standins.pca_fit`: the rest of
the chapter runs with the stand-in; the exercise earns no points (its check says so). Remove
the line when your own version is ready.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..standin import stand_in


def _require(ok: bool, message: str) -> None:
    """The contracts' ValueError for a bad argument."""
    if not ok:
        raise ValueError(message)


def _valid_count(k, most: int, what: str) -> None:
    _require(type(k) is int and 1 <= k <= most, f"{what} must be an int in [1, {most}] (not a bool), got {k!r}")


# ----------------------------------------------------------------------------- 1 PCA

@stand_in
def pca_fit(X, k):
    """scikit-learn's `PCA(n_components=k, svd_solver="full")` (its `mean_`, `components_` as the
    columns of V, `singular_values_`; its sign convention: each direction's largest entry positive),
    in X's dtype."""
    from sklearn.decomposition import PCA
    _require(X.ndim == 2, f"X must be a matrix (N, D), not of shape {tuple(X.shape)}")
    _valid_count(k, min(X.shape), "k")
    fitted = PCA(n_components=k, svd_solver="full").fit(X.detach().cpu().numpy())
    back = lambda a: torch.as_tensor(a.copy()).to(dtype=X.dtype, device=X.device)
    return back(fitted.mean_), back(fitted.components_).T.contiguous(), back(fitted.singular_values_)


@stand_in
def pca_encode(X, mean, V):
    """torch: `torch.einsum("nd,dk->nk", X - mean, V)`."""
    return torch.einsum("nd,dk->nk", X - mean, V)


@stand_in
def pca_decode(Z, mean, V):
    """torch: `torch.addmm(mean, Z, V.T)` (= Z V^T + mean)."""
    return torch.addmm(mean.expand(Z.shape[0], -1), Z, V.T)


@stand_in
def principal_angles(A, B):
    """SciPy's `scipy.linalg.subspace_angles` (in float64), ascending, in A's dtype."""
    from scipy.linalg import subspace_angles
    _require(A.ndim == B.ndim == 2 and len(A) == len(B),
             f"A and B must be matrices with as many rows, not of shapes {tuple(A.shape)} and {tuple(B.shape)}")
    angles = subspace_angles(A.detach().cpu().double().numpy(), B.detach().cpu().double().numpy())
    return torch.as_tensor(angles).sort().values.to(dtype=A.dtype, device=A.device)


# ----------------------------------------------------------------------------- 2 autoencoders

def _stack(widths, last) -> nn.Sequential:
    """Linear layers through `widths` with ReLUs between them, then `last` (or nothing)."""
    layers = [m for a, b in zip(widths[:-1], widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())][:-1]
    return nn.Sequential(*layers, *([last] if last is not None else []))


class _EncodeDecode(nn.Module):
    """encode = self.encoder, decode = self.decoder, forward = decode(encode(x))."""

    def encode(self, x):
        code = self.encoder(x)
        return code

    def decode(self, z):
        image = self.decoder(z)
        return image

    def forward(self, x):
        return self.decoder(self.encoder(x))


@stand_in
class MLPAutoencoder(_EncodeDecode):
    """Plain torch (no library has this small network): the layers of the exercise's docstring
    (`encoder`: Linear and ReLU layers, no activation on the code; `decoder`: the mirror image,
    ending with a Sigmoid); encode, decode, forward."""

    def __init__(self, D=784, k=32, hidden=(512, 128)):
        super().__init__()
        self.encoder = _stack((D, *hidden, k), None)
        self.decoder = _stack((k, *reversed(hidden), D), nn.Sigmoid())


@stand_in
class ConvAutoencoder(_EncodeDecode):
    """Plain torch (no library has this small network): the layers of the exercise's docstring
    for 1 x 28 x 28 images (two stride-2 convolutions and a Linear to the code; the mirror image
    back, ending with a Sigmoid); encode, decode, forward."""

    def __init__(self, k=32, c=32):
        super().__init__()
        flat = 2 * c * 7 * 7
        self.encoder = nn.Sequential(nn.Conv2d(1, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(flat, k))
        self.decoder = nn.Sequential(nn.Linear(k, flat), nn.ReLU(), nn.Unflatten(1, (2 * c, 7, 7)),
                                     nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(c, 1, 4, 2, 1), nn.Sigmoid())


@stand_in
def train_step(model, x, optimizer):
    """One step of torch.optim on `F.mse_loss(model(x), x)`; returns the loss before the step."""
    value = F.mse_loss(model(x), x)
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    optimizer.step(None)  # no closure
    return float(value.detach())


# ----------------------------------------------------------------------------- 3 retrieval

@stand_in
def retrieval_precision(Z, y, ks):
    """scikit-learn's `NearestNeighbors(...).kneighbors()` (without a query it leaves each point
    out of its own neighbours, by index), then the fraction of the first k with the query's label,
    averaged over the queries; float64."""
    from sklearn.neighbors import NearestNeighbors
    _require(Z.ndim == 2, f"Z must be a matrix (N, k), not of shape {tuple(Z.shape)}")
    _require(tuple(y.shape) == (len(Z),), f"y must have the shape ({len(Z)},) of one label per code, not {tuple(y.shape)}")
    wanted = [*ks]
    _require(len(wanted) > 0, "ks must hold at least one k")
    for k in wanted:
        _valid_count(k, len(Z) - 1, "each k")
    neighbours = NearestNeighbors(n_neighbors=max(wanted)).fit(Z.detach().cpu().double().numpy()).kneighbors(
        return_distance=False)
    labels = y.detach().cpu()
    same = (labels[torch.as_tensor(neighbours)] == labels[:, None]).double()  # (N, max k), nearest first
    return torch.stack([same[:, :k].mean() for k in wanted])

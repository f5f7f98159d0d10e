"""Chapter 01 reference solutions: PCA and autoencoders."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def pca_fit(X, k):
    """Fit PCA to the rows of X by a thin SVD of the centred data.

    Args:
        X: float tensor (N, D), one sample per row (float32 or float64).
        k: int, number of components, 1 <= k <= min(N, D) (a bool is not an int here).

    Returns:
        mean: (D,) column means of X. All three results in the dtype of X.
        V: (D, k) top-k right singular vectors of Xc = X - mean as columns,
            ordered by decreasing singular value (orthonormal columns).
        S: (k,) the top-k singular values, decreasing.

    Sign convention: singular vectors are defined only up to sign, so each
    column of V is flipped so that its entry of largest absolute value is
    positive. This makes the result deterministic.

    Raises:
        ValueError: if X is not 2-D or k is not an int in [1, min(N, D)] (also for k=True).
    """
    if X.dim() != 2:
        raise ValueError(f"X must be 2-D (N, D), got shape {tuple(X.shape)}")
    N, D = X.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(N, D):
        raise ValueError(f"k must be an int with 1 <= k <= min(N, D) = {min(N, D)}, got {k!r}")
    # mu = (1/N) sum_n x_n
    mean = X.mean(dim=0)  # (D,)
    # Xc = X - mu
    Xc = X - mean  # (N, D)
    # Xc = U Sigma V^T
    U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)  # Vh: (min(N, D), D)
    V = Vh[:k].T  # (D, k)
    S = S[:k]  # (k,)
    # flip v_j -> sign(v_j[argmax |v_j|]) * v_j
    rows = V.abs().argmax(dim=0)  # (k,)
    signs = torch.sign(V[rows, torch.arange(k)])  # (k,)
    V = V * signs  # (D, k)
    return mean, V, S


def pca_encode(X, mean, V):
    """Project data onto the principal subspace.

    Args:
        X: (N, D) data.
        mean: (D,) mean from pca_fit.
        V: (D, k) principal directions from pca_fit.

    Returns:
        Z: (N, k) codes, Z = (X - mean) V.
    """
    # Z = (X - mu) V
    Z = (X - mean) @ V  # (N, k)
    return Z


def pca_decode(Z, mean, V):
    """Map PCA codes back to data space.

    Args:
        Z: (N, k) codes.
        mean: (D,) mean from pca_fit.
        V: (D, k) principal directions from pca_fit.

    Returns:
        X_hat: (N, D) reconstructions, X_hat = Z V^T + mean.
    """
    # X_hat = Z V^T + mu
    X_hat = Z @ V.T + mean  # (N, D)
    return X_hat


def principal_angles(A, B):
    """Principal angles between the column spaces of A and B.

    Args:
        A: (D, p) full column rank; columns span the first subspace.
        B: (D, q) full column rank; columns span the second subspace.
            The columns need not be orthonormal.

    Returns:
        angles: (min(p, q),) angles in radians, ascending, in [0, pi/2] (never NaN;
            all 0 when one subspace contains the other), with the dtype of A.
            Computed in float64 internally.
    """
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must be 2-D with the same number of rows, got {tuple(A.shape)} and {tuple(B.shape)}")
    # orthonormal bases: A = Qa Ra, B = Qb Rb
    Qa, _ = torch.linalg.qr(A.to(torch.float64))  # (D, p)
    Qb, _ = torch.linalg.qr(B.to(torch.float64))  # (D, q)
    # cos(theta_i) = sigma_i(Qa^T Qb)
    cos = torch.linalg.svdvals(Qa.T @ Qb).clamp(0.0, 1.0)  # (min(p, q),)
    # theta_i = arccos(sigma_i)
    angles = torch.arccos(cos).sort().values  # (min(p, q),)
    return angles.to(A.dtype)


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder D -> hidden -> k -> reversed(hidden) -> D.

    The encoder has ReLUs between layers and no activation on the code;
    the decoder mirrors it and ends with a Sigmoid, so outputs are in (0, 1).
    """

    def __init__(self, D=784, k=32, hidden=(512, 128)):
        """Build encoder and decoder.

        Args:
            D: int, input dimension.
            k: int, code dimension.
            hidden: tuple of hidden widths (h1, ..., hL) for the encoder; the
                decoder uses them reversed. hidden=() gives a single linear
                layer each way.
        """
        super().__init__()
        # encoder: D -> h1 -> ... -> hL -> k
        dims = [D, *hidden, k]
        layers = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.encoder = nn.Sequential(*layers)
        # decoder: k -> hL -> ... -> h1 -> D, then sigmoid
        dims = dims[::-1]
        layers = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        layers.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*layers)

    def encode(self, x):
        """Encode inputs.

        Args:
            x: (B, D) inputs.

        Returns:
            z: (B, k) codes.
        """
        # z = f(x)
        return self.encoder(x)

    def decode(self, z):
        """Decode codes.

        Args:
            z: (B, k) codes.

        Returns:
            x_hat: (B, D) reconstructions in (0, 1).
        """
        # x_hat = g(z)
        return self.decoder(z)

    def forward(self, x):
        """Reconstruct inputs.

        Args:
            x: (B, D) inputs.

        Returns:
            x_hat: (B, D) reconstructions, x_hat = g(f(x)).
        """
        return self.decode(self.encode(x))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for 1 x 28 x 28 images with a k-dim code."""

    def __init__(self, k=32, c=32):
        """Build encoder and decoder.

        Args:
            k: int, code dimension.
            c: int, channels of the first conv layer (the second has 2c).
        """
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, 2c, 7, 7)
            nn.Flatten(),  # (B, 2c*7*7)
            nn.Linear(2 * c * 7 * 7, k),  # (B, k)
        )
        self.decoder = nn.Sequential(
            nn.Linear(k, 2 * c * 7 * 7),
            nn.ReLU(),  # (B, 2c*7*7)
            nn.Unflatten(1, (2 * c, 7, 7)),  # (B, 2c, 7, 7)
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, c, 14, 14)
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28)
            nn.Sigmoid(),
        )

    def encode(self, x):
        """Encode images.

        Args:
            x: (B, 1, 28, 28) images.

        Returns:
            z: (B, k) codes.
        """
        # z = f(x)
        return self.encoder(x)

    def decode(self, z):
        """Decode codes.

        Args:
            z: (B, k) codes.

        Returns:
            x_hat: (B, 1, 28, 28) reconstructions in (0, 1).
        """
        # x_hat = g(z)
        return self.decoder(z)

    def forward(self, x):
        """Reconstruct images.

        Args:
            x: (B, 1, 28, 28) images.

        Returns:
            x_hat: (B, 1, 28, 28) reconstructions, x_hat = g(f(x)).
        """
        return self.decode(self.encode(x))


def train_step(model, x, optimizer):
    """Take one optimizer step on the mean squared reconstruction error.

    Args:
        model: nn.Module mapping x to x_hat of the same shape.
        x: (B, ...) batch of inputs (also the targets).
        optimizer: torch.optim.Optimizer over model's parameters.

    Returns:
        loss: Python float, the loss before the step.
    """
    x_hat = model(x)  # same shape as x
    # L = (1 / #elements) sum (x_hat - x)^2
    loss = F.mse_loss(x_hat, x)
    optimizer.zero_grad()
    loss.backward()
    # theta <- update(theta, dL/dtheta)
    optimizer.step()
    return loss.item()


def retrieval_precision(Z, y, ks):
    """Precision@k of k-nearest-neighbour retrieval in code space.

    For every query i, the k nearest other points (Euclidean distance,
    i itself excluded by index; an exact copy of z_i is another point, at
    distance 0) are retrieved; precision@k is the fraction of them
    with label y[i], averaged over all N queries. Points at exactly the same
    distance may be retrieved in any order.

    Args:
        Z: (N, k) codes.
        y: (N,) integer labels.
        ks: sequence of ints, each with 1 <= k <= N - 1, in any order.

    Returns:
        precision: float64 tensor (len(ks),), in the order of ks.

    Raises:
        ValueError: if Z is not 2-D, y is not (N,), or some k is out of range.
    """
    if Z.dim() != 2:
        raise ValueError(f"Z must be 2-D (N, k), got shape {tuple(Z.shape)}")
    N = Z.shape[0]
    if y.dim() != 1 or y.shape[0] != N:
        raise ValueError(f"y must have shape ({N},) to match Z, got {tuple(y.shape)}")
    ks = list(ks)
    if len(ks) == 0:
        raise ValueError("ks must be non-empty")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= N - 1:
            raise ValueError(f"each k must be an int with 1 <= k <= N - 1 = {N - 1}, got {k!r}")
    # d_ij = ||z_i - z_j||, with d_ii = +inf so a point never retrieves itself
    dist = torch.cdist(Z, Z)  # (N, N)
    dist.fill_diagonal_(float("inf"))
    idx = dist.topk(max(ks), dim=1, largest=False).indices  # (N, kmax), nearest first
    # hit_ij = [y_{nn_j(i)} == y_i]
    hits = (y[idx] == y[:, None]).to(torch.float64)  # (N, kmax)
    # P@k = (1/N) sum_i (1/k) sum_{j<=k} hit_ij
    cum = hits.cumsum(dim=1).mean(dim=0)  # (kmax,)
    k_t = torch.tensor(ks, dtype=torch.long)  # (len(ks),)
    return cum[k_t - 1] / k_t.to(torch.float64)


# Quiz: Which statements are true? (choose all that apply)
#   A: Both PCA and autoencoders reduce dimensionality.
#   B: Both are linear models.
#   C: A linear autoencoder with squared loss learns the same subspace as PCA,
#      but not necessarily the same basis.
#   D: A deep non-linear autoencoder can reconstruct images with lower error
#      than PCA at the same code size.
#   E: PCA components are learned by gradient descent.
answer_pca_vs_ae = {"A", "C", "D"}

# Quiz: An autoencoder is trained with the quadratic loss. Among the training images whose
# code is some z, one pixel is 0 in half of them and 1 in the other half. Which value does
# the best decoder output for that pixel at z?
#   A: 0
#   B: 0.5
#   C: 1
#   D: 0 or 1, at random
answer_ae_loss = "B"

# Quiz: For binary (0/1) pixels, which loss matches a Bernoulli likelihood?
#   A: quadratic loss
#   B: cross-entropy
#   C: triplet loss
#   D: L1 loss
answer_binary_loss = "B"

"""Tests for autograder/chapters/01_autoencoders/solutions.py against independent oracles."""

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from autograder import chapters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_S = chapters.module("01_autoencoders", "solutions")
ConvAutoencoder = _S.ConvAutoencoder
MLPAutoencoder = _S.MLPAutoencoder
answer_ae_loss = _S.answer_ae_loss
answer_binary_loss = _S.answer_binary_loss
answer_pca_vs_ae = _S.answer_pca_vs_ae
pca_decode = _S.pca_decode
pca_encode = _S.pca_encode
pca_fit = _S.pca_fit
principal_angles = _S.principal_angles
retrieval_precision = _S.retrieval_precision
train_step = _S.train_step


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def anisotropic(N, D, seed):
    """Data with clearly separated singular values (well-defined components)."""
    g = gen(seed)
    scales = torch.linspace(3.0, 0.3, D, dtype=torch.float64)
    X = torch.randn(N, D, generator=g, dtype=torch.float64) * scales
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    return X @ Q.T + torch.randn(D, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------

PCA_CASES = [(50, 10, 3, 0), (200, 6, 6, 1), (30, 40, 5, 2), (100, 20, 1, 3)]


@pytest.mark.parametrize("N,D,k,seed", PCA_CASES)
def test_pca_matches_sklearn(N, D, k, seed):
    X = anisotropic(N, D, seed)
    mean, V, S = pca_fit(X, k)
    assert mean.shape == (D,) and V.shape == (D, k) and S.shape == (k,)

    sk = PCA(n_components=k, svd_solver="full").fit(X.numpy())
    comps = torch.from_numpy(sk.components_.T.copy())  # (D, k)
    signs = torch.sign((comps * V).sum(0))  # align sklearn's signs to ours
    comps = comps * signs

    torch.testing.assert_close(mean, torch.from_numpy(sk.mean_), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(V, comps, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(S, torch.from_numpy(sk.singular_values_), rtol=1e-8, atol=1e-8)

    Z = pca_encode(X, mean, V)
    Z_sk = torch.from_numpy(sk.transform(X.numpy())) * signs
    torch.testing.assert_close(Z, Z_sk, rtol=1e-8, atol=1e-8)

    X_hat = pca_decode(Z, mean, V)
    X_hat_sk = torch.from_numpy(sk.inverse_transform(sk.transform(X.numpy())))
    torch.testing.assert_close(X_hat, X_hat_sk, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("N,D,k,seed", PCA_CASES)
def test_pca_structure(N, D, k, seed):
    X = anisotropic(N, D, seed)
    mean, V, S = pca_fit(X, k)
    # orthonormal columns, decreasing singular values
    torch.testing.assert_close(V.T @ V, torch.eye(k, dtype=X.dtype), rtol=0, atol=1e-10)
    assert torch.all(S[:-1] >= S[1:])
    # sign convention: the largest-|.| entry of each column is positive
    rows = V.abs().argmax(0)
    assert torch.all(V[rows, torch.arange(k)] > 0)
    # sign convention is deterministic under a sign flip of the data's frame
    mean2, V2, _ = pca_fit(-X, k)
    torch.testing.assert_close(mean2, -mean)
    torch.testing.assert_close(V2, V, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("N,D,seed", [(30, 5, 0), (8, 20, 1), (12, 12, 2)])
def test_pca_full_rank_reconstruction_exact(N, D, seed):
    X = randn(N, D, seed=seed)
    k = min(N - 1, D)  # rank of the centred data
    mean, V, _ = pca_fit(X, k)
    torch.testing.assert_close(pca_decode(pca_encode(X, mean, V), mean, V), X, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("N,D,r,seed", [(40, 10, 3, 0), (25, 7, 1, 1), (60, 30, 8, 2)])
def test_pca_affine_subspace_exact(N, D, r, seed):
    g = gen(seed)
    C = torch.randn(N, r, generator=g, dtype=torch.float64)
    B = torch.randn(r, D, generator=g, dtype=torch.float64)
    c = 5.0 * torch.randn(D, generator=g, dtype=torch.float64)
    X = C @ B + c  # lies in an r-dim affine subspace
    mean, V, S = pca_fit(X, r)
    torch.testing.assert_close(pca_decode(pca_encode(X, mean, V), mean, V), X, rtol=1e-9, atol=1e-9)
    # V spans the row space of B
    angles = scipy.linalg.subspace_angles(V.numpy(), B.T.numpy())
    assert np.max(angles) < 1e-6
    # no variance left beyond r components
    _, _, S_all = pca_fit(X, min(N, D))
    assert S_all[r:].max() < 1e-9 * S_all[0]


def test_pca_float32_dtype():
    X = randn(20, 5, seed=4, dtype=torch.float32)
    mean, V, S = pca_fit(X, 2)
    assert mean.dtype == V.dtype == S.dtype == torch.float32


@pytest.mark.parametrize(
    "shape,k",
    [((10,), 1), ((2, 3, 4), 1), ((10, 4), 0), ((10, 4), 5), ((3, 8), 4), ((10, 4), -1), ((10, 4), 2.0)],
)
def test_pca_errors(shape, k):
    X = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError):
        pca_fit(X, k)


# ---------------------------------------------------------------------------
# Principal angles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("D,p,q,seed", [(10, 3, 4, 0), (20, 5, 2, 1), (6, 3, 3, 2), (50, 1, 7, 3), (8, 8, 8, 4)])
def test_principal_angles_match_scipy(D, p, q, seed):
    g = gen(seed)
    A = torch.randn(D, p, generator=g, dtype=torch.float64)
    B = torch.randn(D, q, generator=g, dtype=torch.float64)
    ang = principal_angles(A, B)
    ref = scipy.linalg.subspace_angles(A.numpy(), B.numpy())[::-1].copy()  # scipy: descending
    assert ang.shape == (min(p, q),)
    assert ang.dtype == torch.float64
    torch.testing.assert_close(ang, torch.from_numpy(ref), rtol=1e-6, atol=1e-6)
    assert torch.all(ang[:-1] <= ang[1:])
    assert torch.all((ang >= 0) & (ang <= math.pi / 2))


@pytest.mark.parametrize("D,p,q,seed", [(10, 3, 4, 0), (15, 4, 4, 1)])
def test_principal_angles_basis_invariance(D, p, q, seed):
    g = gen(seed)
    A = torch.randn(D, p, generator=g, dtype=torch.float64)
    B = torch.randn(D, q, generator=g, dtype=torch.float64)
    M = torch.randn(p, p, generator=g, dtype=torch.float64) + p * torch.eye(p, dtype=torch.float64)
    torch.testing.assert_close(principal_angles(A @ M, B), principal_angles(A, B), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(principal_angles(B, A), principal_angles(A, B), rtol=1e-6, atol=1e-6)


def test_principal_angles_identical_and_orthogonal():
    g = gen(7)
    A = torch.randn(12, 4, generator=g, dtype=torch.float64)
    M = torch.randn(4, 4, generator=g, dtype=torch.float64) + 4 * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(principal_angles(A, A @ M), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-6)

    I = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(
        principal_angles(I[:, :2], I[:, 2:5]), torch.full((2,), math.pi / 2, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_principal_angles_dtype_float32():
    A = randn(10, 3, seed=8, dtype=torch.float32)
    B = randn(10, 2, seed=9, dtype=torch.float32)
    ang = principal_angles(A, B)
    assert ang.dtype == torch.float32 and ang.shape == (2,)
    ref = scipy.linalg.subspace_angles(A.double().numpy(), B.double().numpy())[::-1].copy()
    torch.testing.assert_close(ang, torch.from_numpy(ref).float(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Autoencoders
# ---------------------------------------------------------------------------


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("D,k,hidden", [(784, 32, (512, 128)), (20, 3, (16,)), (12, 4, ()), (30, 5, (25, 15, 10))])
def test_mlp_autoencoder_structure_and_counts(D, k, hidden):
    torch.manual_seed(0)
    model = MLPAutoencoder(D=D, k=k, hidden=hidden)
    dims = [D, *hidden, k]
    enc_expected = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    rdims = dims[::-1]
    dec_expected = sum(a * b + b for a, b in zip(rdims[:-1], rdims[1:]))
    assert count(model.encoder) == enc_expected
    assert count(model.decoder) == dec_expected
    assert count(model) == enc_expected + dec_expected

    # layer layout: Linear (ReLU Linear)* on both sides, decoder ends in Sigmoid
    enc_types = [type(m) for m in model.encoder]
    dec_types = [type(m) for m in model.decoder]
    L = len(hidden) + 1
    assert enc_types == [nn.Linear] + [nn.ReLU, nn.Linear] * (L - 1)
    assert dec_types == [nn.Linear] + [nn.ReLU, nn.Linear] * (L - 1) + [nn.Sigmoid]
    assert [m.out_features for m in model.encoder if isinstance(m, nn.Linear)] == [*hidden, k]
    assert [m.out_features for m in model.decoder if isinstance(m, nn.Linear)] == [*hidden[::-1], D]


def test_mlp_default_param_count():
    model = MLPAutoencoder()
    enc = (784 * 512 + 512) + (512 * 128 + 128) + (128 * 32 + 32)
    dec = (32 * 128 + 128) + (128 * 512 + 512) + (512 * 784 + 784)
    assert count(model) == enc + dec


@pytest.mark.parametrize("D,k,hidden,B", [(20, 3, (16, 8), 5), (12, 4, (), 3), (784, 32, (512, 128), 2)])
def test_mlp_autoencoder_shapes_and_grads(D, k, hidden, B):
    torch.manual_seed(1)
    model = MLPAutoencoder(D=D, k=k, hidden=hidden)
    x = torch.rand(B, D, generator=gen(2))
    z = model.encode(x)
    x_hat = model(x)
    assert z.shape == (B, k)
    assert x_hat.shape == (B, D)
    assert model.decode(z).shape == (B, D)
    torch.testing.assert_close(model.decode(z), x_hat)
    assert torch.all((x_hat > 0) & (x_hat < 1))

    F.mse_loss(x_hat, x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def conv_param_count(k, c):
    enc = (1 * c * 9 + c) + (c * 2 * c * 9 + 2 * c) + (2 * c * 49 * k + k)
    dec = (k * 2 * c * 49 + 2 * c * 49) + (2 * c * c * 16 + c) + (c * 1 * 16 + 1)
    return enc, dec


@pytest.mark.parametrize("k,c", [(32, 32), (8, 4), (2, 1)])
def test_conv_autoencoder_counts(k, c):
    model = ConvAutoencoder(k=k, c=c)
    enc, dec = conv_param_count(k, c)
    assert count(model.encoder) == enc
    assert count(model.decoder) == dec
    assert isinstance(model.decoder[-1], nn.Sigmoid)
    assert not isinstance(model.encoder[-1], (nn.ReLU, nn.Sigmoid))


@pytest.mark.parametrize("k,c,B", [(8, 4, 3), (32, 32, 2)])
def test_conv_autoencoder_shapes_and_grads(k, c, B):
    torch.manual_seed(3)
    model = ConvAutoencoder(k=k, c=c)
    x = torch.rand(B, 1, 28, 28, generator=gen(4))
    z = model.encode(x)
    x_hat = model(x)
    assert z.shape == (B, k)
    assert x_hat.shape == (B, 1, 28, 28)
    torch.testing.assert_close(model.decode(z), x_hat)
    assert torch.all((x_hat > 0) & (x_hat < 1))
    # intermediate shapes stated in the architecture
    h = model.encoder[:2](x)
    assert h.shape == (B, c, 14, 14)
    h = model.encoder[:4](x)
    assert h.shape == (B, 2 * c, 7, 7)
    h = model.decoder[:5](z)
    assert h.shape == (B, c, 14, 14)

    F.mse_loss(x_hat, x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------
# train_step
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_train_step_matches_manual_sgd(kind):
    torch.manual_seed(5)
    if kind == "mlp":
        model = MLPAutoencoder(D=20, k=3, hidden=(16,))
        x = torch.rand(8, 20, generator=gen(6))
    else:
        model = ConvAutoencoder(k=4, c=2)
        x = torch.rand(4, 1, 28, 28, generator=gen(6))
    ref = copy.deepcopy(model)
    before = [p.detach().clone() for p in model.parameters()]

    with torch.no_grad():
        x_hat = model(x)
        expected_loss = F.mse_loss(x_hat, x).item()
        # the loss by its definition: mean of squared errors over all elements
        assert expected_loss == pytest.approx(((x_hat - x) ** 2).sum().item() / x.numel(), rel=1e-5)

    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    loss = train_step(model, x, opt)
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected_loss, rel=1e-6, abs=0)

    # manual step on the clone
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    ref_opt.zero_grad()
    ref_loss = F.mse_loss(ref(x), x)
    ref_loss.backward()
    ref_opt.step()
    assert loss == ref_loss.item()

    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert all(changed)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_train_step_zeroes_stale_grads_and_decreases_loss():
    torch.manual_seed(7)
    model = MLPAutoencoder(D=10, k=2, hidden=(8,))
    x = torch.rand(16, 10, generator=gen(8))
    for p in model.parameters():  # stale gradients must not leak into the step
        p.grad = torch.full_like(p, 1e3)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, x, opt)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref_opt.zero_grad()
    F.mse_loss(ref(x), x).backward()
    ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [train_step(model, x, opt) for _ in range(50)]
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------
# retrieval_precision
# ---------------------------------------------------------------------------


def brute_force_precision(Z, y, ks):
    Z, y = np.asarray(Z, dtype=np.float64), np.asarray(y)
    d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    return np.array([(y[order[:, :k]] == y[:, None]).mean() for k in ks])


def sklearn_precision(Z, y, ks):
    nn_ = NearestNeighbors(n_neighbors=max(ks), algorithm="brute").fit(Z)
    idx = nn_.kneighbors(return_distance=False)  # X=None: excludes the query itself
    return np.array([(y[idx[:, :k]] == y[:, None]).mean() for k in ks])


@pytest.mark.parametrize(
    "N,d,C,ks,seed",
    [(60, 4, 3, [1, 5, 10], 0), (100, 2, 5, [7, 1, 99], 1), (37, 8, 2, [3], 2), (150, 16, 10, [1, 2, 20, 50], 3)],
)
def test_retrieval_precision_matches_oracles(N, d, C, ks, seed):
    g = gen(seed)
    y = torch.randint(0, C, (N,), generator=g)
    centres = torch.randn(C, d, generator=g, dtype=torch.float64)
    Z = centres[y] + 0.8 * torch.randn(N, d, generator=g, dtype=torch.float64)
    p = retrieval_precision(Z, y, ks)
    assert p.dtype == torch.float64 and p.shape == (len(ks),)
    ref1 = brute_force_precision(Z.numpy(), y.numpy(), ks)
    ref2 = sklearn_precision(Z.numpy(), y.numpy(), ks)
    np.testing.assert_allclose(ref1, ref2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.numpy(), ref1, rtol=0, atol=1e-12)
    # float32 codes give the same answer
    np.testing.assert_allclose(retrieval_precision(Z.float(), y, ks).numpy(), ref1, rtol=0, atol=1e-12)


def test_retrieval_precision_perfect_clusters():
    g = gen(11)
    C, m, d = 4, 10, 3
    y = torch.arange(C).repeat_interleave(m)
    Z = 100.0 * torch.randn(C, d, generator=g)[y] + 0.01 * torch.randn(C * m, d, generator=g)
    p = retrieval_precision(Z, y, [1, 5, m - 1])
    torch.testing.assert_close(p, torch.ones(3, dtype=torch.float64))
    # beyond the cluster size precision must drop: exactly (m-1)/k
    p = retrieval_precision(Z, y, [2 * m])
    torch.testing.assert_close(p, torch.tensor([(m - 1) / (2 * m)], dtype=torch.float64))


def test_retrieval_precision_errors():
    Z = torch.randn(10, 3, generator=gen(12))
    y = torch.zeros(10, dtype=torch.long)
    for ks in ([0], [10], [1, 11], [-1]):
        with pytest.raises(ValueError):
            retrieval_precision(Z, y, ks)
    with pytest.raises(ValueError):
        retrieval_precision(Z, y[:9], [1])
    with pytest.raises(ValueError):
        retrieval_precision(Z[0], y, [1])
    assert retrieval_precision(Z, y, (9,)).item() == 1.0


# ---------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------


def test_quiz_answers():
    assert answer_pca_vs_ae == {"A", "C", "D"}
    assert answer_ae_loss == "B"
    assert answer_binary_loss == "B"


# ---------------------------------------------------------------------------
# The contract points the hidden checks exercise
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pca_sign_convention_and_dtype(dtype):
    X = anisotropic(30, 6, seed=4).to(dtype)
    mean, V, S = pca_fit(X, 4)
    assert mean.dtype == V.dtype == S.dtype == dtype
    top = V.gather(0, V.abs().argmax(0, keepdim=True))
    assert bool((top > 0).all())


def test_retrieval_precision_follows_the_order_of_ks():
    Z = randn(20, 2, seed=3)
    y = torch.tensor([3, 7] * 10)
    p = retrieval_precision(Z, y, [5, 1, 19])
    q = retrieval_precision(Z, y, [1, 5, 19])
    assert torch.equal(p, q[[1, 0, 2]])
    assert p.dtype == torch.float64


def test_principal_angles_small_angle_in_float32_input():
    A = randn(8, 2, seed=1)
    Q, _ = torch.linalg.qr(A)
    w = randn(8, seed=2)
    w = w - Q @ (Q.T @ w)
    t = 2e-3
    B = torch.stack([math.cos(t) * Q[:, 0] + math.sin(t) * w / w.norm(), randn(8, seed=5)], 1)
    th = principal_angles(A.float(), B.float())
    oracle = np.sort(scipy.linalg.subspace_angles(A.float().double().numpy(), B.float().double().numpy()))
    assert th.dtype == torch.float32
    assert np.allclose(th.double().numpy(), oracle, atol=1e-6, rtol=0)

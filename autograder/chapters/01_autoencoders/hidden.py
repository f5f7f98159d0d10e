"""Chapter 01 hidden checks: the learner's code against independent oracles and the
reference on fresh random inputs (float32 and float64, several sizes), with known mistakes
recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back, and harness snippets (`run`, `twin`) execute in the kernel where a
check needs the learner's objects there (weights copied into a model, a model and optimizer
handed to `train_step`, an error raised on bad input)."""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from hypothesis import assume, strategies as st
from sklearn.decomposition import PCA

from autograder.hidden import draw_size, generators, grade_choice, load_reference_weights, parameters
from autograder.hidden.properties import describe_tensor, dtypes, for_all, tensors
from autograder.mutants import known_mistakes
from autograder.remote import run, twin
from . import solutions as ref
from workbook import ch01
from workbook.checks import Checks, tolerance

CH = "01_autoencoders"
_gen = generators(CH)
D = ch01.DIAGNOSES



def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# The learner's function called in the kernel on bad input: the name of what it raised.
RAISES = '01_autoencoders.raises'


def _raises_value_error(c: Checks, fn, cases: list[tuple[str, tuple]], hint: str) -> None:
    """fn(*args) must raise ValueError for every (description, args) case."""
    for what, args in cases:
        raised = c.call(run, RAISES, fn=fn, args=list(args), inputs=what)
        c.true(raised == "ValueError", f"{getattr(fn, '__name__', 'the function')} must raise ValueError "
               f"for {what}", inputs=what, expected="ValueError",
               got="no error" if raised is None else raised, hint=hint)


def _pca_data(g: torch.Generator, N: int, Dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Random X (N, D) with a non-zero mean and well separated variances, whose principal
    directions each have one clearly largest entry (the sign convention is well defined)."""
    for _ in range(50):
        X = (torch.randn(N, Dim, generator=g, dtype=torch.float64) * torch.linspace(3, 0.5, Dim, dtype=torch.float64)
             + torch.randn(Dim, generator=g, dtype=torch.float64) * 4).to(dtype)
        _, V, S = ref.pca_fit(X.double(), min(N, Dim))
        top = V.abs().sort(dim=0, descending=True).values
        if bool((top[0] - top[1] > 0.05).all()) and bool((S[:-1] / S[1:] > 1.05).all()):
            break
    return X


def pca(pca_fit, pca_encode, pca_decode) -> None:
    c = Checks("pca (hidden)")
    g = _gen("pca")
    cases = [(torch.float64, draw_size(g, 30, 50), draw_size(g, 6, 10), 3), (torch.float64, draw_size(g, 8, 12), 20, 5),
             (torch.float32, draw_size(g, 25, 40), draw_size(g, 5, 8), 1), (torch.float32, 9, 9, 9)]
    for dtype, N, Dim, k in cases:
        X = _pca_data(g, N, Dim, dtype)
        inputs = f"random X ({N}, {Dim}) {_name(dtype)} with a non-zero mean, k={k}"
        out = c.call(pca_fit, X.clone(), k, inputs=inputs)
        c.true(isinstance(out, (tuple, list)) and len(out) == 3, "pca_fit should return (mean, V, S)",
               inputs=inputs, got=type(out).__name__)
        mean, V, S = out
        for what, t, shape in (("mean", mean, (Dim,)), ("V", V, (Dim, k)), ("S", S, (k,))):
            c.tensor(what, t, shape=shape, inputs=inputs)
            c.true(t.dtype == dtype, f"{what} has dtype {t.dtype}, expected {dtype} (the dtype of X)",
                   inputs=inputs, hint=D["keep_dtype"])
        X64 = X.double()
        sk = PCA(n_components=k, svd_solver="full").fit(X64.numpy())
        _, V_ref, _ = ref.pca_fit(X64, k)  # the stated sign convention, in float64
        diag = known_mistakes(CH, "pca_fit", lambda f: f(X.clone(), k))
        scale = float(X64.abs().max())
        c.close("mean", mean, torch.from_numpy(sk.mean_.copy()), **tolerance(dtype, scale=scale, ops=N),
                inputs=inputs, mistakes={d: m[0] for d, m in diag.items()})
        # S is compared through S**2 (the variances times N): a correct eigh of the scatter
        # matrix gets S**2 to rounding, but S itself only to sqrt(rounding) where S ~ 0
        S_sk = torch.from_numpy(sk.singular_values_.copy())
        c.close("S**2", S.double() ** 2, S_sk ** 2, **tolerance(dtype, scale=scale ** 2 * N, ops=4 * N),
                inputs=inputs, mistakes={d: m[2].double() ** 2 for d, m in diag.items()})
        V_sk = torch.from_numpy(sk.components_.T.copy())
        c.close("V (up to the sign of each column)", V * _signs(V, V_sk), V_sk, **tolerance(dtype, ops=64 * Dim),
                inputs=inputs, mistakes={d: m[1] * _signs(m[1], V_sk) for d, m in diag.items()
                                         if m[1].shape == V_sk.shape}, hint=D["orthonormal"])
        c.close("V", V, V_ref, **tolerance(dtype, ops=64 * Dim), inputs=inputs, hint=D["sign_convention"])

        m_ref, V_ref, _ = ref.pca_fit(X, k)  # in X's dtype
        Z = c.call(pca_encode, X.clone(), m_ref, V_ref, inputs=inputs + ", your pca_encode with the reference's fit")
        c.tensor("pca_encode(X, mean, V)", Z, shape=(N, k), inputs=inputs)
        c.true(Z.dtype == dtype, f"pca_encode returned {Z.dtype}, expected {dtype}", inputs=inputs,
               hint=D["keep_dtype"])
        c.close("pca_encode", Z, (X64 - m_ref.double()) @ V_ref.double(), **tolerance(dtype, scale=scale, ops=Dim),
                inputs=inputs, mistakes=known_mistakes(CH, "pca_encode", lambda f: f(X, m_ref, V_ref)))
        Z_ref = ref.pca_encode(X, m_ref, V_ref)
        X_hat = c.call(pca_decode, Z_ref.clone(), m_ref, V_ref, inputs=inputs + ", your pca_decode")
        c.tensor("pca_decode(Z, mean, V)", X_hat, shape=(N, Dim), inputs=inputs)
        c.true(X_hat.dtype == dtype, f"pca_decode returned {X_hat.dtype}, expected {dtype}", inputs=inputs,
               hint=D["keep_dtype"])
        c.close("pca_decode", X_hat, Z_ref.double() @ V_ref.double().T + m_ref.double(),
                **tolerance(dtype, scale=scale, ops=k), inputs=inputs,
                mistakes=known_mistakes(CH, "pca_decode", lambda f: f(Z_ref, m_ref, V_ref)))
    X = torch.randn(6, 4, generator=g, dtype=torch.float64)
    _raises_value_error(c, pca_fit, [("X of shape (6,) (not 2-D)", (X[:, 0], 1)),
                                     ("X of shape (2, 3, 4) (not 2-D)", (X.reshape(2, 3, 4), 1)),
                                     ("k=0", (X, 0)), ("k=5 > min(N, D) = 4", (X, 5)), ("k=2.5", (X, 2.5))],
                        D["pca_errors"])
    _raises_value_error(c, pca_fit, [("k=True (a bool)", (X, True)), ("k=False (a bool)", (X, False))], D["bool_k"])
    c.done()


def _signs(V: torch.Tensor, V_other: torch.Tensor) -> torch.Tensor:
    """The signs (+-1 per column) that best align the columns of V with those of V_other."""
    s = torch.sign((V.double() * V_other.double()).sum(0))
    s[s == 0] = 1
    return s.to(V.dtype)


def principal_angles(fn) -> None:
    c = Checks("principal_angles (hidden)")
    g = _gen("angles")
    cases = [(torch.float64, draw_size(g, 8, 12), 3, 4, True), (torch.float32, draw_size(g, 6, 9), 2, 2, True),
             (torch.float32, draw_size(g, 8, 12), 4, 2, False), (torch.float64, draw_size(g, 5, 8), 1, 3, True),
             (torch.float32, draw_size(g, 7, 10), 3, 2, True)]
    for dtype, Dim, p, q, shared in cases:
        A = torch.randn(Dim, p, generator=g, dtype=torch.float64)
        B = torch.randn(Dim, q, generator=g, dtype=torch.float64) @ torch.randn(q, q, generator=g, dtype=torch.float64)
        if shared:  # a direction of B within 0.3-0.9 mrad of span(A): arccos is ill-conditioned there
            Q, _ = torch.linalg.qr(A)
            a = Q @ torch.randn(p, generator=g, dtype=torch.float64)
            w = torch.randn(Dim, generator=g, dtype=torch.float64)
            w = w - Q @ (Q.T @ w)
            theta = 3e-4 * (1 + 2 * float(torch.rand(1, generator=g)))
            B[:, 0] = 2 * (math.cos(theta) * a / a.norm() + math.sin(theta) * w / w.norm())
        A, B = A.to(dtype), B.to(dtype)
        inputs = f"random A ({Dim}, {p}) and B ({Dim}, {q}) {_name(dtype)}, non-orthonormal columns" + \
                 (", B within 1 mrad of A in one direction" if shared else "")
        th = c.call(fn, A.clone(), B.clone(), inputs=inputs)
        c.tensor("angles", th, shape=(min(p, q),), inputs=inputs)
        c.true(th.dtype == dtype, f"angles have dtype {th.dtype}, expected {dtype} (the dtype of A)",
               inputs=inputs, hint=D["keep_dtype"])
        oracle = torch.from_numpy(np.sort(scipy.linalg.subspace_angles(A.double().numpy(), B.double().numpy())).copy())
        # arccos of a cosine near 1 (an angle t) is good to about eps / t: float64 inside is exact
        # to 1e-12 here, float32 inside is off by about 1e-5
        c.close("angles", th, oracle, atol=1e-6, rtol=tolerance(dtype)["rtol"], inputs=inputs,
                mistakes=known_mistakes(CH, "principal_angles", lambda f: f(A, B)),
                hint=D["float64_inside"] if dtype == torch.float32 and shared else None)
    # the same subspace from two bases (integer entries: B = A @ R exactly, in either dtype);
    # (D, p) against (D, q >= p) with span(A) inside span(B): all angles 0, cosines 1 up to rounding
    for dtype, p, extra in [(torch.float64, 3, 0), (torch.float32, 4, 0), (torch.float64, 5, 0),
                            (torch.float32, 3, 1), (torch.float64, 4, 2)]:
        A, B = _same_subspace(g, draw_size(g, p + 2, p + 6), p, extra)
        A, B = A.to(dtype), B.to(dtype)
        inputs = f"A ({A.shape[0]}, {p}) {_name(dtype)} with integer entries, B = A @ R for an invertible " \
                 f"integer R" + (f" and {extra} more columns (span(A) inside span(B))" if extra else " (equal spans)")
        th = c.call(fn, A.clone(), B.clone(), inputs=inputs)
        c.tensor("angles", th, shape=(p,), finite=False, inputs=inputs)
        c.true(bool(torch.isfinite(th).all()), "angles contain NaN or inf", inputs=inputs, got=th,
               hint=D["clamp_cos"])
        c.close("angles", th, torch.zeros(p, dtype=torch.float64), atol=1e-6, rtol=0, inputs=inputs,
                mistakes=known_mistakes(CH, "principal_angles", lambda f: f(A, B)), hint=D["orthonormalise"])
    c.done()


def _same_subspace(g: torch.Generator, Dim: int, p: int, extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (Dim, p) of full rank and B = [A @ R, C] (Dim, p + extra) of full rank, all entries
    small integers (so B = A @ R holds exactly in float32 too), float64."""
    while True:
        A = torch.randint(-4, 5, (Dim, p), generator=g).double()
        R = torch.randint(-2, 3, (p, p), generator=g).double()
        B = torch.cat([A @ R, torch.randint(-4, 5, (Dim, extra), generator=g).double()], dim=1)
        if torch.linalg.matrix_rank(A) == p and torch.linalg.matrix_rank(B) == p + extra:
            return A, B


def _same_outputs(c: Checks, learner, reference: torch.nn.Module, x, inputs: str):
    """The learner's model (in the kernel) with the reference's weights copied in, in
    order, gives the reference's outputs."""
    inputs += ", the reference's weights (outputs on both sides of 0.5)"
    load_reference_weights(c, learner, reference, inputs)
    out, want = c.call(learner, x, inputs=inputs), reference(x)
    c.tensor("model(x)", out, shape=tuple(want.shape), inputs=inputs)
    never_below_half = bool((out >= 0.5).all()) and bool((want < 0.5).any())
    c.close("model(x) with the reference's weights", out, want, atol=1e-5, inputs=inputs,
            hint=D["relu_before_sigmoid"] if never_below_half else D["ae_layers"])
    z, z_want = c.call(learner.encode, x, inputs=inputs + ", encode"), reference.encode(x)
    c.tensor("model.encode(x)", z, shape=tuple(z_want.shape), inputs=inputs)
    c.close("model.encode(x) with the reference's weights", z, z_want, atol=1e-5, inputs=inputs, hint=D["ae_layers"])


def _outputs_of_both_signs(reference: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """The reference with the bias of its last layer (before the Sigmoid) shifted so that half
    of its pre-Sigmoid outputs on x are negative: an activation before the Sigmoid shows."""
    with torch.no_grad():
        pre = torch.logit(reference(x))
        reference.decoder[-2].bias -= pre.median()
    return reference


def autoencoders(MLPAutoencoder, ConvAutoencoder) -> None:
    c = Checks("autoencoders (hidden)")
    g = _gen("autoencoders")
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    # batches large enough that every activation sees inputs of both signs; one batch of one
    for Dim, k, hidden, B in [(draw_size(g, 20, 40), draw_size(g, 2, 6), (draw_size(g, 12, 19), draw_size(g, 7, 11)), 8),
                              (draw_size(g, 8, 16), draw_size(g, 1, 4), (), 1),
                              (draw_size(g, 10, 20), 3, (draw_size(g, 9, 14), draw_size(g, 6, 8), draw_size(g, 4, 5)), 8)]:
        x = torch.rand(B, Dim, generator=g)
        inputs = f"MLPAutoencoder(D={Dim}, k={k}, hidden={hidden}), x ({B}, {Dim})"
        _same_outputs(c, c.call(MLPAutoencoder, D=Dim, k=k, hidden=hidden, inputs=inputs),
                      _outputs_of_both_signs(ref.MLPAutoencoder(D=Dim, k=k, hidden=hidden), x), x, inputs)
    k, ch = draw_size(g, 4, 6), draw_size(g, 3, 6)
    x = torch.rand(6, 1, 28, 28, generator=g)
    inputs = f"ConvAutoencoder(k={k}, c={ch}), x (6, 1, 28, 28)"
    _same_outputs(c, c.call(ConvAutoencoder, k=k, c=ch, inputs=inputs),
                  _outputs_of_both_signs(ref.ConvAutoencoder(k=k, c=ch), x), x, inputs)
    c.done()


# A model of the reference's MLPAutoencoder(D, k, (h,)) layout for inputs (B, *shape) with
# D = prod(shape), built from torch alone (no solution code reaches the kernel), seeded,
# in `dtype`, holding stale gradients that a step must clear, with its SGD optimizer.
TRAIN_STEP_MODEL = '01_autoencoders.train_step_model'


def train_step(fn) -> None:
    c = Checks("train_step (hidden)")
    g = _gen("train_step")
    for dtype, shape, steps in [(torch.float32, (12,), 2), (torch.float64, (3, draw_size(g, 3, 5)), 1)]:
        B = draw_size(g, 2, 6)
        seed = int(torch.randint(0, 2**31, (1,), generator=g))
        (model_t, opt_t), (model, opt) = twin(TRAIN_STEP_MODEL, seed=seed, shape=list(shape), h=7, k=3, dtype=dtype)
        x = torch.rand(B, *shape, generator=g, dtype=dtype)
        inputs = f"an autoencoder for x ({B}, {', '.join(map(str, shape))}) {_name(dtype)}, its parameters " \
                 f"holding stale gradients, SGD(lr=0.5), {steps} step(s)"
        for step in range(steps):
            expected = ref.train_step(model_t, x, opt_t)
            got = c.call(fn, model, x.clone(), opt, inputs=inputs)
            c.true(isinstance(got, float), "train_step must return a Python float", inputs=inputs,
                   got=type(got).__name__, hint=D["loss_float"])
            c.close(f"loss returned at step {step + 1}", got, expected, **tolerance(dtype, ops=8), inputs=inputs,
                    hint=D["train_loss"])
            for a, b in zip(parameters(model), model_t.parameters()):
                c.close(f"parameters after step {step + 1}", a, b, **tolerance(dtype, ops=8), inputs=inputs,
                        hint=D["zero_grad"])
    c.done()


def _clustered_codes(g: torch.Generator, N: int, dim: int, labels: torch.Tensor, ks: list[int], dtype):
    """Codes in loose clusters with no near-tie at any k-th neighbour distance (so that every
    correct tie-breaking and float formulation retrieves the same points)."""
    for _ in range(50):
        y = labels[torch.randint(0, len(labels), (N,), generator=g)]
        centres = torch.randn(len(labels), dim, generator=g, dtype=torch.float64) * 1.5
        Z = (torch.randn(N, dim, generator=g, dtype=torch.float64) + centres[torch.searchsorted(labels, y)]).to(dtype)
        d = torch.cdist(Z.double(), Z.double())
        d.fill_diagonal_(float("inf"))
        srt = d.sort(dim=1).values
        gaps = [srt[:, k] - srt[:, k - 1] for k in ks if k < N - 1]
        if all(bool((gap > 1e-3).all()) for gap in gaps):
            break
    return Z, y


def _duplicate_pairs(g: torch.Generator, M: int, dim: int, labels: torch.Tensor, dtype):
    """Z (2M, dim): M distinct codes, each twice, rows shuffled; y: the two codes of a pair get
    different labels. The M codes lie at clearly different distances from one another, so the
    k nearest others of a query are unambiguous for k = 1 (its twin) and every odd k (whole pairs)."""
    for _ in range(50):
        centres = (torch.randn(M, dim, generator=g, dtype=torch.float64) * 3).to(dtype).double()
        d = torch.cdist(centres, centres)
        d.fill_diagonal_(float("inf"))
        srt = d.sort(dim=1).values[:, :M - 1]
        if bool((srt[:, 0] > 0.1).all()) and (M < 3 or bool((srt.diff(dim=1) > 1e-2).all())):
            break
    first = torch.randint(0, len(labels), (M,), generator=g)
    second = (first + torch.randint(1, len(labels), (M,), generator=g)) % len(labels)
    order = torch.randperm(2 * M, generator=g)
    Z = centres.repeat_interleave(2, dim=0)[order].to(dtype)
    y = labels[torch.stack([first, second], dim=1).flatten()][order]
    return Z, y


def retrieval(fn) -> None:
    c = Checks("retrieval_precision (hidden)")
    g = _gen("retrieval")
    labels = torch.tensor([2, 5, 9, 11])
    N1 = draw_size(g, 30, 50)
    N2 = draw_size(g, 8, 14)
    for dtype, N, dim, ks in [(torch.float32, N1, 3, [10, 1, draw_size(g, 2, 6), N1 - 1]),
                              (torch.float64, N2, 2, [N2 - 1, 2])]:
        Z, y = _clustered_codes(g, N, dim, labels, ks, dtype)
        inputs = f"random codes Z ({N}, {dim}) {_name(dtype)} in 4 loose clusters, labels y in {labels.tolist()}, " \
                 f"ks={ks} (in this order)"
        p = c.call(fn, Z.clone(), y.clone(), list(ks), inputs=inputs)
        c.tensor("precision", p, shape=(len(ks),), inputs=inputs)
        c.true(p.dtype == torch.float64, f"precision has dtype {p.dtype}, expected torch.float64", inputs=inputs,
               hint=D["precision_dtype"])
        want = ref.retrieval_precision(Z.double(), y, ks)
        order = sorted(range(len(ks)), key=lambda i: ks[i])
        c.close("precision", p, want, **tolerance(torch.float64, ops=N), inputs=inputs,
                mistakes={**known_mistakes(CH, "retrieval_precision", lambda f: f(Z, y, ks)),
                          D["ks_order"]: want[order]})
    for dtype, dim in [(torch.float32, 2), (torch.float64, 1)]:
        M = draw_size(g, 3, 6)
        Z, y = _duplicate_pairs(g, M, dim, labels, dtype)
        ks = [2 * M - 1, 1, 3]
        inputs = f"{M} pairs of equal codes Z ({2 * M}, {dim}) {_name(dtype)} (shuffled), the two codes of a pair " \
                 f"with different labels in {labels.tolist()}, ks={ks}"
        p = c.call(fn, Z.clone(), y.clone(), list(ks), inputs=inputs)
        c.tensor("precision", p, shape=(len(ks),), inputs=inputs)
        c.close("precision", p, ref.retrieval_precision(Z.double(), y, ks), **tolerance(torch.float64, ops=2 * M),
                inputs=inputs, mistakes=known_mistakes(CH, "retrieval_precision", lambda f: f(Z, y, ks)),
                hint=D["self_by_position"])
    Z = torch.randn(6, 2, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    _raises_value_error(c, fn, [("Z of shape (6,) (not 2-D)", (Z[:, 0], y, [1])),
                                ("y of shape (5,) for Z (6, 2)", (Z, y[:5], [1])),
                                ("ks=[0]", (Z, y, [0])), ("ks=[1, 6] with N = 6", (Z, y, [1, 6]))],
                        D["retrieval_errors"])
    for_all(c, "retrieval", _retrieval_inputs(), lambda ce, ex: _retrieval_matches(ce, fn, *ex))
    c.done()


@st.composite
def _retrieval_inputs(draw):
    """(Z, y, ks): 2 to 7 codes of 1 to 3 dimensions in either dtype, any integer labels,
    ks in any order within [1, N - 1]; no two neighbours of a query at the same distance (the
    contract leaves the order of ties open, and float32 must not blur the order)."""
    N, dim, dtype = draw(st.integers(2, 7)), draw(st.integers(1, 3)), draw(dtypes)
    Z = draw(tensors((N, dim), dtype, -1.0, 1.0))
    d = torch.cdist(Z.double(), Z.double())
    for i in range(N):  # distances apart by more than float32 rounding can blur
        others = torch.cat([d[i, :i], d[i, i + 1:]]).sort().values
        assume(bool((others.diff() > 1e-3).all()))
    y = torch.tensor(draw(st.lists(st.integers(-3, 3), min_size=N, max_size=N)))
    ks = draw(st.lists(st.integers(1, N - 1), min_size=1, max_size=4))
    return Z, y, ks


def _retrieval_matches(c: Checks, fn, Z: torch.Tensor, y: torch.Tensor, ks: list[int]) -> None:
    inputs = f"Z = {describe_tensor(Z)}, y = {y.tolist()}, ks = {ks}"
    p = c.call(fn, Z.clone(), y.clone(), list(ks), inputs=inputs)
    c.tensor("precision", p, shape=(len(ks),), inputs=inputs)
    c.true(p.dtype == torch.float64, f"precision has dtype {p.dtype}, expected torch.float64", inputs=inputs,
           hint=D["precision_dtype"])
    c.close("precision", p, ref.retrieval_precision(Z.double(), y, ks), **tolerance(torch.float64, ops=len(y)),
            inputs=inputs, mistakes=known_mistakes(CH, "retrieval_precision", lambda f: f(Z, y, ks)))


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=ch01.QUIZ_EXPLAIN[name])

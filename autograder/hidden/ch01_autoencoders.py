"""Chapter 01 hidden checks: the learner's code against independent oracles and the
reference on fresh random inputs, with known mistakes recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back, and `run` executes a small harness snippet in the kernel where a
check needs the learner's objects to act on each other (weights copied into a model, a
model and optimizer handed to `train_step`)."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from autograder.hidden import grade_choice, load_reference_weights, parameters
from autograder.mutants import hidden_seed, known_mistakes
from autograder.remote import run
from solutions import ch01_autoencoders as ref
from workbook.checks import Checks

CH = "01_autoencoders"


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(hidden_seed(f"{CH}/{name}"))


def pca(pca_fit, pca_encode, pca_decode) -> None:
    c = Checks("pca (hidden)")
    g = _gen("pca")
    for N, D, k in [(40, 9, 3), (12, 20, 5)]:
        X = torch.randn(N, D, generator=g, dtype=torch.float64) * torch.linspace(3, 0.5, D, dtype=torch.float64) \
            + torch.randn(D, generator=g, dtype=torch.float64) * 4
        inputs = f"random X ({N}, {D}) float64 with a non-zero mean, k={k}"
        mean, V, S = c.call(pca_fit, X.clone(), k, inputs=inputs)
        c.tensor("V", V, shape=(D, k), dtype=torch.float64, inputs=inputs)
        sk = PCA(n_components=k, svd_solver="full").fit(X.numpy())
        V_sk = torch.from_numpy(sk.components_.T.copy())
        diag = known_mistakes(CH, "pca_fit", lambda f: f(X.clone(), k))
        c.close("mean", mean, torch.from_numpy(sk.mean_.copy()), atol=1e-8, inputs=inputs,
                mistakes={d: m[0] for d, m in diag.items()})
        c.close("S", S, torch.from_numpy(sk.singular_values_.copy()), atol=1e-6, inputs=inputs,
                mistakes={d: m[2] for d, m in diag.items()})
        signs = torch.sign((V * V_sk).sum(0))
        signs[signs == 0] = 1
        c.close("V (up to the sign of each column)", V * signs, V_sk, atol=1e-6, inputs=inputs,
                mistakes={d: m[1] * torch.sign((m[1] * V_sk).sum(0)) for d, m in diag.items()
                          if m[1].shape == V_sk.shape})
        m_ref, V_ref, _ = ref.pca_fit(X, k)
        Z = c.call(pca_encode, X.clone(), m_ref, V_ref, inputs=inputs)
        c.close("pca_encode", Z, torch.from_numpy(sk.transform(X.numpy())) * signs_of(V_ref, V_sk),
                atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "pca_encode", lambda f: f(X, m_ref, V_ref)))
        X_hat = c.call(pca_decode, Z, m_ref, V_ref, inputs=inputs)
        c.close("pca_decode", X_hat, ref.pca_decode(ref.pca_encode(X, m_ref, V_ref), m_ref, V_ref),
                atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "pca_decode", lambda f: f(Z, m_ref, V_ref)))
    c.done()


def signs_of(V: torch.Tensor, V_other: torch.Tensor) -> torch.Tensor:
    s = torch.sign((V * V_other).sum(0))
    s[s == 0] = 1
    return s


def principal_angles(fn) -> None:
    c = Checks("principal_angles (hidden)")
    g = _gen("angles")
    for D, p, q in [(10, 3, 4), (7, 2, 2)]:
        shared = torch.randn(D, 1, generator=g, dtype=torch.float64)
        A = torch.cat([shared, torch.randn(D, p - 1, generator=g, dtype=torch.float64)], 1)
        B = torch.cat([shared * 2, torch.randn(D, q - 1, generator=g, dtype=torch.float64)], 1)
        inputs = f"random A ({D}, {p}) and B ({D}, {q}) sharing one direction"
        th = c.call(fn, A.clone(), B.clone(), inputs=inputs)
        c.tensor("angles", th, shape=(min(p, q),), inputs=inputs)
        oracle = torch.from_numpy(np.sort(scipy.linalg.subspace_angles(A.numpy(), B.numpy())).copy())
        c.close("angles", th, oracle, atol=1e-6, inputs=inputs,
                mistakes=known_mistakes(CH, "principal_angles", lambda f: f(A, B)))
    c.done()


def _same_outputs(c: Checks, learner, reference: torch.nn.Module, x, inputs: str):
    """The learner's model (in the kernel) with the reference's weights copied in, in
    order, gives the reference's outputs."""
    load_reference_weights(c, learner, reference, inputs)
    out, want = c.call(learner, x, inputs=inputs), reference(x)
    c.tensor("model(x)", out, shape=tuple(want.shape), inputs=inputs)
    c.close("model(x) with the reference's weights", out, want, atol=1e-5, inputs=inputs,
            hint="same layers but different activations or order: ReLU between layers, "
                 "none on the code, Sigmoid at the end")


# A model of the reference's MLPAutoencoder(12, 3, (7,)) layout, built from torch alone
# (no solution code reaches the kernel), with given weights and its Adam optimizer.
TRAIN_STEP_MODEL = """
model = nn.Sequential(nn.Sequential(nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3)),
                      nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 12), nn.Sigmoid()))
with torch.no_grad():
    for p, w in zip(model.parameters(), weights):
        p.copy_(w)
result = (model, torch.optim.Adam(model.parameters(), lr=0.01))
"""


def autoencoders(MLPAutoencoder, ConvAutoencoder) -> None:
    c = Checks("autoencoders (hidden)")
    g = _gen("autoencoders")
    D, k, hidden = 30, 4, (17, 9)
    x = torch.rand(6, D, generator=g)
    inputs = f"MLPAutoencoder(D={D}, k={k}, hidden={hidden}), x (6, {D})"
    _same_outputs(c, c.call(MLPAutoencoder, D=D, k=k, hidden=hidden, inputs=inputs),
                  ref.MLPAutoencoder(D=D, k=k, hidden=hidden), x, inputs)
    x = torch.rand(2, 1, 28, 28, generator=g)
    inputs = "ConvAutoencoder(k=5, c=6), x (2, 1, 28, 28)"
    _same_outputs(c, c.call(ConvAutoencoder, k=5, c=6, inputs=inputs), ref.ConvAutoencoder(k=5, c=6), x, inputs)
    c.done()


def train_step(fn) -> None:
    c = Checks("train_step (hidden)")
    g = _gen("train_step")
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    twin = ref.MLPAutoencoder(D=12, k=3, hidden=(7,))
    x = torch.rand(5, 12, generator=g)
    inputs = "MLPAutoencoder(12, 3, (7,)), x (5, 12), Adam(lr=0.01), two steps"
    model, opt = run(TRAIN_STEP_MODEL, weights=[p.detach() for p in twin.parameters()])
    opt_t = torch.optim.Adam(twin.parameters(), lr=0.01)
    for step in range(2):
        expected = ref.train_step(twin, x, opt_t)
        got = c.call(fn, model, x, opt, inputs=inputs)
        c.true(isinstance(got, float) and abs(got - expected) < 1e-6,
               f"loss returned at step {step + 1} differs", inputs=inputs,
               expected=f"{expected:.6f}", got=repr(got),
               hint="mean squared error over all elements, before optimizer.step(), as a float")
        for a, b in zip(parameters(model), twin.parameters()):
            c.close(f"parameters after step {step + 1}", a, b, atol=1e-6, inputs=inputs,
                    hint="zero the gradients, backward the mean squared error, then step")
    c.done()


def retrieval(fn) -> None:
    c = Checks("retrieval_precision (hidden)")
    g = _gen("retrieval")
    N, K = 60, 3
    y = torch.randint(0, 4, (N,), generator=g)
    Z = torch.randn(N, K, generator=g) + 1.5 * F.one_hot(y, 4)[:, :K].float()
    ks = [1, 4, 10]
    inputs = f"random codes Z ({N}, {K}) in 4 loose clusters, ks={ks}"
    p = c.call(fn, Z.clone(), y.clone(), ks, inputs=inputs)
    c.tensor("precision", p, shape=(3,), inputs=inputs)
    c.close("precision", p, ref.retrieval_precision(Z, y, ks), atol=1e-6, inputs=inputs,
            mistakes=known_mistakes(CH, "retrieval_precision", lambda f: f(Z, y, ks)))
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name))

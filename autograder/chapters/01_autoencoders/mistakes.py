"""Chapter 01: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch01.DIAGNOSES`), shared with the visible and hidden checks."""
from autograder.mutants import Alternative, Mistake
from workbook import ch01

D = ch01.DIAGNOSES
ENC_RELU = "layers.append(nn.Linear(d_in, d_out))\n            if i < len(dims) - 2:\n                layers.append(nn.ReLU())\n        self.encoder"

MISTAKES = [
    # pca
    Mistake("pca_checks", "pca_fit", "Xc = X - mean  # (N, D)", "Xc = X  # (N, D)", D["not_centred"]),
    Mistake("pca_checks", "pca_fit", "V = Vh[:k].T", "V = Vh[:, :k]", D["vh_columns"], expect=r"orthonormal|rows of Vh"),
    Mistake("pca_checks", "pca_fit", "S = S[:k]  # (k,)", "S = S[:k] ** 2  # (k,)", D["squared_s"]),
    Mistake("pca_checks", "pca_decode", "Z @ V.T + mean", "Z @ V.T", D["decode_mean"]),
    Mistake("pca_checks", "pca_encode", "(X - mean) @ V", "X @ V", D["encode_mean"]),
    Mistake("pca_checks", "pca_fit", "V = V * signs  # (D, k)", "V = V  # (D, k)", D["sign_convention"]),
    Mistake("pca_checks", "pca_fit", "signs = torch.sign(V[rows, torch.arange(k)])",
            "signs = torch.sign(V[0])", D["sign_convention"], expect="sign convention|direction of largest variance"),
    Mistake("pca_checks", "pca_fit", "S = S[:k]  # (k,)", "S = S[:k] ** 2 / (N - 1)  # (k,)", D["variances"],
            expect="variances|squared"),
    Mistake("pca_checks", "pca_fit", "return mean, V, S", "return mean.double(), V.double(), S.double()",
            D["keep_dtype"], expect="dtype"),
    Mistake("pca_checks", "pca_fit",
            "    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(N, D):\n"
            "        raise ValueError(f\"k must be an int with 1 <= k <= min(N, D) = {min(N, D)}, got {k!r}\")\n",
            "", D["pca_errors"]),
    Mistake("pca_checks", "pca_fit", "isinstance(k, bool) or not isinstance(k, int)", "not isinstance(k, int)",
            D["bool_k"]),
    Mistake("pca_checks", "pca_fit", "U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)",
            "U, S, Vh = torch.linalg.svd(Xc.float(), full_matrices=False)", D["keep_dtype"],
            expect="dtype|wrong values"),
    Mistake("pca_checks", "pca_encode", "Z = (X - mean) @ V  # (N, k)", "Z = (X - mean) @ V.double()  # (N, k)",
            D["keep_dtype"], expect="dtype"),
    # principal angles
    Mistake("principal_angles_checks", "principal_angles", "angles = torch.arccos(cos).sort().values",
            "angles = cos.sort().values", D["cosines"], expect="arccos"),
    Mistake("principal_angles_checks", "principal_angles", "Qa, _ = torch.linalg.qr(A.to(torch.float64))",
            "Qa = A.to(torch.float64)", D["orthonormalise"]),
    Mistake("principal_angles_checks", "principal_angles", "torch.arccos(cos).sort().values",
            "torch.arccos(cos).sort(descending=True).values", D["angles_order"]),
    Mistake("principal_angles_checks", "principal_angles", "Qb, _ = torch.linalg.qr(B.to(torch.float64))",
            "Qb = B.to(torch.float64)", D["orthonormalise"]),
    Mistake("principal_angles_checks", "principal_angles",
            "Qa, _ = torch.linalg.qr(A.to(torch.float64))  # (D, p)\n    Qb, _ = torch.linalg.qr(B.to(torch.float64))",
            "Qa, _ = torch.linalg.qr(A)  # (D, p)\n    Qb, _ = torch.linalg.qr(B)", D["float64_inside"]),
    Mistake("principal_angles_checks", "principal_angles", "return angles.to(A.dtype)", "return angles",
            D["keep_dtype"], expect="dtype"),
    Mistake("principal_angles_checks", "principal_angles", "angles = torch.arccos(cos).sort().values",
            "angles = torch.rad2deg(torch.arccos(cos)).sort().values", D["degrees"], expect="degrees|wrong values"),
    Mistake("principal_angles_checks", "principal_angles", "torch.linalg.svdvals(Qa.T @ Qb).clamp(0.0, 1.0)",
            "torch.linalg.svdvals(Qa.T @ Qb)", D["clamp_cos"]),
    # autoencoders
    Mistake("autoencoder_checks", "ConvAutoencoder", "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28)",
            "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.ReLU(),", D["relu_before_sigmoid"]),
    Mistake("autoencoder_checks", "MLPAutoencoder", "layers.append(nn.Sigmoid())",
            "layers.append(nn.ReLU())\n        layers.append(nn.Sigmoid())", D["relu_before_sigmoid"]),
    Mistake("autoencoder_checks", "MLPAutoencoder", "layers.append(nn.Sigmoid())", "pass",
            D["sigmoid_end"], diagnosed=False),
    Mistake("autoencoder_checks", "ConvAutoencoder", "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1)",
            "nn.ConvTranspose2d(c, 1, 3, stride=2, padding=1, output_padding=1)", D["conv_counts"], diagnosed=False),
    Mistake("autoencoder_checks", "ConvAutoencoder", "nn.Linear(2 * c * 7 * 7, k)",
            "nn.Linear(2 * c * 7 * 7, k), nn.ReLU()", D["ae_layers"], diagnosed=False),
    Mistake("autoencoder_checks", "MLPAutoencoder", ENC_RELU,
            "layers.append(nn.Linear(d_in, d_out))\n            layers.append(nn.ReLU())\n        self.encoder",
            D["ae_layers"], diagnosed=False),
    Mistake("autoencoder_checks", "MLPAutoencoder", "dims = dims[::-1]", "dims = [k, *hidden, D]",
            "the decoder mirrors the encoder: widths reversed", diagnosed=False),
    Mistake("autoencoder_checks", "MLPAutoencoder", "layers.append(nn.Sigmoid())", "layers.append(nn.Tanh())",
            D["sigmoid_end"], diagnosed=False),
    Mistake("autoencoder_checks", "ConvAutoencoder", "nn.Linear(k, 2 * c * 7 * 7),\n            nn.ReLU(),",
            "nn.Linear(k, 2 * c * 7 * 7),", D["ae_layers"], diagnosed=False),
    Mistake("autoencoder_checks", "ConvAutoencoder", "return self.encoder(x)", "return self.encoder(x).tanh()",
            D["ae_layers"], diagnosed=False),
    # train step
    Mistake("train_step_checks", "train_step", "optimizer.zero_grad()\n", "\n", D["zero_grad"]),
    Mistake("train_step_checks", "train_step", "F.mse_loss(x_hat, x)", "F.mse_loss(x_hat, x, reduction='sum')",
            D["loss_sum"], expect="mean"),
    Mistake("train_step_checks", "train_step", "return loss.item()", "return F.mse_loss(model(x), x).item()",
            D["loss_after"], expect=r"before optimizer\.step"),
    Mistake("train_step_checks", "train_step", "optimizer.zero_grad()\n    loss.backward()",
            "loss.backward()\n    optimizer.zero_grad()", D["zero_grad"], expect="zero_grad|did not change"),
    Mistake("train_step_checks", "train_step", "    optimizer.step()\n", "", D["no_step"],
            expect="did not change|zero_grad"),
    Mistake("train_step_checks", "train_step", "return loss.item()", "return loss", D["loss_float"]),
    Mistake("train_step_checks", "train_step", "F.mse_loss(x_hat, x)", "F.l1_loss(x_hat, x)", D["train_loss"]),
    Mistake("train_step_checks", "train_step", "F.mse_loss(x_hat, x)", "F.mse_loss(x_hat, x).sum() / len(x)",
            D["train_loss"], expect="mean"),
    # retrieval precision
    Mistake("retrieval_checks", "retrieval_precision", "dist.fill_diagonal_(float(\"inf\"))", "pass",
            D["self_neighbour"], expect="itself"),
    Mistake("retrieval_checks", "retrieval_precision", "largest=False", "largest=True", D["farthest"],
            expect="farthest"),
    Mistake("retrieval_checks", "retrieval_precision", "k_t = torch.tensor(ks, dtype=torch.long)",
            "k_t = torch.tensor(sorted(ks), dtype=torch.long)", D["ks_order"]),
    Mistake("retrieval_checks", "retrieval_precision", "return cum[k_t - 1] / k_t.to(torch.float64)",
            "return (cum[k_t - 1] / k_t.to(torch.float64)).float()", D["precision_dtype"]),
    Mistake("retrieval_checks", "retrieval_precision",
            "    for k in ks:\n        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= N - 1:\n"
            "            raise ValueError(f\"each k must be an int with 1 <= k <= N - 1 = {N - 1}, got {k!r}\")\n",
            "", D["retrieval_errors"]),
    Mistake("retrieval_checks", "retrieval_precision", "return cum[k_t - 1] / k_t.to(torch.float64)",
            "return cum[k_t - 1] / max(ks)", D["precision_at_k"]),
    Mistake("retrieval_checks", "retrieval_precision", "hits = (y[idx] == y[:, None]).to(torch.float64)",
            "hits = (y[idx] == y[idx[:, :1]]).to(torch.float64)", D["own_label"]),
    Mistake("retrieval_checks", "retrieval_precision",
            "dist.fill_diagonal_(float(\"inf\"))\n    idx = dist.topk(max(ks), dim=1, largest=False).indices",
            "idx = dist.topk(max(ks) + 1, dim=1, largest=False).indices[:, 1:]", D["self_by_position"]),
    # quiz
    Mistake("quiz_pca_vs_ae", "answer_pca_vs_ae", '{"A", "C", "D"}', '{"A", "B", "C", "D"}',
            "not every statement is true", diagnosed=False),
    Mistake("quiz_pca_vs_ae", "answer_pca_vs_ae", '{"A", "C", "D"}', '{"A", "C"}', "a true statement missing",
            diagnosed=False),
    Mistake("quiz_ae_loss", "answer_ae_loss", '"B"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_ae_loss", "answer_binary_loss", '"B"', '"A"', "wrong answer", diagnosed=False),
]

ALTERNATIVES = [
    Alternative("pca_checks", "pca_fit", '''
def pca_fit(X, k):
    """PCA by the eigendecomposition of the scatter matrix (same subspace, other route), with
    the stated sign convention and errors."""
    if X.dim() != 2 or isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(X.shape):
        raise ValueError("X must be 2-D and 1 <= k <= min(N, D)")
    mean = X.mean(0)
    Xc = X - mean
    evals, evecs = torch.linalg.eigh(Xc.T @ Xc)
    order = evals.argsort(descending=True)[:k]
    V = evecs[:, order]
    S = evals[order].clamp_min(0).sqrt()
    V = V * torch.sign(V.gather(0, V.abs().argmax(0, keepdim=True)))
    return mean, V, S
''', "eigh of the scatter matrix"),
    Alternative("pca_checks", "pca_fit", '''
def pca_fit(X, k):
    """torch.svd (V, not Vh), signs flipped column by column in a loop."""
    if len(X.shape) != 2:
        raise ValueError("X must be 2-D")
    if type(k) is not int or k < 1 or k > min(X.shape[0], X.shape[1]):
        raise ValueError("bad k")
    mean = X.mean(dim=0)
    U, S, V = torch.linalg.svd(X - mean[None, :], full_matrices=False)
    V = V.mT[:, :k].clone()
    for j in range(k):
        if V[V[:, j].abs().argmax(), j] < 0:
            V[:, j] = -V[:, j]
    return mean, V, S[:k]
''', "loop over columns"),
    Alternative("principal_angles_checks", "principal_angles", '''
def principal_angles(A, B):
    """Via scipy."""
    import scipy.linalg
    th = scipy.linalg.subspace_angles(A.double().numpy(), B.double().numpy())
    return torch.from_numpy(th.copy()).sort().values.to(A.dtype)
'''),
    Alternative("principal_angles_checks", "principal_angles", '''
def principal_angles(A, B):
    """Orthonormal bases from the SVD instead of QR."""
    Qa = torch.linalg.svd(A.double(), full_matrices=False)[0]
    Qb = torch.linalg.svd(B.double(), full_matrices=False)[0]
    cos = torch.linalg.svdvals(Qa.T @ Qb).clamp(max=1.0)
    return torch.arccos(cos).to(A.dtype)
''', "svd bases"),
    Alternative("train_step_checks", "train_step", '''
def train_step(model, x, optimizer):
    """Manual squared error, set_to_none zeroing."""
    optimizer.zero_grad(set_to_none=True)
    loss = ((model(x) - x) ** 2).mean()
    loss.backward()
    optimizer.step()
    return float(loss)
'''),
    Alternative("train_step_checks", "train_step", '''
def train_step(model, x, optimizer):
    """model.zero_grad(), arguments of mse_loss swapped, loss read before the step."""
    model.zero_grad()
    loss = F.mse_loss(x, model(x))
    value = loss.item()
    loss.backward()
    optimizer.step()
    return value
''', "model.zero_grad"),
    Alternative("retrieval_checks", "retrieval_precision", '''
def retrieval_precision(Z, y, ks):
    """A sort instead of topk, squared distances."""
    if Z.dim() != 2 or y.shape != (Z.shape[0],) or not ks or any(not 1 <= k < Z.shape[0] for k in ks):
        raise ValueError("bad input")
    D2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    D2.fill_diagonal_(float("inf"))
    order = D2.argsort(dim=1)
    same = (y[order] == y[:, None]).double()
    return torch.stack([same[:, :k].mean() for k in ks])
'''),
    Alternative("retrieval_checks", "retrieval_precision", '''
def retrieval_precision(Z, y, ks):
    """A loop over queries with float64 distances and a stable sort."""
    N = len(Z)
    if Z.ndim != 2:
        raise ValueError("Z must be 2-D")
    if y.ndim != 1 or len(y) != N:
        raise ValueError("y must be (N,)")
    if len(ks) == 0 or min(ks) < 1 or max(ks) > N - 1:
        raise ValueError("k out of range")
    Z = Z.double()
    out = torch.zeros(len(ks), dtype=torch.float64)
    for i in range(N):
        d = (Z - Z[i]).norm(dim=1)
        d[i] = float("inf")
        nn_idx = torch.sort(d, stable=True).indices
        for j, k in enumerate(ks):
            out[j] += (y[nn_idx[:k]] == y[i]).double().mean()
    return out / N
''', "loop, stable sort"),
    Alternative("autoencoder_checks", "MLPAutoencoder", '''
class MLPAutoencoder(nn.Module):
    """Layers built pairwise, the trailing ReLU dropped."""

    def __init__(self, D=784, k=32, hidden=(512, 128)):
        super().__init__()
        dims = [D, *hidden, k]
        enc = []
        for a, b in zip(dims, dims[1:]):
            enc += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*enc[:-1])
        rdims = dims[::-1]
        dec = []
        for a, b in zip(rdims, rdims[1:]):
            dec += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec[:-1], nn.Sigmoid())

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decoder(self.encoder(x))
''', "pairwise construction"),
    Alternative("autoencoder_checks", "ConvAutoencoder", '''
class ConvAutoencoder(nn.Module):
    """Layers by keyword, view instead of Flatten/Unflatten modules."""

    def __init__(self, k=32, c=32):
        super().__init__()
        self.c = c
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels=1, out_channels=c, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(start_dim=1), nn.Linear(in_features=98 * c, out_features=k))
        self.decoder = nn.Sequential(
            nn.Linear(k, 98 * c), nn.ReLU(), nn.Unflatten(dim=1, unflattened_size=(2 * c, 7, 7)),
            nn.ConvTranspose2d(2 * c, c, kernel_size=4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, kernel_size=4, stride=2, padding=1), nn.Sigmoid())

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))
''', "keywords"),
    Alternative("quiz_pca_vs_ae", "answer_pca_vs_ae", 'answer_pca_vs_ae = frozenset("ACD")', "a frozenset"),
    Alternative("quiz_pca_vs_ae", "answer_pca_vs_ae", 'answer_pca_vs_ae = ["d", "a", "c"]', "a lower-case list"),
    Alternative("quiz_ae_loss", "answer_ae_loss", 'answer_ae_loss = "b"  # the mean', "lower case, commented"),
]

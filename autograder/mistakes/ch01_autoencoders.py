"""Chapter 01: realistic learner mistakes and correct alternatives."""
from autograder.mutants import Alternative, Mistake

MISTAKES = [
    # pca
    Mistake("pca_checks", "pca_fit", "Xc = X - mean  # (N, D)", "Xc = X  # (N, D)",
            "X was not centred: subtract the column means before the SVD", expect="centre"),
    Mistake("pca_checks", "pca_fit", "V = Vh[:k].T", "V = Vh[:, :k]",
            "V holds the first k columns of Vh; the right singular vectors are its rows (Vh[:k].T)", expect=r"rows|orthonormal"),
    Mistake("pca_checks", "pca_fit", "S = S[:k]  # (k,)", "S = S[:k] ** 2  # (k,)",
            "S holds squared singular values; return the singular values themselves", expect="squared singular values"),
    Mistake("pca_checks", "pca_decode", "Z @ V.T + mean", "Z @ V.T",
            "pca_decode must add the mean back", expect="add the mean back"),
    Mistake("pca_checks", "pca_encode", "(X - mean) @ V", "X @ V",
            "pca_encode must subtract the mean before projecting", expect="subtract the mean"),
    # principal angles
    Mistake("principal_angles_checks", "principal_angles",
            "angles = torch.arccos(cos).sort().values", "angles = cos.sort().values",
            "you returned cosines of the angles; apply arccos", expect="arccos"),
    Mistake("principal_angles_checks", "principal_angles",
            "Qa, _ = torch.linalg.qr(A.to(torch.float64))", "Qa = A.to(torch.float64)",
            "A was used without orthonormalising its columns (QR first)", expect="orthonormalis"),
    Mistake("principal_angles_checks", "principal_angles",
            "torch.arccos(cos).sort().values", "torch.arccos(cos).sort(descending=True).values",
            "angles must be in ascending order", expect="ascending"),
    # autoencoders
    Mistake("autoencoder_checks", "MLPAutoencoder", "layers.append(nn.Sigmoid())", "pass",
            "the decoder must end with a Sigmoid so outputs lie in (0, 1)", diagnosed=False),
    Mistake("autoencoder_checks", "ConvAutoencoder", "nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1)",
            "nn.ConvTranspose2d(c, 1, 3, stride=2, padding=1, output_padding=1)",
            "last layer: ConvTranspose2d(c, 1, 4, stride=2, padding=1)", diagnosed=False),
    Mistake("autoencoder_checks", "ConvAutoencoder", "nn.Linear(2 * c * 7 * 7, k)", "nn.Linear(2 * c * 7 * 7, k), nn.ReLU()",
            "no activation on the code: the encoder ends with the Linear layer", diagnosed=False),
    # train step
    Mistake("train_step_checks", "train_step", "optimizer.zero_grad()\n", "\n",
            "gradients were not reset: call optimizer.zero_grad() before backward()", expect="zero_grad"),
    Mistake("train_step_checks", "train_step", "F.mse_loss(x_hat, x)", "F.mse_loss(x_hat, x, reduction='sum')",
            "the loss is summed; use the mean squared error (F.mse_loss's default)", expect="mean"),
    Mistake("train_step_checks", "train_step", "return loss.item()", "return F.mse_loss(model(x), x).item()",
            "return the loss computed before optimizer.step(), not after", expect=r"before optimizer\.step"),
    # retrieval precision
    Mistake("retrieval_checks", "retrieval_precision", "dist.fill_diagonal_(float(\"inf\"))", "pass",
            "each query counted itself as its own nearest neighbour: exclude it", expect="itself"),
    Mistake("retrieval_checks", "retrieval_precision", "largest=False", "largest=True",
            "you took the k farthest points: use the k smallest distances", expect="farthest"),
    # quiz
    Mistake("quiz_pca_vs_ae", "answer_pca_vs_ae", '{"A", "C", "D"}', '{"A", "B", "C", "D"}',
            "not every statement is true", diagnosed=False),
    Mistake("quiz_ae_loss", "answer_ae_loss", '"B"', '"D"', "wrong answer", diagnosed=False),
]

ALTERNATIVES = [
    Alternative("pca_checks", "pca_fit", '''
def pca_fit(X, k):
    """PCA by the eigendecomposition of the covariance matrix (same subspace, other route)."""
    mean = X.mean(0)
    Xc = X - mean
    evals, evecs = torch.linalg.eigh(Xc.T @ Xc)
    order = evals.argsort(descending=True)[:k]
    V = evecs[:, order]
    S = evals[order].clamp_min(0).sqrt()
    return mean, V, S
''', "eigh of the scatter matrix; signs left as they come"),
    Alternative("principal_angles_checks", "principal_angles", '''
def principal_angles(A, B):
    """Via scipy."""
    import scipy.linalg
    th = scipy.linalg.subspace_angles(A.double().numpy(), B.double().numpy())
    return torch.from_numpy(th.copy()).sort().values.to(A.dtype)
'''),
    Alternative("train_step_checks", "train_step", '''
def train_step(model, x, optimizer):
    """Manual squared error, set_to_none zeroing."""
    optimizer.zero_grad(set_to_none=True)
    loss = ((model(x) - x) ** 2).mean()
    loss.backward()
    optimizer.step()
    return float(loss)
'''),
    Alternative("retrieval_checks", "retrieval_precision", '''
def retrieval_precision(Z, y, ks):
    """A sort instead of topk, squared distances."""
    D2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    D2.fill_diagonal_(float("inf"))
    order = D2.argsort(dim=1)
    same = (y[order] == y[:, None]).double()
    return torch.stack([same[:, :k].mean() for k in ks])
'''),
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
    Alternative("quiz_pca_vs_ae", "answer_pca_vs_ae", 'answer_pca_vs_ae = frozenset("ACD")', "a frozenset"),
    Alternative("quiz_ae_loss", "answer_ae_loss", 'answer_ae_loss = "B"  # quadratic', "same answer, commented"),
]

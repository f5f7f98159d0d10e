"""Fast tests for workbook.quality: Fréchet distance against closed forms and scipy, the
metrics on a classifier whose predictions are known, the classifier and its cache."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from workbook import quality
from workbook.profile import Profile

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def scipy_frechet(m1, c1, m2, c2):
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def test_frechet_diagonal_gaussians_closed_form():
    m1, m2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    closed = ((m1 - m2) ** 2).sum() + ((s1.sqrt() - s2.sqrt()) ** 2).sum()
    got = quality.gaussian_frechet_distance(m1, torch.diag(s1), m2, torch.diag(s2))
    assert got == pytest.approx(float(closed), abs=1e-10)
    assert got == pytest.approx(7.25 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0, abs=1e-10)


@pytest.mark.parametrize("d,seed", [(2, 0), (5, 1), (20, 2)])
def test_frechet_matches_scipy_sqrtm(d, seed):
    g = gen(seed)
    A, B = torch.randn(d, d, generator=g, dtype=F64), torch.randn(d, d, generator=g, dtype=F64)
    c1, c2 = A @ A.T + 0.1 * torch.eye(d, dtype=F64), B @ B.T + 0.1 * torch.eye(d, dtype=F64)
    m1, m2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    got = quality.gaussian_frechet_distance(m1, c1, m2, c2)
    want = scipy_frechet(m1.numpy(), c1.numpy(), m2.numpy(), c2.numpy())
    assert got == pytest.approx(want, rel=1e-7, abs=1e-8)
    assert quality.gaussian_frechet_distance(m2, c2, m1, c1) == pytest.approx(got, rel=1e-7)
    assert quality.gaussian_frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-7)


def test_frechet_singular_covariances():
    # rank-1 covariances in 3-D (fewer samples than dimensions): still finite and exact
    u, v = torch.tensor([1.0, 0.0, 0.0], dtype=F64), torch.tensor([0.0, 2.0, 0.0], dtype=F64)
    got = quality.gaussian_frechet_distance(torch.zeros(3), torch.outer(u, u), torch.zeros(3), torch.outer(v, v))
    assert got == pytest.approx(1.0 + 4.0, abs=1e-9)  # orthogonal supports: tr(c1 c2)^(1/2) = 0


class FakeClassifier(nn.Module):
    """Logits = the first 10 inputs (times 10); features = the first 4 inputs."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def features(self, x):
        return x.reshape(len(x), -1)[:, :4] + 0 * self.dummy

    def forward(self, x):
        return 10 * x.reshape(len(x), -1)[:, :10] + 0 * self.dummy


def one_hot_images(classes):
    x = torch.zeros(len(classes), 1, 28, 28)
    x.view(len(classes), -1)[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return x


def test_class_accuracy_and_coverage_with_known_predictions():
    clf = FakeClassifier()
    x = one_hot_images([0, 0, 1, 3, 3, 3, 7, 9])
    acc = quality.class_accuracy(x, torch.tensor([0, 1, 1, 3, 3, 3, 7, 9]), classifier=clf)
    assert acc["accuracy"] == pytest.approx(7 / 8)
    p_top = math.exp(10) / (math.exp(10) + 9)
    p_other = 1 / (math.exp(10) + 9)
    assert acc["confidence"] == pytest.approx((7 * p_top + p_other) / 8)
    cov = quality.class_coverage(x, classifier=clf)
    assert cov["coverage"] == pytest.approx(5 / 10)
    hist = np.array([2, 1, 3, 1, 1]) / 8  # predicted digits 0, 1, 3, 7, 9
    assert cov["entropy"] == pytest.approx(float(-(hist * np.log(hist)).sum()))
    assert cov["histogram"].sum().item() == pytest.approx(1.0)
    uniform = quality.class_coverage(one_hot_images(list(range(10)) * 3), classifier=clf)
    assert uniform["coverage"] == 1.0 and uniform["entropy"] == pytest.approx(quality.MAX_ENTROPY)


def test_frechet_distance_uses_feature_statistics():
    clf = FakeClassifier()
    g = gen(0)
    a = torch.rand(300, 1, 28, 28, generator=g)
    b = torch.rand(300, 784, generator=g) * 0.5 + 0.2
    fa, fb = a.reshape(300, -1)[:, :4].double(), b[:, :4].double()
    want = scipy_frechet(fa.mean(0).numpy(), np.cov(fa.numpy().T), fb.mean(0).numpy(), np.cov(fb.numpy().T))
    assert quality.frechet_distance(a, b, classifier=clf) == pytest.approx(want, rel=1e-6)
    assert quality.frechet_distance(a, a.clone(), classifier=clf) == pytest.approx(0.0, abs=1e-8)
    s = quality.summarize(a, b, classifier=clf, labels=torch.zeros(300, dtype=torch.long))
    assert set(s) == {"coverage", "entropy", "frechet", "accuracy", "confidence"}


def test_train_classifier_tiny_and_rng_untouched():
    g = gen(1)
    x = torch.rand(64, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    clf = quality.train_classifier(x, y, epochs=1, batch_size=16, max_steps=3, c=4, width=16)
    after = torch.rand(3)
    torch.testing.assert_close(before, after)  # its own random streams
    assert clf(x[:5]).shape == (5, 10) and clf.features(x[:5].flatten(1)).shape == (5, 16)
    assert not clf.training
    # deterministic for a seed
    clf2 = quality.train_classifier(x, y, epochs=1, batch_size=16, max_steps=3, c=4, width=16)
    for p, q in zip(clf.parameters(), clf2.parameters()):
        torch.testing.assert_close(p, q)


def test_load_classifier_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_ARTIFACTS", str(tmp_path))
    g = gen(2)
    x = torch.rand(40, 1, 28, 28, generator=g)
    y = torch.arange(40) % 10
    monkeypatch.setattr(quality, "load_mnist", lambda split, limit=None: (x[:limit], y[:limit]))
    calls = []
    real_train = quality.train_classifier

    def spy(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs, max_steps=2)

    monkeypatch.setattr(quality, "train_classifier", spy)
    profile = Profile("smoke", torch.device("cpu"), 0)
    clf = quality.load_classifier(profile, n_train=32, epochs=1)
    assert calls == [1]
    assert 0.0 <= clf.test_accuracy <= 1.0
    saved = list((tmp_path / "smoke").glob("mnist_classifier-*-n32-e1.pt"))
    assert len(saved) == 1
    again = quality.load_classifier(profile, n_train=32, epochs=1)
    assert calls == [1], "the cached classifier must be loaded, not retrained"
    assert again.test_accuracy == clf.test_accuracy
    for p, q in zip(clf.parameters(), again.parameters()):
        torch.testing.assert_close(p, q)
    # other settings: another file
    quality.load_classifier(profile, n_train=32, epochs=2)
    assert calls == [1, 1]


# ----------------------------------------------------------------------------- fidelity and diversity apart

def mixture(n, classes, seed):
    """Images whose FakeClassifier features (first 4 pixels) are drawn from 10 Gaussian
    clusters in 4-D, cluster c centred at 3 * (c % 4 == j) + c / 3; returns (images, labels)."""
    g = gen(seed)
    labels = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=g)]
    centres = torch.stack([torch.tensor([3.0 * (c % 4 == j) + c / 3 for j in range(4)]) for c in range(10)])
    f = centres[labels] + 0.3 * torch.randn(n, 4, generator=g)
    x = torch.zeros(n, 1, 28, 28)
    x.view(n, -1)[:, :4] = f
    return x, labels


def brute_force(fake, real, k):
    """Kynkäänniemi et al. 2019 and Naeem et al. 2020, written out with loops over numpy rows."""
    fake, real = fake.numpy(), real.numpy()

    def radii(a):
        return np.array([np.sort(np.linalg.norm(a - p, axis=1))[k] for p in a])

    r_real, r_fake = radii(real), radii(fake)
    in_real = np.array([[np.linalg.norm(y - x) <= r for x, r in zip(real, r_real)] for y in fake])
    in_fake = np.array([[np.linalg.norm(x - y) <= r for y, r in zip(fake, r_fake)] for x in real])
    return {"precision": in_real.any(1).mean(), "recall": in_fake.any(1).mean(),
            "density": in_real.sum(1).mean() / k, "coverage": in_real.any(0).mean()}


def test_fidelity_diversity_matches_the_papers_definitions():
    clf = FakeClassifier()
    fake, _ = mixture(40, list(range(10)), 1)
    real, _ = mixture(50, list(range(10)), 2)
    got = quality.fidelity_diversity(fake, real, classifier=clf, k=3)
    want = brute_force(fake.reshape(40, -1)[:, :4].double(), real.reshape(50, -1)[:, :4].double(), 3)
    assert got == pytest.approx(want)


def test_fidelity_diversity_on_known_cases():
    clf = FakeClassifier()
    real, _ = mixture(600, list(range(10)), 0)
    other, _ = mixture(600, list(range(10)), 1)
    split = quality.fidelity_diversity(other, real, classifier=clf)
    assert min(split["precision"], split["recall"], split["coverage"]) > 0.85 and 0.7 < split["density"] < 1.3
    one = other[:1].repeat(600, 1, 1, 1)  # every sample the same image: full fidelity, no diversity
    same = quality.fidelity_diversity(one, real, classifier=clf)
    assert same["precision"] == 1.0 and same["recall"] < 0.02 and same["coverage"] < 0.05
    dropped, _ = mixture(600, list(range(1, 10)), 1)  # digit 0 never generated
    mode = quality.fidelity_diversity(dropped, real, classifier=clf)
    assert mode["precision"] > 0.85 and 0.8 < mode["recall"] < 0.95 and 0.8 < mode["coverage"] < 0.95
    with pytest.raises(ValueError, match="more than k=5 images"):
        quality.fidelity_diversity(one[:5], real, classifier=clf)


def test_collapse_names_the_classes_whose_samples_are_alike(capsys):
    clf = FakeClassifier()
    real, real_labels = mixture(600, list(range(10)), 0)
    fake, labels = mixture(300, list(range(10)), 1)
    fake[labels == 3] = fake[labels == 3][:1]  # class 3: one image repeated
    result = quality.collapse(fake, labels, real, real_labels, classifier=clf)
    assert result["collapsed"] == [3] and result["spread"][3] == 0.0
    assert all(0.7 < v < 1.3 for c, v in result["spread"].items() if c != 3)
    assert "class(es) [3] are nearly identical" in capsys.readouterr().out


def test_at_resolution_is_the_round_trip_the_samples_make():
    g = gen(0)
    real = torch.rand(4, 1, 28, 28, generator=g)
    assert torch.equal(quality.at_resolution(real, 28), real)
    trip = quality.at_resolution(real, 16)
    import torch.nn.functional as F
    small = F.interpolate(real, size=(16, 16), mode="bilinear", antialias=True)
    assert torch.allclose(trip, F.interpolate(small, size=(28, 28), mode="bilinear").clamp(0, 1))
    assert trip.shape == real.shape and not torch.allclose(trip, real)

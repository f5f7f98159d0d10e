"""Sample quality of MNIST-like generators, measured with a small digit classifier.

Chapters 03, 05 and 06 rate generated digits the same way:

* ``load_classifier(profile)``: a small CNN trained once per profile on the available
  MNIST training images and cached in ``workbook.paths.artifacts_dir(profile.name)``
  (never downloaded; trained in seconds to minutes when missing). ``clf.test_accuracy``
  says how far to trust it.
* ``class_accuracy(images, labels, classifier=clf)``: for class-conditional samples, the
  fraction the classifier assigns to the requested digit, and its mean confidence
  (softmax probability) in that digit.
* ``class_coverage(images, classifier=clf)``: the fraction of the 10 digits predicted at
  least once and the entropy (nats, at most log 10 = 2.303) of the predicted-digit
  histogram: a generator that forgets digits scores low on both.
* ``frechet_distance(images_a, images_b, classifier=clf)``: the Fréchet distance between
  Gaussians fitted to the classifier's penultimate features (the FID recipe, with an MNIST
  classifier instead of Inception). It depends on the number of images: compare values
  computed with the same counts, and against the floor ``frechet_distance(real_test,
  real_train)`` of two real samples of that size.

* ``fidelity_diversity(images, real, classifier=clf)``: fidelity and diversity measured
  apart, in the same features: precision and recall (Kynkäänniemi et al. 2019: the fraction
  of samples inside the real images' k-nearest-neighbour balls, and of real images inside the
  samples' balls) and density and coverage (Naeem et al. 2020: how many real balls a sample
  falls in, on average over k; the fraction of real balls holding a sample). Accuracy and
  the Fréchet distance do not tell a collapsed generator (every sample of a class alike)
  from a good one; recall and coverage do.
* ``collapse(images, labels, real, real_labels, classifier=clf)``: per class, the samples'
  mean pairwise feature distance as a fraction of the real images'; ``collapsed`` lists the
  classes below 0.25 (near-identical samples), and a warning is printed for them.
* ``at_resolution(real, size)``: real images through the round trip the samples make (down
  to ``size`` pixels with antialiasing, then bilinear back to 28), for a Fréchet "floor" a
  generator at that resolution can reach.

Images are (N, 1, 28, 28) or (N, 784) floats in [0, 1] (map [-1, 1] images back first).
"""
from __future__ import annotations

import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from .data import load_mnist, mnist_source
from .paths import artifacts_dir


class MNISTClassifier(nn.Module):
    """A small CNN: x (B, 1, 28, 28) or (B, 784) in [0, 1] -> logits (B, 10).

    ``features(x)`` returns the penultimate activations (B, width) that the Fréchet
    distance compares.
    """

    def __init__(self, c: int = 16, width: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),           # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (B, 2c, 7, 7)
            nn.Flatten(), nn.Linear(2 * c * 49, width), nn.ReLU(),            # (B, width)
        )
        self.head = nn.Linear(width, 10)
        self.test_accuracy = float("nan")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(-1, 1, 28, 28))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, device: torch.device | str = "cpu",
                     max_steps: int | None = None, c: int = 16, width: int = 128) -> MNISTClassifier:
    """Train an MNISTClassifier with Adam and cross-entropy on x (N, 1, 28, 28), y (N,).

    Uses its own seeded random streams, so training it does not change the caller's.
    ``max_steps`` stops early (for tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MNISTClassifier(c, width).to(device)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        steps = 0
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    break
            if max_steps is not None and steps >= max_steps:
                break
    return model.eval()


@torch.no_grad()
def predict_proba(images: torch.Tensor, classifier: nn.Module, batch_size: int = 500) -> torch.Tensor:
    """Softmax class probabilities (N, 10), on the CPU."""
    classifier.eval()
    dev = _device(classifier)
    return torch.cat([F.softmax(classifier(b.to(dev).float()), dim=-1).cpu()
                      for b in images.split(batch_size)])


@torch.no_grad()
def classifier_features(images: torch.Tensor, classifier: nn.Module, batch_size: int = 500) -> torch.Tensor:
    """Penultimate features (N, width) as float64 on the CPU."""
    classifier.eval()
    dev = _device(classifier)
    return torch.cat([classifier.features(b.to(dev).float()).double().cpu()
                      for b in images.split(batch_size)])


def load_classifier(profile, *, n_train: int | None = None, epochs: int | None = None,
                    verbose: bool = True) -> MNISTClassifier:
    """The profile's sample-quality classifier: loaded from the artifacts folder, or
    trained on the available MNIST training images (and saved there) when missing.

    Sizes default by profile (smoke: 2,000 images, 2 epochs; cpu and gpu: every
    available training image, 4 epochs). ``clf.test_accuracy`` is its accuracy on up
    to 10,000 MNIST test images."""
    n_train = n_train if n_train is not None else profile.pick(smoke=2000, cpu=60000, gpu=60000)
    epochs = epochs if epochs is not None else profile.pick(smoke=2, cpu=4, gpu=4)
    path = artifacts_dir(profile.name) / f"mnist_classifier-{mnist_source()}-n{n_train}-e{epochs}.pt"
    device = profile.device
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = MNISTClassifier(**saved["arch"])
        model.load_state_dict(saved["state_dict"])
        model.test_accuracy = saved["test_accuracy"]
        if verbose:
            print(f"loaded the sample-quality classifier from {path} "
                  f"(test accuracy {model.test_accuracy:.3f})")
        return model.to(device).eval()
    t0 = time.time()
    x, y = load_mnist("train", limit=n_train)
    model = train_classifier(x, y, epochs=epochs, seed=profile.seed, device=device)
    x_test, y_test = load_mnist("test", limit=10000)
    model.test_accuracy = class_accuracy(x_test, y_test, classifier=model)["accuracy"]
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"arch": {"c": 16, "width": 128}, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "test_accuracy": model.test_accuracy, "n_train": len(x), "epochs": epochs}, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    if verbose:
        print(f"trained the sample-quality classifier on {len(x)} images for {epochs} epochs in "
              f"{time.time() - t0:.1f} s (test accuracy {model.test_accuracy:.3f}); saved to {path}")
    return model


def class_accuracy(images: torch.Tensor, labels: torch.Tensor, *, classifier: nn.Module) -> dict[str, float]:
    """For images meant to show digits `labels` (N,): {"accuracy": fraction classified as
    their label, "confidence": mean softmax probability of their label}."""
    p = predict_proba(images, classifier)
    labels = labels.cpu().long()
    return {"accuracy": (p.argmax(1) == labels).double().mean().item(),
            "confidence": p.gather(1, labels[:, None]).double().mean().item()}


def class_coverage(images: torch.Tensor, *, classifier: nn.Module) -> dict[str, object]:
    """{"coverage": fraction of the 10 digits predicted at least once, "entropy": entropy
    in nats of the predicted-digit histogram (log 10 = 2.303 when uniform),
    "histogram": (10,) fraction of images per predicted digit}."""
    pred = predict_proba(images, classifier).argmax(1)
    hist = torch.bincount(pred, minlength=10).double() / len(pred)
    nz = hist[hist > 0]
    return {"coverage": (hist > 0).double().mean().item(),
            "entropy": float(-(nz * nz.log()).sum()), "histogram": hist}


def gaussian_frechet_distance(mean_a: torch.Tensor, cov_a: torch.Tensor,
                              mean_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b):

        ||mean_a - mean_b||^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2)),

    with tr((cov_a cov_b)^(1/2)) = tr((A cov_b A)^(1/2)), A = cov_a^(1/2), from two
    symmetric eigendecompositions (stable for singular covariances)."""
    mean_a, mean_b, cov_a, cov_b = (t.double() for t in (mean_a, mean_b, cov_a, cov_b))
    evals, evecs = torch.linalg.eigh(cov_a)
    root_a = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    middle = root_a @ cov_b @ root_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = ((mean_a - mean_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return max(float(value), 0.0)


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(images_a: torch.Tensor, images_b: torch.Tensor, *, classifier: nn.Module) -> float:
    """Fréchet distance between two image sets in the classifier's penultimate feature
    space (lower is closer; 0 for identical feature statistics)."""
    stats_a = feature_statistics(classifier_features(images_a, classifier))
    stats_b = feature_statistics(classifier_features(images_b, classifier))
    return gaussian_frechet_distance(*stats_a, *stats_b)


def summarize(images: torch.Tensor, real: torch.Tensor, *, classifier: nn.Module,
              labels: torch.Tensor | None = None) -> dict[str, float]:
    """Every metric of generated `images` against `real` images (same count advised):
    coverage, entropy, frechet (and accuracy, confidence when `labels` are given)."""
    cov = class_coverage(images, classifier=classifier)
    out = {"coverage": cov["coverage"], "entropy": cov["entropy"],
           "frechet": frechet_distance(images, real, classifier=classifier)}
    if labels is not None:
        out.update(class_accuracy(images, labels, classifier=classifier))
    return out


MAX_ENTROPY = math.log(10)


def _knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance of each row of features (N, d) to its k-th nearest other row."""
    d = torch.cdist(features, features)
    return d.kthvalue(k + 1, dim=1).values  # +1: a row's distance to itself (0) comes first


def fidelity_diversity(images: torch.Tensor, real: torch.Tensor, *, classifier: nn.Module,
                       k: int = 5) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of generated `images` (M, ...) against
    `real` images (N, ...), in the classifier's penultimate features, with k-nearest-neighbour
    balls (k = 5 as both papers recommend). Precision and density read fidelity (density can
    exceed 1), recall and coverage diversity; each is about 1 (density about 1) for two real
    sets of the same size. Needs at least k + 1 images on each side."""
    if len(images) <= k or len(real) <= k:
        raise ValueError(f"fidelity_diversity needs more than k={k} images on each side, "
                         f"got {len(images)} generated and {len(real)} real")
    fake = classifier_features(images, classifier).double()
    true = classifier_features(real, classifier).double()
    r_real, r_fake = _knn_radii(true, k), _knn_radii(fake, k)
    d = torch.cdist(fake, true)                    # (M, N): sample j to real image i
    inside_real = d <= r_real[None, :]             # sample j inside real ball i
    inside_fake = d.T <= r_fake[None, :]           # real image i inside sample ball j
    return {"precision": inside_real.any(1).double().mean().item(),
            "recall": inside_fake.any(1).double().mean().item(),
            "density": (inside_real.double().sum(1) / k).mean().item(),
            "coverage": inside_real.any(0).double().mean().item()}


def _mean_pairwise(f: torch.Tensor) -> float:
    n = len(f)
    return float(torch.pdist(f).mean()) if n > 1 else float("nan")


def collapse(images: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor, *,
             classifier: nn.Module, threshold: float = 0.25, warn: bool = True) -> dict[str, object]:
    """Per requested class, the samples' mean pairwise feature distance divided by the real
    images' of that class ({"spread": {class: ratio}, "collapsed": [classes below threshold]});
    prints a warning naming collapsed classes (samples of a class nearly identical)."""
    fake = classifier_features(images, classifier).double()
    true = classifier_features(real, classifier).double()
    labels, real_labels = labels.cpu().long(), real_labels.cpu().long()
    spread = {}
    for c in sorted(set(labels.tolist())):
        ref = _mean_pairwise(true[real_labels == c])
        got = _mean_pairwise(fake[labels == c])
        if ref == ref and got == got and ref > 0:  # both defined (two images or more)
            spread[c] = got / ref
    collapsed = [c for c, v in spread.items() if v < threshold]
    if warn and collapsed:
        print(f"warning: the samples of class(es) {collapsed} are nearly identical (spread "
              f"{', '.join(f'{spread[c]:.2f}' for c in collapsed)} of the real images'): a collapse; "
              "their accuracy and Fréchet distance say nothing about diversity")
    return {"spread": spread, "collapsed": collapsed}


def at_resolution(real: torch.Tensor, size: int) -> torch.Tensor:
    """Real images (N, 1, 28, 28) in [0, 1] down to size×size (antialiased, as the training
    data are made) and bilinearly back to 28×28 (as samples are shown and rated): the
    training data as a generator at that resolution would reproduce it, whose Fréchet distance
    stands beside the samples'. Not a floor: samples that guidance sharpens can score below it."""
    x = real.reshape(-1, 1, 28, 28).float()
    if size == 28:
        return x.clone()
    small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)


def reference_distances(real_a: torch.Tensor, real_b: torch.Tensor, size: int, *,
                        classifier: nn.Module) -> dict[str, float]:
    """The references beside a sample set's Fréchet distance, for samples made at size×size:
    "floor", real_a against real_b at 28×28; "training_data", real_a made the way the samples
    are (`at_resolution`) against real_b, with that set's "precision", "recall", "density"
    and "coverage" (`fidelity_diversity`)."""
    made = at_resolution(real_a, size)
    return ({"floor": frechet_distance(real_a, real_b, classifier=classifier),
             "training_data": frechet_distance(made, real_b, classifier=classifier)}
            | fidelity_diversity(made, real_b, classifier=classifier))

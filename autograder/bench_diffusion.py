"""Chapter 05 benchmark: the chapter's U-Net (its `cpu` configuration) against diffusers'
UNet2DModel, trained for the same wall time on the same MNIST images with the same recipe,
judged by the same classifier.

    python -m autograder.bench_diffusion [--minutes 8] [--n-eval 200] [--n-ddpm 100] [--out build/bench-diffusion.json]

The two models take turns on the machine, 20 s of training at a time, until each has had
its budget: if other jobs load the machine, both are slowed alike. Recipe for both (the
chapter's): Adam, lr 2e-3 after a 100-step warm-up, batch 128,
gradient clipping at 1, label dropout 0.1, linear schedule with T = 1000, EMA 0.999 of
the weights for sampling. Ours works at 16x16 (ch=32, mults=(1, 2, 2), 0.78 M parameters);
diffusers' model at 28x28: UNet2DModel(block_out_channels=(32, 64, 64), layers_per_block=1,
DownBlock2D/UpBlock2D only, 11 class embeddings), 1.06 M parameters. Both are sampled with
classifier-free guidance scale 2 (DDIM 50 steps and DDPM 1000 steps) and judged by the
chapter-03 classifier: the fraction of samples classified as the requested digit.
"""
from __future__ import annotations

import argparse
import json
import sys
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from . import chapters

S = chapters.module("05_diffusion", "solutions")


def _diffusers_unet():
    from diffusers import UNet2DModel
    net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                      layers_per_block=1, down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                      num_class_embeds=11, norm_num_groups=8)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t, y=None):
            return self.net(x, t, class_labels=torch.full_like(t, 10) if y is None else y).sample
    return Wrapped()


class Trainer:
    """The chapter's recipe, run in slices of wall time so that two models can take turns
    on a shared machine (load then slows both alike)."""

    def __init__(self, model, x, y, alpha_bars, seed: int = 0, batch: int = 128, lr: float = 2e-3):
        from workbook.ch05 import EMA
        self.model, self.x, self.y, self.alpha_bars = model.train(), x, y, alpha_bars
        self.g = torch.Generator().manual_seed(seed)
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.ema = EMA(model, 0.999)
        self.batch, self.lr = batch, lr
        self.steps, self.seconds, self.losses = 0, 0.0, []

    def run(self, seconds: float) -> None:
        t0 = time.time()
        while time.time() - t0 < seconds:
            idx = torch.randint(0, len(self.x), (self.batch,), generator=self.g)
            for group in self.opt.param_groups:
                group["lr"] = self.lr * min(1.0, (self.steps + 1) / 100)
            labels = S.drop_labels(self.y[idx], 0.1, 10, self.g)
            loss = S.diffusion_loss(self.model, self.x[idx], self.alpha_bars, labels, self.g)
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.ema.update(self.model)
            self.losses.append(loss.item())
            self.steps += 1
        self.seconds += time.time() - t0


@torch.no_grad()
def sample(model, labels, res, alpha_bars, steps: int | None, seed: int, scale: float = 2.0):
    """DDIM (eta = 0) with `steps` steps, or DDPM with all of them when steps is None."""
    from workbook.ch05 import ddim_timesteps
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), 1, res, res, generator=g)
    T = len(alpha_bars)
    ts = list(range(T - 1, -1, -1)) if steps is None else ddim_timesteps(T, steps)
    for i, t in enumerate(ts):
        eps = S.guided_eps(model, x, torch.full((len(labels),), t), labels, scale, 10)
        if steps is None:
            x, _ = S.ddpm_step(eps, t, x, alpha_bars, torch.randn(x.shape, generator=g))
        else:
            x, _ = S.ddim_step(eps, t, ts[i + 1] if i + 1 < len(ts) else -1, x, alpha_bars)
    return x


def main(argv=None) -> int:
    from workbook import quality
    from workbook.ch05 import to_images
    from workbook.data import load_mnist, mnist_source
    from workbook.profile import setup

    p = argparse.ArgumentParser(prog="python -m autograder.bench_diffusion", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training wall time per model")
    p.add_argument("--n-eval", type=int, default=200, help="DDIM-50 samples per model (a multiple of 10)")
    p.add_argument("--n-ddpm", type=int, default=100, help="DDPM-1000 samples per model (a multiple of 10)")
    p.add_argument("--models", nargs="+", default=["ours", "diffusers"], choices=["ours", "diffusers"])
    p.add_argument("--out", type=Path, default=Path("build/bench-diffusion.json"))
    a = p.parse_args(argv)
    profile = setup(seed=0, verbose=False)
    clf = quality.load_classifier(profile, verbose=False)
    x28, y = load_mnist("train")
    alpha_bars = S.noise_schedule(S.linear_betas())[1]
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
               "data": f"{mnist_source()}, {len(x28)} training images", "minutes": a.minutes, "models": {}}
    trainers, rows = {}, {}
    for name in a.models:
        torch.manual_seed(0)
        if name == "ours":
            res, model = 16, S.UNet(1, 32, (1, 2, 2), num_classes=10)
        else:
            res, model = 28, _diffusers_unet()
        x = x28 * 2 - 1 if res == 28 else F.interpolate(x28, size=(res, res), mode="bilinear", antialias=True) * 2 - 1
        trainers[name] = (res, Trainer(model, x, y, alpha_bars))
    budget = a.minutes * 60
    while any(tr.seconds < budget for _, tr in trainers.values()):  # take turns, 20 s at a time
        for res, tr in trainers.values():
            if tr.seconds < budget:
                tr.run(min(20.0, budget - tr.seconds))
    for name, (res, tr) in trainers.items():
        ema = tr.ema.model.eval()
        row = {"parameters": sum(q.numel() for q in tr.model.parameters()), "resolution": res,
               "train_steps": tr.steps, "train_seconds": round(tr.seconds, 1),
               "steps_per_second": round(tr.steps / tr.seconds, 3),
               "images_per_second": round(tr.batch * tr.steps / tr.seconds, 1),
               "final_loss": round(sum(tr.losses[-50:]) / len(tr.losses[-50:]), 4)}
        with torch.no_grad():
            xb = torch.randn(500, 1, res, res)
            t0 = time.time()
            ema(xb, torch.zeros(500, dtype=torch.long), torch.zeros(500, dtype=torch.long))
            row["forward_500_seconds"] = round(time.time() - t0, 2)
        for label, steps_, n, seed in (("ddim50", 50, a.n_eval, 1), ("ddpm1000", None, a.n_ddpm, 2)):
            labels = torch.arange(n) % 10
            t0 = time.time()
            out = sample(ema, labels, res, alpha_bars, steps_, seed)
            row[f"{label}_seconds"] = round(time.time() - t0, 1)
            row[f"{label}_accuracy"] = round(quality.class_accuracy(to_images(out), labels, classifier=clf)["accuracy"], 3)
        results["models"][name] = row
        print(name, json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    keys = ["parameters", "resolution", "train_steps", "images_per_second", "forward_500_seconds",
            "ddim50_accuracy", "ddpm1000_accuracy", "ddim50_seconds", "ddpm1000_seconds"]
    print(f"\n{a.minutes:g} minutes of training each; {results['machine']}; {results['data']}")
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, row in results["models"].items():
        print(f"| {name} | " + " | ".join(str(row[k]) for k in keys) + " |")
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Chapter 05 benchmark: the chapter's U-Net (its `cpu` configuration) against diffusers'
UNet2DModel, trained for the same wall time on the same MNIST images with the same recipe,
judged by the same classifier.

    python -m autograder.bench_diffusion [--minutes 8] [--n-eval 200] [--n-ddpm 100] [--out build/bench-diffusion.json]

Recipe for both (the chapter's): Adam, lr 2e-3 after a 100-step warm-up, batch 128,
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

from solutions import ch05_diffusion as S


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


def train_for(model, x, y, alpha_bars, seconds: float, seed: int = 0, batch: int = 128, lr: float = 2e-3):
    """The chapter's recipe, for a wall-time budget. Returns (EMA model, steps, seconds, losses)."""
    from workbook.ch05 import EMA
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = EMA(model, 0.999)
    model.train()
    losses, step, t0 = [], 0, time.time()
    while time.time() - t0 < seconds:
        idx = torch.randint(0, len(x), (batch,), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        loss = S.diffusion_loss(model, x[idx], alpha_bars, S.drop_labels(y[idx], 0.1, 10, g), g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
        losses.append(loss.item())
        step += 1
    return ema.model.eval(), step, time.time() - t0, losses


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
    for name in a.models:
        torch.manual_seed(0)
        if name == "ours":
            res, model = 16, S.UNet(1, 32, (1, 2, 2), num_classes=10)
        else:
            res, model = 28, _diffusers_unet()
        x = x28 * 2 - 1 if res == 28 else F.interpolate(x28, size=(res, res), mode="bilinear", antialias=True) * 2 - 1
        n_params = sum(q.numel() for q in model.parameters())
        ema, steps, secs, losses = train_for(model, x, y, alpha_bars, a.minutes * 60)
        row = {"parameters": n_params, "resolution": res, "train_steps": steps, "train_seconds": round(secs, 1),
               "steps_per_second": round(steps / secs, 3), "images_per_second": round(128 * steps / secs, 1),
               "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4)}
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

"""One switch scales every notebook: WORKBOOK_PROFILE = smoke | cpu | gpu.

- smoke: tiny sizes for CI and grading (a chapter in well under a minute on 2 cores);
- cpu:   a laptop CPU, meaningful results in at most ~10 minutes a chapter;
- gpu:   full size.

Default: gpu when CUDA is available, else cpu; smoke while nbgrader validates or grades the
notebook (nbgrader sets NBGRADER_EXECUTION), so Validate runs the checks in minutes. Switch from
inside a notebook with `setup(seed=0, profile="smoke")` in its first code cell (or `%env
WORKBOOK_PROFILE=smoke` before it). Each chapter picks its sizes with
``profile.pick(smoke=..., cpu=..., gpu=...)``.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")


@dataclass(frozen=True)
class Profile:
    name: str            # one of PROFILES
    device: torch.device
    seed: int

    def pick(self, **by_profile):
        """The value for this profile: ``profile.pick(smoke=1, cpu=10, gpu=100)``."""
        missing = [p for p in PROFILES if p not in by_profile]
        if missing:
            raise TypeError(f"pick() needs a value for every profile; missing {missing}")
        return by_profile[self.name]

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the profile's seed (+ offset for independent streams)."""
        return torch.Generator().manual_seed(self.seed + offset)


def profile_name(requested: str | None = None) -> str:
    """`requested`, else $WORKBOOK_PROFILE, else smoke under nbgrader, else gpu or cpu."""
    name = (requested or os.environ.get("WORKBOOK_PROFILE", "")).strip().lower()
    if not name:
        if os.environ.get("NBGRADER_EXECUTION"):  # nbgrader's Validate or autograde
            return "smoke"
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"WORKBOOK_PROFILE={name!r} is not one of {', '.join(PROFILES)}")
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, verbose: bool = True, profile: str | None = None) -> Profile:
    """Read the profile (or take `profile`: "smoke" while writing code, "cpu" for results),
    choose the device, seed every generator and say so."""
    name = profile_name(profile)
    device = torch.device(os.environ.get("WORKBOOK_DEVICE")
                          or ("cuda" if torch.cuda.is_available() else "cpu"))
    if name == "gpu" and device.type != "cuda":
        print("note: profile 'gpu' without a GPU runs at full size on the CPU (slow)")
    seed_everything(seed)
    profile = Profile(name, device, seed)
    if verbose:
        print(f"profile={name}  device={device}  seed={seed}  torch={torch.__version__}")
    return profile

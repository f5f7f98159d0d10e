"""Chapter 06 given models and helpers (text-to-image latent diffusion), built from diffusers'
parts so that no earlier exercise is given away:
`res_block`, `time_proj`, `time_embedding`, the library parts your TextUNet assembles;
`TextConditioner`, prompts -> (context, mask) from chapter 04's text encoder;
`make_scheduler`, diffusers' DDIMScheduler with Stable Diffusion's schedule;
`load_rater`, the digit + colour classifier that scores generated images.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..captions import COLOUR_NAMES, DIGIT_WORDS, CaptionTokenizer, load_captioned, load_clip_token_encoder
from ..paths import artifacts_dir


# ----------------------------------------------------------------------------- given: text, U-Net parts, scheduler

class TextConditioner(nn.Module):
    """Prompts -> per-token text features `context` (B, L, D) and the padding mask (B, L).

    With chapter 04's trained text encoder (its per-token features, frozen), as Stable
    Diffusion uses CLIP's; without it, a trainable token + position embedding learned with
    the U-Net (``trainable`` is then True). The mask marks the real tokens (start, words,
    end); the empty caption "" has two real tokens, so no row is ever fully masked."""

    def __init__(self, tokenizer: CaptionTokenizer, token_encoder: nn.Module | None = None, width: int = 64):
        super().__init__()
        self.tokenizer = tokenizer
        self.token_encoder = token_encoder
        self.trainable = token_encoder is None
        self.width = width
        if token_encoder is not None:
            token_encoder.requires_grad_(False)
        if self.trainable:
            self.embedding = nn.Embedding(tokenizer.vocab_size, width)
            self.position = nn.Parameter(0.01 * torch.randn(tokenizer.context_length, width))
            self.norm = nn.LayerNorm(width)

    @property
    def device(self) -> torch.device:
        return next(iter([*self.parameters(), *self.buffers()])).device

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) int64 -> context (B, L, width)."""
        if self.trainable:
            return self.norm(self.embedding(tokens) + self.position[: tokens.shape[1]])
        with torch.no_grad():
            return self.token_encoder(tokens).detach()

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B str) -> (context (B, L, width), mask (B, L) bool)."""
        tokens = self.tokenizer(list(prompts)).to(self.device)
        return self(tokens), tokens != self.tokenizer.pad_id


def load_text_conditioner(profile, fallback_width: int = 64) -> TextConditioner:
    """Chapter 04's frozen text encoder from the profile's artifacts, else a trainable one (with a note)."""
    try:
        token_encoder, tokenizer, width = load_clip_token_encoder(profile.name)
        text = TextConditioner(tokenizer, token_encoder, width)
        text.source = f"chapter 04's CLIP text encoder (frozen, width {width})"
    except Exception as err:  # missing, or written by an older chapter 04: say so and carry on
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        text = TextConditioner(CaptionTokenizer(), None, fallback_width)
        text.source = f"a token embedding trained with the U-Net (chapter 04's encoder unavailable: {reason})"
    return text.to(profile.device)


def res_block(c_in: int, c_out: int, emb_dim: int, groups: int = 8) -> nn.Module:
    """The U-Net's residual block, diffusers' ResnetBlock2D (GroupNorm eps 1e-5): called as
    res(h (B, c_in, H, W), emb (B, emb_dim)) -> (B, c_out, H, W); the time embedding `emb`
    shifts every channel (chapter 05's ResBlock, the library's version)."""
    from diffusers.models.resnet import ResnetBlock2D
    return ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=emb_dim, groups=groups, eps=1e-5)


def time_proj(ch: int) -> nn.Module:
    """diffusers' Timesteps: t (B,) -> sinusoidal features (B, ch), cos then sin (chapter 05's
    timestep_embedding); no parameters."""
    from diffusers.models.embeddings import Timesteps
    return Timesteps(ch, flip_sin_to_cos=True, downscale_freq_shift=0)


def time_embedding(ch: int, emb_dim: int) -> nn.Module:
    """diffusers' TimestepEmbedding: Linear(ch, emb_dim), SiLU, Linear(emb_dim, emb_dim)
    (parameters linear_1, linear_2), features (B, ch) -> emb (B, emb_dim)."""
    from diffusers.models.embeddings import TimestepEmbedding
    return TimestepEmbedding(ch, emb_dim)


def make_scheduler(T: int = 1000):
    """diffusers' DDIMScheduler with Stable Diffusion v1's schedule ("scaled_linear" betas from
    0.00085 to 0.012) and trailing timestep spacing. Its alphas_cumprod are the alpha_bars
    used for training, so training and sampling agree."""
    from diffusers import DDIMScheduler
    return DDIMScheduler(num_train_timesteps=T, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")


# ----------------------------------------------------------------------------- given: data, prompts, rater

def to_model(x01: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> [-1, 1], the range the autoencoder works in."""
    return x01 * 2 - 1


def to_images(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped."""
    return ((x + 1) / 2).clamp(0, 1)


def prompt(digit: int, colour: int) -> str:
    """The evaluation prompt for (digit, colour index), e.g. "a photo of a red seven"."""
    return f"a photo of a {COLOUR_NAMES[colour]} {DIGIT_WORDS[digit]}"


class DigitColourNet(nn.Module):
    """The rater: a small CNN with two heads, digit (10) and ink colour (6), on (B, 3, 32, 32) in [0, 1]."""

    def __init__(self, c: int = 32):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (c, 2 * c, 2 * c):  # 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.digit = nn.Linear(32 * c, 10)
        self.colour = nn.Linear(32 * c, len(COLOUR_NAMES))

    def forward(self, x):
        h = self.trunk(x)
        return self.digit(h), self.colour(h)


def load_rater(profile, verbose: bool = True) -> DigitColourNet:
    """The profile's digit + colour rater: loaded from the artifacts folder, or trained and
    saved there. It must not share the generator's blind spot: the text-to-image model never
    sees a HELD_OUT (digit, colour) pair, so the rater is trained on the training digits
    recoloured with *every* colour (two colourings each, all 60 pairs), never on test images.
    ``rater.test_accuracy`` holds its digit, colour and both-right accuracy on the real
    captioned test split, for the seen and for the held-out pairs separately."""
    from ..captions import make_captioned
    from ..data import load_mnist

    n_train, epochs = profile.pick(smoke=(1000, 2), cpu=(None, 5), gpu=(None, 5))
    path = artifacts_dir(profile.name) / f"ch06_rater-allpairs-n{n_train}-e{epochs}.pt"
    device = profile.device
    model = DigitColourNet()
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        model.test_accuracy = saved["test_accuracy"]
        if verbose:
            print(f"loaded the digit + colour rater from {path} ({model.test_accuracy})")
        return model.to(device).eval()
    t0 = time.time()
    x, y = load_mnist("train", limit=n_train)
    g = torch.Generator().manual_seed(profile.seed * 1000 + 7)
    parts = [make_captioned(x, y, g, exclude_held_out=False) for _ in range(2)]
    images = torch.cat([p_.x for p_ in parts])
    digit, colour = torch.cat([p_.digit for p_ in parts]), torch.cat([p_.colour for p_ in parts])
    torch.manual_seed(profile.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(128):
            logits_d, logits_c = model(images[idx].to(device))
            loss = F.cross_entropy(logits_d, digit[idx].to(device)) + \
                F.cross_entropy(logits_c, colour[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test = load_captioned("test", limit=profile.pick(smoke=1000, cpu=None, gpu=None), seed=profile.seed + 7)
    held = test.held_out()
    model.test_accuracy = {}
    for group, mask in (("seen", ~held), ("held_out", held)):
        r = rate_images(model, test.x[mask], test.digit[mask], test.colour[mask])
        model.test_accuracy.update({f"{group}_{k}": round(v, 4) for k, v in r.items()})
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "test_accuracy": model.test_accuracy}, tmp)
    os.replace(tmp, path)
    if verbose:
        print(f"trained the digit + colour rater on {len(images)} recoloured training images (all 60 pairs) in "
              f"{time.time() - t0:.1f} s: accuracy on real test images {model.test_accuracy}; saved to {path}")
    return model


@torch.no_grad()
def rate_images(rater: nn.Module, images01: torch.Tensor, digit: torch.Tensor, colour: torch.Tensor) -> dict:
    """Fractions of images (N, 3, 32, 32) in [0, 1] whose digit, colour, and both, the rater
    reads as requested."""
    device = next(rater.parameters()).device
    pd, pc = [], []
    for chunk in images01.split(256):
        ld, lc = rater(chunk.to(device))
        pd.append(ld.argmax(1).cpu())
        pc.append(lc.argmax(1).cpu())
    pd, pc = torch.cat(pd), torch.cat(pc)
    ok_d, ok_c = pd == digit.cpu(), pc == colour.cpu()
    return {"digit": ok_d.float().mean().item(), "colour": ok_c.float().mean().item(),
            "both": (ok_d & ok_c).float().mean().item()}

"""Coloured, captioned MNIST: a tiny image-text data set for CLIP (chapter 04) and
text-to-image generation (chapter 06).

Every MNIST digit is painted in one of six colours on a dark or a light background and
described by a caption drawn from a few templates, e.g. "a photo of a red seven" or
"the digit 7 in red". Everything is deterministic given a seed.

Some (digit, colour) combinations never occur in the training split (``HELD_OUT``): a
model that understands "red" and "seven" separately should still recognise a red seven
without ever having seen one. The test split contains every combination.

    data = load_captioned("train", seed=0)          # CaptionedImages
    data.x (N, 3, 32, 32) in [0, 1], data.captions (list of N str),
    data.digit, data.colour, data.background (N,) int64
    tokenizer = CaptionTokenizer()                   # open_clip's BPE, compact vocabulary
    tokens = tokenizer(data.captions)                # (N, 16) int64

``load_clip_encoders(profile_name)`` returns the encoders chapter 04 trained and saved.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import load_mnist
from .paths import artifacts_dir

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS = {  # name -> RGB in [0, 1]
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.15, 0.80),
    "pink": (1.00, 0.45, 0.70),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUNDS = ("dark", "light")
BACKGROUND_LEVELS = {"dark": (0.02, 0.20), "light": (0.75, 0.95)}  # grey level range
# Caption templates: {c} colour, {w} digit word, {d} digit numeral, {b} background.
TEMPLATES = (
    "a photo of a {c} {w}",
    "a {c} {w} on a {b} background",
    "the digit {d} in {c}",
    "the number {w} written in {c} on {b}",
    "{c} number {d}",
    "a {b} image of the number {w} in {c}",
)
# (digit, colour index) pairs absent from the training split: one per digit, every colour
# held out at least once, so each digit and each colour is still seen with other partners.
HELD_OUT = frozenset((d, (d + 3) % len(COLOURS)) for d in range(10))
CONTEXT_LENGTH = 16
# every word the tokenizer keeps (anything else becomes the unknown token)
VOCABULARY = (" ".join(TEMPLATES).replace("{c}", " ").replace("{w}", " ").replace("{d}", " ")
              .replace("{b}", " ") + " " + " ".join(DIGIT_WORDS) + " " + " ".join(COLOURS) + " "
              + " ".join(BACKGROUNDS) + " " + " ".join(str(d) for d in range(10)) + " digit colour .")


@dataclass
class CaptionedImages:
    """N captioned images. x (N, 3, S, S) float32 in [0, 1]; captions: N strings;
    digit (N,) in 0..9, colour (N,) index into COLOUR_NAMES, background (N,) index into
    BACKGROUNDS, template (N,) index into TEMPLATES, all int64."""

    x: torch.Tensor
    captions: list[str]
    digit: torch.Tensor
    colour: torch.Tensor
    background: torch.Tensor
    template: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def combo(self) -> torch.Tensor:
        """(N,) int64 index of the (digit, colour) combination: digit * 6 + colour."""
        return self.digit * len(COLOURS) + self.colour

    def held_out(self) -> torch.Tensor:
        """(N,) bool: True where (digit, colour) is one of the HELD_OUT combinations."""
        return held_out_mask(self.digit, self.colour)

    def subset(self, index) -> "CaptionedImages":
        """The examples selected by a bool mask or an index tensor/list, in that order."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        return CaptionedImages(self.x[index], [self.captions[i] for i in index.tolist()],
                               self.digit[index], self.colour[index], self.background[index],
                               self.template[index])


def held_out_mask(digit: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which (digit[i], colour[i]) pairs are HELD_OUT."""
    table = torch.zeros(10, len(COLOURS), dtype=torch.bool)
    for d, c in HELD_OUT:
        table[d, c] = True
    return table[digit, colour]


def caption(digit: int, colour: int, background: int, template: int) -> str:
    """The caption of one image, e.g. caption(7, 0, 0, 0) == "a photo of a red seven"."""
    return TEMPLATES[template].format(c=COLOUR_NAMES[colour], w=DIGIT_WORDS[digit], d=digit,
                                      b=BACKGROUNDS[background])


def render(x: torch.Tensor, colour: torch.Tensor, background: torch.Tensor, generator: torch.Generator,
           size: int = 32) -> torch.Tensor:
    """Paint grey digits x (N, 1, 28, 28) in [0, 1]: colour (N,) and background (N,) are
    indices. The ink colour is jittered by +-0.05 per channel and the background grey level
    drawn from its range, both with `generator`. Returns (N, 3, size, size), size 28 or 32
    (32 pads 2 pixels of background on every side)."""
    if size not in (28, 32):
        raise ValueError(f"size must be 28 or 32, got {size}")
    N = x.shape[0]
    if size == 32:
        x = torch.nn.functional.pad(x, (2, 2, 2, 2))
    rgb = torch.tensor(list(COLOURS.values()), dtype=torch.float32)[colour]  # (N, 3)
    rgb = (rgb + 0.1 * (torch.rand(N, 3, generator=generator) - 0.5)).clamp(0, 1)
    lo = torch.tensor([BACKGROUND_LEVELS[b][0] for b in BACKGROUNDS])[background]
    hi = torch.tensor([BACKGROUND_LEVELS[b][1] for b in BACKGROUNDS])[background]
    grey = lo + (hi - lo) * torch.rand(N, generator=generator)  # (N,)
    ink = x  # (N, 1, S, S): how much of the pixel is digit
    return ink * rgb[:, :, None, None] + (1 - ink) * grey[:, None, None, None]


def make_captioned(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, *, size: int = 32,
                   exclude_held_out: bool = False) -> CaptionedImages:
    """Colour and caption MNIST digits x (N, 1, 28, 28), labels y (N,), using only `generator`.

    Colours, backgrounds and templates are uniform; with exclude_held_out=True a digit's
    colour is drawn from the colours not held out for it, so the HELD_OUT combinations never
    occur (and N stays the same)."""
    N = len(y)
    K = len(COLOURS)
    if exclude_held_out:
        # draw from the K - 1 allowed colours: skip the held-out one for this digit
        banned = torch.tensor([dict(HELD_OUT)[d] for d in range(10)])[y]  # (N,)
        colour = torch.randint(0, K - 1, (N,), generator=generator)
        colour = colour + (colour >= banned).long()
    else:
        colour = torch.randint(0, K, (N,), generator=generator)
    background = torch.randint(0, len(BACKGROUNDS), (N,), generator=generator)
    template = torch.randint(0, len(TEMPLATES), (N,), generator=generator)
    images = render(x, colour, background, generator, size=size)
    caps = [caption(d, c, b, t) for d, c, b, t in
            zip(y.tolist(), colour.tolist(), background.tolist(), template.tolist())]
    return CaptionedImages(images, caps, y.clone(), colour, background, template)


def load_captioned(split: str = "train", *, limit: int | None = None, copies: int = 1, seed: int = 0,
                   size: int = 32) -> CaptionedImages:
    """Captioned MNIST: the first `limit` digits of `split` ("train" or "test"), each painted
    `copies` times (independent colours, backgrounds and captions). The train split never
    contains a HELD_OUT combination; the test split contains all of them. Deterministic
    for a given (split, limit, copies, seed, size)."""
    x, y = load_mnist(split, limit=limit)
    g = torch.Generator().manual_seed(seed * 1000 + (0 if split == "train" else 1))
    parts = [make_captioned(x, y, g, size=size, exclude_held_out=(split == "train")) for _ in range(copies)]
    return CaptionedImages(torch.cat([p.x for p in parts]), [c for p in parts for c in p.captions],
                           *(torch.cat([getattr(p, f) for p in parts])
                             for f in ("digit", "colour", "background", "template")))


class CaptionTokenizer:
    """open_clip's BPE tokenizer (CLIP's own, shipped with the package) mapped onto a compact
    vocabulary: the BPE tokens of VOCABULARY, plus padding 0, unknown 1, start-of-text 2 and
    end-of-text ``vocab_size - 1``. As in CLIP, the end-of-text token has the largest id, so
    ``tokens.argmax(-1)`` finds it; rows are padded with 0 after it.

        tok = CaptionTokenizer(); tok(["a red seven"])  # (1, 16) int64
    """

    pad_id, unk_id, sot_id = 0, 1, 2

    def __init__(self, context_length: int = CONTEXT_LENGTH, words: str = VOCABULARY):
        from open_clip.tokenizer import SimpleTokenizer  # BPE merges ship with the package

        self.context_length = context_length
        self.words = words
        self._bpe = SimpleTokenizer(context_length=context_length)
        self.bpe_ids = sorted(set(self._bpe.encode(words)))
        self._to_compact = {b: 3 + i for i, b in enumerate(self.bpe_ids)}
        self.eot_id = 3 + len(self.bpe_ids)
        self.vocab_size = self.eot_id + 1

    def encode(self, text: str) -> list[int]:
        """Compact ids of one text, without start/end tokens."""
        return [self._to_compact.get(b, self.unk_id) for b in self._bpe.encode(text)]

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        """texts (a str or a list of B str) -> tokens (B, context_length) int64:
        [sot, ..., eot, 0, 0, ...]; too long texts are cut so that eot stays last."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.sot_id, *self.encode(t)][: self.context_length - 1] + [self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, tokens: torch.Tensor) -> str:
        """One row of tokens back to text (special tokens dropped, unknown as '?')."""
        from_compact = {v: k for k, v in self._to_compact.items()}
        bpe = []
        for t in tokens.tolist():
            if t == self.eot_id:
                break
            if t == self.unk_id:
                bpe.append(self._bpe.encoder["?</w>"])
            elif t in from_compact:
                bpe.append(from_compact[t])
        return self._bpe.decode(bpe).strip()

    def config(self) -> dict:
        return {"context_length": self.context_length, "words": self.words}


# ----------------------------------------------------------------------------- saved encoders

ENCODERS_FILE = "ch04_clip_encoders.pt"        # state dicts + config (torch.save)
EXPORTED_FILES = {"image": "ch04_clip_image_encoder.pt2", "text": "ch04_clip_text_encoder.pt2",
                  "tokens": "ch04_clip_text_tokens.pt2"}  # tokens: per-token features for chapter 06


class TokenFeatures(torch.nn.Module):
    """A text encoder's per-token features: the output of its final LayerNorm `ln_final`
    (B, L, width), before the end-of-text pooling and the projection. This is what Stable
    Diffusion's U-Net attends to (CLIP's last hidden state), read with a forward hook so
    that it works for any encoder with an `ln_final` attribute (chapter 04's contract)."""

    def __init__(self, text_encoder: torch.nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        seen = []
        hook = self.text_encoder.ln_final.register_forward_hook(lambda module, args, out: seen.append(out))
        try:
            self.text_encoder(tokens)
        finally:
            hook.remove()
        return seen[-1]


def save_clip_encoders(folder: str | Path, image_encoder: torch.nn.Module, text_encoder: torch.nn.Module,
                       tokenizer: CaptionTokenizer, config: dict, image_size: int = 32) -> list[Path]:
    """Save a trained CLIP's two encoders to `folder` (chapter 04 uses artifacts_dir(profile)).

    Writes ENCODERS_FILE: {"config": config, "tokenizer": tokenizer.config(), "image_encoder":
    state dict, "text_encoder": state dict} (load it into your own classes), and, when
    torch.export can trace them, both encoders as exported programs (EXPORTED_FILES) that
    load without their class definitions (see load_clip_encoders). Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    to_cpu = lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()}
    torch.save({"config": dict(config), "tokenizer": tokenizer.config(),
                "image_encoder": to_cpu(image_encoder), "text_encoder": to_cpu(text_encoder)},
               folder / ENCODERS_FILE)
    written = [folder / ENCODERS_FILE]
    texts = tokenizer(["a photo of a red seven", "the digit 7 in red"])
    examples = {"image": (image_encoder, torch.zeros(2, 3, image_size, image_size)),
                "text": (text_encoder, texts)}
    if hasattr(text_encoder, "ln_final"):
        examples["tokens"] = (TokenFeatures(text_encoder), texts)
    for kind, (module, example) in examples.items():
        file = folder / EXPORTED_FILES[kind]
        file.unlink(missing_ok=True)
        was_training, device = module.training, next(module.parameters()).device
        try:
            module.cpu().eval()
            with torch.no_grad():
                program = torch.export.export(module, (example,),
                                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            tmp = file.with_suffix(f".tmp{os.getpid()}.pt2")  # torch.export warns unless it ends in .pt2
            torch.export.save(program, str(tmp))
            os.replace(tmp, file)  # atomic: a later chapter never reads half a file
            written.append(file)
        except Exception as err:  # a module torch.export cannot trace: the state dict is still saved
            print(f"note: could not export the {kind} encoder ({type(err).__name__}: "
                  f"{str(err).splitlines()[0][:120] if str(err) else ''}); saved its state dict only")
        finally:
            module.to(device).train(was_training)
    return written


def load_clip_encoders(where: str | Path, device: torch.device | str = "cpu"):
    """Chapter 04's trained CLIP, without its class definitions. `where` is a profile name
    ("smoke", "cpu", "gpu": its artifacts folder) or a folder. Returns (image_encoder,
    text_encoder, tokenizer, config): image_encoder maps x (B, 3, S, S) to features (B, E),
    text_encoder maps tokens (B, L) to features (B, E), both unnormalised as trained and in
    inference mode; config is the saved dict (embed_dim, logit_scale, image_size, ...).
    Raises FileNotFoundError if chapter 04 has not saved them there."""
    folder = artifacts_dir(str(where)) if str(where) in ("smoke", "cpu", "gpu") else Path(where)
    path = folder / ENCODERS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run chapter 04 (profile {where!r}) first")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    modules = []
    for kind in ("image", "text"):
        file = folder / EXPORTED_FILES[kind]
        if not file.exists():
            raise FileNotFoundError(f"{file} not found: chapter 04 could not export its {kind} encoder")
        modules.append(torch.export.load(str(file)).module().to(device))
    tokenizer = CaptionTokenizer(**saved["tokenizer"])
    return modules[0], modules[1], tokenizer, saved["config"]


def load_clip_token_encoder(where: str | Path, device: torch.device | str = "cpu"):
    """Chapter 04's text encoder as per-token features (see TokenFeatures): returns
    (token_encoder, tokenizer, width), token_encoder mapping tokens (B, L) int64 to (B, L, width).
    Raises FileNotFoundError if chapter 04 has not saved it in `where` (a profile name or folder)."""
    folder = artifacts_dir(str(where)) if str(where) in ("smoke", "cpu", "gpu") else Path(where)
    path, file = folder / ENCODERS_FILE, folder / EXPORTED_FILES["tokens"]
    for needed in (path, file):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} not found: run chapter 04 (profile {where!r}) first")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    module = torch.export.load(str(file)).module().to(device)
    return module, CaptionTokenizer(**saved["tokenizer"]), int(saved["config"]["width"])

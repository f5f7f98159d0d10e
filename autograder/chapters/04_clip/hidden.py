"""Chapter 04 hidden checks: the learner's code against open_clip (ClipLoss, the zero-shot
classifier builder) and the reference on fresh random inputs, with known mistakes
recognised by name.

These checks run in the judge (`autograder.judge`), never in the learner's kernel: the
learner's functions and classes arrive as `RemoteObject`s, calls send plain tensors and
bring plain values back, and harness snippets (`run`, `twin`) do in the kernel what needs
the learner's objects there: gradients of the loss, weights copied into the encoders and
their forward passes, the text encoder and tokenizer handed to `zero_shot_weights` (built
from open_clip and the course's tokenizer, never from the solutions)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.zero_shot_classifier import build_zero_shot_classifier

from autograder.hidden import generators, grade_choice, run_reporting
from autograder.mutants import known_mistakes
from autograder.remote import RemoteObject, twin
from . import solutions as ref
from workbook import ch04
from workbook.captions import COLOUR_NAMES, DIGIT_WORDS
from workbook.checks import Checks, tolerance

CH = "04_clip"
_gen = generators(CH)
DIAG = ch04.DIAGNOSES



def _open_clip_loss(I, T, t):
    """open_clip's ClipLoss on unit features and the model's scale exp(t), as open_clip's
    CLIP.forward passes it (its training loop, not the loss, clamps t to at most log 100)."""
    return ClipLoss()(F.normalize(I, dim=-1), F.normalize(T, dim=-1), t.exp())


# The learner's loss on fresh leaves, and backward, in the kernel: the gradients come back
# (or the error of backward, as `c.call(loss.backward)` would have reported it).
CLIP_GRADS = '04_clip.clip_grads'


def clip_loss(fn) -> None:
    c = Checks("clip_loss (hidden)")
    g = _gen("clip_loss")
    cases = [(7, 5, 0.5 + 2.5 * torch.rand(1, generator=g).item()), (12, 16, math.log(1 / 0.07)),
             (5, 3, math.log(150.0 + 100 * torch.rand(1, generator=g).item())),  # above the cap: used as given
             (1, 4, 1.0 + torch.rand(1, generator=g).item()),
             (6, 4, math.log(0.2 + 0.6 * torch.rand(1, generator=g).item()))]  # t < 0: a scale below 1, not clamped
    for B, E, t in cases:
        I = torch.randn(B, E, generator=g, dtype=torch.float64) * (0.2 + 3 * torch.rand(B, 1, generator=g,
                                                                                    dtype=torch.float64))
        T = torch.randn(B, E, generator=g, dtype=torch.float64) + 0.5 * I
        ts = torch.tensor(t, dtype=torch.float64)
        inputs = f"random I ({B}, {E}), T ({B}, {E}) float64 with rows of different norms, logit_scale = {t:.4f}"
        leaves = [v.clone().requires_grad_() for v in (I, T, ts)]
        loss = c.call(fn, *leaves, inputs=inputs)
        c.tensor("loss", loss, shape=(), dtype=torch.float64, inputs=inputs)
        oracle = [v.clone().requires_grad_() for v in (I, T, ts)]
        want = _open_clip_loss(*oracle)
        c.close("loss (vs open_clip's ClipLoss)", loss, want, atol=1e-8, inputs=inputs,
                mistakes=known_mistakes(CH, "clip_loss", lambda f: f(I.clone(), T.clone(), ts.clone())))
        error, grads = run_reporting(c, getattr(fn, "__name__", "clip_loss"), CLIP_GRADS, inputs=inputs,
                                  fn=fn, I=I, T=T, t=ts)
        if error is not None:
            c.fail(f"calling backward raised {error}", inputs=inputs)
        want.backward()
        for name, mine, theirs in zip(("image_features", "text_features"), grads[:2], oracle[:2]):
            c.true(mine is not None, f"no gradient reached {name}", inputs=inputs,
                   hint=DIAG["clip_graph"])
            c.close(f"d loss / d {name} (vs open_clip)", mine, theirs.grad, atol=1e-8, inputs=inputs)
        g_t = grads[2] if grads[2] is not None else torch.zeros((), dtype=torch.float64)
        c.close("d loss / d logit_scale (vs open_clip)", g_t, oracle[2].grad, atol=1e-8, inputs=inputs,
                hint=DIAG["clip_scale_graph"])
    # float32 at the largest scale training allows: logits up to +-100, the softmax by exp
    # overflows (e^89 > float32's largest value) and a badly matched pair has a
    # log-probability near -200 (underflow)
    B, E = 6, 8
    v = torch.randn(1, E, generator=g)
    I = v + 0.3 * torch.randn(B, E, generator=g)
    T = (I + 0.05 * torch.randn(B, E, generator=g)) * (0.5 + torch.rand(B, 1, generator=g))
    T[0] = -T[0]
    I = I * (0.5 + 3 * torch.rand(B, 1, generator=g))
    t = torch.tensor(math.log(100.0) - 0.1 * torch.rand(1, generator=g).item())
    inputs = (f"float32 I ({B}, {E}), T ({B}, {E}) nearly parallel (cosines near 1, one pair near -1), "
              f"logit_scale = {t.item():.4f} (scale {t.exp().item():.1f})")
    out = c.call(fn, I.clone(), T.clone(), t.clone(), inputs=inputs)
    c.tensor("loss", out, shape=(), dtype=torch.float32, finite=False, inputs=inputs)
    want = _open_clip_loss(I.double(), T.double(), t.double())
    c.close("loss (vs open_clip's ClipLoss in float64)", out, want,
            **tolerance(torch.float32, scale=100.0, ops=B), inputs=inputs,
            mistakes=known_mistakes(CH, "clip_loss", lambda f: f(I.clone(), T.clone(), t.clone())),
            hint=DIAG["clip_stable"])
    c.done()


# The learner's module in the kernel: its parameter names and shapes; the reference's
# parameters and buffers copied in by name; its output in a given mode, without gradients.
NAMED_SHAPES = '04_clip.named_shapes'
COPY_BY_NAME = '04_clip.copy_by_name'
FORWARD = '04_clip.forward'
# The shapes of what the learner's ln_final outputs during one forward pass (eval, no grad).
LN_FINAL_SHAPES = '04_clip.ln_final_shapes'


def _copy_weights(c: Checks, learner: RemoteObject, reference: torch.nn.Module, inputs: str) -> None:
    """Copy the reference's parameters and BatchNorm statistics into the learner's module by
    name: its persistent buffers only (the learner's own causal mask is kept)."""
    name = learner.__name__
    state = reference.state_dict()
    lp = run_reporting(c, name, NAMED_SHAPES, inputs=inputs, model=learner)
    rp = {k: tuple(v.shape) for k, v in reference.named_parameters()}
    if lp != rp:
        missing = sorted(set(rp) - set(lp))[:4]
        extra = sorted(set(lp) - set(rp))[:4]
        wrong = [k for k in set(lp) & set(rp) if lp[k] != rp[k]][:4]
        c.fail("the parameters (names or shapes) differ from the stated architecture", inputs=inputs,
               expected=f"{len(rp)} parameters, e.g. {sorted(rp)[:3]}",
               got=f"missing {missing}, unexpected {extra}, wrong shapes {wrong}",
               hint=DIAG["encoder_names"])
    run_reporting(c, name, COPY_BY_NAME, inputs=inputs, model=learner,
               params={k: v.detach() for k, v in reference.named_parameters()},
               buffers={k: v.detach() for k, v in reference.named_buffers() if k in state})


def _forward(c: Checks, model: RemoteObject, x: torch.Tensor, train: bool, inputs: str):
    """model.train(train); model(x) without gradients, in the kernel."""
    return run_reporting(c, model.__name__, FORWARD, inputs=inputs, model=model, x=x, train=train)


def _run_with(cls, kwargs: dict, reference: torch.nn.Module, x: torch.Tensor, train: bool):
    """Build cls(**kwargs), give it the reference's weights, return its output on x."""
    model = cls(**kwargs)
    model.load_state_dict(reference.state_dict(), strict=False)
    model.train(train)
    with torch.no_grad():
        return model(x)


def _texts(g: torch.Generator, B: int, L: int, eot: int) -> torch.Tensor:
    """B random token rows of length L: start id 1, words, the end-of-text id `eot` (the
    largest) at a random place; odd rows carry junk ids after it, even rows padding 0."""
    text = torch.zeros(B, L, dtype=torch.long)
    for b in range(B):
        n = int(torch.randint(3, L + 1, (1,), generator=g))
        text[b, 0] = 1
        text[b, 1:n - 1] = torch.randint(2, eot, (n - 2,), generator=g)
        text[b, n - 1] = eot
        text[b, n:] = torch.randint(0, eot, (L - n,), generator=g) * (b % 2)
    return text


def encoders(ImageEncoder, TextEncoder) -> None:
    c = Checks("encoders (hidden)")
    g = _gen("encoders")
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    kw = dict(embed_dim=12, c=6)
    reference = ref.ImageEncoder(**kw)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    inputs = "ImageEncoder(embed_dim=12, c=6) with the reference's weights"
    model = c.call(ImageEncoder, **kw, inputs=inputs)
    _copy_weights(c, model, reference, inputs)
    # S = 32 as in the chapter, and other sizes the docstring allows (S >= 16, divisible by 4)
    for S, train in [(32, False), (32, True), (24, False), (16, False)]:
        x = torch.rand(5, 3, S, S, generator=g)
        inputs = f"ImageEncoder(embed_dim=12, c=6), x (5, 3, {S}, {S}) random, the reference's weights"
        reference.train(train)
        mode = "train mode (batch statistics)" if train else "eval mode (running statistics)"
        out = _forward(c, model, x, train, inputs)
        with torch.no_grad():
            want = reference(x)
        c.tensor("model(x)", out, shape=tuple(want.shape), inputs=inputs + ", " + mode)
        c.close(f"model(x) in {mode}", out, want, atol=1e-5, inputs=inputs,
                mistakes=known_mistakes(CH, "ImageEncoder", lambda cls: _run_with(cls, kw, reference, x, train)),
                hint=DIAG["image_layers"])

    # heads 3 and 4: with an even number of heads, eval mode without gradients takes
    # PyTorch's fast path, the only one that reads the mask itself (the others use is_causal)
    for heads in (3, 4):
        _text_encoder(c, g, TextEncoder, heads)
    c.done()


def _text_encoder(c: Checks, g: torch.Generator, TextEncoder, heads: int) -> None:
    kw = dict(vocab_size=23, embed_dim=10, width=24, layers=2, heads=heads, context_length=9)
    reference = ref.TextEncoder(**kw)
    text = _texts(g, 6, 9, eot=22)
    inputs = (f"TextEncoder(vocab_size=23, embed_dim=10, width=24, layers=2, heads={heads}, context_length=9), "
              "random text (6, 9) with end-of-text id 22, the reference's weights")
    model = c.call(TextEncoder, **kw, inputs=inputs)
    _copy_weights(c, model, reference, inputs)
    # L = context_length, then shorter texts (L < context_length) and a batch of one
    short = _texts(g, 6, 6, eot=22)
    for tokens, train, what in [(text, False, "text (6, 9) = context_length, eval mode, no gradients"),
                                (text, True, "text (6, 9), train mode"),
                                (short, False, "text (6, 6), shorter than context_length 9"),
                                (short[2:3], False, "text (1, 6), a batch of one")]:
        tin = inputs + f"; {what}"
        reference.train(train)
        out = _forward(c, model, tokens, train, tin)
        with torch.no_grad():
            want = reference(tokens)
        c.tensor("model(text)", out, shape=tuple(want.shape), inputs=tin)
        c.close("model(text)" + (" in train mode" if train else ""), out, want, atol=1e-5, inputs=tin,
                mistakes=known_mistakes(CH, "TextEncoder", lambda cls: _run_with(cls, kw, reference, tokens, train)),
                hint=DIAG["text_layers"])
    shapes = run_reporting(c, model.__name__, LN_FINAL_SHAPES, inputs=inputs, model=model, x=short)
    c.true(shapes == [(6, 6, 24)], "ln_final was not applied (once) to the Transformer's output (B, L, width)",
           inputs=inputs + "; text (6, 6)", expected=[(6, 6, 24)], got=shapes, hint=DIAG["text_no_ln"])


# A random text encoder (open_clip's TextTransformer: token + position embedding, causal
# pre-norm Transformer, ln_final, end-of-text feature, projection) and the course's
# tokenizer, built identically in the judge and in the kernel (no solution code).
ZERO_SHOT_ENCODER = '04_clip.zero_shot_encoder'


def zero_shot(zero_shot_weights, zero_shot_predict) -> None:
    c = Checks("zero_shot (hidden)")
    g = _gen("zero_shot")
    seed = int(torch.randint(0, 2**31, (1,), generator=g))
    inputs = "a random text encoder and CaptionTokenizer"
    (enc, tok), (enc_k, tok_k) = c.call(twin, ZERO_SHOT_ENCODER, seed=seed, inputs=inputs)
    pick = torch.randperm(10, generator=g)[:6].tolist()
    classnames = [DIGIT_WORDS[i] for i in pick]
    colours = torch.randperm(len(COLOUR_NAMES), generator=g)[:3].tolist()
    templates = [f"a photo of a {COLOUR_NAMES[k]} {{}}" for k in colours] + ["the number {} in red"]
    inputs = f"a random TextEncoder, CaptionTokenizer, classnames {classnames}, {len(templates)} templates"
    W = c.call(zero_shot_weights, enc_k, tok_k, classnames, templates, inputs=inputs)
    c.tensor("weights", W, shape=(len(classnames), 16), inputs=inputs)
    oracle = build_zero_shot_classifier(_EncodeText(enc), tok, classnames, templates, num_classes_per_batch=None).T
    c.close("weights (vs open_clip's build_zero_shot_classifier)", W, oracle, atol=1e-5, inputs=inputs,
            mistakes=known_mistakes(CH, "zero_shot_weights", lambda f: f(enc, tok, classnames, templates)))
    c.true(not W.requires_grad, "weights should carry no gradient", inputs=inputs,
           hint=DIAG["zs_grad"])
    C, E = 7, 5
    Wc = F.normalize(torch.randn(C, E, generator=g), dim=1)
    for N in (40, 1):  # and a batch of one image
        X = torch.randn(N, E, generator=g) * (0.1 + 4 * torch.rand(N, 1, generator=g))
        inputs = f"random image_features ({N}, {E}) of different norms, unit weights ({C}, {E})"
        pred = c.call(zero_shot_predict, X.clone(), Wc.clone(), inputs=inputs)
        c.tensor("prediction", pred, shape=(N,), dtype=torch.int64, inputs=inputs)
        c.close("prediction", pred, ref.zero_shot_predict(X, Wc), atol=0, rtol=0, inputs=inputs,
                mistakes=known_mistakes(CH, "zero_shot_predict", lambda f: f(X, Wc)))
    c.done()


class _EncodeText(torch.nn.Module):
    """open_clip's encode_text(tokens, normalize) interface around a bare text encoder."""

    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def encode_text(self, tokens, normalize=False):
        out = self.enc(tokens)
        return F.normalize(out, dim=-1) if normalize else out


# A dict subclass (OrderedDict, defaultdict) crosses as a handle: read it as a plain dict.
AS_DICT = '04_clip.as_dict'


def _paired(g: torch.Generator, N: int, E: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """N noisy (image, text) pairs of random norms, drawn again until the two directions'
    recalls differ and no similarity lies within 1e-4 of its match's (no near-ties: a
    float32 similarity may then rank the same as a float64 one)."""
    for _ in range(50):
        I = torch.randn(N, E, generator=g)
        T = (I + noise * torch.randn(N, E, generator=g)) * (0.2 + 3 * torch.rand(N, 1, generator=g))
        I = I * (0.2 + 3 * torch.rand(N, 1, generator=g))
        sim = F.normalize(I.double(), dim=1) @ F.normalize(T.double(), dim=1).T
        gap = min(float((sim - sim.diag()[:, None]).abs().fill_diagonal_(1).min()),
                  float((sim - sim.diag()[None, :]).abs().fill_diagonal_(1).min()))
        want = ref.recall_at_k(I, T, (1, 3, 10))
        if gap > 1e-4 and not torch.equal(want["image_to_text"], want["text_to_image"]):
            break
    return I, T


def _tied(g: torch.Generator, N: int, E: int) -> tuple[torch.Tensor, torch.Tensor]:
    """N pairs whose features point along +-e_j (random j, random norms): every cosine is
    exactly -1, 0 or 1 in any dtype, so many candidates tie with the match."""
    def axes():
        j = torch.randint(0, E, (N,), generator=g)
        sign = torch.randint(0, 2, (N,), generator=g) * 2 - 1
        return F.one_hot(j, E).float() * sign[:, None] * (0.5 + 2 * torch.rand(N, 1, generator=g))
    return axes(), axes()


def recall(fn) -> None:
    c = Checks("recall_at_k (hidden)")
    g = _gen("recall")
    cases = [(*_paired(g, 40, 6, 1.1), (1, 3, 10), "random paired features I (40, 6), T (40, 6) with noise and "
                                                    "different norms"),
             (*_tied(g, 12, 3), (1, 2, 5), "12 pairs along the axes +-e_j of 3-D (norms random): cosines -1, 0 "
                                           "or 1, so candidates tie with the match")]
    for I, T, ks, what in cases:
        inputs = f"{what}, float32, ks={ks}"
        out = c.call(fn, I.clone(), T.clone(), ks, inputs=inputs)
        if isinstance(out, RemoteObject):
            out = run_reporting(c, getattr(fn, "__name__", "recall_at_k"), AS_DICT, inputs=inputs, out=out)
        c.true(isinstance(out, dict) and set(out) == {"image_to_text", "text_to_image"},
               'recall_at_k must return a dict with keys "image_to_text" and "text_to_image"', inputs=inputs,
               got=type(out).__name__ + (f" with keys {sorted(map(str, out))}" if isinstance(out, dict) else ""))
        want = ref.recall_at_k(I, T, ks)
        diag = known_mistakes(CH, "recall_at_k", lambda f: f(I, T, ks))
        for key in ("image_to_text", "text_to_image"):
            c.tensor(f'out["{key}"]', out[key], shape=(len(ks),), dtype=torch.float64, inputs=inputs)
        got = torch.stack([out["image_to_text"], out["text_to_image"]])
        c.close("[image_to_text, text_to_image]", got,
                torch.stack([want["image_to_text"], want["text_to_image"]]), atol=1e-9, inputs=inputs,
                mistakes={d: torch.stack([m["image_to_text"], m["text_to_image"]]) for d, m in diag.items()},
                hint=DIAG["recall_ties"] if "axes" in what else None)
    c.done()


def quiz(name: str, answer) -> None:
    grade_choice(name, answer, getattr(ref, name), explain=ch04.QUIZ_EXPLAIN.get(name))

"""Tests for autograder/chapters/04_clip/solutions.py against independent oracles: open_clip's ClipLoss,
TextTransformer, text_global_pool and build_zero_shot_classifier, and brute force."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.transformer import TextTransformer
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from autograder import chapters

_EncodeText = chapters.module("04_clip", "hidden")._EncodeText  # open_clip's encode_text interface

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_S = chapters.module("04_clip", "solutions")
ImageEncoder = _S.ImageEncoder
TextEncoder = _S.TextEncoder
answer_causal_mask = _S.answer_causal_mask
answer_clip_facts = _S.answer_clip_facts
answer_normalise = _S.answer_normalise
clip_loss = _S.clip_loss
recall_at_k = _S.recall_at_k
zero_shot_predict = _S.zero_shot_predict
zero_shot_weights = _S.zero_shot_weights


def gen(seed):
    return torch.Generator().manual_seed(seed)


def count(module):
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------
# clip_loss
# ---------------------------------------------------------------------------


def open_clip_loss(I, T, t):
    """open_clip's loss takes unit features and the scale exp(t) as given: open_clip caps the
    parameter t in its training loop (logit_scale.clamp_(0, math.log(100)) after each step)."""
    return ClipLoss()(F.normalize(I, dim=-1), F.normalize(T, dim=-1), t.exp())


@pytest.mark.parametrize("B,E,t,seed", [(8, 16, math.log(1 / 0.07), 0), (3, 5, 0.3, 1), (32, 64, 4.0, 2),
                                        (5, 7, math.log(200.0), 3), (1, 4, 1.0, 4)])
def test_clip_loss_matches_open_clip_values_and_gradients(B, E, t, seed):
    g = gen(seed)
    I = (torch.randn(B, E, generator=g, dtype=torch.float64) * 3).requires_grad_()
    T = (torch.randn(B, E, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    ls = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    I2, T2, ls2 = (v.detach().clone().requires_grad_() for v in (I, T, ls))
    loss = clip_loss(I, T, ls)
    ref = open_clip_loss(I2, T2, ls2)
    assert loss.shape == ()
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(I.grad, I2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(T.grad, T2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ls.grad, ls2.grad, rtol=1e-9, atol=1e-12)
    if B > 1:  # t keeps its gradient, above the training loop's cap too (one pair: the loss is 0)
        assert ls.grad.item() != 0.0


def test_clip_loss_has_no_cap_inside():
    """CLIP caps the parameter t (clamped after each optimizer step), not the loss: above
    log 100 the loss still uses exp(t) and its gradient with respect to t is not 0, while a
    cap inside the loss (the catalogued mistake) gives 0 there."""
    g = gen(6)
    I = torch.randn(5, 8, generator=g, dtype=torch.float64)
    T = I + torch.randn(5, 8, generator=g, dtype=torch.float64)
    t = torch.tensor(math.log(300.0), dtype=torch.float64, requires_grad=True)
    loss = clip_loss(I, T, t)
    loss.backward()
    cos = F.normalize(I, dim=1) @ F.normalize(T, dim=1).T
    logits = 300.0 * cos
    want = (-(logits.diag() - logits.logsumexp(1)).mean() - (logits.diag() - logits.logsumexp(0)).mean()) / 2
    torch.testing.assert_close(loss, want)
    assert abs(t.grad.item()) > 1e-6
    capped = t.detach().clone().requires_grad_()
    ClipLoss()(F.normalize(I, dim=1), F.normalize(T, dim=1), capped.exp().clamp(max=100.0)).backward()
    assert capped.grad.item() == 0.0  # what a cap inside the loss does: t would stay stranded


def test_clip_loss_by_definition_and_properties():
    g = gen(5)
    B, E = 6, 4
    I = torch.randn(B, E, generator=g, dtype=torch.float64)
    T = torch.randn(B, E, generator=g, dtype=torch.float64)
    t = torch.tensor(2.0, dtype=torch.float64)
    cos = F.normalize(I, dim=1) @ F.normalize(T, dim=1).T
    logits = math.exp(2.0) * cos
    rows = -(logits.diag() - logits.logsumexp(1)).mean()
    cols = -(logits.diag() - logits.logsumexp(0)).mean()
    torch.testing.assert_close(clip_loss(I, T, t), (rows + cols) / 2)
    # symmetric in images and texts; invariant to positive scaling of each row
    torch.testing.assert_close(clip_loss(T, I, t), clip_loss(I, T, t))
    s = torch.rand(B, 1, generator=g, dtype=torch.float64) + 0.1
    torch.testing.assert_close(clip_loss(I * s, T, t), clip_loss(I, T, t))
    # perfectly aligned, orthogonal pairs at a high scale: loss near 0; random at scale 1: near log B
    Q = torch.eye(B, dtype=torch.float64)
    assert clip_loss(Q, 2 * Q, torch.tensor(math.log(100.0))).item() < 1e-10
    assert abs(clip_loss(Q, Q, torch.tensor(-30.0)).item() - math.log(B)) < 1e-6
    # float32 in, float32 out
    assert clip_loss(I.float(), T.float(), t.float()).dtype == torch.float32


# ---------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("E,c,S", [(64, 16, 32), (10, 4, 28), (32, 8, 16)])
def test_image_encoder_structure(E, c, S):
    torch.manual_seed(0)
    enc = ImageEncoder(embed_dim=E, c=c)
    convs = (3 * 9 * c + c) + (c * 9 * 2 * c + 2 * c) + (2 * c * 9 * 4 * c + 4 * c)
    bns = 2 * (c + 2 * c + 4 * c)
    assert count(enc.features) == convs + bns
    assert count(enc.projection) == 16 * 4 * c * E and enc.projection.bias is None
    x = torch.rand(5, 3, S, S, generator=gen(1))
    assert enc.features[:4](x).shape == (5, c, S // 2, S // 2)
    assert enc.features[:8](x).shape == (5, 2 * c, S // 4, S // 4)
    h = enc.features(x)
    assert h.shape == (5, 64 * c) and (h >= 0).all()
    out = enc(x)
    assert out.shape == (5, E)
    torch.testing.assert_close(out, h @ enc.projection.weight.T)
    clip_loss(out, torch.randn(5, E), torch.tensor(1.0)).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def open_clip_twin(ours: TextEncoder, vocab_size, E, width, layers, heads, L):
    """open_clip's TextTransformer with our weights: same pre-norm blocks, causal mask,
    final LayerNorm, argmax (end-of-text) pooling and projection."""
    theirs = TextTransformer(context_length=L, vocab_size=vocab_size, width=width, heads=heads,
                             layers=layers, output_dim=E)
    sd = ours.state_dict()
    new = {"token_embedding.weight": sd["token_embedding.weight"],
           "positional_embedding": sd["positional_embedding"],
           "ln_final.weight": sd["ln_final.weight"], "ln_final.bias": sd["ln_final.bias"],
           "text_projection": sd["text_projection.weight"].T}
    names = {"self_attn.in_proj_weight": "attn.in_proj_weight", "self_attn.in_proj_bias": "attn.in_proj_bias",
             "self_attn.out_proj.weight": "attn.out_proj.weight", "self_attn.out_proj.bias": "attn.out_proj.bias",
             "linear1.weight": "mlp.c_fc.weight", "linear1.bias": "mlp.c_fc.bias",
             "linear2.weight": "mlp.c_proj.weight", "linear2.bias": "mlp.c_proj.bias",
             "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias",
             "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias"}
    for i in range(layers):
        for a, b in names.items():
            new[f"transformer.resblocks.{i}.{b}"] = sd[f"transformer.layers.{i}.{a}"]
    theirs.load_state_dict(new, strict=True)
    return theirs


def random_tokens(B, L, vocab_size, g, min_len=2):
    """Rows [sot, words..., eot, 0, ...] with eot = vocab_size - 1 the largest id."""
    text = torch.zeros(B, L, dtype=torch.long)
    for b in range(B):
        n = int(torch.randint(min_len, L + 1, (1,), generator=g))
        text[b, :n - 1] = torch.randint(1, vocab_size - 1, (n - 1,), generator=g)
        text[b, n - 1] = vocab_size - 1
    return text


@pytest.mark.parametrize("vocab,E,width,layers,heads,L", [(45, 64, 64, 2, 4, 16), (30, 8, 32, 1, 2, 10),
                                                          (100, 16, 48, 3, 6, 12)])
def test_text_encoder_matches_open_clip_text_transformer(vocab, E, width, layers, heads, L):
    torch.manual_seed(1)
    ours = TextEncoder(vocab, embed_dim=E, width=width, layers=layers, heads=heads, context_length=L)
    theirs = open_clip_twin(ours, vocab, E, width, layers, heads, L)
    assert count(ours) == count(theirs) == vocab * width + L * width + layers * (12 * width**2 + 13 * width) \
        + 2 * width + width * E
    text = random_tokens(7, L, vocab, gen(2))
    for mode in ("train", "eval"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        with torch.no_grad():
            torch.testing.assert_close(ours(text), theirs(text), rtol=1e-4, atol=1e-5)
    # inputs shorter than the context length work too (open_clip needs them padded)
    short = random_tokens(4, L - 3, vocab, gen(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(short), theirs(F.pad(short, (0, 3))), rtol=1e-4, atol=1e-5)


def test_text_encoder_causal_and_eot_pooling():
    torch.manual_seed(3)
    vocab, L = 40, 12
    enc = TextEncoder(vocab, embed_dim=8, width=32, layers=2, heads=4, context_length=L).eval()
    text = random_tokens(5, L - 2, vocab, gen(4)).clone()
    text = F.pad(text, (0, 2))
    with torch.no_grad():
        out = enc(text)
        # tokens after the end-of-text token cannot change the output
        noisy = text.clone()
        after = torch.arange(L)[None, :] > text.argmax(1)[:, None]
        noisy[after] = torch.randint(1, vocab - 1, (int(after.sum()),), generator=gen(5))
        torch.testing.assert_close(enc(noisy), out)
        # word order matters (positional embedding)
        swapped = text.clone()
        swapped[:, [1, 2]] = swapped[:, [2, 1]]
        keep = (text[:, 1] != text[:, 2]) & (text.argmax(1) > 2)
        assert (enc(swapped)[keep] - out[keep]).abs().amax(1).min() > 1e-4
    out = enc.train()(text)
    clip_loss(torch.randn(5, 8), out, torch.tensor(1.0)).backward()
    used = [n for n, p in enc.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert "positional_embedding" in used and "text_projection.weight" in used


def test_text_encoder_with_open_clip_bpe_tokenizer():
    """Wired to open_clip's own tokenizer (49408 ids, end-of-text the largest): same as
    open_clip's argmax pooling."""
    import open_clip

    tokens = open_clip.tokenize(["a red seven", "the digit 7 in red on a dark background"], context_length=16)
    torch.manual_seed(6)
    ours = TextEncoder(49408, embed_dim=8, width=16, layers=1, heads=2, context_length=16).eval()
    theirs = open_clip_twin(ours, 49408, 8, 16, 1, 2, 16).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), theirs(tokens), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# Zero-shot classification
# ---------------------------------------------------------------------------


def test_zero_shot_weights_match_open_clip_builder():
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "course"))
    from workbook.captions import COLOUR_NAMES, DIGIT_WORDS, CaptionTokenizer

    tok = CaptionTokenizer()
    torch.manual_seed(7)
    enc = TextEncoder(tok.vocab_size, embed_dim=16, width=32, layers=1, heads=2,
                      context_length=tok.context_length).eval()
    templates = ["a photo of a {}", "the number {}", "a {} on a dark background"]
    for classnames in (list(DIGIT_WORDS), list(COLOUR_NAMES)):
        W = zero_shot_weights(enc, tok, classnames, templates)
        ref = build_zero_shot_classifier(_EncodeText(enc), tok, classnames, templates, num_classes_per_batch=4)
        assert W.shape == (len(classnames), 16) and not W.requires_grad
        torch.testing.assert_close(W, ref.T, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(W.norm(dim=1), torch.ones(len(classnames)))


def test_zero_shot_predict_brute_force():
    g = gen(8)
    N, C, E = 50, 7, 5
    X = torch.randn(N, E, generator=g) * torch.rand(N, 1, generator=g) * 10
    W = F.normalize(torch.randn(C, E, generator=g), dim=1)
    pred = zero_shot_predict(X, W)
    assert pred.shape == (N,) and pred.dtype == torch.int64
    cos = torch.tensor([[F.cosine_similarity(X[n], W[c], dim=0).item() for c in range(C)] for n in range(N)])
    assert torch.equal(pred, cos.argmax(1))
    # a class weight equal to an image's direction wins
    W2 = torch.cat([W, F.normalize(X[:1], dim=1)])
    assert zero_shot_predict(X[:1] * 3, W2).item() == C


# ---------------------------------------------------------------------------
# recall@k
# ---------------------------------------------------------------------------


def brute_recall(I, T, ks):
    I, T = F.normalize(I.double(), dim=1), F.normalize(T.double(), dim=1)
    sim = I @ T.T
    N = len(I)
    i2t = [sum(sorted(range(N), key=lambda j: -sim[i, j].item()).index(i) < k for i in range(N)) / N for k in ks]
    t2i = [sum(sorted(range(N), key=lambda j: -sim[j, i].item()).index(i) < k for i in range(N)) / N for k in ks]
    return torch.tensor(i2t, dtype=torch.float64), torch.tensor(t2i, dtype=torch.float64)


@pytest.mark.parametrize("N,E,ks,seed", [(20, 4, (1, 5), 0), (37, 3, (1, 2, 10, 37), 1), (8, 16, (3,), 2)])
def test_recall_at_k_brute_force(N, E, ks, seed):
    g = gen(seed)
    I = torch.randn(N, E, generator=g)
    T = I + torch.randn(N, E, generator=g) * 1.2  # noisy partners: recall well between 0 and 1
    I = I * (torch.rand(N, 1, generator=g) * 5 + 0.1)
    out = recall_at_k(I, T, ks)
    i2t, t2i = brute_recall(I, T, ks)
    assert set(out) == {"image_to_text", "text_to_image"}
    for key, ref in (("image_to_text", i2t), ("text_to_image", t2i)):
        assert out[key].dtype == torch.float64 and out[key].shape == (len(ks),)
        torch.testing.assert_close(out[key], ref)
    assert not torch.equal(out["image_to_text"], out["text_to_image"]) or N == 8
    # swapping the roles of images and texts swaps the directions
    back = recall_at_k(T, I, ks)
    torch.testing.assert_close(back["image_to_text"], out["text_to_image"])


def test_recall_at_k_perfect_and_ties():
    I = torch.eye(5)
    out = recall_at_k(I, 2 * I, (1, 2))
    torch.testing.assert_close(out["image_to_text"], torch.ones(2, dtype=torch.float64))
    # all texts identical: ties count in the match's favour (nothing is strictly higher)
    out = recall_at_k(torch.randn(6, 3, generator=gen(9)), torch.ones(6, 3), (1,))
    torch.testing.assert_close(out["image_to_text"], torch.ones(1, dtype=torch.float64))


# ---------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------


def test_quiz_answers():
    assert answer_causal_mask == "B"
    assert answer_normalise == "B"
    assert answer_clip_facts == {"A", "B", "D", "F"}

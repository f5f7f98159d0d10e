"""Chapter 04 visible checks (CLIP): the `check_*` functions the notebook calls, the chapter's
texts for the learner (`DIAGNOSES`, `QUIZ_EXPLAIN`) and the stand-ins the checks use.

Every check runs on small fixed inputs whose answers are known by construction (worked
out by hand or written down in advance), so it needs no reference solution. Hidden
checks, run when grading, use fresh random inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import Checks, check_choice
from ..standin import refuse_stand_in


QUIZ_OPTIONS = {"answer_causal_mask": "ABCD", "answer_normalise": "ABCD", "answer_clip_facts": "ABCDEF"}
QUIZ_SETS = {"answer_clip_facts"}  # answered with a set of letters
_F64 = torch.float64

# What a check tells a learner when it recognises a mistake: one text each, used by the
# visible checks here, the hidden checks and the catalogue of mistakes.
DIAGNOSES: dict[str, str] = {
    # clip_loss
    "clip_not_normalised": "features were not L2-normalised: divide each row by its norm (F.normalize(x, dim=-1))",
    "clip_text_not_normalised": "the text features were not L2-normalised: divide each row by its norm "
                                "(F.normalize(x, dim=-1))",
    "clip_normalised_batch": "features were normalised along the batch (dim=0): normalise each row (dim=-1)",
    "clip_no_exp": "the scale is exp(logit_scale), not logit_scale itself: exponentiate it",
    "clip_cap_in_loss": "use the scale exp(logit_scale) as given, with no cap in the loss: CLIP caps the "
                        "parameter t itself, clamping it after each optimizer step in the training loop; a min "
                        "or clamp here changes the loss above the cap and gives t no gradient there",
    "clip_cap_below": "use exp(logit_scale) as given: a scale below 1 (logit_scale < 0) must stay below 1, "
                      "with no clamp in the loss",
    "clip_item": "keep exp(logit_scale) a tensor in the graph: no .item(), .detach(), float() or math.exp",
    "clip_divided": "the cosine similarities must be multiplied by exp(logit_scale), not divided",
    "clip_image_only": "only the image -> text direction (cross-entropy over the rows of the logits): average it with "
                       "the cross-entropy over the columns (logits.T)",
    "clip_text_only": "only the text -> image direction (cross-entropy over the columns of the logits): average it "
                      "with the cross-entropy over the rows",
    "clip_summed_directions": "the two directions were summed: take their mean (divide by 2)",
    "clip_summed_batch": "each cross-entropy was summed over the batch: use the mean over the batch",
    "clip_stable": "a softmax written with exp overflows in float32 once logits pass about 88 (training "
                   "lets the scale reach 100), and the log of a softmax underflows for a badly matched pair: use "
                   "F.cross_entropy (or log_softmax) on the logits",
    "clip_labels": "the targets must be the diagonal: labels = torch.arange(B), image b goes with text b",
    # encoders
    "image_bias": "the projection W_i has no bias: nn.Linear(16 * 4 * c, embed_dim, bias=False)",
    "image_no_bn": "put a BatchNorm2d after each convolution",
    "image_no_final_relu": "the third block ends with a ReLU too (Conv2d, BatchNorm2d, ReLU), before the pooling",
    "image_no_pool": "each of the first two blocks is Conv2d, BatchNorm2d, ReLU, MaxPool2d(2)",
    "image_fixed_pool": "a fixed AvgPool2d(2) gives a 4 x 4 map only for 32 x 32 images: AdaptiveAvgPool2d(4) "
                        "gives 4 x 4 for every size S",
    "image_layers": "same layers but a different order or activation: Conv2d, BatchNorm2d, ReLU (, MaxPool2d); "
                    "AdaptiveAvgPool2d(4) at the end",
    "text_last": "you took the feature at the last position: take it at the end-of-text token, x[torch.arange(B), "
                 "text.argmax(dim=-1)]",
    "text_first": "you took the feature of the first (start-of-text) token: take it at the end-of-text token, "
                  "x[torch.arange(B), text.argmax(dim=-1)]",
    "text_no_mask": "without a causal mask, or with a wrong one, later tokens leak into the end-of-text feature: "
                    "pass mask=self.attn_mask[:L, :L] (-inf exactly above the diagonal, .triu(1)) and "
                    "is_causal=True (PyTorch reads the mask itself in eval mode without gradients)",
    "text_no_position": "add the positional embedding to the token embeddings: x = token_embedding(text) + "
                        "positional_embedding[:L]",
    "text_no_ln": "x = self.ln_final(x) after the Transformer, before picking the end-of-text feature",
    "text_bias": "the projection W_t has no bias: nn.Linear(width, embed_dim, bias=False)",
    "text_unsliced": "texts may be shorter than context_length: use positional_embedding[:L] and the "
                     "mask's [:L, :L] block",
    "text_flat_argmax": "text.argmax() without dim= is the position in the whole flattened batch: "
                        "take text.argmax(dim=-1), one end-of-text position per row",
    "text_layers": "token + position embedding, causal pre-norm Transformer, ln_final, end-of-text feature, "
                   "projection",
    # zero-shot
    "zs_not_renormalised": "the mean of the unit embeddings was not renormalised: normalise each class row again",
    "zs_normalise_after": "each prompt's embedding must be L2-normalised before averaging over templates",
    "zs_grad": "compute them inside `with torch.no_grad():`",
    "zs_argmin": "you took the least similar class (argmin): take the argmax of the similarities",
    "zs_argmax_images": "take the argmax over the classes (dim=1), not over the images (dim=0)",
    "zs_normalise_dim0": "prompt embeddings were normalised along the prompts (dim=0): normalise each "
                         "embedding (dim=-1)",
    "zs_squeeze": "a batch of one image lost its batch dimension: return shape (N,), no squeeze()",
    # recall@k
    "recall_columns": "text_to_image ranked the texts of each image again: rank the images for each text, i.e. along "
                      "the columns of the similarity matrix (or use sim.T)",
    "recall_le_k": "a match of rank k was counted as found at k: the best rank is 0, so count rank < k",
    "recall_ge": "the match was counted among the candidates scoring higher than itself: count only strictly higher "
                 "scores (>)",
    "recall_dot": "you ranked by dot products: rank by cosine similarity (normalise the features)",
    "recall_swapped": "the two directions are swapped: image_to_text ranks the texts for each image (a row of the "
                      "similarity matrix), text_to_image the images for each text (a column)",
    "recall_sort_ties": "ties were broken by sort position: the rank is the number of candidates with a strictly "
                        "higher similarity, so candidates that tie with the match do not count",
    "recall_dtype": "return float64 fractions (.double()), as the docstring says",
    "recall_ties": "count only candidates with a strictly higher similarity (>): a candidate that ties with "
                   "the match does not push it down",
    "clip_image_not_normalised": "the image features were not L2-normalised: divide each row by its norm "
                                 "(F.normalize(x, dim=-1))",
    "clip_twice": "the loss is twice too large: average the two directions (divide by 2), and average (not sum) each "
                  "cross-entropy over the batch",
    "clip_scale_grad": "the scale multiplying the logits must be exp(logit_scale)",
    "clip_graph": "compute the loss from the features with differentiable torch operations",
    "clip_scale_graph": "the scale is exp(logit_scale), with no cap in the loss, and must stay in the graph",
    "image_pool_size": "pool to a 4 x 4 map (AdaptiveAvgPool2d(4)): the projection takes 16 * 4c features",
    "image_forward": "forward(x) = projection(features(x)), nothing else",
    "encoder_names": "keep the attribute names of the docstring and the layer order of the chapter",
    "text_position_param": "the positional embedding is a (context_length, width) nn.Parameter",
    "text_ln_param": "a final LayerNorm (ln_final) follows the Transformer",
    "text_layer_sizes": "dim_feedforward = 4 * width; one TransformerEncoderLayer per layer",
    "text_mean": "you averaged over positions: take the feature at the end-of-text token, x[torch.arange(B), "
                 "text.argmax(dim=-1)]",
    "text_eot": "output = text_projection(ln_final(x)[b, position of the end-of-text token])",
    "zs_never_normalised": "embeddings were neither normalised before nor after the mean over templates",
}

# The idea behind each quiz question, shown with a wrong answer when grading (never the letter).
QUIZ_EXPLAIN: dict[str, str] = {
    "answer_causal_mask": "ask what the end-of-text token has seen under a causal mask, and what the "
                            "positions after it would add",
    "answer_normalise": "compare the size of the similarity after normalising with its size before: "
                           "what does the scale exp(t) then control?",
    "answer_clip_facts": "weigh each statement on its own: what CLIP predicts, how its loss reads the "
                         "similarity matrix, whether its temperature is learned, what zero-shot weights are, "
                         "and what a larger batch changes",
}


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=_F64)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def check_clip_loss(clip_loss) -> None:
    c = Checks("clip_loss")
    refuse_stand_in(c, "clip_loss", clip_loss)
    # 1. Two pairs, orthogonal directions, norms 3, 0.5 (images) and 2, 4 (texts), t = log 2:
    #    cosines = identity, logits = 2 I, each row and column gives log(1 + e^-2).
    inputs = "I = [[3, 0], [0, 0.5]], T = [[2, 0], [0, 4]] (float64), logit_scale = log(2)"
    t = torch.tensor(math.log(2.0), dtype=_F64, requires_grad=True)
    loss = c.call(clip_loss, _t([[3.0, 0.0], [0.0, 0.5]]), _t([[2.0, 0.0], [0.0, 4.0]]), t, inputs=inputs)
    c.tensor("loss", loss, shape=(), dtype=_F64, inputs=inputs)
    c.close("loss", loss, _t(_softplus(-2.0)), inputs=inputs, mistakes={
        DIAGNOSES["clip_not_normalised"]:
            _t((_softplus(-12.0) + _softplus(-4.0)) / 2),
        DIAGNOSES["clip_image_not_normalised"]:
            _t((_softplus(-6.0) + _softplus(-1.0)) / 2),
        DIAGNOSES["clip_text_not_normalised"]:
            _t((_softplus(-4.0) + _softplus(-8.0)) / 2),
        DIAGNOSES["clip_no_exp"]:
            _t(_softplus(-math.log(2.0))),
        DIAGNOSES["clip_divided"]:
            _t(_softplus(-0.5)),
        DIAGNOSES["clip_twice"]: _t(2 * _softplus(-2.0)),
    })
    # 2. Three pairs with asymmetric similarities: rows (image -> text) and columns differ.
    I = _t([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5]])
    T = _t([[2.0, 1.0], [1.0, -2.0], [-1.0, -1.0]])
    inputs = ("I = [[1, 2], [3, -1], [-2, 0.5]], T = [[2, 1], [1, -2], [-1, -1]] (float64), "
              "logit_scale = 1.0")
    t = torch.tensor(1.0, dtype=_F64, requires_grad=True)
    loss = c.call(clip_loss, I.clone().requires_grad_(), T.clone().requires_grad_(), t, inputs=inputs)
    c.tensor("loss", loss, shape=(), dtype=_F64, inputs=inputs)
    c.close("loss", loss, _t(0.2564985895), atol=1e-8, inputs=inputs, mistakes={
        DIAGNOSES["clip_image_only"]: _t(0.2719642665),
        DIAGNOSES["clip_text_only"]: _t(0.2410329126),
        DIAGNOSES["clip_summed_directions"]: _t(0.5129971791),
        DIAGNOSES["clip_normalised_batch"]: _t(0.3716486147),
        DIAGNOSES["clip_summed_batch"]: _t(0.7694957686),
        DIAGNOSES["clip_not_normalised"]:
            _t(0.5792359879),
        DIAGNOSES["clip_no_exp"]: _t(0.5516500989),
        DIAGNOSES["clip_divided"]: _t(0.8510911357),
    })
    c.call(loss.backward, inputs=inputs)
    c.true(t.grad is not None, "logit_scale received no gradient, so the temperature cannot be learned",
           inputs=inputs, hint=DIAGNOSES["clip_item"])
    c.close("d loss / d logit_scale", t.grad, _t(-0.1641718721), atol=1e-8, inputs=inputs,
            hint=DIAGNOSES["clip_scale_grad"])
    # 3. A logit_scale above the training loop's cap: the loss uses exp(t) = 200 as given (the
    #    loop, not the loss, keeps t <= log 100), and t still gets its gradient.
    I3 = _t([[1.0, 0.02], [1.0, -0.01], [1.0, 0.005]])
    T3 = _t([[2.0, 0.03], [2.0, -0.03], [2.0, 0.0]])
    inputs = ("nearly parallel I = [[1, .02], [1, -.01], [1, .005]], T = [[2, .03], [2, -.03], [2, 0]], "
              "logit_scale = log(200)")
    t = torch.tensor(math.log(200.0), dtype=_F64, requires_grad=True)
    loss = c.call(clip_loss, I3, T3, t, inputs=inputs)
    c.tensor("loss", loss, shape=(), dtype=_F64, inputs=inputs)
    cap = DIAGNOSES["clip_cap_in_loss"]
    c.close("loss", loss, _t(1.0691965851), atol=1e-8, inputs=inputs, mistakes={
        cap: _t(1.0837606907),
        DIAGNOSES["clip_no_exp"]: _t(1.0978181423)})
    c.true(loss.requires_grad, "the loss does not depend on logit_scale above log(100): it gets no gradient there",
           inputs=inputs, hint=cap)
    c.call(loss.backward, inputs=inputs)
    c.true(t.grad is not None and t.grad.abs().item() > 0.0,
           "logit_scale gets no gradient above log(100), so the temperature could stay stranded there",
           inputs=inputs, got=t.grad, hint=cap)
    c.close("d loss / d logit_scale", t.grad, _t(-0.0288427882), atol=1e-8, inputs=inputs,
            hint=DIAGNOSES["clip_scale_grad"])
    c.done()


# ----------------------------------------------------------------------------- encoders

def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_encoders(ImageEncoder, TextEncoder) -> None:
    c = Checks("encoders")
    refuse_stand_in(c, "ImageEncoder", ImageEncoder)
    refuse_stand_in(c, "TextEncoder", TextEncoder)
    torch.manual_seed(0)
    for E, ch in [(64, 16), (10, 4)]:
        inputs = f"ImageEncoder(embed_dim={E}, c={ch}), x (3, 3, 32, 32)"
        model = c.call(ImageEncoder, embed_dim=E, c=ch, inputs=inputs)
        convs = (27 * ch + ch) + (9 * ch * 2 * ch + 2 * ch) + (9 * 2 * ch * 4 * ch + 4 * ch)
        norms = 2 * 7 * ch
        feats, proj = _count(model.features), _count(model.projection)
        hint = None
        if proj == 64 * ch * E + E:
            hint = DIAGNOSES["image_bias"]
        elif proj == 64 * ch * E and 0 < convs + norms - feats <= norms and (convs + norms - feats) % (2 * ch) == 0:
            hint = DIAGNOSES["image_no_bn"]
        elif proj == 4 * ch * E:
            hint = DIAGNOSES["image_pool_size"]
        c.true((feats, proj) == (convs + norms, 64 * ch * E), "wrong number of parameters", inputs=inputs,
               expected=f"features {convs + norms}, projection {64 * ch * E}",
               got=f"features {feats}, projection {proj}", hint=hint)
        x = torch.rand(3, 3, 32, 32)
        pool_hint = DIAGNOSES["image_no_pool"]
        for k, shape in [(4, (3, ch, 16, 16)), (8, (3, 2 * ch, 8, 8))]:
            h = c.call(model.features[:k], x, inputs=inputs + f", features[:{k}]")
            c.true(isinstance(h, torch.Tensor) and tuple(h.shape) == shape,
                   f"features[:{k}](x) has the wrong shape", inputs=inputs, expected=f"shape {shape}",
                   got=f"shape {tuple(h.shape)}" if isinstance(h, torch.Tensor) else type(h).__name__,
                   hint=pool_hint)
        f = c.call(model.features, x, inputs=inputs)
        c.tensor("features(x)", f, shape=(3, 64 * ch), inputs=inputs)
        c.true(bool((f >= 0).all()), "features(x) has negative entries", inputs=inputs,
               hint=DIAGNOSES["image_no_final_relu"])
        out = c.call(model, x, inputs=inputs)
        c.tensor("model(x)", out, shape=(3, E), inputs=inputs)
        c.close("model(x)", out, f @ model.projection.weight.T, atol=1e-5, inputs=inputs,
                hint=DIAGNOSES["image_forward"])

    vocab, E, width, L = 30, 8, 32, 12
    for layers in (2, 1):
        inputs = f"TextEncoder(vocab_size={vocab}, embed_dim={E}, width={width}, layers={layers}, heads=4, " \
                 f"context_length={L})"
        model = c.call(TextEncoder, vocab, embed_dim=E, width=width, layers=layers, heads=4,
                       context_length=L, inputs=inputs)
        block = 12 * width**2 + 13 * width  # attention (4 w^2 + 4 w), MLP (8 w^2 + 5 w), 2 LayerNorms
        expected = vocab * width + L * width + layers * block + 2 * width + width * E
        got = _count(model)
        hint = {E: DIAGNOSES["text_bias"],
                -L * width: DIAGNOSES["text_position_param"],
                -2 * width: DIAGNOSES["text_ln_param"]}.get(got - expected)
        c.true(got == expected, "wrong number of parameters", inputs=inputs, expected=str(expected),
               got=str(got), hint=hint or DIAGNOSES["text_layer_sizes"])
        c.tensor("positional_embedding", getattr(model, "positional_embedding", None), shape=(L, width),
                 inputs=inputs)
        model.eval()
        # rows [sot=1, words..., eot=29, padding 0...] with the end of text at different places
        text = torch.tensor([[1, 5, 9, 13, 29, 0, 0, 0, 0, 0, 0, 0],
                             [1, 7, 7, 2, 21, 11, 3, 29, 0, 0, 0, 0],
                             [1, 4, 29, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                             [1, 8, 6, 5, 4, 3, 2, 10, 12, 14, 16, 29]])
        tin = inputs + ", text (4, 12) with end-of-text id 29 at positions 4, 7, 2, 11"
        seen = []
        handle = model.ln_final.register_forward_hook(lambda m, a, out: seen.append(out)) \
            if isinstance(getattr(model, "ln_final", None), nn.Module) else None
        with torch.no_grad():
            out = c.call(model, text, inputs=tin)
        if handle is not None:
            handle.remove()
        c.tensor("model(text)", out, shape=(4, E), inputs=tin)
        c.true(len(seen) == 1 and tuple(seen[0].shape) == (4, L, width),
               "ln_final was not applied (once) to the Transformer's output (B, L, width)", inputs=tin,
               hint=DIAGNOSES["text_no_ln"])
        h, W = seen[0], model.text_projection.weight
        c.close("model(text)", out, h[torch.arange(4), text.argmax(-1)] @ W.T, atol=1e-5, inputs=tin, mistakes={
            DIAGNOSES["text_last"]: h[:, -1] @ W.T,
            DIAGNOSES["text_first"]: h[:, 0] @ W.T,
            DIAGNOSES["text_mean"]: h.mean(1) @ W.T,
            DIAGNOSES["text_flat_argmax"]: h[:, int(text.argmax())] @ W.T},
            hint=DIAGNOSES["text_eot"])
        noisy = text.clone()
        after = torch.arange(L)[None, :] > text.argmax(-1)[:, None]
        noisy[after] = 17
        with torch.no_grad():
            out2 = c.call(model, noisy, inputs=tin)
        c.close("model(text) after changing the tokens that follow the end-of-text token", out2, out,
                atol=1e-5, inputs=tin,
                hint=DIAGNOSES["text_no_mask"])
    # 1 layer: without position information, swapping two words leaves the end-of-text feature unchanged
    swapped = text.clone()
    swapped[:, [1, 3]] = swapped[:, [3, 1]]
    with torch.no_grad():
        out3 = c.call(model, swapped, inputs=tin + ", words 1 and 3 swapped")
    change = (out3 - out).abs().amax(dim=1)
    c.true(bool((change > 1e-4).all()), "swapping two words did not change the output", inputs=tin,
           got=change, hint=DIAGNOSES["text_no_position"])
    c.done()


# ----------------------------------------------------------------------------- zero-shot

class _LookupTextEncoder(nn.Module):
    """A stand-in text encoder: the embedding of a text is a fixed row of a table."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens[:, 0]]


_TEXTS = {"a cat": 0, "the cat": 1, "a dog": 2, "the dog": 3}


def _lookup_tokenizer(texts):
    if isinstance(texts, str):
        texts = [texts]
    unknown = [t for t in texts if t not in _TEXTS]
    if unknown:
        raise KeyError(f"the test tokenizer only knows {sorted(_TEXTS)}, got {unknown}")
    return torch.tensor([[_TEXTS[t]] for t in texts])


def check_zero_shot(zero_shot_weights, zero_shot_predict) -> None:
    c = Checks("zero_shot")
    refuse_stand_in(c, "zero_shot_weights", zero_shot_weights)
    refuse_stand_in(c, "zero_shot_predict", zero_shot_predict)
    s = 1 / math.sqrt(2)
    table = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -2.0], [s, s]])  # a cat, the cat, a dog, the dog
    encoder = _LookupTextEncoder(table)
    inputs = ('classnames ["cat", "dog"], templates ["a {}", "the {}"]; a stand-in encoder maps '
              '"a cat" -> [3, 0], "the cat" -> [0, 1], "a dog" -> [0, -2], "the dog" -> [.71, .71]')
    W = c.call(zero_shot_weights, encoder, _lookup_tokenizer, ["cat", "dog"], ["a {}", "the {}"], inputs=inputs)
    c.tensor("weights", W, shape=(2, 2), inputs=inputs)
    # cat: mean([1, 0], [0, 1]) = [.5, .5] -> [.71, .71]; dog: mean([0, -1], [.71, .71]) -> [.92, -.38]
    d = torch.tensor([s / 2, (s - 1) / 2])
    expected = torch.stack([torch.tensor([s, s]), d / d.norm()])
    m_raw = torch.tensor([[1.5, 0.5], [s / 2, (s - 2) / 2]])
    c.close("weights", W, expected, atol=1e-5, inputs=inputs, mistakes={
        DIAGNOSES["zs_not_renormalised"]:
            torch.stack([torch.tensor([0.5, 0.5]), d]),
        DIAGNOSES["zs_normalise_after"]:
            m_raw / m_raw.norm(dim=1, keepdim=True),
        DIAGNOSES["zs_never_normalised"]: m_raw,
        DIAGNOSES["zs_normalise_dim0"]: F.normalize(F.normalize(table.view(2, 2, 2), dim=1).mean(1), dim=1)})
    c.true(not W.requires_grad, "weights should carry no gradient", inputs=inputs,
           hint=DIAGNOSES["zs_grad"])

    W3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-s, s]])
    X = torch.tensor([[5.0, 1.0], [0.1, 0.3], [-2.0, 1.5], [-3.0, -0.1]])
    inputs = "image_features [[5, 1], [.1, .3], [-2, 1.5], [-3, -.1]], weights [[1, 0], [0, 1], [-.71, .71]]"
    pred = c.call(zero_shot_predict, X, W3, inputs=inputs)
    c.true(not (isinstance(pred, torch.Tensor) and tuple(pred.shape) == (3,)),
           "the prediction has one entry per class, not one per image", inputs=inputs,
           got=pred, hint=DIAGNOSES["zs_argmax_images"])
    c.tensor("prediction", pred, shape=(4,), dtype=torch.int64, inputs=inputs)
    c.close("prediction", pred, torch.tensor([0, 1, 2, 2]), atol=0, rtol=0, inputs=inputs, mistakes={
        DIAGNOSES["zs_argmin"]:
            torch.tensor([2, 0, 0, 0])})
    c.done()


# ----------------------------------------------------------------------------- retrieval

def _on_circle(angles_deg, norms) -> torch.Tensor:
    a = torch.tensor(angles_deg, dtype=_F64).deg2rad()
    return torch.stack([a.cos(), a.sin()], dim=1) * torch.tensor(norms, dtype=_F64)[:, None]


def check_recall_at_k(recall_at_k) -> None:
    c = Checks("recall_at_k")
    refuse_stand_in(c, "recall_at_k", recall_at_k)
    I = _on_circle([210, 20, 170, 100, 90], [1, 2, 0.5, 3, 1])
    T = _on_circle([180, 230, 250, 350, 80], [2, 1, 1, 0.5, 1.5])
    inputs = ("5 pairs in 2-D: images at angles [210, 20, 170, 100, 90] deg with norms [1, 2, .5, 3, 1], "
              "texts at [180, 230, 250, 350, 80] deg with norms [2, 1, 1, .5, 1.5]; ks = (1, 2)")
    # cosine = cos(angle difference). Image -> text ranks of the matches: [1, 3, 0, 4, 2];
    # text -> image ranks: [1, 2, 4, 3, 0]. Recall@k = fraction of ranks < k.
    out = c.call(recall_at_k, I.clone(), T.clone(), (1, 2), inputs=inputs)
    c.true(isinstance(out, dict) and set(out) == {"image_to_text", "text_to_image"},
           'recall_at_k must return a dict with keys "image_to_text" and "text_to_image"',
           got=repr(out)[:120], inputs=inputs)
    for key in ("image_to_text", "text_to_image"):
        c.tensor(f'out["{key}"]', out[key], shape=(2,), dtype=_F64, inputs=inputs)
    i2t, t2i = _t([0.2, 0.4]), _t([0.2, 0.6])
    mistakes = {
        DIAGNOSES["recall_swapped"]: (t2i, i2t),
        DIAGNOSES["recall_columns"]: (i2t, i2t),
        DIAGNOSES["recall_le_k"]:
            (_t([0.4, 0.8]), _t([0.6, 0.8])),
        DIAGNOSES["recall_ge"]: (_t([0.0, 0.2]), _t([0.0, 0.2])),
        DIAGNOSES["recall_dot"]:
            (_t([0.4, 0.4]), _t([0.2, 0.4])),
    }
    got = torch.stack([out["image_to_text"], out["text_to_image"]])
    c.close("[image_to_text, text_to_image]", got, torch.stack([i2t, t2i]), atol=1e-9, inputs=inputs,
            mistakes={k: torch.stack(v) for k, v in mistakes.items()})
    c.done()


def check_quiz(name: str, answer) -> None:
    """Format only: the right answers are checked when grading."""
    check_choice(name, answer, QUIZ_OPTIONS[name], many=name in QUIZ_SETS, explain=QUIZ_EXPLAIN[name])

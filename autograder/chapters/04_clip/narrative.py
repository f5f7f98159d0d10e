# %% [markdown]
# # 04 · CLIP: learning images and texts together
#
# **Time:** about 2¼ hours of work: the exercises about 90 minutes (each says its own), the questions about 25 (3 quizzes, 2 written, 1 prediction), plus reading.
# The `cpu` profile runs the whole notebook in about 2½ minutes on 2 idle CPU cores.
#
# CLIP (Radford et al., *Learning Transferable Visual Models From Natural Language
# Supervision*, 2021) trains two encoders at once, one for images and one for texts, so that
# an image and a sentence describing it land close together in a shared embedding space.
# Instead of *generating* a caption, the model only has to pick, within a batch, which text
# goes with which image: a contrastive task, much cheaper to learn. It was trained on
# 400 million (image, text) pairs collected from the internet (the WIT data set, for
# *WebImageText*), in batches of 32,768 pairs; the data cell below prints how far this
# chapter's numbers are from those.
#
# Once trained, the text encoder turns any set of class names into a classifier with no
# labelled images at all ("zero-shot"): embed prompts such as "a photo of a {label}" and
# pick the class whose text is closest to the image.
#
# Here you build a small CLIP from scratch on a captioned data set made from MNIST:
# digits painted in six colours on dark or light backgrounds, with captions such as "a
# photo of a red seven". A few (digit, colour) pairs never appear in training, so you can
# test whether the model understands "red" and "seven" separately.
#
# **How this notebook works.** Each exercise states what to implement, the shapes in and
# out, and how it is checked. Run the check cell under it: it tells you what is wrong, on
# which input, and often the likely mistake. When grading, hidden checks run the same
# contract on new random inputs. Set `WORKBOOK_PROFILE=smoke|cpu|gpu` before starting
# Jupyter to scale every experiment (default: `gpu` if CUDA is available, else `cpu`).

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from workbook import ch04
from workbook.captions import (COLOUR_NAMES, COLOURS, DIGIT_WORDS, HELD_OUT, CaptionTokenizer,
                               load_captioned, load_clip_encoders, save_clip_encoders)
from workbook.data import mnist_source
from workbook.paths import artifacts_dir
from workbook.profile import setup
from workbook.progress import progress
from workbook.results import log_metric, save_figure

profile = setup(seed=0)
device = profile.device

# %% [markdown]
# ## Data: captioned, coloured digits
#
# `load_captioned(split)` paints every MNIST digit in one of six colours on a dark or light
# background and writes a caption from one of six templates. It returns a `CaptionedImages`
# with images `x` (N, 3, 32, 32) in [0, 1], `captions` (N strings) and the attributes
# `digit`, `colour`, `background` (N,). The training split never contains the ten
# `HELD_OUT` (digit, colour) pairs; the test split contains every pair. With `copies=2`
# each training digit is painted twice, with different colours and captions.
#
# Texts become token ids with `CaptionTokenizer`: CLIP's own byte-pair encoding (from
# `open_clip`) restricted to the few dozen tokens our captions use. Each row is
# `[start, tokens..., end, 0, 0, ...]` of length 16, and the end-of-text token has the
# largest id, as in CLIP.

# %%
cfg = profile.pick(
    smoke=dict(n_train=300, copies=1, n_test=200, epochs=2, batch=50, c=4, width=16, layers=1, embed_dim=16,
               lr=3e-3, sweep_groups=[2, 50], sweep_epochs=1, probe_steps=20),
    cpu=dict(n_train=4000, copies=2, n_test=1000, epochs=8, batch=128, c=16, width=64, layers=2, embed_dim=64,
             lr=3e-3, sweep_groups=[2, 8, 32, 128], sweep_epochs=3, probe_steps=200),
    gpu=dict(n_train=60000, copies=1, n_test=10000, epochs=10, batch=512, c=32, width=128, layers=4,
             embed_dim=128, lr=2e-3, sweep_groups=[2, 8, 32, 128, 512], sweep_epochs=3, probe_steps=300),
)
if device.type == "cpu":
    # These models are tiny: one thread is nearly as fast as several on an idle CPU, and
    # much faster when other jobs share the cores (threads then wait for each other).
    torch.set_num_threads(1)
print("MNIST source:", mnist_source(), "| config:", cfg)
train = load_captioned("train", limit=cfg["n_train"], copies=cfg["copies"], seed=profile.seed)
test = load_captioned("test", limit=cfg["n_test"], seed=profile.seed)
tokenizer = CaptionTokenizer()
train_tokens = tokenizer(train.captions)  # (N, 16)
print(f"train: {len(train)} pairs, test: {len(test)} pairs ({int(test.held_out().sum())} of them held-out "
      f"combinations), vocabulary: {tokenizer.vocab_size} token ids")
print(f"this chapter: {len(train):,} training pairs, batch {cfg['batch']}; CLIP: 400,000,000 pairs (WIT), "
      f"batch 32,768, i.e. {4e8 / len(train):,.0f}x more pairs and {32768 / cfg['batch']:,.0f}x larger batches")
print("held out of training:", sorted(f"{COLOUR_NAMES[c]} {DIGIT_WORDS[d]}" for d, c in HELD_OUT))
print(repr(train.captions[0]), "->", train_tokens[0].tolist())
fig = ch04.show_examples(train.x, train.captions, n=16)
save_figure(fig, "captioned_examples")
plt.show()

# %% [markdown]
# ## 1 · The contrastive objective
#
# Take a batch of $B$ matching pairs. The image encoder gives features $I_f$ (B, $d_i$), the
# text encoder $T_f$ (B, $d_t$); learned linear maps $W_i, W_t$ project both into a joint
# space of size $E$, where every row is scaled to unit length. The $B \times B$ matrix of
# cosine similarities, multiplied by a learned scale, gives the logits; the correct pairs
# are on its diagonal. In the spirit of the paper's Figure 3:
#
# ```
# I_e = l2_normalize(I_f @ W_i)      # (B, E), one unit vector per image
# T_e = l2_normalize(T_f @ W_t)      # (B, E), one unit vector per text
# logits = exp(t) * I_e @ T_e.T      # (B, B): row b scores image b against every text
# labels = arange(B)                 # image b goes with text b
# loss = (cross_entropy(logits, labels) + cross_entropy(logits.T, labels)) / 2
# ```
#
# The first cross-entropy asks each image to pick its text among the $B$ texts (a softmax
# over each row); the second asks each text to pick its image (over each column). The other
# $B-1$ entries of a row are the *negatives*.
#
# The temperature $\tau$ is learned through $t = \log(1/\tau)$ (so the scale $e^t$ stays
# positive); CLIP starts at $\tau = 0.07$, i.e. $t = \log(1/0.07)$, and keeps the scale $e^t$
# at most 100, which the paper found necessary for stable training. The cap is on the
# *parameter*, not in the loss: after every optimizer step the training loop clamps $t$ to at
# most $\ln 100$ (open_clip's `train_one_epoch` does
# `logit_scale.clamp_(0, math.log(100))`), so the loss always sees the scale the model has.
#
# **Implement** *(about 15 min)* `clip_loss(image_features, text_features, logit_scale) -> scalar`: both
# feature matrices (B, E) are *not* normalised yet (they already include the projections
# $W_i, W_t$); `logit_scale` is the scalar tensor $t$. Use the scale $e^t$ as given, with no
# cap (a $\min(e^t, 100)$ here would give $t$ a zero gradient above 100, where it could stay
# stranded while the logged $e^t$ exceeds the scale the loss uses), and the mean
# cross-entropy in each direction. The loss must be differentiable with respect to all three
# inputs (the temperature is learned), keep the dtype of the features, and stay accurate in
# float32 at scale 100, where logits reach ±100: a softmax written with `exp` overflows there
# ($e^{89}$ exceeds float32's range), so use `F.cross_entropy` (or `log_softmax`) on the logits.
#
# **Checked:** hand-made batches with known losses (orthogonal pairs; an asymmetric batch
# where the two directions differ; a scale of 200, above the training loop's cap, used as
# given), and the gradient with respect to $t$ (not 0 at scale 200 either). Hidden:
# `open_clip`'s `ClipLoss` (values and gradients) on random float64 batches (a batch of one
# too, a scale below 1, a scale above 100), and a float32 batch at a scale between 90 and 100
# with cosines near ±1 against `ClipLoss` in float64.
#
# **Stuck?** End the cell below with `clip_loss = ch04.standins.clip_loss` to use a
# stand-in built on open_clip's `ClipLoss`: the rest of the chapter runs with it; this
# exercise then earns no points.

# %% [solution id=clip_loss]
#| solution: clip_loss

# %% [tests id=clip_loss_checks points=3 hidden=clip_loss]
ch04.check_clip_loss(clip_loss)

# %% [markdown]
# ## 2 · Two encoders
#
# CLIP's image encoder is a ResNet or a Vision Transformer; its text encoder is a
# Transformer. Ours are the same ideas at the size of our data.
#
# **Implement** *(about 15 min)* `ImageEncoder(embed_dim=64, c=16)` with two attributes:
#
# * `features`, an `nn.Sequential` of, in this order: `Conv2d(3, c, 3, padding=1)`,
#   `BatchNorm2d(c)`, ReLU, `MaxPool2d(2)` → (B, c, 16, 16); `Conv2d(c, 2c, 3, padding=1)`,
#   `BatchNorm2d(2c)`, ReLU, `MaxPool2d(2)` → (B, 2c, 8, 8); `Conv2d(2c, 4c, 3, padding=1)`,
#   `BatchNorm2d(4c)`, ReLU; `AdaptiveAvgPool2d(4)`; `Flatten()` → $I_f$ (B, 16·4c);
# * `projection` = $W_i$, `nn.Linear(16·4c, embed_dim, bias=False)`;
#
# and `forward(x) = projection(features(x))`, (B, embed_dim), not normalised.
#
# **Implement** *(about 25 min)* `TextEncoder(vocab_size, embed_dim=64, width=64, layers=2, heads=4,
# context_length=16)`, input `text` (B, L) token ids with L ≤ context_length:
#
# * `token_embedding = nn.Embedding(vocab_size, width)` plus
#   `positional_embedding`, an `nn.Parameter` of shape (context_length, width) (initialise
#   it with small random values, e.g. `0.01 * torch.randn`): $h_0$ = token embedding of
#   `text` + `positional_embedding[:L]`, (B, L, width);
# * `transformer = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, heads,
#   dim_feedforward=4 * width, dropout=0.0, activation="gelu", batch_first=True,
#   norm_first=True), layers, enable_nested_tensor=False)`, called with a **causal mask**
#   (position $i$ may attend to positions $\le i$ only: an (L, L) float mask with $-\infty$
#   above the diagonal, e.g. a buffer built once, passed as `mask=...` with
#   `is_causal=True`);
# * `ln_final = nn.LayerNorm(width)` applied to every position, (B, L, width), before the
#   end-of-text feature is picked (chapter 06 reads these per-token features);
# * the text feature $T_f$ is the output at the **end-of-text token**, the largest id of each
#   row: `x[torch.arange(B), text.argmax(dim=-1)]`, (B, width). With the causal mask it
#   has seen the whole sentence and nothing after it;
# * `text_projection` = $W_t$, `nn.Linear(width, embed_dim, bias=False)`.
#
# **Checked:** parameter counts, intermediate and output shapes, non-negative image
# features, the output read at the end-of-text token, no influence of tokens after it, and
# that word order matters. Hidden: with the reference's weights copied in, your modules
# must compute the reference's outputs (the text encoder equals `open_clip`'s
# `TextTransformer` with the same weights), for images of size 32, 24 and 16 and for texts
# of length `context_length` and shorter, a batch of one included, with 3 and 4 heads
# (the mask itself is read in eval mode without gradients), and `ln_final` on (B, L, width).
#
# **Stuck?** End the cell below with `ImageEncoder = ch04.standins.ImageEncoder`, and the
# same for `TextEncoder` as you need, to use stand-ins built on open_clip's
# `VisionTransformer` and `TextTransformer`: the rest of the chapter runs with them; this
# exercise then earns no points.

# %% [solution id=encoders]
#| solution: ImageEncoder TextEncoder

# %% [tests id=encoders_checks points=3 hidden=encoders]
ch04.check_encoders(ImageEncoder, TextEncoder)

# %% [markdown]
# ## Training CLIP
#
# The model is the two encoders plus the learned $t$, initialised at $\log(1/0.07)$. Every
# step takes a random batch of (image, caption) pairs and lowers your `clip_loss`; then, as
# in CLIP, it clamps $t$ to $[0, \ln 100]$ (open_clip's bounds: a scale between 1 and 100).
# Capping the parameter, not the loss, keeps $t$ where the loss still moves it: when the
# loss pushes $t$ up the clamp holds it at $\ln 100$, and when the gradient turns, $t$ comes
# back down. With $\min(e^t, 100)$ inside the loss instead, $t$ would get no gradient above
# $\ln 100$: Adam's momentum could carry it past the cap, where nothing brings it back.
# (In the course's recorded `cpu` run $e^t$ only rises from 14.3 to about 20, so the clamp
# never acts; it matters in long runs such as CLIP's, whose released models sit at the cap,
# $e^t = 100$.)

# %%
class CLIP(nn.Module):
    """The two encoders and t = logit_scale, the learned log inverse temperature."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, temperature: float = 0.07):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))


def make_clip() -> CLIP:
    return CLIP(ImageEncoder(cfg["embed_dim"], c=cfg["c"]),
                TextEncoder(tokenizer.vocab_size, cfg["embed_dim"], width=cfg["width"], layers=cfg["layers"],
                            heads=4, context_length=tokenizer.context_length))


def train_clip(model: CLIP, x, tokens, *, epochs: int, batch_size: int, lr: float, generator,
               group: int | None = None) -> dict:
    """Adam with a one-cycle learning rate; full batches only. With `group`, the loss is the
    mean of clip_loss over consecutive groups of `group` pairs of the batch (each pair then has
    group - 1 negatives). Returns the per-step loss and exp(t)."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    per_epoch = len(x) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.15)
    history = {"loss": [], "scale": []}
    bar = progress(range(epochs), desc="training CLIP")
    for epoch in bar:
        perm = torch.randperm(len(x), generator=generator)[: per_epoch * batch_size]
        for idx in perm.split(batch_size):
            I = model.image_encoder(x[idx].to(device))
            T = model.text_encoder(tokens[idx].to(device))
            k = group or batch_size
            loss = torch.stack([clip_loss(a, b, model.logit_scale) for a, b in zip(I.split(k), T.split(k))]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.set_grad_enabled(False):  # CLIP's cap, on the parameter: exp(t) stays in [1, 100]
                model.logit_scale.clamp_(0, math.log(100))
            sched.step()
            history["loss"].append(loss.item())
            history["scale"].append(model.logit_scale.exp().item())
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", refresh=False)
    model.eval()
    return history


torch.manual_seed(profile.seed)
clip = make_clip()
n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in
            [("image encoder", clip.image_encoder), ("text encoder", clip.text_encoder)]}
print("parameters:", n_params)
t0 = time.time()
history = train_clip(clip, train.x, train_tokens, epochs=cfg["epochs"], batch_size=cfg["batch"], lr=cfg["lr"],
                     generator=profile.generator(1))
train_seconds = time.time() - t0
print(f"trained for {cfg['epochs']} epochs ({len(history['loss'])} steps) in {train_seconds:.1f} s; "
      f"final loss {history['loss'][-1]:.3f}, exp(t) = {history['scale'][-1]:.1f}")
log_metric("train_time", train_seconds, "s", f"{len(history['loss'])} steps of batch {cfg['batch']}")
log_metric("final_train_loss", sum(history["loss"][-10:]) / len(history["loss"][-10:]), "",
           f"mean of the last 10 steps; log(batch) = {math.log(cfg['batch']):.2f} is chance")
log_metric("final_logit_scale", history["scale"][-1], "",
           "exp(t), starts at 1/0.07 = 14.3; t clamped to [0, ln 100] after each step")
fig = ch04.plot_training(history)
save_figure(fig, "loss_and_temperature")
plt.show()

# %% [markdown]
# The loss starts near $\log B$ (chance: every text equally likely) and the scale $e^t$
# moves as the model grows more confident. Below, eight test images with distinct
# (digit, colour) pairs against their own captions: after training the diagonal should
# stand out.

# %%
I_test = ch04.embed(clip.image_encoder, test.x, device)          # (N, E), not normalised
T_test = ch04.embed(clip.text_encoder, tokenizer(test.captions), device)
pick = [int((test.combo == k).nonzero()[0]) for k in test.combo.unique()[
    torch.randperm(len(test.combo.unique()), generator=profile.generator(2))[:8]].tolist()]
sim = F.normalize(I_test[pick], dim=1) @ F.normalize(T_test[pick], dim=1).T
fig = ch04.plot_similarity(sim, test.x[pick], [test.captions[i] for i in pick])
save_figure(fig, "similarity_matrix")
plt.show()
log_metric("batch_diagonal_accuracy", (sim.argmax(1) == torch.arange(len(pick))).float().mean(), "",
           "8 test pairs with distinct (digit, colour): fraction of images whose own caption scores highest")

# %% [markdown]
# ## 3 · Zero-shot classification
#
# To classify into $C$ classes without any labelled image: write each class name into $M$
# prompt templates, embed the $CM$ texts, normalise them, average the $M$ embeddings of each
# class and normalise again (*prompt ensembling*). The $C$ resulting unit vectors are the
# weights of a linear classifier: an image goes to the class with the highest cosine
# similarity.
#
# **Implement** *(about 15 min)* `zero_shot_weights(text_encoder, tokenizer, classnames, templates) ->
# weights (C, E)`: `templates` are format strings such as `"a photo of a {}"`; call
# `tokenizer` on a list of strings and move the tokens to the encoder's device; compute
# without tracking gradients. **Implement** *(about 5 min)* `zero_shot_predict(image_features, weights) ->
# (N,)` int64 class indices.
#
# **Checked:** a stand-in encoder with known embeddings (two classes, two templates);
# predictions on hand-made features. Hidden: `open_clip`'s `build_zero_shot_classifier`
# with a random text encoder and our tokenizer; random predictions against the reference,
# for a batch of one image too.
#
# **Stuck?** End the cell below with
# `zero_shot_weights = ch04.standins.zero_shot_weights`, and the same for
# `zero_shot_predict` as you need, to use stand-ins built on open_clip's
# `build_zero_shot_classifier` and torch: the rest of the chapter runs with them; this
# exercise then earns no points.

# %% [solution id=zero_shot]
#| solution: zero_shot_weights zero_shot_predict

# %% [tests id=zero_shot_checks points=2 hidden=zero_shot]
ch04.check_zero_shot(zero_shot_weights, zero_shot_predict)

# %% [markdown]
# Three zero-shot tasks on the test set, each scored separately on the (digit, colour)
# pairs seen in training and on the held-out pairs: the digit (10 classes; prompts
# ensemble over the six colours), the colour (6 classes; ensemble over the ten digits) and
# both at once (60 classes such as "red seven"). For a held-out pair the right "both" class
# is a sentence the model has never read in training.

# %%
PROMPTS = {
    "digit": (list(DIGIT_WORDS), [f"a photo of a {c} {{}}" for c in COLOUR_NAMES]),
    "colour": (list(COLOUR_NAMES), [f"a photo of a {{}} {w}" for w in DIGIT_WORDS]),
    "both": ([f"{c} {w}" for w in DIGIT_WORDS for c in COLOUR_NAMES],
             ["a photo of a {}", "a {} on a dark background", "a {} on a light background"]),
}


def zero_shot_accuracy(model: CLIP, data, I=None) -> dict:
    """{task: {"seen": acc, "held-out": acc}} on a CaptionedImages set."""
    I = ch04.embed(model.image_encoder, data.x, device) if I is None else I
    truth = {"digit": data.digit, "colour": data.colour, "both": data.combo}
    held = data.held_out()
    out = {}
    for task, (names, templates) in PROMPTS.items():
        weights = zero_shot_weights(model.text_encoder, tokenizer, names, templates).cpu()
        correct = (zero_shot_predict(I, weights) == truth[task]).float()
        out[task] = {"seen": correct[~held].mean().item(), "held-out": correct[held].mean().item()}
    return out


zs = zero_shot_accuracy(clip, test, I_test)
for task, acc in zs.items():
    print(f"zero-shot {task:6s}: seen pairs {acc['seen']:.3f}, held-out pairs {acc['held-out']:.3f}")
    log_metric(f"zero_shot_{task}_seen", acc["seen"], "", f"chance 1/{len(PROMPTS[task][0])}")
    log_metric(f"zero_shot_{task}_held_out", acc["held-out"], "", "(digit, colour) pairs never seen in training")
single = zero_shot_weights(clip.text_encoder, tokenizer, list(DIGIT_WORDS), ["a photo of a {}"]).cpu()
acc_single = (zero_shot_predict(I_test, single) == test.digit).float().mean().item()
ensemble = zero_shot_weights(clip.text_encoder, tokenizer, *PROMPTS["digit"]).cpu()
acc_ensemble = (zero_shot_predict(I_test, ensemble) == test.digit).float().mean().item()
print(f"digit, one prompt 'a photo of a {{}}' (no colour): {acc_single:.3f}; "
      f"ensemble over colours: {acc_ensemble:.3f}")
log_metric("zero_shot_digit_single_prompt", acc_single, "", "'a photo of a {}': a sentence form never seen")
log_metric("zero_shot_digit_ensemble", acc_ensemble, "", "mean over 6 prompts, one per colour")

# %% [markdown]
# **A linear probe for comparison.** The usual way to use a pre-trained image encoder is
# to train a logistic-regression classifier on its frozen features $I_f$ with labelled
# images. It needs labels for every class: a probe for the 60 "both" classes trained on
# the training split has never seen a held-out pair, so it cannot name one.

# %%
with torch.inference_mode():
    feats = lambda x: torch.cat([clip.image_encoder.features(b.to(device)).cpu() for b in x.split(500)])
    F_train, F_test = feats(train.x), feats(test.x)
probe = {}
held = test.held_out()
for task, (ytr, yte, C) in {"digit": (train.digit, test.digit, 10), "colour": (train.colour, test.colour, 6),
                            "both": (train.combo, test.combo, 60)}.items():
    correct = (ch04.linear_probe(F_train, ytr, F_test, C, steps=cfg["probe_steps"]) == yte).float()
    probe[task] = {"seen": correct[~held].mean().item(), "held-out": correct[held].mean().item()}
    log_metric(f"linear_probe_{task}_seen", probe[task]["seen"], "", "logistic regression on frozen features")
    log_metric(f"linear_probe_{task}_held_out", probe[task]["held-out"], "", "labels of held-out pairs never seen")
fig = ch04.plot_accuracy({"zero-shot, seen pairs": {k: v["seen"] for k, v in zs.items()},
                          "zero-shot, held-out pairs": {k: v["held-out"] for k, v in zs.items()},
                          "linear probe, seen pairs": {k: v["seen"] for k, v in probe.items()},
                          "linear probe, held-out pairs": {k: v["held-out"] for k, v in probe.items()}},
                         "accuracy per attribute")
save_figure(fig, "zero_shot_accuracy")
plt.show()

# %% [markdown]
# ## 4 · Retrieval: recall@k
#
# The same embeddings search in both directions: given an image, rank all texts (image →
# text); given a text, rank all images (text → image). With $N$ pairs where image $n$ goes
# with text $n$, **recall@k** is the fraction of queries whose partner is among the $k$
# best-ranked candidates.
#
# **Implement** *(about 15 min)* `recall_at_k(image_features, text_features, ks) -> dict` with keys
# `"image_to_text"` and `"text_to_image"`, each a float64 tensor (len(ks),). Rank by cosine
# similarity; the rank of the partner is the number of candidates with a *strictly* higher
# similarity (0 is best), and it counts as found at $k$ when its rank is $< k$.
#
# Ties count in the partner's favour: a candidate whose similarity *equals* the partner's
# does not push it down (so ranking by a position in a sorted list is not the same).
#
# **Checked:** five pairs on a circle whose ranks are worked out by hand. Hidden: random
# float32 features against the reference, and features along the axes, whose cosines are
# exactly $-1$, 0 or 1 (many ties).
#
# **Stuck?** End the cell below with `recall_at_k = ch04.standins.recall_at_k` to use a
# stand-in built on torch: the rest of the chapter runs with it; this exercise then earns
# no points.

# %% [solution id=recall]
#| solution: recall_at_k

# %% [tests id=recall_checks points=2 hidden=recall]
ch04.check_recall_at_k(recall_at_k)

# %% [markdown]
# On our test set many captions describe the same attributes ("a red seven" fits every red
# seven), so the exact partner is hard to single out among look-alikes: recall@1 is
# limited by the data, not only by the model. Comparing with a random embedding shows how
# far training got.

# %%
ks = (1, 5, 10)
rec = recall_at_k(I_test, T_test, ks)
rand = recall_at_k(torch.randn_like(I_test), torch.randn_like(T_test), ks)
for key in rec:
    print(f"{key}: " + ", ".join(f"R@{k} = {v:.3f} (random {r:.3f})" for k, v, r in zip(ks, rec[key], rand[key])))
    for k, v in zip(ks[:2], rec[key][:2]):
        log_metric(f"recall_{key}_at{k}", v, "", f"{len(test)} test pairs")

# %% [markdown]
# ## The joint embedding space
#
# Images and texts live in the same unit sphere. Projected on the two main directions of
# the test image embeddings (PCA), each image is a dot and each zero-shot class vector a
# cross, coloured by digit (left) and by colour (right). Colour is the easiest attribute:
# where the right panel separates the colours and the left one mixes the digits, colour has
# taken the two main directions and the digits are told apart, if at all, along further
# directions of the joint space.

# %%
W_digit = zero_shot_weights(clip.text_encoder, tokenizer, *PROMPTS["digit"]).cpu()
W_colour = zero_shot_weights(clip.text_encoder, tokenizer, *PROMPTS["colour"]).cpu()
fig = ch04.plot_joint_pca(I_test, [
    (test.digit, W_digit, list(DIGIT_WORDS), "coloured by digit; crosses: digit prompts"),
    (test.colour, W_colour, list(COLOUR_NAMES), "coloured by colour; crosses: colour prompts",
     [COLOURS[c] for c in COLOUR_NAMES])])
save_figure(fig, "joint_embedding_pca")
plt.show()

# %% [markdown]
# ## More negatives
#
# Each image is contrasted with the other texts of its batch: the negatives. CLIP used
# batches of 32,768 pairs, so each image had 32,767 negatives; ours has `batch - 1` of them.
# What does their number change?
#
# To vary *only* that number, fresh models are trained on the same data, with the same
# batches and number of steps (so the same examples seen), but the loss is computed within
# groups of $k$ pairs of each batch (`group=k`): every image then has $k-1$ negatives. The
# smallest group, $k = 2$, leaves **one negative per pair**: your `clip_loss` on two pairs
# only asks which of two captions goes with each image. The largest, $k$ = `batch`, is the loss
# you trained with above (here for `sweep_epochs` epochs).
#
# **Predict before you run it** (not graded). In the cell below, write the zero-shot
# accuracy on seen pairs that you expect for the digit (chance 0.1) and for the colour
# (chance 0.17), with one negative per pair and with the whole batch. After the sweep,
# a cell prints your numbers next to the measured ones.

# %%
# Your prediction: numbers in [0, 1] (None: no prediction).
my_prediction = {
    "digit, one negative": None,
    "colour, one negative": None,
    "digit, whole batch": None,
    "colour, whole batch": None,
}

# %%
sweep, sweep_models = {}, {}
for k in cfg["sweep_groups"]:
    torch.manual_seed(profile.seed)
    model = make_clip()
    t0 = time.time()
    train_clip(model, train.x, train_tokens, epochs=cfg["sweep_epochs"], batch_size=cfg["batch"], lr=cfg["lr"],
               generator=profile.generator(3), group=k)
    sweep[k] = zero_shot_accuracy(model, test)
    if k in (2, cfg["batch"]):
        sweep_models[k] = model
    print(f"group {k:4d} ({k - 1:3d} negatives): digit {sweep[k]['digit']['seen']:.3f}, "
          f"colour {sweep[k]['colour']['seen']:.3f}, both {sweep[k]['both']['seen']:.3f} (seen pairs), "
          f"both {sweep[k]['both']['held-out']:.3f} (held-out)  [{time.time() - t0:.0f} s]")
    log_metric(f"negatives_sweep_zero_shot_digit_k{k}", sweep[k]["digit"]["seen"], "",
               f"{k - 1} negatives per pair, {cfg['sweep_epochs']} epoch(s), batch {cfg['batch']}")
fig, ax = plt.subplots(figsize=(5, 3.4))
for task, style in [("digit", "o-"), ("colour", "s-"), ("both", "^-")]:
    ax.plot(cfg["sweep_groups"], [sweep[k][task]["seen"] for k in cfg["sweep_groups"]], style, label=task)
ax.set(xscale="log", xlabel="contrastive batch size k (k - 1 negatives)", ylabel="zero-shot accuracy (seen pairs)",
       title=f"same data and steps ({cfg['sweep_epochs']} epoch(s))", ylim=(0, 1.05))
ax.set_xticks(cfg["sweep_groups"], [str(k) for k in cfg["sweep_groups"]])
ax.legend()
save_figure(fig, "accuracy_vs_batch_size")
plt.show()

# %% [markdown]
# Your prediction against the two ends of the sweep, with recall@k on the test pairs (your
# `recall_at_k`) as a second measure. The last line asks how far the colour alone goes: if
# the colours of a group are drawn uniformly from six, a model that reads only the colour,
# and guesses among the captions of the right colour, picks the right caption of a group of
# $k$ with probability $\mathbb E[1/(1 + M)]$, $M \sim \mathrm{Binomial}(k - 1, 1/6)$ the
# other pairs of the same colour, which is $(1 - (5/6)^k) / (k/6)$.

# %%
one, full = sweep_models[2], sweep_models[cfg["batch"]]
print(f"{'zero-shot, seen pairs':28s} {'your prediction':>15s} {'measured':>9s}")
for task in ("digit", "colour"):
    for label, k in (("one negative", 2), ("whole batch", cfg["batch"])):
        guess = my_prediction.get(f"{task}, {label}")
        print(f"{task + ', ' + label:28s} {'-' if guess is None else str(guess):>15s} {sweep[k][task]['seen']:9.3f}")
recall_sweep = {}
for label, k, m in (("one negative", 2, one), ("whole batch", cfg["batch"], full)):
    recall_sweep[k] = recall_at_k(ch04.embed(m.image_encoder, test.x, device),
                                  ch04.embed(m.text_encoder, tokenizer(test.captions), device), (1, 10))
    r = recall_sweep[k]["image_to_text"]
    print(f"{label} (k = {k}): image -> text R@1 = {r[0]:.3f}, R@10 = {r[1]:.3f}")
    log_metric(f"negatives_sweep_recall_image_to_text_at10_k{k}", r[1], "",
               f"{k - 1} negatives per pair, {len(test)} test pairs")
for k in (2, cfg["batch"]):
    print(f"colour alone picks the right caption among k = {k}: {(1 - (5 / 6) ** k) / (k / 6):.3f}")
log_metric("one_negative_minus_batch_zero_shot_digit", sweep[2]["digit"]["seen"] - sweep[cfg["batch"]]["digit"]["seen"],
           "", f"k = 2 minus k = {cfg['batch']}, same data and steps")
log_metric("one_negative_minus_batch_zero_shot_colour",
           sweep[2]["colour"]["seen"] - sweep[cfg["batch"]]["colour"]["seen"], "",
           f"k = 2 minus k = {cfg['batch']}, same data and steps")

# %% [markdown]
# Compare the two rows of each attribute, then your prediction. With one negative, the
# colour alone picks the right caption 92 % of the time (the last lines): the loss gives
# little reason to encode anything else. With the whole batch about $k/6$ captions share
# each colour, the colour alone picks the right one about $6/k$ of the time (the last
# line), and only the digit tells them apart. So where your run shows the colour about as accurate at both ends and
# the digit much less accurate with one negative, it is the negatives that taught the
# digit; recall@10, which asks for each image's own caption among all test captions, should
# then be lower with one negative too (compare the two R@10 lines). Where the two digit
# accuracies are close (the `smoke` profile trains for a few steps, and neither model learns
# much), the run is too short to tell.

# %% [markdown]
# ## Keeping the encoders
#
# Chapter 06 generates images from text and reuses this data set and these encoders.
# `save_encoders` writes them to the profile's artifacts folder: the state dicts with a
# config (for your own classes) and, through `torch.export`, programs that load without
# the class definitions, as `load_clip_encoders(profile.name)` does in chapter 06.

# %%
def save_encoders(path) -> list:
    """Save the trained image and text encoders, the tokenizer's config and the model config."""
    config = {"embed_dim": cfg["embed_dim"], "c": cfg["c"], "width": cfg["width"], "layers": cfg["layers"],
              "heads": 4, "vocab_size": tokenizer.vocab_size, "context_length": tokenizer.context_length,
              "image_size": train.x.shape[-1], "logit_scale": clip.logit_scale.item(), "profile": profile.name,
              "zero_shot_digit_seen": zs["digit"]["seen"], "zero_shot_both_held_out": zs["both"]["held-out"]}
    return save_clip_encoders(path, clip.image_encoder, clip.text_encoder, tokenizer, config,
                              image_size=train.x.shape[-1])


saved = save_encoders(artifacts_dir(profile.name))
print("saved:", *[str(p) for p in saved], sep="\n  ")
if len(saved) == 3:
    image_encoder, text_encoder, _, info = load_clip_encoders(profile.name)
    tokens = tokenizer(test.captions[:4])
    with torch.inference_mode():
        err = max((image_encoder(test.x[:4]) - clip.image_encoder.cpu()(test.x[:4])).abs().max().item(),
                  (text_encoder(tokens) - clip.text_encoder.cpu()(tokens)).abs().max().item())
    print(f"reloaded without the classes: largest difference {err:.2e}; config {info}")

# %% [markdown]
# ### Written questions
#
# Answer each in a few sentences, in your own words, in the cell under it (double-click it to
# edit). Your instructor grades them; after grading, your feedback shows a model answer.
#
# **W1 (2 points).** Why does CLIP's learning depend on the batch size? If the batch size is
# fixed by your memory, name a strategy that gives each pair more (or harder) negatives.

# %% [written id=written_negatives points=2]
# **Model answer.** Each pair's loss is a softmax over all texts (and images) of the batch:
# the other B - 1 items are its negatives, so the batch size sets how many wrong answers the
# model must beat, and with few negatives the task is easy and the features less
# discriminative. With B fixed: keep a queue or memory bank of features from earlier batches
# as extra negatives (MoCo), gather features across devices, use gradient caching to reach a
# larger effective batch, or mine hard negatives (captions that differ in one word, same digit
# other colour).
#
# **Rubric.** 1 point: the other items of the batch are the negatives; more negatives =
# harder, more informative contrast. 1 point: a valid strategy (memory bank/queue, gradient
# cache, cross-device gather, hard-negative mining).

# %% [markdown]
# **W2 (2 points).** The logits are cosine similarities times exp(t), with t learned and
# capped. What goes wrong with a fixed temperature that is too high or too low, and why
# normalise the features at all?

# %% [written id=written_temperature points=2]
# **Model answer.** Without normalisation the model could lower the loss by growing the
# feature norms instead of aligning directions; normalising makes the logits depend only on
# angles. A too-small scale (high temperature) makes all softmax probabilities similar: weak
# gradients, the loss cannot fall far. A too-large scale (low temperature) makes the softmax
# nearly one-hot early: gradients concentrate on the hardest negatives and training is
# unstable. Learning t lets the model sharpen as its features improve; clamping t to at most
# ln 100 after each step (a scale of at most 100) keeps it from growing without bound, which
# the CLIP paper found necessary for stable training.
#
# **Rubric.** 1 point: normalisation removes the norm as a shortcut (angles only). 1 point:
# the trade-off of too high/too low temperature (flat vs over-sharp softmax, gradients).

# %% [markdown]
# ## 5 · Concept questions
#
# Answer by assigning Python values. The check cell only verifies the format; the answers
# are graded when you submit.
#
# **Q1.** Our text encoder reads its feature at the end-of-text token, with a causal mask.
# What does the mask buy there? Set `answer_causal_mask` to one letter.
#
# * A: Nothing for the outputs: it only makes training faster.
# * B: The end-of-text feature depends on the caption and on nothing after it, so the same
#   caption followed by other padding or junk tokens gets the same embedding.
# * C: The end-of-text token then sees only the first word of the caption.
# * D: Without it the positional embedding would have no effect.
#
# **Q2.** `clip_loss` normalises both feature matrices before their product. Without the
# normalisation, what would change? Set `answer_normalise` to one letter.
#
# * A: Nothing: a softmax does not depend on the size of its inputs.
# * B: The logits would grow with the norms of the features, so the encoders could sharpen
#   (or flatten) the softmax by changing norms, and exp(t) would no longer be what sets the
#   temperature.
# * C: The loss could not be computed for batches larger than the embedding size E.
# * D: The two directions of the loss would become equal.

# %% [solution id=quiz_encoders_answers]
#| solution: answer_causal_mask answer_normalise

# %% [tests id=quiz_encoders points=1 hidden=quiz]
ch04.check_quiz("answer_causal_mask", answer_causal_mask)
ch04.check_quiz("answer_normalise", answer_normalise)

# %% [markdown]
# **Q3.** Which statements are true? Set `answer_clip_facts` to a set of letters.
#
# * A: CLIP learns to predict which caption in a batch goes with which image, not to
#   generate captions word by word.
# * B: Its loss is a cross-entropy over the rows of the image-text similarity matrix plus
#   one over its columns.
# * C: Its temperature is a fixed hyperparameter, tuned by hand.
# * D: For zero-shot classification, the text embeddings of prompts such as
#   "a photo of a {label}" serve as the weights of a linear classifier.
# * E: Zero-shot classification needs a few labelled images of every class.
# * F: In a larger batch, every image is contrasted with more negative texts.

# %% [solution id=quiz_facts_answers]
#| solution: answer_clip_facts

# %% [tests id=quiz_clip_facts points=1 hidden=quiz]
ch04.check_quiz("answer_clip_facts", answer_clip_facts)

# %% [markdown]
# ## What to remember
#
# * CLIP trains an image encoder and a text encoder jointly with a symmetric cross-entropy
#   over the $B \times B$ matrix of scaled cosine similarities: each image picks its text,
#   each text its image. The temperature is learned, through $t = \log(1/\tau)$.
# * The other pairs of the batch are the negatives: more of them give harder, more
#   informative contrasts (in a run long enough to tell, such as the `cpu` profile, the
#   digit is learned only with enough negatives: compare your sweep).
# * The text encoder turns class names into a classifier: prompt templates, unit
#   embeddings, their normalised mean. No labelled image is needed, and because the text
#   side composes words, classes never seen together in training can still be recognised.
# * The same embeddings give retrieval in both directions, measured by recall@k, and a
#   linear probe on the image features shows what labels can add.

# %% [markdown]
# **Further reading**
#
# * Radford et al., *Learning Transferable Visual Models From Natural Language Supervision*, ICML 2021: the
#   CLIP paper, for its Figure 3 pseudocode, the WIT data and the prompt-ensembling experiments.
# * van den Oord, Li & Vinyals, *Representation Learning with Contrastive Predictive Coding*, 2018: the
#   InfoNCE loss, a bound on mutual information that tightens with more negatives.
# * Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations* (SimCLR), ICML
#   2020: the same loss between two views of one image, and how batch size and temperature matter.
# * Cherti et al., *Reproducible Scaling Laws for Contrastive Language-Image Learning*, CVPR 2023: open_clip
#   trained on public data, zero-shot accuracy as a power law in data, model size and compute.
# * Zhai et al., *Sigmoid Loss for Language Image Pre-Training* (SigLIP), ICCV 2023: a per-pair sigmoid loss
#   instead of the softmax over the batch, and what it changes for small and large batches.

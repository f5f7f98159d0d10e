"""Chapter 04 stand-ins: each exercise that later cells use, done by open_clip (or torch),
with the exercise's signature and contract.

Stuck on an exercise? End its cell with, e.g., `clip_loss = ch04.standins.clip_loss`: the rest
of the chapter runs with the stand-in; the exercise earns no points (its check says so).
Remove the line when your own version is ready. The encoders are open_clip's own towers:
they keep the exercise's calls and outputs, not its layers and parameter names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..standin import stand_in


@stand_in
def clip_loss(image_features, text_features, logit_scale):
    """open_clip's `ClipLoss` (the mean of the two cross-entropies) on the L2-normalised
    features, with the scale exp(t) as given (the training loop clamps t, as open_clip's does)."""
    from open_clip.loss import ClipLoss
    return ClipLoss()(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1), logit_scale.exp())


@stand_in
class ImageEncoder(nn.Module):
    """open_clip's `VisionTransformer` (in `self.inner`) for the chapter's 32 x 32 images: patches
    of 4 x 4, width 4c, two layers of 4 heads; `features(x)` is its class token after the final
    LayerNorm (B, 4c), `projection` = W_i, Linear(4c, embed_dim, bias=False) (not normalised).
    Unlike the exercise's CNN it takes only 32 x 32 images."""

    def __init__(self, embed_dim=64, c=16):
        super().__init__()
        from open_clip.transformer import VisionTransformer
        self.inner = VisionTransformer(image_size=32, patch_size=4, width=4 * c, layers=2, heads=4, mlp_ratio=4.0,
                                       output_dim=embed_dim)
        self.inner.proj = None  # open_clip's own projection, replaced by `projection`
        self.projection = nn.Linear(4 * c, embed_dim, bias=False)

    def features(self, x):
        return self.inner(x)

    def forward(self, x):
        pooled = self.features(x)  # (B, 4c)
        return self.projection(pooled)


@stand_in
class TextEncoder(nn.Module):
    """open_clip's `TextTransformer` (in `self.inner`): token and position embeddings, a causal
    pre-norm Transformer, a final LayerNorm (`ln_final`, where chapter 06 reads the per-token
    features), the feature at the end-of-text token (the largest id: open_clip's "argmax"
    pooling), a projection to embed_dim (not normalised)."""

    def __init__(self, vocab_size, embed_dim=64, width=64, layers=2, heads=4, context_length=16):
        super().__init__()
        from open_clip.transformer import TextTransformer
        self.context_length = int(context_length)
        self.inner = TextTransformer(context_length=context_length, vocab_size=vocab_size, width=width, heads=heads,
                                     layers=layers, output_dim=embed_dim, pool_type="argmax")

    @property
    def ln_final(self):
        return self.inner.ln_final

    def forward(self, text):
        return self.inner(text)


@stand_in
@torch.no_grad()
def zero_shot_weights(text_encoder, tokenizer, classnames, templates):
    """open_clip's `build_zero_shot_classifier` (prompt ensembling: the renormalised mean of the
    unit embeddings of each class's prompts), transposed to (C, E), on the encoder's device."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    device = next(p.device for p in text_encoder.parameters())

    class Encoder:  # the interface open_clip asks for
        @staticmethod
        def encode_text(tokens, normalize=True):
            return F.normalize(text_encoder(tokens), dim=-1) if normalize else text_encoder(tokens)

    weights = build_zero_shot_classifier(Encoder, tokenizer, list(classnames), list(templates),
                                         num_classes_per_batch=None, device=device)
    return weights.T.contiguous()


@stand_in
def zero_shot_predict(image_features, weights):
    """torch: the argmax over classes of `torch.cosine_similarity` (the weights are unit vectors already)."""
    return torch.cosine_similarity(image_features[:, None, :], weights[None, :, :], dim=-1).argmax(dim=1)


@stand_in
def recall_at_k(image_features, text_features, ks=(1, 5)):
    """torch (open_clip's retrieval metric lives in its training scripts, not the library): in float64,
    each match's rank is the number of candidates above it, counted with `torch.searchsorted` in
    the sorted similarities (ties with the match do not count)."""
    sim = F.normalize(image_features.double(), dim=-1) @ F.normalize(text_features.double(), dim=-1).T
    match = sim.diagonal()
    n = sim.shape[0]

    def ranks(rows):  # rows (N, N), match n in row n: how many entries of row n exceed it
        ordered = rows.sort(dim=1).values.contiguous()
        return n - torch.searchsorted(ordered, match[:, None].contiguous(), right=True).squeeze(1)

    k = torch.as_tensor(list(ks), device=sim.device)
    return {"image_to_text": (ranks(sim)[:, None] < k).double().mean(0).cpu(),
            "text_to_image": (ranks(sim.T)[:, None] < k).double().mean(0).cpu()}

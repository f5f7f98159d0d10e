"""Chapter 04: realistic learner mistakes and correct alternatives."""
from autograder.mutants import Alternative, Mistake

_NORMALISE = ("I = F.normalize(image_features, dim=-1)  # (B, E)\n"
              "    T = F.normalize(text_features, dim=-1)  # (B, E)")
_CE = "loss_i = F.cross_entropy(logits, labels)\n    loss_t = F.cross_entropy(logits.T, labels)"
_RANKS = ("rank_i2t = (sim > match[:, None]).sum(dim=1)  # image i against all texts (row i)\n"
          "    rank_t2i = (sim > match[None, :]).sum(dim=0)  # text j against all images (column j)")
_RETURN = ('return {"image_to_text": (rank_i2t[:, None] < k).double().mean(dim=0).cpu(),\n'
           '            "text_to_image": (rank_t2i[:, None] < k).double().mean(dim=0).cpu()}')

MISTAKES = [
    # clip_loss
    Mistake("clip_loss_checks", "clip_loss", _NORMALISE, "I = image_features\n    T = text_features",
            "features were not L2-normalised: divide each row by its norm", expect="not L2-normalised"),
    Mistake("clip_loss_checks", "clip_loss", "T = F.normalize(text_features, dim=-1)", "T = text_features",
            "the text features were not L2-normalised", expect="text features were not L2-normalised"),
    Mistake("clip_loss_checks", "clip_loss", _NORMALISE,
            "I = F.normalize(image_features, dim=0)\n    T = F.normalize(text_features, dim=0)",
            "features were normalised along the batch (dim=0)", expect=r"dim=0\): normalise each row"),
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp().clamp(max=100.0)", "logit_scale.clamp(max=100.0)",
            "the temperature parameter was used without exponentiating it", expect="exponentiate"),
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp().clamp(max=100.0)", "logit_scale.exp()",
            "the scale exp(t) was not capped at 100", expect="capped at 100"),
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp().clamp(max=100.0)",
            "logit_scale.exp().clamp(max=100.0).item()",
            "exp(t) was turned into a Python number, so the temperature gets no gradient", expect="no gradient"),
    Mistake("clip_loss_checks", "clip_loss", "logits = scale * I @ T.T", "logits = I @ T.T / scale",
            "the similarities were divided by the scale instead of multiplied", expect="not divided"),
    Mistake("clip_loss_checks", "clip_loss", "loss_t = F.cross_entropy(logits.T, labels)",
            "loss_t = F.cross_entropy(logits, labels)",
            "only the image -> text direction of the loss", expect=r"only the image -> text direction"),
    Mistake("clip_loss_checks", "clip_loss", "loss_i = F.cross_entropy(logits, labels)",
            "loss_i = F.cross_entropy(logits.T, labels)",
            "only the text -> image direction of the loss", expect=r"only the text -> image direction"),
    Mistake("clip_loss_checks", "clip_loss", "return (loss_i + loss_t) / 2", "return loss_i + loss_t",
            "the two directions were summed, not averaged", expect="divide by 2"),
    Mistake("clip_loss_checks", "clip_loss", _CE,
            "loss_i = F.cross_entropy(logits, labels, reduction='sum')\n"
            "    loss_t = F.cross_entropy(logits.T, labels, reduction='sum')",
            "the cross-entropies were summed over the batch", expect=r"\(not sum\)|mean over the batch"),
    # encoders
    Mistake("encoders_checks", "ImageEncoder", "nn.Linear(16 * 4 * c, embed_dim, bias=False)",
            "nn.Linear(16 * 4 * c, embed_dim)", "the projection W_i has a bias", expect="has no bias"),
    Mistake("encoders_checks", "ImageEncoder", "nn.BatchNorm2d(c),", "",
            "no BatchNorm2d after the first convolution", expect="BatchNorm2d after each convolution"),
    Mistake("encoders_checks", "ImageEncoder", "nn.ReLU(),  # (B, 4c, S/4, S/4)", "# (B, 4c, S/4, S/4)",
            "no ReLU at the end of the third block", expect="third block ends with a ReLU"),
    Mistake("encoders_checks", "ImageEncoder", "nn.MaxPool2d(2),  # (B, c, S/2, S/2)", "# (B, c, S/2, S/2)",
            "no MaxPool2d after the first block", expect="MaxPool2d"),
    Mistake("encoders_checks", "TextEncoder", "x = x[torch.arange(B, device=text.device), eot]  # (B, width)",
            "x = x[:, -1]  # (B, width)", "pooled the last position instead of the end-of-text token",
            expect="last position"),
    Mistake("encoders_checks", "TextEncoder", "x = x[torch.arange(B, device=text.device), eot]  # (B, width)",
            "x = x[:, 0]  # (B, width)", "pooled the start-of-text token", expect="first .start-of-text"),
    Mistake("encoders_checks", "TextEncoder", "x = self.transformer(x, mask=self.attn_mask[:L, :L], is_causal=True)",
            "x = self.transformer(x)", "no causal attention mask", expect="causal mask"),
    Mistake("encoders_checks", "TextEncoder", "x = self.token_embedding(text) + self.positional_embedding[:L]",
            "x = self.token_embedding(text)", "the positional embedding was not added",
            expect="add the positional embedding"),
    Mistake("encoders_checks", "TextEncoder", "x = self.ln_final(x)", "x = x",
            "the final LayerNorm was not applied", expect="ln_final was not applied"),
    Mistake("encoders_checks", "TextEncoder", "nn.Linear(width, embed_dim, bias=False)",
            "nn.Linear(width, embed_dim)", "the projection W_t has a bias", expect="W_t has no bias"),
    # zero-shot
    Mistake("zero_shot_checks", "zero_shot_weights", "rows.append(F.normalize(emb.mean(dim=0), dim=-1))",
            "rows.append(emb.mean(dim=0))", "the mean embedding was not renormalised", expect="not renormalised"),
    Mistake("zero_shot_checks", "zero_shot_weights", "emb = F.normalize(text_encoder(tokens), dim=-1)",
            "emb = text_encoder(tokens)", "prompt embeddings were averaged before normalising them",
            expect="normalised before averaging"),
    Mistake("zero_shot_checks", "zero_shot_weights", "with torch.no_grad():", "if True:",
            "the weights were computed with gradients tracked", expect="no_grad"),
    Mistake("zero_shot_checks", "zero_shot_predict", "return logits.argmax(dim=1)", "return logits.argmin(dim=1)",
            "argmin instead of argmax", expect="argmin"),
    Mistake("zero_shot_checks", "zero_shot_predict", "return logits.argmax(dim=1)", "return logits.argmax(dim=0)",
            "argmax over the images instead of the classes", expect=r"over the classes \(dim=1\)"),
    # recall@k
    Mistake("recall_checks", "recall_at_k", _RANKS,
            _RANKS.replace("(sim > match[None, :]).sum(dim=0)", "(sim > match[:, None]).sum(dim=1)"),
            "text_to_image ranked the texts of each image", expect="along the columns"),
    Mistake("recall_checks", "recall_at_k", _RETURN, _RETURN.replace("< k", "<= k"),
            "a match of rank k counted as found at k", expect="count rank < k"),
    Mistake("recall_checks", "recall_at_k", _RANKS, _RANKS.replace("(sim > ", "(sim >= "),
            "the match counted as scoring higher than itself", expect="strictly higher"),
    Mistake("recall_checks", "recall_at_k",
            "I = F.normalize(image_features.double(), dim=-1)  # (N, E)\n"
            "    T = F.normalize(text_features.double(), dim=-1)  # (N, E)",
            "I = image_features.double()\n    T = text_features.double()",
            "ranked by dot products instead of cosine similarity", expect="cosine similarity"),
    Mistake("recall_checks", "recall_at_k", _RETURN,
            _RETURN.replace("(rank_i2t[", "(RANK_A[").replace("(rank_t2i[", "(rank_i2t[").replace("RANK_A", "rank_t2i"),
            "the two directions were swapped", expect="directions are swapped"),
    # quiz
    Mistake("quiz_encoders", "answer_image_encoder", '"C"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_encoders", "answer_text_encoder", '"B"', '"D"', "wrong answer", diagnosed=False),
    Mistake("quiz_clip_facts", "answer_clip_facts", '{"A", "B", "D", "F"}', '{"A", "B", "C", "D", "F"}',
            "not every statement is true", diagnosed=False),
]

ALTERNATIVES = [
    Alternative("clip_loss_checks", "clip_loss", '''
def clip_loss(image_features, text_features, logit_scale):
    """Manual log-softmax over rows and columns, norms by hand, t capped before exp."""
    import math
    I = image_features / image_features.norm(dim=1, keepdim=True)
    T = text_features / text_features.norm(dim=1, keepdim=True)
    logits = torch.exp(torch.clamp(logit_scale, max=math.log(100))) * (I @ T.t())
    idx = torch.arange(logits.shape[0])
    rows = -logits.log_softmax(dim=1)[idx, idx].mean()
    cols = -logits.log_softmax(dim=0)[idx, idx].mean()
    return 0.5 * (rows + cols)
''', "log_softmax by hand; clamp t at log(100) before exp"),
    Alternative("clip_loss_checks", "clip_loss", '''
def clip_loss(image_features, text_features, logit_scale):
    """open_clip's ClipLoss on unit features, the cap as a Python min."""
    from open_clip.loss import ClipLoss
    scale = min(logit_scale.exp(), 100.0)
    return ClipLoss()(F.normalize(image_features, dim=1), F.normalize(text_features, dim=1), scale)
''', "open_clip.loss.ClipLoss; min() drops the gradient above the cap (allowed: it is 0 there)"),
    Alternative("encoders_checks", "TextEncoder", '''
class TextEncoder(nn.Module):
    """Same architecture; boolean causal mask, layers built one by one, gather for the EOT feature."""

    def __init__(self, vocab_size, embed_dim=64, width=64, layers=2, heads=4, context_length=16):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length, width))
        self.transformer = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=4 * width, dropout=0.0,
                                       activation=F.gelu, batch_first=True, norm_first=True),
            num_layers=layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Linear(width, embed_dim, bias=False)

    def forward(self, text):
        L = text.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=text.device).triu(1)
        h = self.transformer(self.token_embedding(text) + self.positional_embedding[:L], mask=causal)
        h = self.ln_final(h)
        idx = text.argmax(dim=1)[:, None, None].expand(-1, 1, h.shape[-1])
        return self.text_projection(h.gather(1, idx).squeeze(1))
'''),
    Alternative("encoders_checks", "ImageEncoder", '''
class ImageEncoder(nn.Module):
    """Same layers; the projection applied as a matrix product."""

    def __init__(self, embed_dim=64, c=16):
        super().__init__()
        block = lambda i, o: [nn.Conv2d(i, o, kernel_size=3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
        self.features = nn.Sequential(*block(3, c), nn.MaxPool2d(2), *block(c, 2 * c), nn.MaxPool2d(2),
                                      *block(2 * c, 4 * c), nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten(1))
        self.projection = nn.Linear(64 * c, embed_dim, bias=False)

    def forward(self, x):
        return self.features(x) @ self.projection.weight.T
'''),
    Alternative("zero_shot_checks", "zero_shot_weights", '''
def zero_shot_weights(text_encoder, tokenizer, classnames, templates):
    """All prompts in one batch, reshaped to (C, M, E)."""
    texts = [t.format(name) for name in classnames for t in templates]
    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        emb = text_encoder(tokenizer(texts).to(device))
    emb = emb / emb.norm(dim=-1, keepdim=True)
    w = emb.reshape(len(classnames), len(templates), -1).mean(1)
    return w / w.norm(dim=-1, keepdim=True)
'''),
    Alternative("zero_shot_checks", "zero_shot_predict", '''
def zero_shot_predict(image_features, weights):
    """Dot products: positive image norms do not change the argmax."""
    return (image_features @ weights.T).argmax(-1)
'''),
    Alternative("recall_checks", "recall_at_k", '''
def recall_at_k(image_features, text_features, ks=(1, 5)):
    """Position of the match in a descending sort, per row and per column."""
    sim = F.normalize(image_features, dim=1).double() @ F.normalize(text_features, dim=1).double().T
    n = sim.shape[0]
    truth = torch.arange(n)[:, None]
    pos_i2t = (sim.argsort(dim=1, descending=True) == truth).float().argmax(dim=1)
    pos_t2i = (sim.T.argsort(dim=1, descending=True) == truth).float().argmax(dim=1)
    return {"image_to_text": torch.tensor([(pos_i2t < k).double().mean().item() for k in ks], dtype=torch.float64),
            "text_to_image": torch.tensor([(pos_t2i < k).double().mean().item() for k in ks], dtype=torch.float64)}
'''),
]

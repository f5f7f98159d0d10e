"""Chapter 04: realistic learner mistakes and correct alternatives. Every diagnosis is the
chapter's own text (`workbook.ch04.DIAGNOSES`), shared with the visible and hidden checks."""
from autograder.mutants import Alternative, Mistake
from workbook import ch04

D = ch04.DIAGNOSES
# A mistake that breaks the shapes is reported by the check that meets it first, before any
# value can name it ("calling ... raised RuntimeError: ...", "... has the wrong shape"):
RAISED = r"raised \w+Error"
SHAPE = "has the wrong shape"
# Checks.tensor reports a wrong dtype in its own words ("... has dtype torch.float32, expected ..."):
DTYPE = r"has dtype torch\.\w+, expected"

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
            D["clip_not_normalised"]),
    Mistake("clip_loss_checks", "clip_loss", "T = F.normalize(text_features, dim=-1)", "T = text_features",
            D["clip_text_not_normalised"]),
    Mistake("clip_loss_checks", "clip_loss", _NORMALISE,
            "I = F.normalize(image_features, dim=0)\n    T = F.normalize(text_features, dim=0)",
            D["clip_normalised_batch"]),
    Mistake("clip_loss_checks", "clip_loss", "scale = logit_scale.exp()", "scale = logit_scale",
            D["clip_no_exp"]),
    # CLIP caps the parameter t, clamped in the training loop after each step; a cap inside
    # the loss changes the loss above it and gives t no gradient there
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp()", "logit_scale.exp().clamp(max=100.0)",
            D["clip_cap_in_loss"]),
    Mistake("clip_loss_checks", "clip_loss", "scale = logit_scale.exp()", "scale = min(logit_scale.exp(), 100.0)",
            D["clip_cap_in_loss"]),
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp()", "logit_scale.clamp(0, 4.6052).exp()",
            D["clip_cap_in_loss"]),
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp()", "logit_scale.exp().item()",
            D["clip_item"]),
    Mistake("clip_loss_checks", "clip_loss", "logits = scale * I @ T.T", "logits = I @ T.T / scale",
            D["clip_divided"]),
    Mistake("clip_loss_checks", "clip_loss", "loss_t = F.cross_entropy(logits.T, labels)",
            "loss_t = F.cross_entropy(logits, labels)",
            D["clip_image_only"]),
    Mistake("clip_loss_checks", "clip_loss", "loss_i = F.cross_entropy(logits, labels)",
            "loss_i = F.cross_entropy(logits.T, labels)",
            D["clip_text_only"]),
    Mistake("clip_loss_checks", "clip_loss", "return (loss_i + loss_t) / 2", "return loss_i + loss_t",
            D["clip_twice"]),
    Mistake("clip_loss_checks", "clip_loss", _CE,
            "loss_i = F.cross_entropy(logits, labels, reduction='sum')\n"
            "    loss_t = F.cross_entropy(logits.T, labels, reduction='sum')",
            D["clip_twice"]),
    # encoders
    Mistake("encoders_checks", "ImageEncoder", "nn.Linear(16 * 4 * c, embed_dim, bias=False)",
            "nn.Linear(16 * 4 * c, embed_dim)", D["image_bias"]),
    Mistake("encoders_checks", "ImageEncoder", "nn.BatchNorm2d(c),", "",
            D["image_no_bn"]),
    Mistake("encoders_checks", "ImageEncoder", "nn.ReLU(),  # (B, 4c, S/4, S/4)", "# (B, 4c, S/4, S/4)",
            D["image_no_final_relu"]),
    Mistake("encoders_checks", "ImageEncoder", "nn.MaxPool2d(2),  # (B, c, S/2, S/2)", "# (B, c, S/2, S/2)",
            D["image_no_pool"]),
    Mistake("encoders_checks", "TextEncoder", "x = x[torch.arange(B, device=text.device), eot]  # (B, width)",
            "x = x[:, -1]  # (B, width)", D["text_last"]),
    Mistake("encoders_checks", "TextEncoder", "x = x[torch.arange(B, device=text.device), eot]  # (B, width)",
            "x = x[:, 0]  # (B, width)", D["text_first"]),
    Mistake("encoders_checks", "TextEncoder", "x = self.transformer(x, mask=self.attn_mask[:L, :L], is_causal=True)",
            "x = self.transformer(x)", D["text_no_mask"]),
    Mistake("encoders_checks", "TextEncoder", "x = self.token_embedding(text) + self.positional_embedding[:L]",
            "x = self.token_embedding(text)", D["text_no_position"]),
    Mistake("encoders_checks", "TextEncoder", "x = self.ln_final(x)", "x = x",
            D["text_no_ln"]),
    Mistake("encoders_checks", "TextEncoder", "nn.Linear(width, embed_dim, bias=False)",
            "nn.Linear(width, embed_dim)", D["text_bias"]),
    # zero-shot
    Mistake("zero_shot_checks", "zero_shot_weights", "rows.append(F.normalize(emb.mean(dim=0), dim=-1))",
            "rows.append(emb.mean(dim=0))", D["zs_not_renormalised"]),
    Mistake("zero_shot_checks", "zero_shot_weights", "emb = F.normalize(text_encoder(tokens), dim=-1)",
            "emb = text_encoder(tokens)", D["zs_normalise_after"]),
    Mistake("zero_shot_checks", "zero_shot_weights", "with torch.no_grad():", "if True:",
            D["zs_grad"]),
    Mistake("zero_shot_checks", "zero_shot_predict", "return logits.argmax(dim=1)", "return logits.argmin(dim=1)",
            D["zs_argmin"]),
    Mistake("zero_shot_checks", "zero_shot_predict", "return logits.argmax(dim=1)", "return logits.argmax(dim=0)",
            D["zs_argmax_images"]),
    # recall@k
    Mistake("recall_checks", "recall_at_k", _RANKS,
            _RANKS.replace("(sim > match[None, :]).sum(dim=0)", "(sim > match[:, None]).sum(dim=1)"),
            D["recall_columns"]),
    Mistake("recall_checks", "recall_at_k", _RETURN, _RETURN.replace("< k", "<= k"),
            D["recall_le_k"]),
    Mistake("recall_checks", "recall_at_k", _RANKS, _RANKS.replace("(sim > ", "(sim >= "),
            D["recall_ge"]),
    Mistake("recall_checks", "recall_at_k",
            "I = F.normalize(image_features.double(), dim=-1)  # (N, E)\n"
            "    T = F.normalize(text_features.double(), dim=-1)  # (N, E)",
            "I = image_features.double()\n    T = text_features.double()",
            D["recall_dot"]),
    Mistake("recall_checks", "recall_at_k", _RETURN,
            _RETURN.replace("(rank_i2t[", "(RANK_A[").replace("(rank_t2i[", "(rank_i2t[").replace("RANK_A", "rank_t2i"),
            D["recall_swapped"]),
    # numerically hard inputs, labels, gradients
    Mistake("clip_loss_checks", "clip_loss", _CE,
            "p_i = logits.exp() / logits.exp().sum(dim=1, keepdim=True)\n"
            "    p_t = logits.exp() / logits.exp().sum(dim=0, keepdim=True)\n"
            "    loss_i = -p_i.diag().log().mean()\n    loss_t = -p_t.diag().log().mean()", D["clip_stable"]),
    Mistake("clip_loss_checks", "clip_loss", _CE,
            "loss_i = -logits.softmax(dim=1).diag().log().mean()\n"
            "    loss_t = -logits.softmax(dim=0).diag().log().mean()", D["clip_stable"]),
    Mistake("clip_loss_checks", "clip_loss", "labels = torch.arange(logits.shape[0], device=logits.device)",
            "labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)", D["clip_labels"],
            diagnosed=False),
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp()", "logit_scale.exp().detach()", D["clip_item"]),
    Mistake("encoders_checks", "ImageEncoder", "nn.AdaptiveAvgPool2d(4),  # (B, 4c, 4, 4)",
            "nn.AvgPool2d(2),  # (B, 4c, 4, 4)", D["image_fixed_pool"], expect=RAISED),
    Mistake("encoders_checks", "ImageEncoder", "nn.BatchNorm2d(c),\n            nn.ReLU(),\n            nn.MaxPool2d(2),  # (B, c, S/2, S/2)",
            "nn.ReLU(),\n            nn.BatchNorm2d(c),\n            nn.MaxPool2d(2),  # (B, c, S/2, S/2)",
            D["encoder_names"]),
    Mistake("encoders_checks", "TextEncoder", "x = self.token_embedding(text) + self.positional_embedding[:L]",
            "x = self.token_embedding(text) + self.positional_embedding", D["text_unsliced"], expect=RAISED),
    Mistake("encoders_checks", "TextEncoder", "eot = text.argmax(dim=-1)  # (B,)", "eot = text.argmax()  # (B,)",
            D["text_flat_argmax"]),
    Mistake("zero_shot_checks", "zero_shot_predict", "return logits.argmax(dim=1)",
            "return logits.squeeze().argmax(dim=-1)", D["zs_squeeze"], expect=SHAPE),
    Mistake("zero_shot_checks", "zero_shot_weights", "emb = F.normalize(text_encoder(tokens), dim=-1)",
            "emb = F.normalize(text_encoder(tokens), dim=0)", D["zs_normalise_dim0"]),
    Mistake("recall_checks", "recall_at_k", _RANKS,
            "order = torch.arange(len(sim))[:, None]\n"
            "    rank_i2t = (sim.argsort(dim=1, descending=True) == order).int().argmax(dim=1)\n"
            "    rank_t2i = (sim.T.argsort(dim=1, descending=True) == order).int().argmax(dim=1)",
            D["recall_sort_ties"]),
    Mistake("recall_checks", "recall_at_k", _RETURN, _RETURN.replace(".double()", ".float()"), D["recall_dtype"],
            expect=DTYPE),
    # quiz
    Mistake("quiz_encoders", "answer_causal_mask", '"B"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_encoders", "answer_causal_mask", '"B"', '"C"', "wrong answer", diagnosed=False),
    Mistake("quiz_encoders", "answer_normalise", '"B"', '"A"', "wrong answer", diagnosed=False),
    Mistake("quiz_clip_facts", "answer_clip_facts", '{"A", "B", "D", "F"}', '{"A", "B", "C", "D", "F"}',
            "not every statement is true", diagnosed=False),
]

MISTAKES += [
    # reviewers' escapes
    # at t < 0 this matches open_clip's clamp(0, log 100) moved into the loss, named first: both
    # diagnoses say to use exp(logit_scale) as given
    Mistake("clip_loss_checks", "clip_loss", "logit_scale.exp()", "logit_scale.exp().clamp(min=1.0)",
            D["clip_cap_below"], expect=r"exp\(logit_scale\) as given"),
    Mistake("encoders_checks", "TextEncoder", ".triu(1)", ".tril(-1)", D["text_no_mask"]),
    Mistake("encoders_checks", "TextEncoder", ".triu(1)", ".triu(2)", D["text_no_mask"]),
    Mistake("encoders_checks", "TextEncoder",
            "x = self.ln_final(x)\n        # T_f = h[eot]: the end-of-text token has the largest id\n"
            "        eot = text.argmax(dim=-1)  # (B,)\n        x = x[torch.arange(B, device=text.device), eot]  # (B, width)\n"
            "        return self.text_projection(x)",
            "eot = text.argmax(dim=-1)  # (B,)\n        x = x[torch.arange(B, device=text.device), eot]  # (B, width)\n"
            "        return self.text_projection(self.ln_final(x))", D["text_no_ln"]),
]

ALTERNATIVES = [
    Alternative("clip_loss_checks", "clip_loss", '''
def clip_loss(image_features, text_features, logit_scale):
    """Manual log-softmax over rows and columns, norms by hand, torch.exp of t."""
    I = image_features / image_features.norm(dim=1, keepdim=True)
    T = text_features / text_features.norm(dim=1, keepdim=True)
    logits = torch.exp(logit_scale) * (I @ T.t())
    idx = torch.arange(logits.shape[0])
    rows = -logits.log_softmax(dim=1)[idx, idx].mean()
    cols = -logits.log_softmax(dim=0)[idx, idx].mean()
    return 0.5 * (rows + cols)
''', "log_softmax by hand"),
    Alternative("clip_loss_checks", "clip_loss", '''
def clip_loss(image_features, text_features, logit_scale):
    """open_clip's ClipLoss on unit features and the scale exp(t)."""
    from open_clip.loss import ClipLoss
    return ClipLoss()(F.normalize(image_features, dim=1), F.normalize(text_features, dim=1), logit_scale.exp())
''', "open_clip.loss.ClipLoss"),
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
    """A loop over queries; einsum for the cosines."""
    I = image_features.double() / image_features.double().norm(dim=1, keepdim=True)
    T = text_features.double() / text_features.double().norm(dim=1, keepdim=True)
    sim = torch.einsum("ie,je->ij", I, T)
    n = len(sim)
    r_i2t = torch.tensor([int(torch.gt(sim[i], sim[i, i]).sum()) for i in range(n)])
    r_t2i = torch.tensor([int(torch.gt(sim[:, j], sim[j, j]).sum()) for j in range(n)])
    return {"image_to_text": torch.tensor([float((r_i2t < k).sum()) / n for k in ks], dtype=torch.float64),
            "text_to_image": torch.tensor([float((r_t2i < k).sum()) / n for k in ks], dtype=torch.float64)}
''', "a loop over queries, einsum"),
    Alternative("clip_loss_checks", "clip_loss", '''
def clip_loss(image_features, text_features, logit_scale):
    """One-hot targets (class probabilities), einsum, the second direction as T I^T."""
    I = F.normalize(image_features, dim=1)
    T = F.normalize(text_features, dim=1)
    scale = torch.exp(logit_scale)
    targets = torch.eye(len(I), dtype=I.dtype, device=I.device)
    return 0.5 * (F.cross_entropy(scale * torch.einsum("ie,je->ij", I, T), targets)
                  + F.cross_entropy(scale * torch.einsum("ie,je->ij", T, I), targets))
''', "one-hot probability targets, einsum"),
    Alternative("encoders_checks", "ImageEncoder", '''
class ImageEncoder(nn.Module):
    """Blocks listed in a loop; flatten with torch.flatten in forward (features then end with nn.Flatten(1))."""

    def __init__(self, embed_dim=64, c=16):
        super().__init__()
        layers, prev = [], 3
        for i, ch in enumerate((c, 2 * c, 4 * c)):
            layers += [nn.Conv2d(prev, ch, 3, 1, 1), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            if i < 2:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            prev = ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(output_size=(4, 4)), nn.Flatten(start_dim=1))
        self.projection = nn.Linear(16 * prev, embed_dim, bias=False)

    def forward(self, x):
        return self.projection(self.features(x))
''', "blocks built in a loop, ReLU(inplace=True)"),
    Alternative("zero_shot_checks", "zero_shot_predict", '''
def zero_shot_predict(image_features, weights):
    """cosine_similarity by broadcasting."""
    return F.cosine_similarity(image_features[:, None, :], weights[None, :, :], dim=-1).argmax(dim=1)
''', "F.cosine_similarity by broadcasting"),
    Alternative("quiz_encoders", "answer_causal_mask", 'answer_causal_mask = "b"', "lower case"),
    Alternative("quiz_clip_facts", "answer_clip_facts", 'answer_clip_facts = ["a", "b", "d", "f"]',
                "a list of lower-case letters"),
]

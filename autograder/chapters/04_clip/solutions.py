"""Chapter 04 reference solutions: CLIP, contrastive language-image pre-training."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def clip_loss(image_features, text_features, logit_scale):
    """CLIP's symmetric contrastive loss for a batch of B matching (image, text) pairs.

    Args:
        image_features: (B, E) image embeddings, not normalised; row b goes with text b.
        text_features: (B, E) text embeddings, not normalised.
        logit_scale: scalar tensor t, the learned log inverse temperature
            (CLIP starts at t = log(1 / 0.07)). The scale is exp(t), used as given for
            every t: CLIP caps the parameter itself, clamping t to at most log(100) after
            each optimizer step in the training loop, never inside the loss (a cap here
            would give t a zero gradient above it).

    Returns:
        loss: scalar tensor, differentiable in all three inputs:
            I = I_f / ||I_f||, T = T_f / ||T_f||  (each row, L2)
            logits = exp(t) * I T^T               (B, B)
            loss = (CE(logits, arange(B)) + CE(logits^T, arange(B))) / 2
        where CE is the mean cross-entropy over rows: images -> texts, then texts -> images.
        The dtype of the features is kept, and the loss must stay accurate in float32
        at the largest scale training allows, 100 (logits up to +-100): use
        F.cross_entropy (or log_softmax), never a softmax written with exp.
    """
    # I_e = normalize(I_f), T_e = normalize(T_f)
    I = F.normalize(image_features, dim=-1)  # (B, E)
    T = F.normalize(text_features, dim=-1)  # (B, E)
    # logits = exp(t) * I_e T_e^T; no cap here: the training loop clamps t itself
    scale = logit_scale.exp()
    logits = scale * I @ T.T  # (B, B); row b: image b against every text
    labels = torch.arange(logits.shape[0], device=logits.device)  # (B,): the diagonal
    # loss = (CE over rows + CE over columns) / 2
    loss_i = F.cross_entropy(logits, labels)
    loss_t = F.cross_entropy(logits.T, labels)
    return (loss_i + loss_t) / 2


class ImageEncoder(nn.Module):
    """A small CNN image encoder f with a linear projection W_i to the joint space.

    x (B, 3, S, S) -> features(x) (B, 16 * 4c) -> projection (B, embed_dim), not normalised.
    """

    def __init__(self, embed_dim=64, c=16):
        """Build the layers.

        Args:
            embed_dim: int E, size of the joint embedding space.
            c: int, channels of the first conv layer (then 2c, 4c).
        """
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c, S/2, S/2)
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 2c, S/4, S/4)
            nn.Conv2d(2 * c, 4 * c, 3, padding=1),
            nn.BatchNorm2d(4 * c),
            nn.ReLU(),  # (B, 4c, S/4, S/4)
            nn.AdaptiveAvgPool2d(4),  # (B, 4c, 4, 4)
            nn.Flatten(),  # (B, 16 * 4c)
        )
        # W_i: no bias
        self.projection = nn.Linear(16 * 4 * c, embed_dim, bias=False)

    def forward(self, x):
        """Embed images.

        Args:
            x: (B, 3, S, S) images, S >= 16 and divisible by 4 (here S = 32).

        Returns:
            (B, embed_dim) image embeddings I_f W_i (not normalised).
        """
        # I_f = f(x), I_e = I_f W_i
        return self.projection(self.features(x))


class TextEncoder(nn.Module):
    """A small causal Transformer text encoder with a linear projection W_t, as in CLIP.

    tokens (B, L) -> token + position embeddings (B, L, width) -> pre-norm Transformer
    with a causal mask -> final LayerNorm -> the feature at the end-of-text token (the
    largest id in each row) (B, width) -> projection (B, embed_dim), not normalised.
    """

    def __init__(self, vocab_size, embed_dim=64, width=64, layers=2, heads=4, context_length=16):
        """Build the layers.

        Args:
            vocab_size: int, number of token ids (the end-of-text token is the largest).
            embed_dim: int E, size of the joint embedding space.
            width: int, the Transformer's model dimension.
            layers: int, number of Transformer layers.
            heads: int, attention heads per layer (width divisible by heads).
            context_length: int, maximum number of tokens L.
        """
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        # W_t: no bias
        self.text_projection = nn.Linear(width, embed_dim, bias=False)
        # mask[i, j] = -inf for j > i: position i attends only to positions <= i
        mask = torch.full((context_length, context_length), float("-inf")).triu(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, text):
        """Embed tokenised texts.

        Args:
            text: (B, L) int64 token ids, L <= context_length; each row holds one
                end-of-text token, the row's largest id (padding after it).

        Returns:
            (B, embed_dim) text embeddings T_f W_t (not normalised).
        """
        B, L = text.shape
        # h_0 = token embedding + position embedding
        x = self.token_embedding(text) + self.positional_embedding[:L]  # (B, L, width)
        x = self.transformer(x, mask=self.attn_mask[:L, :L], is_causal=True)  # (B, L, width)
        x = self.ln_final(x)
        # T_f = h[eot]: the end-of-text token has the largest id
        eot = text.argmax(dim=-1)  # (B,)
        x = x[torch.arange(B, device=text.device), eot]  # (B, width)
        return self.text_projection(x)


def zero_shot_weights(text_encoder, tokenizer, classnames, templates):
    """Zero-shot classifier weights from class names, by prompt ensembling.

    Args:
        text_encoder: nn.Module mapping tokens (B, L) int64 to features (B, E).
        tokenizer: callable mapping a list of B str to tokens (B, L) int64 (on the CPU).
        classnames: list of C str, e.g. ["zero", "one", ...].
        templates: list of M format strings with one "{}", e.g. ["a photo of a {}"].

    Returns:
        weights: (C, E) tensor on the encoder's device, no gradient. Row c is
            normalize(mean over m of normalize(text_encoder(templates[m].format(classnames[c])))),
            i.e. the renormalised mean of the unit text embeddings of the class's M prompts.
    """
    device = next(text_encoder.parameters()).device
    rows = []
    with torch.no_grad():
        for name in classnames:
            tokens = tokenizer([t.format(name) for t in templates]).to(device)  # (M, L)
            # unit embedding of every prompt
            emb = F.normalize(text_encoder(tokens), dim=-1)  # (M, E)
            # w_c = normalize(mean_m emb_m)
            rows.append(F.normalize(emb.mean(dim=0), dim=-1))  # (E,)
    return torch.stack(rows)  # (C, E)


def zero_shot_predict(image_features, weights):
    """Zero-shot class prediction: the class whose text embedding is most similar.

    Args:
        image_features: (N, E) image embeddings, not normalised.
        weights: (C, E) unit class embeddings from zero_shot_weights.

    Returns:
        (N,) int64 class indices, argmax over c of cos(image_features[n], weights[c]);
            shape (1,) for a single image.
    """
    # logits_nc = normalize(I_n) . w_c
    logits = F.normalize(image_features, dim=-1) @ weights.T  # (N, C)
    return logits.argmax(dim=1)


def recall_at_k(image_features, text_features, ks=(1, 5)):
    """Retrieval recall@k in both directions for N paired embeddings.

    Image n and text n form the only matching pair. Candidates are ranked by cosine
    similarity; the rank of the match is the number of candidates with a strictly higher
    similarity (so 0 is the best), and the match is found at k when its rank is < k.
    Candidates that tie with the match (equal similarity) do not count against it.

    Args:
        image_features: (N, E) image embeddings, not normalised.
        text_features: (N, E) text embeddings, not normalised; row n describes image n.
        ks: sequence of ints, each >= 1.

    Returns:
        dict with two float64 tensors of shape (len(ks),), in the order of ks:
            "image_to_text": fraction of images whose text is found at k among all N texts;
            "text_to_image": fraction of texts whose image is found at k among all N images.
    """
    # sim_ij = cos(image i, text j)
    I = F.normalize(image_features.double(), dim=-1)  # (N, E)
    T = F.normalize(text_features.double(), dim=-1)  # (N, E)
    sim = I @ T.T  # (N, N)
    match = sim.diag()  # (N,)
    # rank = #candidates scoring strictly higher than the match
    rank_i2t = (sim > match[:, None]).sum(dim=1)  # image i against all texts (row i)
    rank_t2i = (sim > match[None, :]).sum(dim=0)  # text j against all images (column j)
    k = torch.tensor(list(ks), device=sim.device)  # (K,)
    return {"image_to_text": (rank_i2t[:, None] < k).double().mean(dim=0).cpu(),
            "text_to_image": (rank_t2i[:, None] < k).double().mean(dim=0).cpu()}


# Quiz: Our text encoder reads its feature at the end-of-text token, with a causal mask.
#   What does the mask buy there?
#   A: Nothing for the outputs: it only makes training faster.
#   B: The end-of-text feature depends on the caption and on nothing after it, so the
#      same caption followed by other padding or junk tokens gets the same embedding.
#   C: The end-of-text token then sees only the first word of the caption.
#   D: Without it the positional embedding would have no effect.
answer_causal_mask = "B"

# Quiz: clip_loss normalises both feature matrices before their product. Without the
#   normalisation, what would change?
#   A: Nothing: a softmax does not depend on the size of its inputs.
#   B: The logits would grow with the norms of the features, so the encoders could
#      sharpen (or flatten) the softmax by changing norms, and exp(t) would no longer be
#      what sets the temperature.
#   C: The loss could not be computed for batches larger than the embedding size E.
#   D: The two directions of the loss would become equal.
answer_normalise = "B"

# Quiz: Which statements about CLIP are true? (choose all that apply)
#   A: It learns to predict which caption in a batch goes with which image, not to
#      generate captions word by word.
#   B: Its loss is a cross-entropy over the rows of the image-text similarity matrix
#      plus one over its columns.
#   C: Its temperature is a fixed hyperparameter, tuned by hand.
#   D: For zero-shot classification, the text embeddings of prompts such as
#      "a photo of a {label}" serve as the weights of a linear classifier.
#   E: Zero-shot classification needs a few labelled images of every class.
#   F: In a larger batch, every image is contrasted with more negative texts.
answer_clip_facts = {"A", "B", "D", "F"}

"""Offline tests for workbook.captions (coloured, captioned MNIST and its tokenizer)."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "course"))

from workbook import captions  # noqa: E402
from workbook.captions import (  # noqa: E402
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOURS,
    DIGIT_WORDS,
    HELD_OUT,
    TEMPLATES,
    CaptionTokenizer,
    caption,
    load_captioned,
    load_clip_encoders,
    make_captioned,
    save_clip_encoders,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    monkeypatch.setenv("WORKBOOK_ARTIFACTS", str(tmp_path / "artifacts"))


def fake_digits(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a bar of full ink in every image
    x[:, :, 4:6, 4:6] = torch.rand(n, 1, 2, 2, generator=g)
    return x, torch.arange(n) % 10


def test_held_out_design():
    assert len(HELD_OUT) == 10
    assert sorted(d for d, _ in HELD_OUT) == list(range(10))         # one per digit
    assert {c for _, c in HELD_OUT} == set(range(len(COLOURS)))       # every colour held out once or more


def test_caption_templates():
    assert caption(7, 0, 0, 0) == "a photo of a red seven"
    assert caption(7, 0, 1, 2) == "the digit 7 in red"
    for t in range(len(TEMPLATES)):
        for d, c, b in [(0, 5, 0), (9, 2, 1)]:
            text = caption(d, c, b, t)
            assert COLOUR_NAMES[c] in text.split()
            assert DIGIT_WORDS[d] in text.split() or str(d) in text.split()
            if "{b}" in TEMPLATES[t]:
                assert BACKGROUNDS[b] in text.split()


def test_make_captioned_shapes_colours_and_determinism():
    x, y = fake_digits(200)
    data = make_captioned(x, y, torch.Generator().manual_seed(3))
    assert data.x.shape == (200, 3, 32, 32) and data.x.dtype == torch.float32
    assert 0 <= data.x.min() and data.x.max() <= 1
    assert len(data) == len(data.captions) == 200 and torch.equal(data.digit, y)
    for f in ("colour", "background", "template"):
        assert getattr(data, f).dtype == torch.int64 and getattr(data, f).shape == (200,)
    assert data.held_out().any()  # without exclusion, held-out combinations occur
    # full ink shows the (jittered) colour, the corner shows the background grey
    rgb = torch.tensor(list(COLOURS.values()))[data.colour]
    ink = data.x[:, :, 2 + 10, 2 + 13]  # inside the bar (2 pixels of padding)
    assert (ink - rgb).abs().max() <= 0.05 + 1e-6
    corner = data.x[:, :, 0, 0]
    assert torch.allclose(corner, corner[:, :1].expand(-1, 3))
    for b, name in enumerate(BACKGROUNDS):
        lo, hi = captions.BACKGROUND_LEVELS[name]
        grey = corner[data.background == b, 0]
        assert (grey >= lo - 1e-6).all() and (grey <= hi + 1e-6).all()
    # captions describe the attributes
    for i in range(20):
        assert data.captions[i] == caption(int(y[i]), int(data.colour[i]), int(data.background[i]),
                                           int(data.template[i]))
    again = make_captioned(x, y, torch.Generator().manual_seed(3))
    other = make_captioned(x, y, torch.Generator().manual_seed(4))
    assert torch.equal(again.x, data.x) and again.captions == data.captions
    assert not torch.equal(other.colour, data.colour)
    small = make_captioned(x, y, torch.Generator().manual_seed(3), size=28)
    assert small.x.shape == (200, 3, 28, 28)
    with pytest.raises(ValueError):
        make_captioned(x, y, torch.Generator(), size=30)


def test_exclude_held_out_and_subset():
    x, y = fake_digits(600)
    data = make_captioned(x, y, torch.Generator().manual_seed(0), exclude_held_out=True)
    assert not data.held_out().any()
    seen = {(int(d), int(c)) for d, c in zip(data.digit, data.colour)}
    assert seen == {(d, c) for d in range(10) for c in range(6)} - HELD_OUT
    sub = data.subset(data.colour == 0)
    assert len(sub) == int((data.colour == 0).sum()) and (sub.colour == 0).all()
    assert sub.captions == [c for c, k in zip(data.captions, data.colour) if k == 0]
    assert torch.equal(data.combo, data.digit * 6 + data.colour)


def test_load_captioned_splits():
    train = load_captioned("train", limit=300, copies=2)
    test = load_captioned("test", limit=600)
    assert len(train) == 600 and train.x.shape == (600, 3, 32, 32)
    assert torch.equal(train.digit[:300], train.digit[300:])      # two paintings of the same digits
    assert not torch.equal(train.colour[:300], train.colour[300:])
    assert not train.held_out().any() and test.held_out().any()
    again = load_captioned("train", limit=300, copies=2)
    assert torch.equal(again.x, train.x) and again.captions == train.captions
    assert not torch.equal(load_captioned("train", limit=300, seed=1).colour, train.colour[:300])


def test_tokenizer_against_open_clip():
    from open_clip.tokenizer import SimpleTokenizer

    tok = CaptionTokenizer()
    bpe = SimpleTokenizer()
    texts = ["a photo of a red seven", "the digit 7 in pink", "A Dark image of the number NINE in Blue."]
    out = tok(texts)
    assert out.shape == (3, 16) and out.dtype == torch.int64
    assert (out.argmax(1) == torch.tensor([len(bpe.encode(t)) + 1 for t in texts])).all()
    assert (out.max(1).values == tok.eot_id).all() and tok.eot_id == tok.vocab_size - 1
    assert (out[:, 0] == tok.sot_id).all()
    for row, t in zip(out, texts):
        n = len(bpe.encode(t))
        assert (row[n + 2:] == 0).all()
        assert [tok.bpe_ids[i - 3] for i in row[1:n + 1].tolist()] == bpe.encode(t)  # same BPE tokens
        assert tok.decode(row).replace(" ", "") == t.lower().replace(" ", "")
    assert tok.decode(out[0]) == "a photo of a red seven"
    # every word of every caption and class name is known; other words are not
    for t in [*TEMPLATES, *DIGIT_WORDS, *COLOUR_NAMES, *BACKGROUNDS, "0 1 2 3 4 5 6 7 8 9"]:
        assert tok.unk_id not in tok(t.format(c="red", w="one", d=1, b="dark"))[0].tolist(), t
    assert tok("a photo of a cat")[0, 5].item() == tok.unk_id
    # too long: cut, end-of-text kept last
    long = tok(" ".join(["red"] * 40))
    assert long[0, -1].item() == tok.eot_id and (long[0, 1:-1] == tok.encode("red")[0]).all()
    assert tok("red").shape == (1, 16)
    assert CaptionTokenizer(**tok.config()).bpe_ids == tok.bpe_ids


class _Img(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))

    def forward(self, x):
        return self.net(x)


class _Txt(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.emb = nn.Embedding(vocab, 5)

    def forward(self, text):
        return self.emb(text)[torch.arange(text.shape[0]), text.argmax(-1)]


def test_save_and_load_clip_encoders(tmp_path):
    with pytest.raises(FileNotFoundError, match="run chapter 04"):
        load_clip_encoders("smoke")
    tok = CaptionTokenizer()
    img, txt = _Img(), _Txt(tok.vocab_size)
    img(torch.rand(8, 3, 32, 32))  # move the BatchNorm statistics away from their start
    files = save_clip_encoders(captions.artifacts_dir("smoke"), img, txt, tok, {"embed_dim": 5})
    assert len(files) == 3 and img.training  # the module's mode is restored
    image_encoder, text_encoder, tok2, cfg = load_clip_encoders("smoke")
    assert cfg == {"embed_dim": 5} and tok2.bpe_ids == tok.bpe_ids
    img.eval()
    x = torch.rand(3, 3, 32, 32)
    tokens = tok(["a red seven", "blue 4", "a photo of a green two"])
    with torch.no_grad():
        torch.testing.assert_close(image_encoder(x), img(x))
        torch.testing.assert_close(image_encoder(x[:1]), img(x[:1]))
        torch.testing.assert_close(text_encoder(tokens), txt(tokens))
    saved = torch.load(files[0], weights_only=False)
    assert set(saved) == {"config", "tokenizer", "image_encoder", "text_encoder"}
    fresh = _Txt(tok.vocab_size)
    fresh.load_state_dict(saved["text_encoder"])
    assert torch.equal(fresh.emb.weight, txt.emb.weight)
    assert load_clip_encoders(tmp_path / "artifacts" / "smoke")[3] == cfg

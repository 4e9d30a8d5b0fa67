"""The VLM interface: open_clip (tiny random CLIP) and the offline model pass the same tests, offline."""
import pytest
import torch

from vpkit import vlm as V


@pytest.fixture(scope="module")
def test_clip():
    return V.build_vlm("test_clip")


@pytest.fixture(scope="module")
def offline_small():
    """The offline VLM with the committed artifact at a small image size (real Lite0 + MiniLM)."""
    return V.build_offline_vlm(img_size=64)


@pytest.fixture(params=["test_clip", "offline"])
def vlm(request, test_clip, offline_small):
    return test_clip if request.param == "test_clip" else offline_small


def _images(vlm, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = vlm.preprocess.img_size
    return torch.randn(n, 3, s, s, generator=g)


def _frozen_state(vlm):
    return {k: v.clone() for k, v in vlm.state_dict().items()}


def test_shapes_and_normalisation(vlm):
    img = vlm.encode_image(_images(vlm, 3))
    txt = vlm.encode_text(["a photo of a cat.", "a drawing of a dog.", "a tree"])
    assert img.shape == (3, vlm.embed_dim) and txt.shape == (3, vlm.embed_dim)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(3), atol=1e-4)
    raw = vlm.encode_image(_images(vlm, 3), normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3), atol=1e-3)
    logits = vlm(_images(vlm, 2), txt)
    assert logits.shape == (2, 3)
    assert vlm.logit_scale.ndim == 0 and 1.0 < float(vlm.logit_scale) <= 100.0
    pp = vlm.preprocess
    assert len(pp.mean) == 3 and len(pp.std) == 3 and pp.img_size > 0


def test_tokens_and_embedding_path_agree(vlm):
    tok = vlm.tokenize(["a photo of a cat.", "X X X X dog."])
    assert tok.ids.shape == tok.attention_mask.shape == (2, vlm.context_length)
    assert tok.eot.shape == (2,) and int(tok.attention_mask[0].sum()) == int(tok.eot[0]) + 1
    emb = vlm.token_embedding(tok.ids)
    assert emb.shape == (2, vlm.context_length, vlm.width)
    with torch.no_grad():
        a = vlm.encode_text(tok)
        b = vlm.encode_text_embeddings(emb, tok)
        c = vlm.encode_text_embeddings(emb, attention_mask=tok.attention_mask, eot=tok.eot)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)
    # the context placeholders matter: changing them changes the text feature
    emb2 = emb.clone()
    emb2[1, vlm.ctx_start:vlm.ctx_start + 4] = torch.randn(4, vlm.width, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert not torch.allclose(vlm.encode_text_embeddings(emb2, tok)[1], b[1], atol=1e-4)


def test_gradients_reach_context_and_towers_stay_frozen(vlm):
    """CoOp's path: learned context vectors replace placeholder embeddings; only they receive gradients."""
    assert all(not p.requires_grad for p in vlm.parameters())
    before = _frozen_state(vlm)
    n_ctx = 4
    classes = ["cat", "dog", "car"]
    tok = vlm.tokenize([" ".join(["X"] * n_ctx) + f" {c}." for c in classes])
    ctx = torch.nn.Parameter(0.02 * torch.randn(n_ctx, vlm.width, generator=torch.Generator().manual_seed(1)))
    opt = torch.optim.SGD([ctx], lr=0.5)
    x = _images(vlm, 2)
    y = torch.tensor([0, 2])
    vlm.train()  # must not unfreeze or switch the towers to training mode
    assert not vlm.training
    with torch.no_grad():
        base = vlm.token_embedding(tok.ids)
    emb = torch.cat([base[:, :vlm.ctx_start], ctx.unsqueeze(0).expand(len(classes), -1, -1),
                     base[:, vlm.ctx_start + n_ctx:]], 1)
    logits = vlm(x, vlm.encode_text_embeddings(emb, tok))
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    opt.step()
    assert all(p.grad is None for p in vlm.parameters())
    after = vlm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gradients_reach_input_pixels(vlm):
    """Visual prompting's path: pixel prompts are learned through the frozen image encoder."""
    x = _images(vlm, 2).requires_grad_(True)
    txt = vlm.encode_text(["a cat", "a dog"]).detach()
    vlm(x, txt)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_name_and_paper_fails_in_one_line(monkeypatch):
    with pytest.raises(ValueError, match="known"):
        V.build_vlm("clip_vit_l14")

    import open_clip

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip, "create_model", no_network)
    with pytest.raises(V.assets.AssetError) as e:
        V.build_vlm("clip_vit_b16")
    assert "\n" not in str(e.value) and "offline" in str(e.value)


def test_artifact_checksum(tmp_path):
    path = V.ARTIFACT_DIR / V.ALIGNMENT_FILE
    assert V.ALIGNMENT_SHA256 is not None, "the committed artifact must have a recorded SHA-256"
    assert V.assets.sha256_file(path) == V.ALIGNMENT_SHA256
    assert path.stat().st_size < 5_000_000
    al, meta = V.load_alignment()
    assert meta["regenerate"].startswith("python -m vpkit.alignment")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(V.assets.AssetError, match="SHA-256"):
        V.load_alignment(corrupt, sha256=V.ALIGNMENT_SHA256)


def test_save_load_roundtrip(tmp_path):
    al, _ = V.load_alignment()
    sha = V.save_alignment(al, tmp_path / "a.pt", {"x": 1})
    al2, meta = V.load_alignment(tmp_path / "a.pt", sha256=sha)
    assert meta == {"x": 1}
    for k, v in al.state_dict().items():
        assert torch.allclose(v.float(), al2.state_dict()[k].float(), atol=1e-3), k


def test_held_out_concepts_are_excluded():
    from vpkit import alignment as A

    assert 774 in A.HELD_OUT_IMAGENET and 610 in A.HELD_OUT_IMAGENET  # sandal, jersey/T-shirt
    al, _ = V.load_alignment()
    assert not set(al.keep.tolist()) & set(A.HELD_OUT_IMAGENET)
    for name in ("T-SHIRT", "JEANS", "DRESS", "ATHLETIC SHOE", "HANDBAG", "KEYCAP DIGIT THREE",
                 "CLOCK FACE ONE OCLOCK", "COAT", "WOMANS SANDAL"):
        assert A.HELD_OUT_EMOJI_PATTERN.search(name), name
    assert not A.HELD_OUT_EMOJI_PATTERN.search("CAT FACE")


def test_polarity_rule():
    dark = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    dark[:, :, 3:5, 3:5] = 255
    assert V.dark_background(dark) and not V.dark_background(255 - dark)


def test_openai_clip_is_built_with_quick_gelu():
    """OpenAI's CLIP weights need QuickGELU; open_clip's plain ViT-B-32 config uses nn.GELU (and only warns)."""
    import open_clip
    from open_clip.transformer import QuickGELU

    m = V.create_openai_clip("ViT-B-32", pretrained=None)  # the paper architecture, random weights, no download
    acts = [type(x) for x in m.modules() if isinstance(x, (QuickGELU, torch.nn.GELU))]
    assert acts and all(a is QuickGELU for a in acts)
    plain = open_clip.create_model("ViT-B-32", pretrained=None)
    assert not any(isinstance(x, QuickGELU) for x in plain.modules()), "the default really differs"


def test_minilm_drops_unused_padding_without_changing_features(offline_small):
    """MiniLMText runs only up to the batch's longest text (sentence-transformers' dynamic padding): the same
    features as the full context-length pass, and each text's feature independent of how far the batch is padded."""
    tt = offline_small.text_tower
    texts = ["a photo of a cat.", "a rather longer description of a small brown dog on a lawn."]
    tok = offline_small.tokenize(texts)
    emb = offline_small.token_embedding(tok.ids)
    assert tok.attention_mask.shape[1] == tt.context_length and not bool(tok.attention_mask[:, -1].any())
    with torch.no_grad():
        got = tt(emb, tok.attention_mask)
        # the reference: the frozen BERT over every position, padding masked, mean over the mask (no trimming)
        out = tt.bert(inputs_embeds=emb, attention_mask=tok.attention_mask).last_hidden_state
        m = tok.attention_mask.float().unsqueeze(-1)
        ref = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1)
        alone = tt(emb[:1], tok.attention_mask[:1])  # padded only to its own length
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(alone, got[:1], atol=1e-5)

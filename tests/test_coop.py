"""CoOp / CoCoOp on the tiny random open_clip model (test_clip)."""
import pytest
import torch

from vpkit.prompts import coop
from vpkit.studies import cocoop
from vpkit.vlm import build_vlm

NAMES = ["cat", "dog", "red car"]


@pytest.fixture(scope="module")
def vlm():
    return build_vlm("test_clip")


def feats(vlm, n=4, seed=0):
    return torch.randn(n, vlm.embed_dim, generator=torch.Generator().manual_seed(seed))


def test_meta_net_shape_has_d_over_16_bottleneck(vlm):
    m = coop.CoCoOp(vlm, NAMES)
    first, _, last = m.meta_net
    assert first.in_features == vlm.embed_dim and first.out_features == vlm.embed_dim // 16
    assert last.in_features == vlm.embed_dim // 16 and last.out_features == vlm.width
    big = coop.MetaNet(512, 512)
    assert big[0].out_features == 32 and big[2].out_features == 512


def test_pi_shifts_every_context_vector(vlm):
    m = coop.CoCoOp(vlm, NAMES)
    x = torch.nn.functional.normalize(feats(vlm), dim=-1)
    ctx = m.conditional_context(x)
    pi = m.meta_net(x)
    assert ctx.shape == (4, m.prompt.n_ctx, vlm.width)
    for b in range(4):
        for j in range(m.prompt.n_ctx):
            torch.testing.assert_close(ctx[b, j] - m.prompt.ctx[j], pi[b])
    assert not torch.allclose(pi[0], pi[1])  # conditional: different images, different shift
    emb = m.prompt.embeddings(ctx)  # the shifted context sits at the context positions of every class prompt
    s = m.prompt.ctx_start
    torch.testing.assert_close(emb[:, :, s:s + m.prompt.n_ctx], ctx.unsqueeze(1).expand(-1, len(NAMES), -1, -1))


def test_phrase_init_equals_word_embeddings(vlm):
    m = coop.CoOp(vlm, NAMES, n_ctx=4, ctx_init="a photo of a")
    ids = vlm.tokenize("a photo of a").ids[0, 1:5]
    torch.testing.assert_close(m.prompt.ctx, vlm.token_embedding(ids).detach())
    # with the initial context, CoOp's text features are the hand-written prompt's
    torch.testing.assert_close(m.text_features(), vlm.encode_text([f"a photo of a {n}." for n in NAMES]),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="n_ctx"):
        coop.CoOp(vlm, NAMES, n_ctx=8, ctx_init="a photo of a")


@pytest.mark.parametrize("method", ["coop", "cocoop"])
def test_gradients_reach_only_context_and_meta_net(vlm, method):
    m = coop.build_prompt_model(method, vlm, NAMES, n_ctx=2, ctx_init=None)
    before = {k: v.clone() for k, v in vlm.state_dict().items()}
    y = torch.tensor([0, 1, 2, 0])
    torch.nn.functional.cross_entropy(m(feats(vlm)), y).backward()
    with_grad = {n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    allowed = {"prompt.ctx"} | ({n for n, _ in m.meta_net.named_parameters(prefix="meta_net")}
                                if method == "cocoop" else set())
    assert with_grad == allowed
    assert set(m.trainable_parameters()) == allowed
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    opt.step()
    for k, v in vlm.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_batched_cocoop_equals_per_image_loop(vlm):
    m = coop.CoCoOp(vlm, NAMES)
    with torch.no_grad():  # make pi(x) non-trivial
        for p in m.meta_net.parameters():
            p.normal_(0, 0.5)
    x = feats(vlm, n=5)
    a, b = m(x), m.forward_loop(x)
    assert a.shape == (5, len(NAMES))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    y = torch.tensor([0, 1, 2, 0, 1])
    ga = torch.autograd.grad(torch.nn.functional.cross_entropy(m(x), y), m.prompt.ctx)[0]
    gb = torch.autograd.grad(torch.nn.functional.cross_entropy(m.forward_loop(x), y), m.prompt.ctx)[0]
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)


def test_class_specific_context_and_new_classes(vlm):
    m = coop.CoOp(vlm, NAMES, n_ctx=3, ctx_init=None, class_specific=True)
    assert m.prompt.ctx.shape == (3, 3, vlm.width)
    assert m(feats(vlm)).shape == (4, 3)
    with pytest.raises(ValueError, match="class_specific"):
        m.set_classnames(["a", "b"])
    u = coop.CoOp(vlm, NAMES, n_ctx=3, ctx_init=None)
    acc = cocoop.accuracy_on(u, feats(vlm), torch.tensor([0, 1, 0, 1]), ["bird", "tree"])
    assert 0.0 <= acc <= 1.0 and u.classnames == NAMES
    with pytest.raises(ValueError, match="unknown prompt method"):
        coop.build_prompt_model("maple", vlm, NAMES)


def test_training_fits_a_separable_toy_task(vlm):
    torch.manual_seed(0)
    x = feats(vlm, n=12, seed=1)
    y = torch.arange(12) % 3
    m0 = coop.CoOp(vlm, NAMES, n_ctx=2, ctx_init=None)
    acc0 = cocoop.accuracy_on(m0, x, y)
    m, hist = cocoop.train_prompt("coop", vlm, NAMES, x, y, epochs=30, batch_size=12, lr=0.5, optimizer="adamw",
                                weight_decay=0.0, warmup_epochs=0, n_ctx=2, ctx_init=None)
    assert hist.loss[-1] < hist.loss[0]
    assert cocoop.accuracy_on(m, x, y) >= acc0


def test_paper_datasets_go_through_coop_splits_with_k_shot_pools(vlm, monkeypatch):
    """A CoOp dataset name loads its K-shot pool and test set through data.coop_splits.load_coop (CoOp's split
    files by default) at the VLM's size, resized + centre-cropped."""
    from vpkit.data import ImageSet, coop_splits

    calls = []

    def fake(name, split, *, splits, size, per_class, seed, center_crop):
        calls.append((name, split, splits, size, per_class, center_crop))
        n = 4 * (per_class or 3)
        return ImageSet(torch.zeros(n, 3, size, size, dtype=torch.uint8), torch.arange(n) % 4,
                        ["annual crop", "forest", "river", "sea lake"], name)

    monkeypatch.setattr(coop_splits, "load_coop", fake)
    fs = cocoop.dataset_features(vlm, "eurosat", max_shots=6, n_test_per_class=None, amp=False)
    size = vlm.preprocess.img_size
    assert calls == [("eurosat", "train", "zhou", size, 6, True), ("eurosat", "test", "zhou", size, None, True)]
    assert fs.classnames[0] == "annual crop" and not fs.invert
    assert fs.train.shape == (24, vlm.embed_dim) and len(fs.test_labels) == 12
    with pytest.raises(ValueError, match="unknown dataset name='nope'.*offline.*paper"):
        cocoop.dataset_features(vlm, "nope", max_shots=1, n_test_per_class=1)


def test_class_specific_with_a_phrase_init_is_an_explicit_error(vlm):
    """Official CoOp silently trains one unified context when CSC and ctx_init are both set; we refuse."""
    with pytest.raises(ValueError, match="class_specific=True with ctx_init"):
        coop.CoOp(vlm, NAMES, n_ctx=None, ctx_init="a photo of a", class_specific=True)


def test_zero_shot_baseline_uses_the_official_per_dataset_template(vlm, monkeypatch):
    """Official zsclip.py: CUSTOM_TEMPLATES[dataset], e.g. EuroSAT 'a centered satellite photo of {}.'."""
    assert cocoop.zero_shot_template("eurosat") == "a centered satellite photo of {}."
    assert cocoop.zero_shot_template("dtd") == "{} texture."
    assert cocoop.zero_shot_template("fashion_mnist") == "a photo of a {}."  # offline: no official template
    used = []
    monkeypatch.setattr(cocoop, "zero_shot_correct",
                        lambda vlm, x, y, names, template="": used.append(template) or torch.tensor([True, False]))
    names = ["annual crop", "forest", "herbaceous vegetation", "highway"]
    f = torch.nn.functional.normalize(feats(vlm, 8), dim=-1)
    fs = cocoop.FeatureSet("eurosat", names, f, torch.arange(8) % 4, f, torch.arange(8) % 4, {}, False)
    row, _, correct = cocoop.base_to_new(vlm, fs, "zero_shot", k=1, train_kw={})
    assert used == ["a centered satellite photo of {}."] * 2 and row["base"] == 0.5
    assert correct["base"].tolist() == [True, False]  # the per-example outcomes outcomes.npz keeps


def test_augmented_views_stand_in_for_per_epoch_augmentation(vlm, monkeypatch):
    """Official CoOp: a fresh RandomResizedCrop(0.08-1) + flip of every shot each epoch. With ``train_views=V``
    the study trains on V cached views of the same shots for epochs // V passes (the same number of steps)."""
    fs = cocoop.dataset_features(vlm, "digits", max_shots=2, n_test_per_class=1, train_views=2, amp=False)
    assert len(fs.train_views) == 2 and all(v.shape == fs.train.shape for v in fs.train_views)
    assert not torch.allclose(fs.train_views[0], fs.train) and not torch.allclose(*fs.train_views)
    x, y = fs.train_split([0, 1, 2], 2, seed=1)
    cx, cy = fs.split("train", [0, 1, 2], 2, seed=1)
    assert len(y) == 2 * len(cy) and torch.equal(y, torch.cat([cy, cy]))  # the same shots, once per view
    seen = {}

    def fake_train(method, vlm, names, x, y, *, epochs, **kw):
        seen["epochs"], seen["n"] = epochs, len(y)
        return coop.CoOp(vlm, names), None

    monkeypatch.setattr(cocoop, "train_prompt", fake_train)
    monkeypatch.setattr(cocoop, "correct_on", lambda *a, **k: torch.tensor([True, False]))
    cocoop.base_to_new(vlm, fs, "coop", k=2, seed=1, train_kw={"epochs": 20, "batch_size": 4})
    assert seen == {"epochs": 10, "n": 2 * 5 * 2}  # 20 epochs over 2 views -> 10 passes; 5 base classes x 2 shots


@pytest.fixture
def forced_precision():
    """Force a precision for one test, then restore the process's device state."""
    from vpkit import device

    saved = {k: (dict(v) if isinstance(v, dict) else v) for k, v in device._STATE.items()}
    yield lambda p: device.configure(precision=p, threads=None)
    device._STATE.clear()
    device._STATE.update(saved)


def _spy_text_tower(vlm, monkeypatch):
    """Record (autocast on, its dtype) at every text-tower call."""
    seen, inner = [], vlm.encode_text_embeddings

    def spy(*a, **kw):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return inner(*a, **kw)
    monkeypatch.setattr(vlm, "encode_text_embeddings", spy)
    return seen


@pytest.mark.parametrize("method", ["coop", "cocoop"])
def test_amp_puts_only_the_text_tower_under_autocast(vlm, method, monkeypatch, forced_precision):
    forced_precision("bf16")
    seen = _spy_text_tower(vlm, monkeypatch)
    m = coop.build_prompt_model(method, vlm, NAMES, n_ctx=2, ctx_init=None, amp=True)
    with torch.autocast("cpu", enabled=False):  # the model turns autocast on for its text passes itself
        logits = m(feats(vlm))
    assert seen and all(s == (True, torch.bfloat16) for s in seen)
    assert logits.dtype == torch.float32
    seen.clear()
    fp = coop.build_prompt_model(method, vlm, NAMES, n_ctx=2, ctx_init=None, amp=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # amp=False keeps fp32 even inside an enclosing autocast
        logits = fp(feats(vlm))
        if method == "cocoop":
            assert fp.meta_net(feats(vlm)).dtype == torch.bfloat16  # (the enclosing autocast is on out here)
    assert seen and all(not on for on, _ in seen)
    assert logits.dtype == torch.float32
    if method == "cocoop":  # the Meta-Net and the logits stay fp32 under amp too, whatever encloses the call
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = torch.nn.functional.normalize(feats(vlm), dim=-1)
            with m._fp32():
                assert m.conditional_context(x).dtype == torch.float32


@pytest.mark.parametrize("method", ["coop", "cocoop"])
def test_amp_in_fp32_is_bit_identical_and_bf16_is_close(vlm, method, forced_precision):
    x = feats(vlm, n=5)
    ref = coop.build_prompt_model(method, vlm, NAMES, n_ctx=2, ctx_init=None, seed=3, amp=False)(x)
    forced_precision("fp32")
    assert torch.equal(coop.build_prompt_model(method, vlm, NAMES, n_ctx=2, ctx_init=None, seed=3, amp=True)(x), ref)
    forced_precision("bf16")
    lo = coop.build_prompt_model(method, vlm, NAMES, n_ctx=2, ctx_init=None, seed=3, amp=True)(x)
    assert not torch.equal(lo, ref)  # it did run in bf16
    torch.testing.assert_close(lo, ref, atol=0.05 * float(vlm.logit_scale), rtol=0)


def test_amp_batched_cocoop_equals_loop_and_training_records_bf16(vlm, forced_precision):
    forced_precision("bf16")
    m = coop.CoCoOp(vlm, NAMES, amp=True)
    x = feats(vlm, n=5)
    torch.testing.assert_close(m(x), m.forward_loop(x), atol=0.05 * float(vlm.logit_scale), rtol=0)
    y = torch.tensor([0, 1, 2, 0, 1])
    _, hist = cocoop.train_prompt("cocoop", vlm, NAMES, x, y, epochs=1, batch_size=5, lr=0.01, amp=True)
    assert hist.precision == "bf16"
    _, hist = cocoop.train_prompt("coop", vlm, NAMES, x, y, epochs=1, batch_size=5, lr=0.01, amp=False)
    assert hist.precision == "fp32"
    with pytest.raises(ValueError, match="amp"):
        coop.CoOp(vlm, NAMES, amp="yes")


def test_length_groups_sort_rows_and_put_them_back():
    from vpkit.vlm import TextTokens

    eot = torch.tensor([5, 3, 5, 4, 3])
    mask = (torch.arange(7)[None] <= eot[:, None]).long()
    order, inverse, spans = coop.length_groups(TextTokens(mask * 7, mask, eot))
    assert spans == [(0, 2, 4), (2, 3, 5), (3, 5, 6)]
    assert order.tolist() == [1, 4, 3, 0, 2] and torch.equal(order[inverse], torch.arange(5))
    assert coop.length_groups(TextTokens(mask[:2] * 0, mask[:2], torch.tensor([4, 4]))) is None


@pytest.mark.parametrize("method", ["coop", "cocoop"])
def test_length_grouped_text_tower_equals_one_padded_batch(method):
    """MiniLM (the offline VLM): class prompts of different lengths run in groups, each cut to its length; the
    logits and the context's gradients are those of one padded batch (the transcription: grouping switched off)."""
    off = build_vlm("offline")
    names = ["cat", "ankle boot", "person playing water polo", "dog", "the number 7"]
    m = coop.build_prompt_model(method, off, names, seed=0)
    assert m.prompt.trim_padding and coop.length_groups(m.prompt.tokens) is not None
    x = feats(off, n=3, seed=1)
    out = {}
    for grouped in (True, False):
        m.zero_grad()
        m.prompt.trim_padding = grouped
        logits = m(x)
        logits.logsumexp(-1).sum().backward()
        out[grouped] = (logits.detach(), m.prompt.ctx.grad.clone())
    m.prompt.trim_padding = True
    torch.testing.assert_close(out[True][0], out[False][0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=1e-4)


def test_domain_shift_reuses_the_grids_clean_base_outcomes(vlm):
    """The clean row of the domain shift is the same model on the same base-class test images as the grid's base
    split: reused, it must equal a fresh evaluation."""
    g = torch.Generator().manual_seed(3)
    names = ["cat", "dog", "red car", "blue bird"]
    f = lambda n: torch.nn.functional.normalize(torch.randn(n, vlm.embed_dim, generator=g), dim=-1)  # noqa: E731
    lab = lambda n: torch.arange(4).repeat_interleave(n)  # noqa: E731
    fs = cocoop.FeatureSet("toy", names, f(8), lab(2), f(12), lab(3), {"noisy": f(12)}, False)
    kw = dict(epochs=1, batch_size=2, lr=0.01, optimizer="sgd", warmup_epochs=0)
    rows, models, outcomes = cocoop.base_to_new_grid(vlm, {"toy": fs}, datasets=["toy"], shots=[1], seeds=[0],
                                                     train_kw={"coop": kw, "cocoop": kw}, prompt_kw={},
                                                     linear_probe=False, progress=False)
    args = dict(k=1, seeds=[0], template="a photo of a {}.")
    fresh, fresh_out = cocoop.domain_shift_rows(vlm, fs, models, **args)
    reused, reused_out = cocoop.domain_shift_rows(vlm, fs, models, **args, b2n_outcomes=outcomes)
    assert fresh == reused and fresh_out.keys() == reused_out.keys()
    assert all(torch.equal(torch.as_tensor(fresh_out[k]), torch.as_tensor(reused_out[k])) for k in fresh_out)

"""VPT (Jia et al. 2022): token counts and positions, deep replacement, what trains, init, and behaviour."""
import math

import numpy as np
import pytest
import torch

from vpkit.data import tasks
from vpkit.backbones import build_backbone
from vpkit.methods import build_method
from vpkit.prompts.vit import embed_tokens
from vpkit.prompts.vpt import VPT, init_bound
from vpkit.train import fit


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)  # torch's default generator starts from a random seed in every process
    return build_backbone("test_vit")  # 160 px, 16 px patches -> 100 patches, 64 dims, 6 blocks, random init


def _block_inputs(model, x):
    """The token sequence entering every block."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone())) for b in model.vit.blocks]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_shallow_token_count_and_positions(tiny):
    m = build_method("vpt_shallow", tiny, 5, num_tokens=3).model
    x = torch.randn(2, 3, 160, 160)
    assert m.forward_tokens(x).shape == (2, 1 + 3 + 100, 64)
    ins = _block_inputs(m, x)
    ref = embed_tokens(m.vit, x)
    first = ins[0]
    assert torch.equal(first[:, 0], ref[:, 0]), "CLS stays first"
    assert torch.equal(first[:, 1:4], m.prompt_embeddings[0].expand(2, -1, -1)), "prompts right after CLS"
    assert torch.equal(first[:, 4:], ref[:, 1:]), "patch tokens follow the prompts unchanged"
    assert m.prompt_embeddings.shape == (1, 3, 64)


def test_deep_replaces_prompts_at_every_layer(tiny):
    m = build_method("vpt_deep", tiny, 5, num_tokens=4).model
    assert m.prompt_depth == len(m.vit.blocks) == 6
    x = torch.randn(2, 3, 160, 160)
    ins = _block_inputs(m, x)
    for i, t in enumerate(ins):
        assert t.shape == (2, 1 + 4 + 100, 64)
        assert torch.equal(t[:, 1:5], m.prompt_embeddings[i].expand(2, -1, -1)), f"block {i} gets its own prompts"
    # outputs of block i at the prompt positions are discarded: the sequence entering block i+1 differs there
    out0 = m.vit.blocks[0](ins[0])
    assert not torch.allclose(out0[:, 1:5], ins[1][:, 1:5])
    assert torch.allclose(out0[:, 5:], ins[1][:, 5:]), "image tokens are carried over"


def test_partial_depth_carries_prompt_outputs(tiny):
    m = build_method("vpt", tiny, 5, num_tokens=2, prompt_depth=2).model
    x = torch.randn(1, 3, 160, 160)
    ins = _block_inputs(m, x)
    assert torch.equal(ins[1][:, 1:3], m.prompt_embeddings[1][None])
    with torch.no_grad():
        out1 = m.vit.blocks[1](ins[1])
    assert torch.allclose(out1, ins[2]), "after prompt_depth blocks, the prompt outputs flow on unchanged"


def test_add_location_matches_the_official_ablation(tiny):
    """Official (vit_ablations, "add"): the prompt has one row per token, CLS included, and is added to the
    embedded sequence ``x = x + prompt``; the sequence length stays the same."""
    m = build_method("vpt_deep", tiny, 5, location="add", output="image_mean").model
    x = torch.randn(2, 3, 160, 160)
    ins = _block_inputs(m, x)
    ref = embed_tokens(m.vit, x)
    official = ref + m.prompt_embeddings[0].unsqueeze(0)  # (B, 1 + N, D) + (1, 1 + N, D)
    assert ins[0].shape == ref.shape == (2, 101, 64) and m.prompt_embeddings.shape == (6, 101, 64)
    assert torch.allclose(ins[0], official) and not torch.allclose(ins[0][:, 0], ref[:, 0])


def test_prompt_dropout_masks_differ_per_image(tiny):
    """Official: ``prompt_dropout(prompt_proj(prompt).expand(B, -1, -1))`` - one mask per image, not per batch."""
    m = build_method("vpt_shallow", tiny, 5, num_tokens=8, dropout=0.5).model.train()
    torch.manual_seed(0)
    p = m._prompts(0, 4)
    dropped = p == 0
    assert dropped.any() and not all(torch.equal(dropped[0], dropped[i]) for i in range(1, 4))
    kept = ~dropped
    assert torch.allclose(p[kept], (m.prompt_embeddings[0].unsqueeze(0).expand(4, -1, -1) * 2)[kept])


def test_head_init_matches_the_official_mlp_head(tiny):
    """Official ``MLP(special_bias=True)`` last layer: kaiming_normal_(a=0, mode="fan_out"), bias = -log 99."""
    import math

    from vpkit.prompts.vpt import init_head

    torch.manual_seed(0)
    m = build_method("vpt_deep", tiny, 100, num_tokens=2).model
    w, b = m.head.weight, m.head.bias
    assert torch.allclose(b, torch.full_like(b, -math.log(99.0)))
    official_std = math.sqrt(2.0 / w.shape[0])  # gain sqrt(2) for a=0, fan_out = out_features
    assert abs(w.std().item() - official_std) / official_std < 0.05 and abs(w.mean().item()) < 0.01
    torch_default = init_head(torch.nn.Linear(64, 100), "torch")
    assert torch_default.weight.std().item() < 0.6 * official_std  # nn.Linear: 1/sqrt(3 fan_in), half of it here
    with pytest.raises(ValueError, match="allowed"):
        init_head(torch.nn.Linear(4, 2), "xavier")


def test_vpt_protocol_gives_every_method_the_official_head(tiny):
    import math

    from vpkit.data import ImageSet
    from vpkit.studies import vpt as protocol

    ds = ImageSet(torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2, ["a", "b"], "t")
    tc = protocol.TrainConfig(epochs=1, batch_size=4, warmup_epochs=0, optimizer="sgd")
    seen = {}
    real = protocol.fit

    def spy(model, loader, **kw):
        seen["bias"] = model.head.bias.detach().clone()
        return real(model, loader, **kw)

    protocol.fit = spy
    try:
        protocol.train_and_eval("linear", tiny, ds, {"test": ds}, num_classes=2, base_lr=0.0, weight_decay=0.0,
                                seed=0, train=tc)
    finally:
        protocol.fit = real
    assert torch.allclose(seen["bias"], torch.full((2,), -math.log(99.0)))


def test_outputs_pool_the_right_tokens(tiny):
    x = torch.randn(2, 3, 160, 160)
    for output, sl in (("cls", slice(0, 1)), ("image_mean", slice(4, None)), ("prompt_mean", slice(1, 4))):
        m = build_method("vpt_deep", tiny, 5, num_tokens=3, output=output).model.eval()
        with torch.no_grad():
            tok = m.forward_tokens(x)
            assert torch.allclose(m(x), m.head(tok[:, sl].mean(1)), atol=1e-6), output


def test_bad_arguments_name_the_parameter(tiny):
    with pytest.raises(ValueError, match="prompt_depth"):
        build_method("vpt", tiny, 5, prompt_depth=7)
    with pytest.raises(ValueError, match="location"):
        build_method("vpt", tiny, 5, location="append")
    with pytest.raises(ValueError, match="output"):
        build_method("vpt", tiny, 5, output="max")
    with pytest.raises(ValueError, match="prompt_mean"):
        build_method("vpt", tiny, 5, location="add", output="prompt_mean")
    with pytest.raises(ValueError, match="num_tokens"):
        build_method("vpt", tiny, 5, num_tokens=0)
    with pytest.raises(ValueError, match="ViT"):
        build_method("vpt_deep", build_backbone("test_cnn"), 5)


@pytest.mark.parametrize("name,depth", [("vpt_shallow", 1), ("vpt_deep", 6)])
def test_only_prompts_and_head_train(tiny, name, depth):
    m = build_method(name, tiny, 7, num_tokens=5)
    assert m.report.names == ["prompt_embeddings", "head.weight", "head.bias"]
    assert m.report.trainable == depth * 5 * 64 + 64 * 7 + 7
    assert m.report.trainable == sum(p.numel() for p in m.model.parameters() if p.requires_grad)
    backbone = sum(p.numel() for p in tiny.model.parameters())
    assert m.report.percent_of_backbone == pytest.approx(100 * m.report.trainable / backbone)


def test_init_bound_matches_the_official_formula(tiny):
    assert init_bound(16, 768) == pytest.approx(math.sqrt(6 / (3 * 256 + 768)))
    m = build_method("vpt_deep", tiny, 5, num_tokens=50).model
    b = init_bound(16, 64)
    p = m.prompt_embeddings.detach()
    assert p.abs().max() <= b and p.abs().max() > 0.95 * b, "uniform on [-b, b]"
    assert abs(p.mean().item()) < 0.05 * b and p.std().item() == pytest.approx(b / math.sqrt(3), rel=0.05)


def _synthetic(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 160, 160, generator=g), torch.arange(n) % 2


def test_frozen_backbone_is_bit_identical_after_training(tiny):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    m = build_method("vpt_deep", tiny, 2, num_tokens=3)
    p0 = m.model.prompt_embeddings.detach().clone()
    vit_before = {k: v.clone() for k, v in m.model.vit.state_dict().items()}
    x, y = _synthetic(16)
    fit(m.model, [(x[:8], y[:8]), (x[8:], y[8:])], epochs=2, lr=1.0, weight_decay=1e-3, progress=False)
    for k, v in m.model.vit.state_dict().items():
        assert torch.equal(v, vit_before[k]), f"frozen {k} changed"
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), f"the shared backbone's {k} changed"
    assert not torch.equal(m.model.prompt_embeddings.detach(), p0), "the prompts did train"


def test_prompts_alone_steer_the_prediction(tiny):
    """Behaviour: with the head frozen, training only the VPT-deep prompts must move every image towards the class
    the frozen model predicts least. Fails if the prompts do not reach the read-out (inserted at the wrong place,
    detached, overwritten after the last block: the loss would not move at all). How far 10 steps get depends on
    the random backbone: over backbone seeds 0-5 the loss fell to 0.46-0.66 of its start, but the share of images
    flipped ranged from 6% to 100% (the final LayerNorm bounds what the prompts can do to a random head), so the
    flip share is not asserted."""
    torch.manual_seed(0)
    # PyTorch's head init: with 2 classes the official kaiming fan-out head has weights of std 1, whose frozen
    # logits the 10 steps below cannot flip; the test is about the prompt path, not the head
    m = build_method("vpt_deep", tiny, 2, num_tokens=4, dropout=0.0, head_init="torch").model
    m.head.requires_grad_(False)
    x = torch.randn(16, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        before = m.eval()(x)
    target = int(torch.bincount(before.argmax(-1), minlength=2).argmin())
    y = torch.full((16,), target)
    loss0 = ce(before, y).item()
    fit(m, [(x[:8], y[:8]), (x[8:], y[8:])], epochs=10, lr=1.0, progress=False)
    with torch.no_grad():
        after = m.eval()(x)
    assert ce(after, y).item() < 0.8 * loss0
    p_before, p_after = before.softmax(-1)[:, target], after.softmax(-1)[:, target]
    assert (p_after > p_before).all()  # every image moved towards the target class


def test_structured_tasks_are_deterministic_and_labelled():
    for name in tasks.STRUCTURED:
        a = tasks.render_structured(name, n=40, seed=3, size=32)
        b = tasks.render_structured(name, n=40, seed=3, size=32)
        c = tasks.render_structured(name, n=40, seed=4, size=32)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert not torch.equal(a.images, c.images)
        assert a.images.shape[0] == 40 and a.images.shape[1] in (1, 3) and a.images.shape[2:] == (32, 32)
        assert a.images.dtype == torch.uint8
        assert 0 <= a.labels.min() and a.labels.max() < a.num_classes


def test_location_label_follows_the_sprite():
    ds = tasks.render_structured("dsprites_location", n=200, seed=0, size=56, classes=4)
    fg = ds.images[:, 0].float() > 127
    xs = torch.arange(56).float()
    cx = (fg.float() * xs).sum((1, 2)) / fg.float().sum((1, 2)).clamp(min=1)
    pred = ((cx / 56 - 0.13) / 0.74 * 4).clamp(0, 3).floor().long()
    assert (pred == ds.labels).float().mean() > 0.85
    assert torch.bincount(ds.labels, minlength=4).min() > 30, "balanced bins"


def test_count_label_is_the_number_of_objects():
    from scipy import ndimage

    ds = tasks.render_structured("clevr_count", n=60, seed=0, size=64)
    yy = (np.arange(128) + 0.5) / 128
    floor = (90 + 30 * yy).reshape(64, 2).mean(1)[:, None]  # the floor after 2x2 pooling
    for img, y in zip(ds.images.numpy(), ds.labels.numpy()):
        diff = np.abs(img.astype(float) - floor[None]).max(0)
        lab, n = ndimage.label(diff > 25)
        sizes = ndimage.sum(np.ones_like(diff), lab, range(1, n + 1))
        assert (sizes >= 4).sum() == y + 1  # ignore 1-3 px anti-aliasing specks at triangle tips


def test_load_task_rejects_unknown_names():
    with pytest.raises(ValueError, match="known"):
        tasks.load_task("svhn_typo")


def _fake_train(scores):
    """A stand-in for protocol.train_and_eval: accuracy looked up by base_lr (NaN = diverged)."""
    from vpkit.studies.vpt import RunResult

    calls = []

    def run(method, backbone, train_set, eval_sets, *, base_lr, weight_decay, seed, **kw):
        calls.append((train_set.name, method, base_lr, seed))
        return RunResult(method, seed, base_lr, weight_decay, {k: scores[base_lr] for k in eval_sets}, 10, 0.1,
                         100.0, 1.0, 0.5)
    return run, calls


def _splits(name):
    from vpkit.data import ImageSet

    ds = ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), ["a", "b"], name)
    return {"train800": ds, "val200": ds, "train1000": ds, "test": ds}


def test_protocol_tunes_then_retrains_and_never_picks_a_diverged_run(monkeypatch):
    from vpkit.studies import vpt as protocol

    run, calls = _fake_train({1.0: float("nan"), 0.1: 0.6, 0.01: 0.4})
    monkeypatch.setattr(protocol, "train_and_eval", run)
    final, grid = protocol.vtab_protocol("linear", None, _splits("t"), num_classes=2, base_lrs=[1.0, 0.1, 0.01],
                                         weight_decays=[0.0], seeds=[3, 4], train=protocol.TrainConfig())
    assert [g.base_lr for g in grid] == [1.0, 0.1, 0.01]
    assert [(f.base_lr, f.seed) for f in final] == [(0.1, 3), (0.1, 4)], "best finite val200 lr, every seed"


def test_run_suite_reuses_the_donor_tasks_tuning(monkeypatch):
    from vpkit.studies import vpt as protocol

    run, calls = _fake_train({0.5: 0.3, 0.05: 0.7})
    monkeypatch.setattr(protocol, "train_and_eval", run)
    suite = {"a": _splits("a"), "b": _splits("b")}
    final, grid = protocol.run_suite(None, suite, methods=["linear"], base_lrs={"linear": [0.5, 0.05]},
                                     weight_decays=[0.0], seeds=[0], train=protocol.TrainConfig(),
                                     tune_on={"b": "a"}, log=None)
    assert [r["task"] for r in grid] == ["a", "a"], "only the donor task runs the grid"
    assert [(r["task"], r["base_lr"], r["tuned_on"]) for r in final] == [("a", 0.05, "a"), ("b", 0.05, "a")]
    with pytest.raises(ValueError, match="tune_on"):
        protocol.run_suite(None, suite, methods=["linear"], base_lrs={"linear": [0.5]}, weight_decays=[0.0],
                           seeds=[0], train=protocol.TrainConfig(), tune_on={"a": "b"}, log=None)
    with pytest.raises(ValueError, match="base_lrs"):
        protocol.run_suite(None, suite, methods=["vpt_deep"], base_lrs={}, weight_decays=[0.0], seeds=[0],
                           train=protocol.TrainConfig(), log=None)


def test_paper_backbone_is_the_official_vit_with_imagenet_statistics(monkeypatch):
    """Official VPT: imagenet21k_ViT-B_16.npz (timm's ``orig_in21k``) fed ImageNet mean/std-normalised images."""
    import timm

    from vpkit import backbones

    asked, real = {}, timm.create_model

    def fake_create(arch, pretrained=False, **kw):
        asked["arch"], asked["pretrained"] = arch, pretrained
        return real("test_vit", pretrained=False, num_classes=0)  # the same code path, no download

    monkeypatch.setattr(timm, "create_model", fake_create)
    b = backbones.build_backbone("vit_b16_in21k")
    assert asked == {"arch": "vit_base_patch16_224.orig_in21k", "pretrained": True}
    assert b.mean == backbones.IMAGENET_MEAN and b.std == backbones.IMAGENET_STD


@pytest.mark.parametrize("amp", [False, True])
def test_linear_probe_on_cached_features_equals_the_probe_through_the_frozen_body(tiny, amp):
    """The linear probe trained on features computed once (feature_cache) against the transcription: the same
    head trained through the frozen body, batch for batch, 2 epochs; the same head, accuracies and per-example
    outcomes."""
    from vpkit.data import ImageSet
    from vpkit.studies import vpt as protocol

    g = torch.Generator().manual_seed(0)
    ds = ImageSet(torch.randint(0, 255, (24, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(24) % 3,
                  ["a", "b", "c"], "t")
    test = ds.subset(torch.arange(10))
    tc = protocol.TrainConfig(epochs=2, batch_size=5, warmup_epochs=0.5, optimizer="sgd", amp=amp)
    heads, real = [], protocol.fit

    def spy(model, loader, **kw):
        h = real(model, loader, **kw)
        heads.append(getattr(model, "head", model).weight.detach().clone())
        return h

    protocol.fit = spy
    cache = {}
    try:
        args = dict(num_classes=3, base_lr=2.0, weight_decay=1e-3, seed=1, train=tc)
        ref = protocol.train_and_eval("linear", tiny, ds, {"test": test}, **args)
        got = protocol.train_and_eval("linear", tiny, ds, {"test": test}, **args, feature_cache=cache)
        again = protocol.train_and_eval("linear", tiny, ds, {"test": test}, **args, feature_cache=cache)
    finally:
        protocol.fit = real
    assert len(cache) == 2  # the training and the test set, each computed once
    tol = dict(atol=1e-5, rtol=1e-4) if not amp else dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(heads[1], heads[0], **tol)
    assert torch.equal(heads[1], heads[2]) and got.acc == again.acc
    assert not torch.allclose(heads[0], torch.zeros_like(heads[0]))
    if not amp:
        assert got.acc == ref.acc and (got.correct["test"] == ref.correct["test"]).all()
        assert got.final_train_acc == pytest.approx(ref.final_train_acc)

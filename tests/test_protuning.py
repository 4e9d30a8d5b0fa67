"""Pro-Tuning prompt blocks, side tuning, long-tailed splits and corruptions (tiny models, synthetic data)."""
import copy

import pytest
import torch
from torch import nn

from vpkit import methods
from vpkit.data import shift
from vpkit.backbones import build_backbone
from vpkit.data import ImageSet
from vpkit.prompts import protuning as pt
from vpkit.studies import pro_tuning as study
from vpkit.train import set_train_mode


@pytest.fixture(scope="module")
def cnn():
    return build_backbone("test_cnn", pretrained=False)


@pytest.fixture(scope="module")
def vit():
    return build_backbone("test_vit", pretrained=False, img_size=64)


def _randomise_prompts(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.prompts.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def test_prompt_block_structure():
    blk = pt.PromptBlock(48, reduction=3)
    convs = [m for m in blk.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (5, 5), (1, 1)]
    assert [c.groups for c in convs] == [1, 16, 1]  # the middle conv is depthwise over the 16 hidden channels
    assert (convs[0].in_channels, convs[0].out_channels, convs[2].out_channels) == (48, 16, 48)
    assert torch.count_nonzero(convs[2].weight) == 0  # zero-initialised last conv: starts as the frozen model
    x = torch.randn(2, 48, 7, 5)
    assert blk(x).shape == x.shape


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_one_block_per_stage_and_shapes(kind, cnn, vit):
    b = cnn if kind == "cnn" else vit
    m = methods.build_method("protuning", b, 7)
    model = m.model
    expected = ([f"blocks.{i}" for i in range(len(b.model.blocks))] if kind == "cnn"
                else [f"blocks.{i}" for i in pt.vit_group_ends(len(b.model.blocks), 4)])
    assert model.stage_names == expected and len(model.prompts) == len(expected)
    mods = dict(model.body.named_modules())
    assert all(len(mods[s]._forward_hooks) == 1 for s in expected)
    _randomise_prompts(model)
    x = torch.randn(2, 3, b.img_size, b.img_size)
    seen = {}
    hooks = [mods[s].register_forward_hook(lambda mod, i, o, s=s: seen.__setitem__(s, o.shape)) for s in expected]
    with torch.no_grad():
        out = model(x)
        model.detach()
        ref_shapes = dict(seen)
        model(x)
        model.attach()
    for h in hooks:
        h.remove()
    assert out.shape == (2, 7)
    assert seen == ref_shapes  # every stage output keeps its shape with the prompt blended in


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_only_blocks_and_head_train(kind, cnn, vit):
    b = cnn if kind == "cnn" else vit
    m = methods.build_method("protuning", b, 5)
    assert m.report.names and all(n.startswith(("prompts.", "head.")) for n in m.report.names)
    assert all(not p.requires_grad for p in m.model.body.parameters())
    n_prompt = sum(p.numel() for p in m.model.prompts.parameters())
    assert m.report.trainable == n_prompt + 5 * b.embed_dim + 5
    # the frozen body stays bit-identical after a training step
    before = copy.deepcopy(m.model.body.state_dict())
    opt = torch.optim.SGD([p for p in m.model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(4, 3, b.img_size, b.img_size), torch.tensor([0, 1, 2, 3])
    set_train_mode(m.model)  # as fit() does: frozen BatchNorm stays in eval mode
    nn.functional.cross_entropy(m.model(x), y).backward()
    grads = [p.grad for p in m.model.prompts.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    opt.step()
    after = m.model.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_detach_restores_exact_outputs(kind, cnn, vit):
    b = cnn if kind == "cnn" else vit
    model = methods.build_method("protuning", b, 3).model.eval()
    x = torch.randn(2, 3, b.img_size, b.img_size)
    with torch.no_grad():
        ref = b.features(x)
        assert torch.equal(model.features(x), ref)  # zero-initialised prompts: the frozen model at start
        _randomise_prompts(model)
        on = model.features(x)
        assert not torch.allclose(on, ref)
        model.detach()
        assert not model.attached and torch.equal(model.features(x), ref)
        model.attach()
        assert torch.equal(model.features(x), on)
        clone = copy.deepcopy(model)
        assert torch.equal(clone.features(x), on)
        clone.detach()  # detaching a copy leaves the original attached
        assert torch.equal(clone.features(x), ref) and torch.equal(model.features(x), on)


def test_vit_cls_token_untouched_by_prompts(vit):
    model = methods.build_method("protuning", vit, 3, num_stages=2).model.eval()
    _randomise_prompts(model)
    out = {}
    last = model.stage_names[0]
    dict(model.body.named_modules())[last].register_forward_hook(lambda m, i, o: out.__setitem__("o", o))
    x = torch.randn(1, 3, vit.img_size, vit.img_size)
    with torch.no_grad():
        model.features(x)
        prompted = out["o"]
        model.detach()
        model.features(x)
        plain = out["o"]
    n = model.num_prefix
    assert torch.equal(prompted[:, :n], plain[:, :n]) and not torch.allclose(prompted[:, n:], plain[:, n:])


def test_blend_and_config_validation():
    x, p = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(pt.blend(x, p, "add"), x + p)
    assert torch.equal(pt.blend(x, torch.zeros_like(p), "mul"), x)
    with pytest.raises(ValueError, match="blend"):
        pt.ProTuningConfig(blend="concat")
    with pytest.raises(ValueError, match="num_stages"):
        pt.prompt_stages(nn.Module(), "cnn", num_stages=2)
    prefix, fmap = pt.tokens_to_map(torch.randn(2, 1 + 9, 6), 1)
    assert fmap.shape == (2, 6, 3, 3) and pt.map_to_tokens(prefix, fmap).shape == (2, 10, 6)


def test_side_tuning_trains_side_alpha_head(cnn):
    m = methods.build_method("side", cnn, 4)
    assert all(n.startswith(("side.", "alpha", "head.")) for n in m.report.names)
    assert "alpha" in m.report.names
    assert m.model(torch.randn(2, 3, cnn.img_size, cnn.img_size)).shape == (2, 4)


def test_paper_parameter_factor():
    r = study.paper_param_counts("resnet50", 10)
    assert abs(r["factor"] - 6.2) < 0.2  # the paper's 6.2x fewer parameters on ResNet-50


# ---------------------------------------------------------------------------------------------------------
# long tail and corruptions
# ---------------------------------------------------------------------------------------------------------

def _pool(per_class=60, classes=10, size=8):
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.randint(0, 256, (len(labels), 1, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return ImageSet(images, labels, [str(c) for c in range(classes)], "toy")


@pytest.mark.parametrize("ir", [50, 100])
def test_long_tail_counts_follow_exponential_profile(ir):
    counts = shift.long_tail_counts(100, 10, ir)
    assert counts[0] == 100 and counts == sorted(counts, reverse=True)
    for i, c in enumerate(counts):
        assert c == max(1, int(100 * ir ** (-i / 9)))
    assert max(counts) / min(counts) == ir  # head / tail = the imbalance ratio
    pool = _pool(per_class=100)
    ds = shift.long_tailed(pool, imbalance_ratio=ir, n_max=100, seed=3)
    assert shift.class_counts(ds) == counts
    again = shift.long_tailed(pool, imbalance_ratio=ir, n_max=100, seed=3)
    assert torch.equal(ds.images, again.images)


def test_balanced_test_set_and_errors():
    ds = shift.balanced(_pool(), per_class=7, seed=0)
    assert shift.class_counts(ds) == [7] * 10
    with pytest.raises(ValueError, match="n_max"):
        shift.long_tailed(_pool(per_class=5), imbalance_ratio=10, n_max=50, seed=0)
    with pytest.raises(ValueError, match="imbalance_ratio"):
        shift.long_tail_counts(10, 10, 0.5)


def _natural_images(n=8, size=28, channels=1):
    """Smooth blobs with edges: a stand-in for natural images."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    imgs = []
    for _ in range(n):
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 0.5]) + torch.tensor([-0.5, -0.5, 0.3]))
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2).float() * 0.6 + 0.2 * (xx + 1) / 2
        imgs.append(blob.expand(channels, size, size))
    return (torch.stack(imgs).clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name", sorted(shift.CORRUPTIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_corruptions_keep_shape_dtype_and_grow_with_severity(name, channels):
    x = _natural_images(channels=channels)
    dist = []
    for s in shift.SEVERITIES:
        y = shift.corrupt(x, name, s, seed=0)
        assert y.shape == x.shape and y.dtype == torch.uint8
        assert torch.equal(y, shift.corrupt(x, name, s, seed=0))  # deterministic
        dist.append((y.float() - x.float()).abs().mean().item())
    assert dist[0] > 0, f"{name} severity 1 changed nothing"
    assert dist[-1] > dist[0] * 1.2, f"{name}: severity 5 ({dist[-1]:.2f}) not clearly worse than 1 ({dist[0]:.2f})"
    assert all(b >= a * 0.9 for a, b in zip(dist, dist[1:])), f"{name} distances {dist} do not grow with severity"


def test_corruption_errors_and_suite():
    x = _natural_images(n=4)
    with pytest.raises(ValueError, match="unknown corruption"):
        shift.corrupt(x, "snowstorm", 1)
    with pytest.raises(ValueError, match="severity"):
        shift.corrupt(x, "fog", 6)
    ds = ImageSet(x, torch.tensor([0, 1, 0, 1]), ["a", "b"], "toy")
    suite = shift.corruption_suite(ds, corruptions=["fog", "contrast"], severities=(1, 5))
    assert suite.keys == [("fog", 1), ("fog", 5), ("contrast", 1), ("contrast", 5)] and len(suite.images) == 16
    assert shift.mean_corruption_accuracy([{"acc": 0.5}, {"acc": 1.0}]) == 0.75

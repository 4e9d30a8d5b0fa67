import json

import numpy as np
import pytest
import torch
from torch import nn

from vpkit import metrics, report, train
from vpkit.data import ImageSet, Loader


def _toy(seed=0, n=200):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    img = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    img[y == 1, :, :4] = 200  # class 1: bright top half (200 + noise < 256)
    img += torch.randint(0, 40, img.shape, generator=g, dtype=torch.uint8)
    return ImageSet(img, y, ["dark", "top"])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                      nn.Flatten())
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def _loader(ds, seed=0):
    return Loader(ds, batch_size=32, size=8, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True, seed=seed)


def test_freeze_except_reports_and_rejects_typos():
    net = Net()
    rep = train.freeze_except(net, ["head"], backbone=net.backbone)
    assert rep.names == ["head.weight", "head.bias"] and rep.trainable == 34
    assert rep.backbone == sum(p.numel() for p in net.backbone.parameters())
    assert not any(p.requires_grad for p in net.backbone.parameters())
    with pytest.raises(ValueError, match="matches no parameter"):
        train.freeze_except(net, ["haed"])


def test_fit_learns_and_frozen_backbone_is_bit_identical():
    train.seed_everything(0)
    net = Net()
    train.freeze_except(net, ["head"])
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    hist = train.fit(net, _loader(_toy()), epochs=15, lr=0.5, warmup_epochs=1, progress=False)
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen weights or BN stats moved"
    acc = train.evaluate(net, Loader(_toy(1), batch_size=64, size=8, mean=(0.5,) * 3, std=(0.5,) * 3))["acc"]
    assert acc > 0.9
    assert len(hist.loss) == 15 and hist.loss[-1] < hist.loss[0] and hist.throughput > 0


def test_fit_is_deterministic_by_seed():
    def run():
        train.seed_everything(123)
        net = Net()
        train.freeze_except(net, ["head", "backbone.0"])
        h = train.fit(net, _loader(_toy(), seed=5), epochs=2, lr=0.1, progress=False)
        return h.loss, net.head.weight.detach().clone()
    (l1, w1), (l2, w2) = run(), run()
    assert l1 == l2 and torch.equal(w1, w2)


def test_fit_rejects_bad_parameters():
    net = Net()
    train.freeze_except(net, ["head"])
    with pytest.raises(ValueError, match="optimizer="):
        train.fit(net, _loader(_toy()), epochs=1, lr=0.1, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="epochs="):
        train.fit(net, _loader(_toy()), epochs=0, lr=0.1, progress=False)


def test_cosine_warmup_shape():
    vals = [train.cosine_warmup(s, total=100, warmup=10) for s in range(100)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert vals[10] == pytest.approx(1.0) and vals[99] < 0.01
    assert all(a >= b for a, b in zip(vals[10:], vals[11:]))


def test_metrics_on_known_values():
    assert metrics.harmonic_mean(0.8, 0.6) == pytest.approx(2 * 0.48 / 1.4)
    a = np.array([[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.6, 0.5, 0.9]])
    assert metrics.average_accuracy(a) == pytest.approx((0.6 + 0.5 + 0.9) / 3)
    assert metrics.forgetting(a) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5)) / 2)
    assert metrics.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5


def test_results_writer_is_complete_and_atomic(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    res = report.Results(tmp_path, profile="smoke", seed=1, config={"a": 1})
    res.table("t", pd.DataFrame({"m": ["x"], "acc": [0.5]}))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    res.figure("f", fig)
    res.metrics({"acc": float("nan")}, [report.Claim("c", "s", 1.0, 0.5, False)])
    res.run_info()
    names = {p.name for p in tmp_path.iterdir()}
    assert {"t.csv", "t.md", "f.png", "f.pdf", "metrics.json", "run.json"} <= names
    assert not any(n.endswith(".tmp") for n in names)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["headline"]["acc"] is None and m["claims"][0]["holds"] is False
    r = json.loads((tmp_path / "run.json").read_text())
    assert {"git", "versions", "device", "wall_time_s", "profile", "seed"} <= set(r)


def test_method_colours_ignore_case_hyphens_and_spaces_and_do_not_clash():
    from vpkit.plots import METHOD_COLORS, method_color

    assert method_color("partial-2") == method_color("partial_2") == method_color("Partial 2") != method_color("adapter")
    assert method_color("partial_1") != method_color("partial_2")
    assert all(k == k.lower().replace("-", "_").replace(" ", "_") for k in METHOD_COLORS)  # canonical keys only


def test_every_method_has_one_colour_that_no_other_method_shares_and_a_readable_label():
    from vpkit import plots

    by_colour = {}
    for k, c in plots.METHOD_COLORS.items():
        by_colour.setdefault(c, set()).add(plots.METHOD_LABELS.get(k, k))
    # aliases of one method share a colour; two methods never do (a role's offline and paper backbone do)
    shared = [{"vit_s14_dinov2", "vit_b16_in21k"}, {"efficientnet_lite0", "resnet50"},
              {"zero-shot", "TP", "TP (zero-shot)"},  # TP is the zero-shot VLM under visual prompting's name
              {"VP", "VP+TP"}]  # the pixel prompt on a vision-only model / on the VLM
    for c, labels in by_colour.items():
        assert len(labels) == 1 or labels in shared, (c, labels)
    colours = sorted(set(plots.METHOD_COLORS.values()))
    close = [(a, b) for i, a in enumerate(colours) for b in colours[i + 1:] if plots.colour_distance(a, b) < 12]
    assert not close, close
    assert plots.method_color("Partial-2") == plots.method_color("partial_2") != plots.method_color("partial_1")
    assert plots.method_color("some_new_method") not in colours  # unknown names never take a method's colour
    assert plots.method_label("vpt_deep") == "VPT-deep" and plots.method_label("unknown x") == "unknown x"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers_use_fused_kernels_with_the_single_tensor_update(name):
    from vpkit.train import fused_ok, make_optimizer

    torch.manual_seed(0)
    w0 = [torch.randn(7, 5), torch.randn(5)]
    grads = [[torch.randn_like(w) for w in w0] for _ in range(3)]
    runs = {}
    for fused in (True, False):
        ps = [torch.nn.Parameter(w.clone()) for w in w0]
        opt = make_optimizer(ps, optimizer=name, lr=0.1, weight_decay=0.01)
        assert opt.defaults["fused"] is True
        if not fused:  # the reference: torch's per-tensor loop, as the official code runs it
            kw = dict(lr=0.1, weight_decay=0.01, **({"momentum": 0.9} if name == "sgd" else {}))
            opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](
                ps, foreach=False, **kw)
        for g in grads:
            for p, gg in zip(ps, g):
                p.grad = gg.clone()
            opt.step()
        runs[fused] = ps
    for a, b in zip(runs[True], runs[False]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
        assert not torch.equal(a, w0[0] if a.shape == w0[0].shape else w0[1])  # it did step
    assert fused_ok([torch.zeros(2, requires_grad=True)])
    assert not fused_ok([torch.zeros(2, dtype=torch.int64)])

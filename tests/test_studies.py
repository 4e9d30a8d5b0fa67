"""The notebook-level summaries that moved into vpkit: averages, claims and figures on hand-made results."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vpkit import plots  # noqa: E402
from vpkit.continual import ContinualResult  # noqa: E402
from vpkit.studies import image_prompts_l2p as l2p  # noqa: E402


def _b2n():
    rows = [{"dataset": d, "method": "zero_shot", "k": 0, "seed": 0, "base": 0.2, "new": 0.4} for d in "ab"]
    for s, off in ((1, 0.0), (2, 0.1)):
        for d in "ab":
            rows.append({"dataset": d, "method": "coop", "k": 4, "seed": s, "base": 0.8 + off, "new": 0.2})
            rows.append({"dataset": d, "method": "cocoop", "k": 4, "seed": s, "base": 0.7, "new": 0.3 + off})
            rows.append({"dataset": d, "method": "coop", "k": 2, "seed": s, "base": 0.1, "new": 0.1})
    return pd.DataFrame(rows)


def _res(name, a):
    return ContinualResult(name, np.asarray(a, dtype=float), 1.0, 10)


def test_figures_build():
    import matplotlib.pyplot as plt

    r = {"a": _res("a", [[0.9, 0], [0.8, 0.9]]), "b": _res("b", [[0.5, 0], [0.1, 0.7]])}
    figs = [plots.accuracy_matrices(r),
            plots.tradeoff(pd.DataFrame(l2p.lwf_tradeoff_rows({"vae_gen_pool": r["a"], "vae_gen_pool_lwf1": r["b"]},
                                                               [("vae_gen_pool", 0.0), ("vae_gen_pool_lwf1", 1.0)])),
                           x="gen_lwf_weight"),
            plots.selection_heatmaps({"p": np.eye(3)}, row_labels=list("abc"), col_labels=list("xyz")),
            plots.image_grid([("row", [np.zeros((4, 4, 3)), np.zeros((2, 5))])], cols=3),
            plots.grouped_bars(_b2n(), metrics=["base", "new"], index="dataset", columns="method"),
            plots.curves(pd.DataFrame({"k": [1, 2, 1, 2], "m": list("aabb"), "H": [.1, .2, .3, .4], "H_sd": [0.01] * 4}),
                         x="k", metrics=["H"], group="m", hlines={"H": 0.2}, err="_sd")]
    assert all(len(f.axes) >= 1 for f in figs)
    for f in figs:
        plt.close(f)


def test_holdout_is_disjoint_and_balanced():
    import torch

    from vpkit.data import ImageSet, shift

    n = 60
    imgs = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    ds = ImageSet(imgs, torch.arange(n) % 3, ["a", "b", "c"], "toy")
    rest, val = shift.holdout(ds, per_class=4, seed=1)
    ids = lambda d: set(d.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert not ids(rest) & ids(val) and len(rest) + len(val) == n
    assert shift.class_counts(val) == [4, 4, 4]


def test_select_lrs_takes_the_best_validation_accuracy(monkeypatch):
    from vpkit.studies import pro_tuning

    class H:
        loss = [1.0]

    score = {("a", 0.1): 0.5, ("a", 0.3): 0.7, ("a", 1.0): 0.6}
    calls = []

    def fake(method, backbone, train_ds, test_sets, *, lr, **kw):
        calls.append((method, lr))
        return None, H(), {"val": score[(method, lr)]}

    monkeypatch.setattr(pro_tuning, "fit_and_evaluate", fake)
    lrs, rows = pro_tuning.select_lrs(["a", "b"], None, None, None, lrs={"a": [0.1, 0.3, 1.0], "b": [0.05]},
                                      num_classes=2, epochs=1, batch_size=2, seed=0, weight_decay=0.0, amp=False, progress=False)
    assert lrs == {"a": 0.3, "b": 0.05} and len(rows) == 3 and ("b", 0.05) not in calls  # one candidate: no trial
    with pytest.raises(ValueError, match="no learning rate"):
        pro_tuning.select_lrs(["c"], None, None, None, lrs={}, num_classes=2, epochs=1, batch_size=2, seed=0,
                              weight_decay=0.0, amp=False)




def test_vpt_method_table_and_studies():
    from vpkit.studies import vpt as protocol

    summary = pd.DataFrame([{"task": t, "method": m, "acc_mean": a, "acc_std": 0.01, "n_seeds": 3, "trainable": n,
                             "percent_of_backbone": n / 100, "images_per_s": 10.0}
                            for t, m, a, n in [("a", "linear", 0.5, 1), ("b", "linear", 0.7, 1),
                                               ("a", "vpt_deep", 0.6, 5), ("b", "vpt_deep", 0.9, 5)]])
    table, grp, per_method = protocol.method_table(summary, {"a": "natural", "b": "structured"})
    row = table.set_index("method").loc["vpt_deep"]
    assert row["a"] == "60.0 ± 2.5" and row["mean_all"] == 75.0  # ± = t(0.975, 2) * SD / sqrt(3), not the SD and row["mean_structured"] == 90.0
    assert grp.loc["linear", "all"] == pytest.approx(0.6) and per_method.loc["vpt_deep", "trainable"] == 5
    studies = protocol.vpt_ablation_studies(num_tokens=[1, 5], depths=[1, 6, 12], locations=["add"], outputs=["cls"],
                                            max_depth=6)
    assert list(studies["prompt_depth"]) == ["1", "6"] and studies["num_tokens"]["5"] == {"num_tokens": 5}

"""Pro-Tuning's claims decided from saved results only (``claims_from_results``), on constructed tables and
per-example outcomes written to a temporary results folder: each claim can hold, fail, be inconclusive, and be not
testable where that applies. Also the notebook's tables and figures on constructed data."""
import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vpkit import report, stats  # noqa: E402
from vpkit.studies import pro_tuning as study  # noqa: E402

SEEDS = (0, 1, 2)
N_TEST, N_CELLS, N_CORR = 400, 6, 200
METHODS = ["linear", "full", "partial_1", "partial_2", "bias", "adapter", "side", "protuning"]
PARAMS = {"linear": (12810, 0.38), "full": (3383818, 100.38), "partial_1": (1030410, 30.6), "partial_2": (2683050, 79.6),
          "bias": (33818, 1.0), "adapter": (53852, 1.6), "side": (275611, 8.2), "protuning": (128306, 3.8)}
SETTINGS = {"balanced": 1, "lt50": 50, "lt100": 100}


def flags(p, shape, seed):
    """Correct flags with exactly round(p * n) correct per row, shuffled (accuracies exact, pairing random)."""
    rng = np.random.default_rng(seed)
    shape = (shape,) if isinstance(shape, int) else shape
    n = shape[-1]
    rows = np.zeros((int(np.prod(shape[:-1])), n), dtype=bool)
    for r in rows:
        r[rng.permutation(n)[:int(round(p * n))]] = True
    return rows.reshape(shape)


def write(tmp_path, *, acc=None, corr=None, clean=None, methods=METHODS, vit=None, pcounts=None, params=PARAMS,
          seeds=SEEDS, same=None):
    """A results folder as the notebook writes it. ``acc``: {(method, setting) or method: accuracy}; ``corr`` /
    ``clean``: {method: accuracy on corrupted / clean copies}; ``vit``: {method: accuracy on lt100};
    ``same``: {(method, setting): (other method, setting)} reuses the other run's flags rolled by one (a tie)."""
    acc, corr, clean, vit = acc or {}, corr or {}, clean or {}, vit or {}
    out, rows = {}, []
    for i, m in enumerate(methods):
        for j, s in enumerate(SETTINGS):
            p = acc.get((m, s), acc.get(m, 0.6))
            for k in seeds:
                out[study.outcome_key(m, s, k)] = flags(p, N_TEST, 1000 * i + 100 * j + k)
                rows.append({"backbone": "toy", "setting": s, "method": m, "seed": k, "acc": p, "lr": 1e-3,
                             "trainable_params": params[m][0], "percent_of_backbone": params[m][1]})
        for k in seeds:
            out[study.outcome_key(m, "corruption", k)] = flags(corr.get(m, 0.5), (N_CELLS, N_CORR), 7000 + 10 * i + k)
            out[study.outcome_key(m, "corruption_clean", k)] = flags(clean.get(m, 0.8), N_CORR, 8000 + 10 * i + k)
    for (m, s), (m2, s2) in (same or {}).items():
        for k in seeds:
            out[study.outcome_key(m, s, k)] = np.roll(out[study.outcome_key(m2, s2, k)], 1)
    for i, (m, p) in enumerate(vit.items()):
        for k in seeds:
            out[study.outcome_key(f"vit_{m}", "lt100", k)] = flags(p, N_TEST, 9000 + 10 * i + k)
    res = report.Results(tmp_path, profile="offline", seed=0)
    res.outcomes(out)
    res.table("accuracy_long", pd.DataFrame(rows))
    pd.DataFrame(pcounts if pcounts is not None else
                 [{"arch": "resnet50", "kind": "cnn", "num_classes": 10, "full": 23528522, "protuning": 3776064,
                   "factor": 6.23},
                  {"arch": "deit_base_patch16_224", "kind": "vit", "num_classes": 120, "full": 85890936,
                   "protuning": 1695864, "factor": 50.65}]).to_csv(tmp_path / "paper_scale_param_counts.csv",
                                                                   index=False)
    cfg = {"profile": "offline", "settings": SETTINGS, "methods": methods, "vit_methods": list(vit),
           "vit_backbone": "vit_s14_dinov2", "vit_setting": "lt100", "corruption_setting": "balanced"}
    (tmp_path / study.CLAIM_INPUTS).write_text(json.dumps(study.claim_inputs(cfg, seeds=list(seeds), backbone="toy",
                                                                             num_classes=10)))
    return {c.id: c for c in study.claims_from_results(tmp_path)}


def test_clear_wins_hold_and_every_claim_has_a_verdict(tmp_path):
    c = write(tmp_path, acc={"protuning": 0.9}, corr={"protuning": 0.8}, clean={"protuning": 0.85},
              vit={"linear": 0.5, "protuning": 0.8})
    for cid in ("lt_beats_linear", "lt_beats_partial", "lt_beats_adapter", "lt_beats_bias_side", "lt_beats_full",
                "generic_beats_tuning", "generic_beats_full", "corruption_beats_full",
                "corruption_relative_robustness", "corruption_beats_tuning", "vit_lt_beats_linear"):
        d = c[cid].decision
        assert d.verdict == stats.HOLDS and c[cid].holds, cid
        assert d.unit == "points" and d.n_seeds == 3 and d.ci_low > 0, cid
    assert c["lt_beats_full"].decision.margin == pytest.approx(30.0)  # 90 vs 60 %, in points
    assert "lt50 vs full" in c["lt_beats_full"].ours and "lt100 vs full" in c["lt_beats_full"].ours
    assert "hierarchical bootstrap" in c["lt_beats_linear"].decision.test
    assert {x.verdict for x in c.values()} <= set(stats.VERDICTS)


def test_clear_losses_do_not_hold(tmp_path):
    c = write(tmp_path, acc={"protuning": 0.3}, corr={"protuning": 0.2}, clean={"protuning": 0.8},
              vit={"linear": 0.8, "protuning": 0.4})
    for cid in ("lt_beats_linear", "lt_beats_full", "generic_beats_tuning", "generic_beats_full",
                "corruption_beats_full", "corruption_relative_robustness", "corruption_beats_tuning",
                "vit_lt_beats_linear"):
        assert c[cid].decision.verdict == stats.FAILS and not c[cid].holds, cid


def test_a_tie_is_inconclusive(tmp_path):
    """Pro-Tuning's flags are linear's, rolled by one: the same accuracy, so the interval straddles 0."""
    c = write(tmp_path, acc={"protuning": 0.6, "linear": 0.6},
              same={("protuning", "lt50"): ("linear", "lt50"), ("protuning", "lt100"): ("linear", "lt100")})
    d = c["lt_beats_linear"].decision
    assert d.verdict == stats.INCONCLUSIVE and d.ci_low < 0 < d.ci_high and d.margin == pytest.approx(0)


def test_every_setting_must_hold(tmp_path):
    """Winning on LT50 and losing on LT100 is 'does not hold'; winning on LT50 and tying on LT100 is inconclusive."""
    lose = write(tmp_path, acc={("protuning", "lt50"): 0.9, ("protuning", "lt100"): 0.3})
    assert lose["lt_beats_linear"].decision.verdict == stats.FAILS
    tie = write(tmp_path, acc={("protuning", "lt50"): 0.9, "linear": 0.6, ("protuning", "lt100"): 0.6},
                same={("protuning", "lt100"): ("linear", "lt100")})
    d = tie["lt_beats_linear"].decision
    assert d.verdict == stats.INCONCLUSIVE and "lt100 vs linear" in d.test  # the weakest case carries the interval


def test_generic_claim_leaves_out_partial_fine_tuning(tmp_path):
    """Partial-2 retrains 80% of the backbone: it is not a parameter-efficient baseline, so beating it is not
    required; the generic claim compares linear, BitFit, adapter and side tuning only."""
    c = write(tmp_path, acc={"protuning": 0.8, ("partial_2", "balanced"): 0.95, ("partial_1", "balanced"): 0.9})
    g = c["generic_beats_tuning"]
    assert g.decision.verdict == stats.HOLDS
    assert "partial" not in g.ours and all(f"balanced vs {m}" in g.ours for m in study.PEFT_BASELINES)
    assert all(PARAMS[m][1] <= 10 for m in study.PEFT_BASELINES)


def test_parameter_claims_exact_and_circular(tmp_path):
    c = write(tmp_path)
    f = c["fewer_params_than_full"].decision
    assert f.verdict == stats.HOLDS and f.ci_low == f.ci_high == pytest.approx(3383818 / 128306)
    assert "exact value" in f.test
    r50 = c["param_factor_resnet50"].decision
    assert r50.verdict == stats.NOT_TESTABLE and r50.reason.startswith("by construction")
    deit = c["param_factor_deit"].decision  # 50.6x vs the paper's 27x: not within 5%
    assert deit.verdict == stats.FAILS and deit.margin == pytest.approx(100 * (50.65 / 27 - 1))
    close = write(tmp_path, params={**PARAMS, "full": (100, 100.0), "protuning": (50, 50.0)},
                  pcounts=[{"arch": "deit_base_patch16_224", "kind": "vit", "num_classes": 120, "full": 2700,
                            "protuning": 100, "factor": 27.5}])
    assert close["param_factor_deit"].decision.verdict == stats.HOLDS  # 27.5 vs 27: within 5%
    assert close["fewer_params_than_full"].decision.verdict == stats.FAILS  # 2x < the paper's 6.2x
    assert "param_factor_resnet50" not in close


def test_not_run_is_not_testable(tmp_path):
    c = write(tmp_path, methods=["linear", "full", "protuning"], vit={"protuning": 0.5})
    for cid in ("lt_beats_partial", "lt_beats_adapter", "lt_beats_bias_side", "vit_lt_beats_linear"):
        d = c[cid].decision
        assert d.verdict == stats.NOT_TESTABLE and "not run" in d.reason and not c[cid].holds, cid
    assert c["generic_beats_tuning"].decision.verdict != stats.NOT_TESTABLE  # linear is there
    assert "(linear;" in c["generic_beats_tuning"].statement
    half = write(tmp_path, methods=["linear", "full", "partial_1", "protuning"])  # "partial-1 and partial-2"
    assert half["lt_beats_partial"].decision.verdict == stats.NOT_TESTABLE
    assert half["lt_beats_partial"].decision.reason.endswith("partial_2")


def test_one_seed_uses_the_paired_bootstrap_and_recomputes_identically(tmp_path):
    c = write(tmp_path, acc={"protuning": 0.9}, seeds=(0,))
    d = c["lt_beats_full"].decision
    assert d.n_seeds == 1 and "paired bootstrap" in d.test and d.verdict == stats.HOLDS
    again = {x.id: x.as_dict() for x in study.claims_from_results(tmp_path)}
    assert again == {k: v.as_dict() for k, v in c.items()}


def test_tables_and_figures_on_constructed_runs():
    rng = np.random.default_rng(0)
    methods = ["linear", "full", "protuning"]
    results = pd.DataFrame([{"setting": s, "method": m, "seed": k, "acc": rng.uniform(0.4, 0.9), "lr": 1e-3,
                             "trainable_params": PARAMS[m][0], "percent_of_backbone": PARAMS[m][1]}
                            for s in SETTINGS for m in methods for k in SEEDS])
    corr = pd.DataFrame([{"method": m, "seed": k, "clean_acc": 0.8, "corruption": t, "family": "noise", "severity": v,
                          "acc": rng.uniform(0.2, 0.8)} for m in methods for k in SEEDS
                         for t in ("gaussian_noise", "contrast") for v in (1, 2, 3, 4, 5)])
    wide = study.accuracy_table(results, SETTINGS, methods)
    pm = "± (95% CI half-width)"  # every interval column of the tables says what its ± is
    assert list(wide.method) == methods and {"balanced %", f"balanced {pm}", f"lt100 {pm}"} <= set(wide.columns)
    row = wide.set_index("method").loc["full"]
    assert row["balanced %"] == pytest.approx(100 * results.query("method == 'full' and setting == 'balanced'").acc.mean())
    mca = study.mca_table(corr, methods).set_index("method")
    assert mca.loc["linear", "mCA %"] == pytest.approx(100 * corr[corr.method == "linear"].acc.mean())
    assert f"mCA {pm}" in mca.columns and list(study.per_type_table(corr, methods).columns) == [
        "method", "gaussian_noise %", "contrast %"]
    long = study.percent_table(corr, ["clean_acc", "acc"])
    assert long["acc %"].tolist() == pytest.approx((100 * corr["acc"]).tolist()) and "acc" not in long
    h = study.headline(results, corr, SETTINGS)
    assert h["seeds"] == 3 and h["param_factor_full_over_protuning"] == pytest.approx(3383818 / 128306)

    fig = study.figure_severity(corr, methods=methods, chance=0.1)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "2", "3", "4", "5"]  # integers only
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # legend outside the axes
    colours = {c.get_label(): c.lines[0].get_color() for c in ax.containers}  # one errorbar line per method
    from vpkit.plots import method_color
    assert colours == {study.label(m): method_color(m) for m in methods}  # readable names in the legend
    assert "Pro-Tuning" in colours and "linear probe" in colours
    xs = [c.lines[0].get_xdata()[1] for c in ax.containers]  # severity 1: the methods are dodged around the tick
    assert len(set(xs)) == len(methods) and all(abs(x - 1) < 0.5 for x in xs)
    fig = study.figure_corruption_per_type(corr, methods=methods, chance=0.1, title="toy")
    leg = fig.axes[0].get_legend()
    assert leg.get_bbox_to_anchor().x0 > fig.axes[0].get_window_extent().x1 - 1
    fig = study.figure_accuracy_vs_params(results, corr, settings=SETTINGS, methods=methods)
    assert len(fig.axes) == len(SETTINGS) + 1 and not any(ax.texts for ax in fig.axes)  # a legend, no point labels
    assert fig.axes[1].get_title().startswith("long tail, imbalance ratio")
    claims = [report.Claim("lt_beats_full", "s", "p", "o", decision=stats.compare(flags(0.7, (3, 50), 1),
                                                                                 flags(0.5, (3, 50), 2)).scaled())]
    ax = study.figure_claim_margins(claims).axes[0]
    assert ax.get_yticklabels()[0].get_text() == "lt_beats_full"
    paper = [ln for ln in ax.lines if ln.get_marker() == "x"]  # the paper's mark is black, not a verdict colour
    assert paper and all(ln.get_color() == "k" for ln in paper)


def test_labels_are_readable():
    assert [study.label(x) for x in ("protuning", "partial_1", "linear", "lt50", "vit_protuning", "zoom_blur")] == [
        "Pro-Tuning", "partial-1", "linear probe", "long tail, imbalance ratio 50", "ViT: Pro-Tuning", "zoom blur"]


def test_prompt_block_maps_explain_the_ratio():
    import torch
    maps = [{"stage": i, "module": f"blocks.{i}", "feature": torch.randn(4, 3, 8 >> i, 8 >> i),
             "prompt": 0.1 * torch.randn(4, 3, 8 >> i, 8 >> i), "relative_norm": 0.1} for i in range(4)]
    fig = study.figure_prompt_block_maps(maps, torch.rand(8, 8), blend=lambda f, p: f + p, n_images=4)
    titles = [a.get_title() for a in fig.axes]
    assert "stage 1 (blocks.0) output" in titles[1] and any("10.0%" in t for t in titles)
    assert not any(t.startswith("blocks.") for t in titles)  # stage numbers, module names only in brackets
    assert "relative to the frozen stage output" in fig.texts[-1].get_text()


def test_run_grid_pairs_seeds_on_one_test_set(monkeypatch):
    """Every seed draws its own training sets; every run is tested on the same images; outcomes are keyed
    method/setting/seed."""
    import torch

    from vpkit.data import ImageSet

    class H:
        loss, throughput, precision = [0.5], 1.0, "fp32"

    class R:
        trainable, percent_of_backbone = 5, 1.0

    class M:
        report = R()
        model = None

    drawn = []

    def fake_fit(method, backbone, train_ds, test_sets, *, lr, seed, **kw):
        drawn.append((method, seed, tuple(train_ds.images[:, 0, 0, 0].tolist())))
        return M(), H(), {}

    def fake_eval(model, loader, **kw):
        return {"acc": 0.5, "n": 4, "correct": torch.tensor([True, False, True, False])}

    monkeypatch.setattr(study, "fit_and_evaluate", fake_fit)
    monkeypatch.setattr("vpkit.train.evaluate", fake_eval)
    monkeypatch.setattr("vpkit.data.loader_for", lambda ds, b, **kw: None)
    n = 60
    imgs = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    pool = ImageSet(imgs, torch.arange(n) % 3, ["a", "b", "c"], "toy")

    class B:
        name = "toy"

    g = study.run_grid(["linear", "protuning"], B(), pool, pool, seeds=[0, 1], settings={"balanced": 1, "lt2": 2},
                       n_max=4, balanced_per_class=3, lrs={"linear": 0.1, "protuning": 0.01}, num_classes=3, epochs=1,
                       batch_size=2, weight_decay=0.0, amp=False, progress=False, keep_setting="balanced")
    assert set(g.outcomes) == {f"{m}/{s}/{k}" for m in ("linear", "protuning") for s in ("balanced", "lt2")
                               for k in (0, 1)}
    by_seed = {k: {d for m, s, d in drawn if s == k} for k in (0, 1)}
    assert by_seed[0] != by_seed[1]  # a seed draws its own training sets
    assert {d for m, s, d in drawn if s == 0 and m == "linear"} == {d for m, s, d in drawn if s == 0 and m == "protuning"}
    assert set(g.kept) == {0, 1} and set(g.kept[0]) == {"linear", "protuning"}
    assert pd.DataFrame(g.rows).groupby("seed").size().to_dict() == {0: 4, 1: 4}

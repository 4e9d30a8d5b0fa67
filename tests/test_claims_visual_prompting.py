"""Bahng et al.'s claims decided from constructed results folders: each can hold, fail or be untestable."""
import numpy as np
import pandas as pd
import pytest
import torch

from vpkit import report, stats
from vpkit.studies import visual_prompting as vp

N, SEEDS = 400, (0, 1, 2)


def _flags(p, seed):
    return np.random.default_rng(seed).random(N) < p


def write(d, *, tp=0.2, vp_tp=0.5, vp_tp_other=None, probe=0.7, fixed=0.4, random_=0.3, vis=(0.1, 0.15),
          polarities=True):
    """Two datasets; the chosen polarity is ``<name>_inv`` (gap 0.1, VP+TP accuracy ``vp_tp``), the other
    ``<name>`` (gap 0.3, ``vp_tp_other``, default the same)."""
    r = report.Results(d, profile="smoke", seed=0)
    main, vision, templates, out = [], [], [], {}
    for k, name in enumerate(("a", "b")):
        points = [(f"{name}_inv", True, 0.1)] + ([(name, False, 0.3)] if polarities else [])
        for s in SEEDS:
            for p, chosen, gap in points:
                acc = vp_tp if chosen or vp_tp_other is None else vp_tp_other
                seed = 100 * k + 10 * s + chosen
                out[f"vlm/{p}/tp/{s}"] = _flags(tp, seed)
                out[f"vlm/{p}/vp_tp/{s}"] = _flags(acc, seed + 1000)
                out[f"probe/{p}/{s}"] = _flags(probe, seed + 2000)
                main.append({"dataset": name, "point": p, "seed": s, "chosen": chosen, "gap": gap,
                             "gain": acc - tp, "n_train": 100})
            for m, (un, v) in zip(("first_n", "frequency"), (vis, vis)):
                out[f"vision/{name}/{m}/unprompted/{s}"] = _flags(un, s + 3000)
                out[f"vision/{name}/{m}/vp/{s}"] = _flags(v, s + 4000)
                vision.append({"dataset": name, "seed": s, "mapping": m, "chosen_by_val": m == "frequency"})
            if name == "a":
                out[f"template/fixed_patch/{s}"] = _flags(fixed, s + 5000)
                out[f"template/random_patch/{s}"] = _flags(random_, s + 6000)
                templates.append({"template": "padding", "point": "a_inv", "seed": s})
    r.table("main_vlm", pd.DataFrame(main))
    r.table("vision_only", pd.DataFrame(vision))
    r.table("templates", pd.DataFrame(templates))
    r.outcomes(out)
    return {c.id: c for c in vp.claims_from_results(d)}


def test_clear_results_hold(tmp_path):
    c = write(tmp_path, vp_tp=0.5, vp_tp_other=0.8)
    for cid in ("padding_gt_fixed_gt_random", "vp_tp_beats_tp", "vp_helps_vlm_more", "vp_tp_beats_vision_vp",
                "vp_tp_below_linear_probe_on_average"):
        assert c[cid].verdict == stats.HOLDS, (cid, c[cid].decision)
    # larger gap (the non-inverted point, 0.3) with the larger gain (0.8 - 0.2): holds
    assert c["gain_rises_with_gap"].verdict == stats.HOLDS
    assert c["vp_tp_beats_tp"].decision.n_seeds == 3 and c["vp_tp_beats_tp"].decision.unit == "points"


def test_reversed_results_do_not_hold_and_ties_are_inconclusive(tmp_path):
    c = write(tmp_path / "rev", tp=0.6, vp_tp=0.9, vp_tp_other=0.7, probe=0.1, fixed=0.6, random_=0.7, vis=(0.1, 0.6))
    for cid in ("gain_rises_with_gap", "vp_tp_below_linear_probe_on_average", "padding_gt_fixed_gt_random"):
        assert c[cid].verdict == stats.FAILS, cid
    low = write(tmp_path / "low", tp=0.6, vp_tp=0.3)
    assert low["vp_tp_beats_tp"].verdict == stats.FAILS
    tie = write(tmp_path / "tie", vp_tp=0.5, vp_tp_other=None, probe=0.5)
    assert tie["vp_tp_below_linear_probe_on_average"].verdict == stats.INCONCLUSIVE
    assert tie["gain_rises_with_gap"].verdict == stats.INCONCLUSIVE


def test_one_polarity_makes_the_gap_claim_untestable(tmp_path):
    c = write(tmp_path, polarities=False)
    assert c["gain_rises_with_gap"].verdict == stats.NOT_TESTABLE and "polarity" in c["gain_rises_with_gap"].decision.reason


def test_settings_reject_unknown_and_keep_seeds():
    assert vp.settings("offline")["n_seeds"] >= 3 and vp.settings("smoke")["n_seeds"] == 1
    with pytest.raises(Exception, match="n_sed|allowed|unknown"):
        vp.settings("offline", n_sed=2)


def _summary():
    rows = []
    for name, gap in (("a", 0.1), ("b", 0.2)):
        for p, chosen, g in ((f"{name}_inv", True, gap), (name, False, gap + 0.05)):
            for s in SEEDS:
                rows.append({"dataset": name, "point": p, "chosen": chosen, "seed": s, "gap": g, "tp_zero_shot": 0.2,
                             "vp_tp": 0.3 + 0.01 * s, "gain": 0.1 + 0.01 * s, "probe_features": 0.6 + 0.02 * s,
                             "chance": 0.1, "n_test": 200})
    main = pd.DataFrame(rows)
    return main, vp.seed_summary(main, ["dataset", "point", "chosen"], ["tp_zero_shot", "vp_tp", "gain",
                                                                        "probe_features", "gap"])


def test_percent_table_scales_accuracies_and_their_intervals_only():
    _, summary = _summary()
    pct = vp.percent_table(summary)
    for c in ("tp_zero_shot", "vp_tp_lo", "gain_hi", "gap"):
        assert np.allclose(pct[c], 100 * summary[c])
    assert (pct.n_seeds == summary.n_seeds).all() and (pct.point == summary.point).all()
    widths = pd.DataFrame({"prompt_size": [2, 8], "seed": [0, 0], "acc": [0.15, 0.22], "trainable": [10, 20]})
    assert vp.percent_table(widths).prompt_size.tolist() == [2, 8]


def test_figures_use_percent_no_text_labels_and_template_shades():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from vpkit import plots

    main, summary = _summary()
    fig = vp.baselines_figure(summary, main, model="test")
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 100)
    from matplotlib.container import ErrorbarContainer

    tp_err = next(c for c in ax.containers if isinstance(c, ErrorbarContainer)).lines[2][0].get_segments()
    # TP: the binomial interval over the test images, not the zero-width seed interval
    assert all(a[1] < 20 < b[1] and b[1] - a[1] > 5 for a, b in tp_err)  # TP is 20% on every seed

    fig = vp.gain_gap_figure(summary, gap_model="Lite0")
    ax = fig.axes[0]
    assert not ax.texts, "points are told apart by marker and fill in a legend, not by text labels"
    assert "95%" in ax.get_title() and ax.get_legend() is not None
    assert max(ax.get_xlim()) > 20  # the gap in %

    tmpl = vp.seed_summary(pd.DataFrame({"template": ["padding", "fixed_patch", "random_patch"] * 3,
                                         "prompt_size": [8, 16, 16] * 3, "seed": np.repeat(SEEDS, 3),
                                         "acc": np.linspace(0.1, 0.3, 9)}), ["template", "prompt_size"], ["acc"])
    wid = vp.seed_summary(pd.DataFrame({"prompt_size": [2, 8] * 3, "seed": np.repeat(SEEDS, 2),
                                        "acc": np.linspace(0.1, 0.3, 6)}), "prompt_size", ["acc"])
    fig = vp.templates_widths_figure(tmpl, wid, baseline=0.12, point="a_inv", image_size=64, main_width=8, chance=0.1)
    bars = [to_hex(p.get_facecolor()) for p in fig.axes[0].patches]
    others = {plots.method_color(m) for m in ("linear_probe", "lwf", "tp", "full")}
    assert len(set(bars)) == 3 and not set(bars) & others
    assert bars[0] == to_hex(plots.method_color("vp_tp"))


# ---- the emoji world of the gap study (issue 15, item 4) ----
CATEGORIES, STYLES = ("emoji_a", "emoji_b", "emoji_c", "emoji_d", "emoji_e"), ("google", "twitter")


def write_emoji(d, *, gain_of_gap, tp=0.2, styles=STYLES, categories=CATEGORIES, unseen=()):
    """Emoji rows and outcomes: category k, style j (``styles``, then the ``unseen`` ones) has gap
    0.1 + 0.05 k + 0.2 j and VP+TP accuracy ``tp + gain_of_gap(gap)``; returns the emoji claims by id."""
    rows, out = [], {}
    for k, name in enumerate(categories):
        for j, st in enumerate((*styles, *unseen)):
            gap, p = 0.1 + 0.05 * k + 0.2 * j, f"{name}@{st}"
            acc = tp + gain_of_gap(gap)
            for s in SEEDS:
                seed = 100 * k + 10 * j + s
                out[f"emoji/{p}/tp/{s}"] = _flags(tp, seed)
                out[f"emoji/{p}/vp_tp/{s}"] = _flags(acc, seed + 1000)
                rows.append({"dataset": name, "style": st, "seen": st not in unseen, "point": p, "seed": s,
                             "gap": gap, "gain": acc - tp})
    pd.DataFrame(rows).to_csv(d / "emoji_vlm.csv", index=False)
    return {c.id: c for c in vp.emoji_claims(d, out, list(SEEDS))}


def test_emoji_claims_hold_fail_and_are_untestable_without_the_world(tmp_path):
    (tmp_path / "up").mkdir(); (tmp_path / "down").mkdir(); (tmp_path / "one").mkdir()  # noqa: E702
    up = write_emoji(tmp_path / "up", gain_of_gap=lambda g: g)  # gain = gap: rises within and across
    for cid in ("emoji_vp_tp_beats_tp", "emoji_gain_rises_with_gap", "gain_gap_correlation_across_datasets"):
        assert up[cid].verdict == stats.HOLDS, (cid, up[cid].decision)
    corr = up["gain_gap_correlation_across_datasets"].decision
    assert corr.margin > 0.9 and corr.n_examples == 10 and "5 dataset clusters" in corr.test
    down = write_emoji(tmp_path / "down", gain_of_gap=lambda g: 0.7 - g, tp=0.1)  # gain falls with the gap
    assert down["emoji_gain_rises_with_gap"].verdict == stats.FAILS
    assert down["gain_gap_correlation_across_datasets"].verdict == stats.FAILS
    assert down["emoji_vp_tp_beats_tp"].verdict == stats.HOLDS  # still a gain on every dataset
    one = write_emoji(tmp_path / "one", gain_of_gap=lambda g: g, styles=("google",), categories=CATEGORIES[:2])
    assert one["emoji_gain_rises_with_gap"].verdict == stats.NOT_TESTABLE
    assert one["gain_gap_correlation_across_datasets"].verdict == stats.NOT_TESTABLE
    assert up["emoji_unseen_style_gains_more"].verdict == stats.NOT_TESTABLE  # no unseen style in this run
    absent = {c.id: c for c in vp.emoji_claims(tmp_path, {}, list(SEEDS))}
    assert {c.verdict for c in absent.values()} == {stats.NOT_TESTABLE} and len(absent) == 5


def test_unseen_style_claims_read_it_and_leave_the_seen_claims_as_they_were(tmp_path):
    for sub in ("seen", "up", "down"):
        (tmp_path / sub).mkdir()
    seen = write_emoji(tmp_path / "seen", gain_of_gap=lambda g: g)
    up = write_emoji(tmp_path / "up", gain_of_gap=lambda g: g, unseen=("openmoji",))
    for cid in ("emoji_vp_tp_beats_tp", "emoji_gain_rises_with_gap", "gain_gap_correlation_across_datasets"):
        a, b = seen[cid].decision, up[cid].decision
        assert (a.verdict, a.margin, a.ci_low, a.ci_high) == (b.verdict, b.margin, b.ci_low, b.ci_high), cid
    gm = up["emoji_unseen_style_gains_more"]
    # unseen gap 0.5 + 0.05 k vs seen 0.1 / 0.3: gain 0.3 points more on average, on 5 x 400 pooled test images
    assert gm.verdict == stats.HOLDS and gm.decision.margin == pytest.approx(30, abs=5)
    assert gm.decision.n_examples == 5 * N and gm.decision.n_seeds == 3
    corr = up["gain_gap_correlation_with_unseen_style"].decision
    assert corr.verdict == stats.HOLDS and corr.n_examples == 15
    down = write_emoji(tmp_path / "down", gain_of_gap=lambda g: 0.7 - g, tp=0.1, unseen=("openmoji",))
    assert down["emoji_unseen_style_gains_more"].verdict == stats.FAILS
    assert down["gain_gap_correlation_with_unseen_style"].verdict == stats.FAILS


def test_emoji_profiles_and_bad_names():
    off = vp.settings("offline")["emoji"]
    assert len(off["datasets"]) * len(off["styles"]) >= 10 and off["vlm"] == "offline_concepts"
    assert vp.settings("paper")["emoji"] is None and "no emoji world" in vp.emoji_missing(vp.settings("paper"))
    with pytest.raises(ValueError, match="name="):
        vp.emoji_task("emoji_nope", "google", train_views=1, test_views=1)
    with pytest.raises(ValueError, match="style="):
        vp.emoji_task("emoji_food", "apple", train_views=1, test_views=1)
    assert off["unseen_styles"] == ["openmoji"] and not set(off["unseen_styles"]) & set(off["styles"])


def test_emoji_styles_are_paired_view_for_view():
    from vpkit.data import emoji

    if emoji.not_fetched():
        pytest.skip(emoji.not_fetched())
    (pool_g, test_g), (pool_t, test_t) = (vp.emoji_task("emoji_food", st, train_views=2, test_views=2)
                                          for st in ("google", "twitter"))
    assert torch.equal(test_g.labels, test_t.labels) and test_g.classes == test_t.classes
    assert not torch.equal(test_g.images, test_t.images)  # different artwork ...
    # ... on the same background in the same view (a corner pixel is background unless a rotated emoji covers it)
    same_bg = (pool_g.images[:, :, 0, 0] == pool_t.images[:, :, 0, 0]).all(1).float().mean()
    assert same_bg > 0.9
    if not emoji.unseen_missing("openmoji"):  # the unseen style draws the same views too
        _, test_o = vp.emoji_task("emoji_food", "openmoji", train_views=2, test_views=2)
        assert torch.equal(test_o.labels, test_g.labels) and not torch.equal(test_o.images, test_g.images)
        assert (test_o.images[:, :, 0, 0] == test_g.images[:, :, 0, 0]).all(1).float().mean() > 0.9
    # the pool and the test views differ (the test's view 0 is plain, on white)
    assert (test_g.images[::2, :, 0, 0] == 255).all() and not torch.equal(pool_g.images[::2], test_g.images[1::2])


def test_emoji_gap_figure_marks_the_unseen_style():
    import matplotlib
    matplotlib.use("Agg")

    rows = [{"dataset": f"emoji_{k}", "style": st, "seen": st != "openmoji", "point": f"emoji_{k}@{st}", "seed": s,
             "gap": 0.2 + 0.1 * j, "gain": 0.01 * (j + s)}
            for k in "ab" for j, st in enumerate(("google", "twitter", "openmoji")) for s in SEEDS]
    summary = vp.seed_summary(pd.DataFrame(rows), ["dataset", "style", "seen", "point"], ["gap", "gain"])
    labels = [t.get_text() for t in vp.emoji_gap_figure(summary, gap_model="Lite0").axes[0].get_legend().get_texts()]
    assert "style: openmoji (unseen)" in labels and "style: google" in labels

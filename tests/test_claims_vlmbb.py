"""The claims of notebooks 00_backbones and 00_vlm, decided by ``claims_from_results`` from constructed results
folders (protocol.json, zero_shot.csv, outcomes.npz): each claim can come out holds, does not hold /
inconclusive, and not testable where that applies."""
import json

import numpy as np
import pandas as pd
import pytest

from vpkit import report, stats
from vpkit.studies import backbones as bbs
from vpkit.studies import vlm as vs


def flags(n: int, acc: float, *, seed: int = 0) -> np.ndarray:
    """``n`` correct flags with exactly ``round(acc * n)`` correct, in a seeded random order."""
    a = np.zeros(n, dtype=bool)
    a[: int(round(acc * n))] = True
    return np.random.default_rng(seed).permutation(a)


def flip(a: np.ndarray, k: int, *, to: bool, seed: int = 1) -> np.ndarray:
    """``a`` with ``k`` of its flags that differ from ``to`` set to ``to`` (a paired change of k examples)."""
    b = a.copy()
    idx = np.flatnonzero(b != to)
    b[np.random.default_rng(seed).choice(idx, size=k, replace=False)] = to
    return b


def write(tmp_path, protocol: dict, outcomes: dict, zero_shot: pd.DataFrame | None = None, name: str = "protocol.json"):
    res = report.Results(tmp_path, profile="smoke", seed=0)
    res.outcomes(outcomes)
    res.json(name, protocol)
    if zero_shot is not None:
        res.table("zero_shot", zero_shot)
    return tmp_path


def by_id(claims):
    return {c.id: c for c in claims}


# ----------------------------------------------------------------------------------------------------------
# 00_backbones
# ----------------------------------------------------------------------------------------------------------

N = 600


def backbone_results(tmp_path, *, mixed="bf16", fp32_flips=(3, 2)):
    """One dataset ``ds``, one backbone ``bb``: pretrained 90% vs random 50% (clear win), vs raw pixels 89% with
    the differences spread out (a tie), 10-shot pretrained 55% vs raw 75% over 3 draws (clear loss); the fp32
    re-extraction differs from bf16 on ``fp32_flips`` = (up, down) examples."""
    pre = flags(N, 0.90, seed=1)
    out = {"bb-pretrained/ds/linear/0": pre, "bb-random/ds/linear/0": flags(N, 0.50, seed=2),
           "raw/ds/linear/0": flags(N, 0.89, seed=3)}
    for d in range(3):
        out[f"bb-pretrained/ds/10shot/{d}"] = flags(N, 0.55, seed=10 + d)
        out[f"raw/ds/10shot/{d}"] = flags(N, 0.75, seed=20 + d)
    if mixed != "fp32":
        up, down = fp32_flips
        out[f"precision-{mixed}/bb-pretrained/ds/linear/0"] = pre
        out["precision-fp32/bb-pretrained/ds/linear/0"] = flip(flip(pre, down, to=False, seed=4), up, to=True, seed=5)
    protocol = {"datasets": ["ds"], "backbones": ["bb"], "shots": [1, 10], "fewshot_seeds": 3, "n_train": 1000,
                "n_test": {"ds": N}, "img_sizes": {"bb": 56}, "mixed_precision": mixed,
                "precision_check": ["bb", "ds"] if mixed != "fp32" else None}
    return write(tmp_path, protocol, out, name=bbs.PROTOCOL)


def test_backbone_claims_hold_fail_and_tie(tmp_path):
    c = by_id(bbs.claims_from_results(backbone_results(tmp_path)))
    assert set(c) == {"ds/bb/pretrained>random", "ds/bb/pretrained>raw", "ds/bb/pretrained>raw/10-shot",
                      "bf16_keeps_accuracy"}
    win, tie, loss = c["ds/bb/pretrained>random"], c["ds/bb/pretrained>raw"], c["ds/bb/pretrained>raw/10-shot"]
    assert win.verdict == stats.HOLDS and win.decision.unit == "points"
    assert win.decision.margin == pytest.approx(40.0) and win.decision.n_examples == N
    assert tie.verdict == stats.INCONCLUSIVE and tie.decision.margin == pytest.approx(1.0)
    assert loss.verdict == stats.FAILS and loss.decision.n_seeds == 3  # few-shot draws are the seeds
    assert "hierarchical" in loss.decision.test and "paired" in win.decision.test
    eq = c["bf16_keeps_accuracy"]  # 5 of 600 examples differ: well inside +-1 point
    assert eq.verdict == stats.HOLDS and -1 <= eq.decision.ci_low <= eq.decision.ci_high <= 1
    assert all(x.holds == (x.verdict == stats.HOLDS) for x in c.values())


def test_precision_claim_fails_when_fp32_differs_and_is_untestable_without_mixed_precision(tmp_path):
    big = by_id(bbs.claims_from_results(backbone_results(tmp_path / "a", fp32_flips=(40, 0))))["bf16_keeps_accuracy"]
    assert big.verdict == stats.FAILS  # fp32 6.7 points better: the whole interval is outside +-1 point
    none = by_id(bbs.claims_from_results(backbone_results(tmp_path / "b", mixed="fp32")))["bf16_keeps_accuracy"]
    assert none.verdict == stats.NOT_TESTABLE and "fp32" in none.decision.reason


def test_backbone_claims_recompute_identically(tmp_path):
    d = backbone_results(tmp_path)
    a = [c.as_dict() for c in bbs.claims_from_results(d)]
    assert a == [c.as_dict() for c in bbs.claims_from_results(d)]


def test_backbone_accuracy_rows_use_the_interval_the_design_allows():
    one = bbs.accuracy_row(flags(200, 0.5)[None])
    assert one["interval"].startswith("Clopper") and one["ci_low"] < 0.5 < one["ci_high"] and one["acc_sd"] == 0
    draws = bbs.accuracy_row(np.stack([flags(200, a, seed=i) for i, a in enumerate((0.4, 0.5, 0.6))]))
    assert draws["interval"].startswith("t-interval") and draws["n_draws"] == 3
    assert draws["acc_sd"] == pytest.approx(0.1)


def test_backbone_settings_keep_the_precision_check_inside_the_run():
    cfg = bbs.settings("offline", datasets=["digits"])
    assert cfg["precision_check"] == ["vit_s14_dinov2", "digits"] and cfg["n_test"] is None


def test_probe_figure_builds_from_a_table():
    rows = [bbs.accuracy_row(np.stack([flags(50, 0.5 + 0.1 * i, seed=s) for s in range(n)]), dataset="ds",
                             representation=bbs.rep_label(rep), setting=bbs.setting_label(k), n_train=10)
            for i, rep in enumerate(["raw", "bb-pretrained", "bb-random"]) for k, n in ((None, 1), (1, 3))]
    fig = bbs.probe_figure(pd.DataFrame(rows), settings_order=["linear (all)", "1-shot"])
    assert len(fig.axes) == 1 and fig.legends


# ----------------------------------------------------------------------------------------------------------
# 00_vlm
# ----------------------------------------------------------------------------------------------------------

def vlm_results(tmp_path, *, emoji_skipped: str = ""):
    """fashion_mnist: zero-shot 30% (trained) vs 20% (untrained), 1-shot probe 50% (3 draws), open dictionary 26%
    (exactly the ridge value); digits: everything at chance."""
    n_f, n_d = 2000, 600
    out = {}
    for i, (vid, acc) in enumerate((("trained", 0.30), ("untrained", 0.20), ("trained_open", 0.26),
                                    ("untrained_open", 0.26))):
        out[f"zero_shot:{vid}:inverted/fashion_mnist/0"] = flags(n_f, acc, seed=50 + i)
        out[f"zero_shot:{vid}:plain/fashion_mnist/0"] = flags(n_f, 0.12, seed=7)
        for pol in ("inverted", "plain"):
            out[f"zero_shot:{vid}:{pol}/digits/0"] = flags(n_d, 0.10, seed=8 + len(vid))
    for ds, n, acc in (("fashion_mnist", n_f, 0.50), ("digits", n_d, 0.60)):
        out[f"linear_probe:all/{ds}/0"] = flags(n, 0.9, seed=3)
        for d in range(3):
            out[f"linear_probe:1shot/{ds}/{d}"] = flags(n, acc, seed=30 + d)
    if not emoji_skipped:
        t = flags(366, 0.30, seed=40)
        out["emoji_retrieval:trained/val/0"], out["emoji_retrieval:untrained/val/0"] = t, flip(t, 70, to=False)
        h = flags(172, 0.12, seed=41)
        out["emoji_retrieval:trained/held_out/0"], out["emoji_retrieval:untrained/held_out/0"] = h, flip(h, 2, to=False)
    zs = pd.DataFrame([{"dataset": ds, "variant": v, "invert": inv, "chosen": inv, "zero_shot": 0.0, "chance": 0.1,
                        "n_test": n}
                       for ds, n in (("fashion_mnist", n_f), ("digits", n_d)) for v in vs.VARIANT_IDS
                       for inv in (False, True)])
    protocol = {"vlm": "offline", "datasets": ["fashion_mnist", "digits"], "main_variant": "trained",
                "shots": [1, 4], "fewshot_seeds": 3, "n_train": 1000,
                "emoji": {"skipped": emoji_skipped, "n_texts": {} if emoji_skipped else {"val": 183, "held_out": 86}}}
    return write(tmp_path, protocol, out, zs, name=vs.PROTOCOL)


def test_vlm_claims_every_verdict(tmp_path):
    c = by_id(vs.claims_from_results(vlm_results(tmp_path)))
    v = {k: x.verdict for k, x in c.items()}
    assert v["zero_shot_above_chance_fashion_mnist"] == stats.HOLDS
    assert v["zero_shot_above_chance_digits"] == stats.INCONCLUSIVE  # exactly at chance
    assert v["zero_shot_beats_1_shot_probe_fashion_mnist"] == stats.FAILS
    assert c["zero_shot_beats_1_shot_probe_fashion_mnist"].decision.n_seeds == 3
    assert v["alignment_training_improves_zero_shot_fashion_mnist"] == stats.HOLDS
    assert v["alignment_training_improves_zero_shot_digits"] == stats.NOT_TESTABLE  # both at chance
    assert v["fashion_beats_ridge_baseline"] == stats.HOLDS  # 30% vs 26%: n = 2000 decides it
    ridge = c["fashion_open_dictionary_beats_ridge_baseline"]
    assert ridge.verdict == stats.INCONCLUSIVE and ridge.decision.margin == pytest.approx(0.0)
    assert "fixed value 0.26" in ridge.decision.test
    assert v["alignment_training_helps"] == stats.HOLDS
    assert v["alignment_training_helps_held_out_concepts"] == stats.INCONCLUSIVE  # 2 of 172 queries differ
    assert not any("zero-shot CLIP" in x.statement for x in c.values())  # the stand-in is not CLIP
    assert all(x.decision is not None for x in c.values())


def test_vlm_concept_claims_pool_styles_and_categories(tmp_path):
    """The class-disjoint concept stand-in: 25% on held-out concepts judged among 30 or 20 names (chance 3.3-5%): above
    chance, below issue 15's 40% target, and above its untrained start (which is 5 points lower on the same images)."""
    d = vlm_results(tmp_path)
    proto = json.loads((d / vs.PROTOCOL).read_text())
    proto["concepts"] = {"styles": ["google", "twitter"], "groups": {"Animals": 30, "Food": 20}}
    (d / vs.PROTOCOL).write_text(json.dumps(proto))
    out = report.load_outcomes(d)
    for i, (st, g, n) in enumerate((("google", "Animals", 120), ("google", "Food", 80), ("twitter", "Animals", 120),
                                    ("twitter", "Food", 80))):
        a = flags(n, 0.25, seed=60 + i)
        out[f"concept_zero_shot:concept:{st}/{g}/0"] = a
        out[f"concept_zero_shot:untrained:{st}/{g}/0"] = flip(a, n // 20, to=False)
    report.Results(d, profile="offline", seed=0).outcomes(out)
    c = by_id(vs.claims_from_results(d))
    assert c["concept_zero_shot_above_chance"].verdict == stats.HOLDS
    assert c["concept_zero_shot_above_chance"].decision.margin == pytest.approx(25.0 - 100 * (240 / 30 + 160 / 20) / 400)
    assert c["concept_zero_shot_reaches_target"].verdict == stats.FAILS  # 25% of 400 images, well under 40%
    assert c["concept_alignment_beats_conse"].verdict == stats.HOLDS
    assert c["concept_alignment_beats_conse"].decision.margin == pytest.approx(5.0)
    assert "400 images" in c["concept_zero_shot_above_chance"].ours


def test_vlm_concept_claims_are_untestable_without_the_corpus(tmp_path):
    d = vlm_results(tmp_path)
    proto = json.loads((d / vs.PROTOCOL).read_text())
    proto["concepts"] = {"skipped": "the emoji corpus is not fetched (google)"}
    (d / vs.PROTOCOL).write_text(json.dumps(proto))
    c = by_id(vs.claims_from_results(d))
    for cid in ("concept_zero_shot_above_chance", "concept_zero_shot_reaches_target", "concept_alignment_beats_conse"):
        assert c[cid].verdict == stats.NOT_TESTABLE and "not fetched" in c[cid].decision.reason


def test_vlm_claims_uses_the_chosen_polarity(tmp_path):
    d = vlm_results(tmp_path)
    zs = pd.read_csv(d / "zero_shot.csv")
    zs["chosen"] = ~zs["invert"]  # now the plain polarity (12% everywhere on fashion) is the chosen one
    zs.to_csv(d / "zero_shot.csv", index=False)
    c = by_id(vs.claims_from_results(d))
    assert c["alignment_training_improves_zero_shot_fashion_mnist"].decision.margin == pytest.approx(0.0)
    assert c["fashion_beats_ridge_baseline"].verdict == stats.FAILS  # 12% against 26%


def test_vlm_emoji_claims_are_untestable_without_the_font(tmp_path):
    c = by_id(vs.claims_from_results(vlm_results(tmp_path, emoji_skipped="the emoji font is not installed")))
    for cid in ("alignment_training_helps", "alignment_training_helps_held_out_concepts"):
        assert c[cid].verdict == stats.NOT_TESTABLE and "font" in c[cid].decision.reason


def test_vlm_paper_profile_has_only_the_model_independent_claims(tmp_path):
    d = vlm_results(tmp_path)
    proto = json.loads((d / vs.PROTOCOL).read_text())
    proto.update(vlm="clip_vit_b16", main_variant="clip_vit_b16")
    (d / vs.PROTOCOL).write_text(json.dumps(proto))
    out = report.load_outcomes(d)
    for ds in ("fashion_mnist", "digits"):
        for pol in ("inverted", "plain"):
            out[f"zero_shot:clip_vit_b16:{pol}/{ds}/0"] = out[f"zero_shot:trained:{pol}/{ds}/0"]
    report.Results(d, profile="paper", seed=0).outcomes(out)
    ids = {c.id for c in vs.claims_from_results(d)}
    assert ids == {f"zero_shot_above_chance_{ds}" for ds in ("fashion_mnist", "digits")} | \
        {f"zero_shot_beats_1_shot_probe_{ds}" for ds in ("fashion_mnist", "digits")}


def test_zero_shot_figure_builds_with_the_paper_mark():
    zs = pd.DataFrame([{"dataset": ds, "variant": "trained", "invert": True, "chosen": True, "zero_shot": 0.2,
                        "ci_low": 0.15, "ci_high": 0.25, "chance": 0.1, "n_test": 100} for ds in ("mnist5k", "digits")])
    probes = pd.DataFrame([{"dataset": ds, "setting": s, "k": k, "acc": 0.5, "ci_low": 0.4, "ci_high": 0.6}
                           for ds in ("mnist5k", "digits") for s, k in (("1-shot probe", 1), ("linear probe", None))])
    fig = vs.zero_shot_figure(zs, probes, title="t")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "chance" in labels and any("paper" in x for x in labels) and fig.axes[0].get_legend() is not None


def test_vlm_unseen_style_claims_pair_concepts_and_views(tmp_path):
    """The unseen style: 20% vs chance 4% holds; the seen styles' mean (30%) minus the unseen style (20%), paired per
    image, holds; without an unseen style both claims say why they are not testable."""
    d = vlm_results(tmp_path)
    proto = json.loads((d / vs.PROTOCOL).read_text())
    proto["concepts"] = {"styles": ["google", "twitter"], "unseen_styles": ["openmoji"], "groups": {"Animals": 25}}
    (d / vs.PROTOCOL).write_text(json.dumps(proto))
    out = report.load_outcomes(d)
    base = flags(500, 0.30, seed=70)
    for st, a in (("google", base), ("twitter", base), ("openmoji", flip(base, 50, to=False))):
        out[f"concept_zero_shot:concept:{st}/Animals/0"] = a
        out[f"concept_zero_shot:untrained:{st}/Animals/0"] = a
    report.Results(d, profile="offline", seed=0).outcomes(out)
    c = by_id(vs.claims_from_results(d))
    above, cost = c["concept_zero_shot_unseen_style_above_chance"], c["concept_unseen_style_costs_accuracy"]
    assert above.verdict == stats.HOLDS and above.decision.margin == pytest.approx(20.0 - 4.0)
    assert cost.verdict == stats.HOLDS and cost.decision.margin == pytest.approx(10.0)
    assert "unseen openmoji" in cost.ours
    proto["concepts"] = {"styles": ["google", "twitter"], "unseen_styles": [], "groups": {"Animals": 25},
                         "unseen_skipped": "the unseen emoji style 'openmoji' is not fetched"}
    (d / vs.PROTOCOL).write_text(json.dumps(proto))
    c = by_id(vs.claims_from_results(d))
    for cid in ("concept_zero_shot_unseen_style_above_chance", "concept_unseen_style_costs_accuracy"):
        assert c[cid].verdict == stats.NOT_TESTABLE and "not fetched" in c[cid].decision.reason

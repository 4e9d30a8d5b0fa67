"""Notebook 04's claims on constructed results: small synthetic tables and per-example outcomes written to a tmp
dir, then ``cocoop.claims_from_results`` - each claim can come out holds, does not hold / inconclusive, and not
testable (the chance rule, missing runs); the tables and figures read from the same outcomes."""
import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vpkit import report, stats  # noqa: E402
from vpkit.studies import cocoop  # noqa: E402

K, SEEDS, DATASETS = 16, (1, 2, 3), ("a", "b")
BASE_ACC = {("zero_shot", "base"): 0.30, ("coop", "base"): 0.85, ("cocoop", "base"): 0.70,
            ("zero_shot", "new"): 0.70, ("coop", "new"): 0.40, ("cocoop", "new"): 0.55,
            ("linear_probe", "base"): 0.9, ("linear_probe", "new"): 0.9}


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """1000 resamples instead of 4000: the constructed effects are far from their thresholds or exactly on them."""
    monkeypatch.setattr(cocoop, "BOOTSTRAP_RESAMPLES", 1000)


def flags(p, n, seed):
    """``n`` correct flags with exactly ``round(p * n)`` True, in a seeded order."""
    a = np.zeros(n, dtype=bool)
    a[:int(round(p * n))] = True
    return np.random.default_rng(seed).permutation(a)


def write_results(d, *, acc=None, n=300, chance=0.2, abl=None, steps=None, cross=True, shift=True, seed_jitter=0.01):
    """A results folder in the notebook's layout: tables, eval_sets, setup.json and outcomes.npz."""
    acc = {**BASE_ACC, **(acc or {})}
    d.mkdir(parents=True, exist_ok=True)
    rows, out = [], {}
    for di, ds in enumerate(DATASETS):
        rows.append({"dataset": ds, "method": "zero_shot", "k": 0, "seed": 0})
        for split in ("base", "new"):
            out[cocoop.outcome_key("b2n", "zero_shot", ds, split, 0, 0)] = flags(acc[("zero_shot", split)], n, di)
        for m in ("coop", "cocoop", "linear_probe"):
            for s in SEEDS:
                rows.append({"dataset": ds, "method": m, "k": K, "seed": s, "trainable_params": 10})
                for split in ("base", "new"):
                    p = acc[(m, split)] + seed_jitter * (s - 2)
                    out[cocoop.outcome_key("b2n", m, ds, split, K, s)] = flags(p, n, 100 * s + di)
    pd.DataFrame(rows).to_csv(d / "base_to_new_all.csv", index=False)
    ev = [{"dataset": ds, "split": sp, "images": n, "classes": 5, "chance": chance} for ds in DATASETS
          for sp in ("base", "new")] + [{"dataset": "b", "split": "all", "images": n, "classes": 10, "chance": 0.1}]
    pd.DataFrame(ev).to_csv(d / "eval_sets.csv", index=False)
    (d / "setup.json").write_text(json.dumps({"vlm": "offline"}))
    # cross-dataset a -> b and domain shift on a: CoCoOp above CoOp above zero-shot unless acc says otherwise
    xr, sr = [], []
    for m in cocoop.METHOD_ORDER:
        for s in ((0,) if m == "zero_shot" else SEEDS):
            k = 0 if m == "zero_shot" else K
            if cross:
                xr.append({"source": "a", "target": "b", "method": m, "seed": s})
                out[cocoop.outcome_key("cross", m, "a->b", "all", k, s)] = flags(acc.get((m, "cross"), 0.3), n, 7 + s)
            if shift:
                for t in ("test", "inverted"):
                    sr.append({"dataset": "a", "test_set": t, "method": m, "seed": s})
                    out[cocoop.outcome_key("shift", m, "a", t, k, s)] = flags(acc.get((m, "shift"), 0.5), n, 9 + s)
    pd.DataFrame(xr, columns=["source", "target", "method", "seed"]).to_csv(d / "cross_dataset.csv", index=False)
    pd.DataFrame(sr, columns=["dataset", "test_set", "method", "seed"]).to_csv(d / "domain_shift.csv", index=False)
    # ablations on dataset a: phrase runs are the grid's, everything else random-initialised
    arows = []
    for (label, init, nc), (pb, pn) in (abl or {}).items():
        for s in SEEDS:
            arows.append({"dataset": "a", "method": label, "k": K, "seed": s, "init": init, "n_ctx": nc,
                          "trainable_params": 100 if label == "cocoop" else 10 * nc})
            if init == "random":
                for split, p in (("base", pb), ("new", pn)):
                    out[cocoop.outcome_key("abl", cocoop.ablation_run(label, init, nc), "a", split, K, s)] = \
                        flags(p + seed_jitter * (s - 2), n, 31 * s + nc)
    pd.DataFrame(arows).to_csv(d / "ablations.csv", index=False)
    if steps is not None:
        pd.DataFrame([{"repeat": r, "impl": impl, "seconds": t} for impl, ts in steps.items() for r, t in enumerate(ts)]
                     ).to_csv(d / "step_time_repeats.csv", index=False)
        pd.DataFrame([{"batch_size": 8, "num_classes": 5, "threads": 2}]).to_csv(d / "step_time.csv", index=False)
    buf = report.Results(d, profile="smoke", seed=0)
    buf.outcomes(out)
    return d


_CACHE = {}


def claims(d):
    """The claims of a results folder (computed once per folder; each test writes its own)."""
    if str(d) not in _CACHE:
        _CACHE[str(d)] = {c.id: c for c in cocoop.claims_from_results(d)}
    return _CACHE[str(d)]


def verdicts(d):
    return {k: c.verdict for k, c in claims(d).items()}


PHRASE = {("coop", "phrase", 4): (0.85, 0.40), ("cocoop", "phrase", 4): (0.70, 0.55)}


def test_clear_results_hold_and_every_claim_has_a_verdict(tmp_path):
    rng = np.random.default_rng(0)
    d = write_results(tmp_path / "r", abl={**PHRASE, ("coop", "random", 4): (0.80, 0.38),
                                            ("cocoop", "random", 4): (0.55, 0.40),
                                            ("coop", "random", 1): (0.80, 0.30), ("coop", "random", 16): (0.80, 0.50),
                                            ("cocoop", "random", 1): (0.55, 0.30),
                                            ("cocoop", "random", 16): (0.55, 0.50),
                                            ("coop_bigger", "random", 26): (0.60, 0.30)},
                      acc={("cocoop", "cross"): 0.6, ("coop", "cross"): 0.4, ("cocoop", "shift"): 0.7,
                           ("coop", "shift"): 0.55, ("zero_shot", "shift"): 0.3},
                      steps={"batched": 0.10 + 0.005 * rng.random(10), "loop": 0.30 + 0.005 * rng.random(10),
                             "coop": 0.02 + 0.001 * rng.random(10)})
    v = verdicts(d)
    assert set(v) == {"learned_gt_zero_shot_base", "coop_geq_cocoop_base", "new_classes_above_chance",
                      "cocoop_gt_coop_new", "cocoop_gt_coop_H", "zero_shot_best_new", "batched_faster_than_loop",
                      "coop_below_zero_shot_new", "cocoop_gt_coop_cross_dataset", "domain_shift_cocoop_gt_coop", "domain_shift_coop_gt_zero_shot",
                      "init_helps_cocoop_more", "longer_context_helps_new_coop", "longer_context_helps_new_cocoop",
                      "bigger_coop_below_cocoop"}
    assert all(x == stats.HOLDS for x in v.values()), v
    c = claims(d)
    base = c["coop_geq_cocoop_base"].decision
    assert base.unit == "points" and base.margin == pytest.approx(15.0, abs=0.01)  # 85% vs 70%, mean over a, b
    assert base.n_seeds == 3 and "3 seeds, then examples" in base.test
    assert c["batched_faster_than_loop"].decision.unit == "ms" and "interleaved" in c["batched_faster_than_loop"].decision.test
    assert "zero-shot CLIP" not in c["zero_shot_best_new"].statement
    assert "offline stand-in VLM" in c["zero_shot_best_new"].statement
    # recomputable: the same folder gives the same intervals
    again = {x.id: x.as_dict() for x in cocoop.claims_from_results(d)}
    assert all(again[k]["ci_low"] == c[k].as_dict()["ci_low"] for k in again)


def test_reversed_results_do_not_hold(tmp_path):
    d = write_results(tmp_path / "r", acc={("coop", "base"): 0.60, ("cocoop", "base"): 0.85,
                                           ("cocoop", "new"): 0.40, ("coop", "new"): 0.60, ("zero_shot", "new"): 0.45,
                                           ("cocoop", "cross"): 0.3, ("coop", "cross"): 0.5,
                                           ("cocoop", "shift"): 0.4, ("coop", "shift"): 0.6, ("zero_shot", "shift"): 0.8},
                      abl={**PHRASE, ("coop", "random", 4): (0.60, 0.20), ("cocoop", "random", 4): (0.68, 0.53),
                           ("coop", "random", 1): (0.8, 0.6), ("coop", "random", 16): (0.8, 0.35),
                           ("coop_bigger", "random", 26): (0.85, 0.55)},
                      steps={"batched": [0.30, 0.31, 0.29, 0.30], "loop": [0.10, 0.11, 0.10, 0.09]})
    v = verdicts(d)
    for cid in ("coop_geq_cocoop_base", "cocoop_gt_coop_new", "cocoop_gt_coop_H", "zero_shot_best_new",
                "batched_faster_than_loop", "cocoop_gt_coop_cross_dataset", "domain_shift_cocoop_gt_coop",
                "domain_shift_coop_gt_zero_shot", "init_helps_cocoop_more", "longer_context_helps_new_coop",
                "bigger_coop_below_cocoop"):
        assert v[cid] == stats.FAILS, (cid, v[cid])
    assert v["longer_context_helps_new_cocoop"] == stats.NOT_TESTABLE  # only one CoCoOp context length was run


def test_ties_are_inconclusive(tmp_path):
    rng = np.random.default_rng(1)
    t = 0.2 + 0.05 * rng.random(12)
    d = write_results(tmp_path / "r", acc={("coop", "base"): 0.70, ("cocoop", "base"): 0.70,
                                           ("coop", "new"): 0.50, ("cocoop", "new"): 0.50},
                      steps={"batched": t, "loop": t[::-1]}, seed_jitter=0.03)
    v = verdicts(d)
    assert v["coop_geq_cocoop_base"] == v["cocoop_gt_coop_new"] == v["cocoop_gt_coop_H"] == stats.INCONCLUSIVE
    assert v["batched_faster_than_loop"] == stats.INCONCLUSIVE


def test_every_method_at_chance_on_new_classes_is_not_testable(tmp_path):
    d = write_results(tmp_path / "r", acc={("zero_shot", "new"): 0.20, ("coop", "new"): 0.20,
                                           ("cocoop", "new"): 0.21}, seed_jitter=0.0)
    c = claims(d)
    for cid in ("cocoop_gt_coop_new", "cocoop_gt_coop_H", "zero_shot_best_new"):
        assert c[cid].verdict == stats.NOT_TESTABLE
        assert c[cid].decision.reason.startswith("every compared method at chance on the new classes: ")
        assert "vs chance 20.0%" in c[cid].decision.reason
    assert c["new_classes_above_chance"].verdict == stats.INCONCLUSIVE
    assert c["coop_geq_cocoop_base"].verdict == stats.HOLDS  # base classes: testable as usual
    below = write_results(tmp_path / "below", acc={("zero_shot", "new"): 0.05, ("coop", "new"): 0.05,
                                                   ("cocoop", "new"): 0.05})
    assert verdicts(below)["new_classes_above_chance"] == stats.FAILS


def test_chance_is_the_best_constant_prediction_not_one_over_classes(tmp_path):
    """An unbalanced test set: always predicting its largest class gets 40%, so 35% is not above chance."""
    d = write_results(tmp_path / "r", chance=0.4, acc={("zero_shot", "new"): 0.35, ("coop", "new"): 0.35,
                                                       ("cocoop", "new"): 0.36})
    assert verdicts(d)["cocoop_gt_coop_new"] == stats.NOT_TESTABLE
    assert "vs chance 40.0%" in claims(d)["cocoop_gt_coop_new"].decision.reason


def test_one_compared_run_above_chance_makes_the_comparison_testable(tmp_path):
    d = write_results(tmp_path / "r", acc={("coop", "new"): 0.20, ("cocoop", "new"): 0.45, ("zero_shot", "new"): 0.2})
    v = verdicts(d)
    assert v["cocoop_gt_coop_new"] == stats.HOLDS and v["new_classes_above_chance"] == stats.HOLDS
    assert v["zero_shot_best_new"] == stats.FAILS


def test_bigger_coop_is_compared_with_random_init_cocoop(tmp_path):
    """Like with like: the random-initialised bigger CoOp against random-initialised CoCoOp, not the phrase one."""
    d = write_results(tmp_path / "r", abl={**PHRASE, ("cocoop", "random", 4): (0.50, 0.30),
                                            ("coop_bigger", "random", 26): (0.65, 0.45)})
    c = claims(d)["bigger_coop_below_cocoop"]
    assert c.verdict == stats.FAILS  # below the phrase CoCoOp (H 61.9) but above the random one (H 37.5)
    assert "n_ctx 26" in c.ours and "n_ctx 4" in c.ours and "random" in c.statement


def test_missing_runs_are_not_testable_with_a_reason(tmp_path):
    d = write_results(tmp_path / "r", cross=False, shift=False, abl={})
    c = claims(d)
    for cid in ("batched_faster_than_loop", "cocoop_gt_coop_cross_dataset", "domain_shift_cocoop_gt_coop",
                "init_helps_cocoop_more", "longer_context_helps_new_coop", "bigger_coop_below_cocoop"):
        assert c[cid].verdict == stats.NOT_TESTABLE and c[cid].decision.reason, cid
    single = write_results(tmp_path / "one", steps={"batched": [0.1], "loop": [0.3]})
    assert "needs >= 2" in claims(single)["batched_faster_than_loop"].decision.reason


def test_one_H_at_K_for_every_table(tmp_path):
    """The summary's H at K is the K-shot table's (one number from one place): H of the dataset averages."""
    d = write_results(tmp_path / "r")
    b2n, out = pd.read_csv(d / "base_to_new_all.csv"), report.load_outcomes(d)
    shots = cocoop.shots_table(b2n, out)
    summary = cocoop.summary_table(shots, k=K).set_index("method")
    row = shots[(shots.method == "cocoop") & (shots.k == K)].iloc[0]
    assert summary.loc["cocoop", "H"] == pytest.approx(row["H"], abs=0.01)
    assert row["H"] == pytest.approx(100 * 2 * 0.70 * 0.55 / 1.25, abs=0.01)  # H of the averages, not mean of H
    assert row["H_lo"] < row["H"] < row["H_hi"] and summary.loc["cocoop", "paper_H"] == 75.83
    assert list(summary.index) == ["zero_shot", "coop", "cocoop"]
    reused = cocoop.per_dataset_table(b2n, out, k=K, shots=shots).set_index(["dataset", "method"])
    computed = cocoop.per_dataset_table(b2n, out, k=K).set_index(["dataset", "method"])
    assert reused.loc[("mean", "cocoop"), "H"] == pytest.approx(computed.loc[("mean", "cocoop"), "H"])
    assert reused.loc[("mean", "cocoop"), "H_lo"] == pytest.approx(computed.loc[("mean", "cocoop"), "H_lo"])
    c = claims(d)["cocoop_gt_coop_H"]
    assert c.ours == f"CoCoOp H {row['H']:.1f}% vs CoOp H {summary.loc['coop', 'H']:.1f}%"


def test_figures_keep_legends_off_the_data(tmp_path):
    d = write_results(tmp_path / "r")
    b2n, out = pd.read_csv(d / "base_to_new_all.csv"), report.load_outcomes(d)
    ev = pd.read_csv(d / "eval_sets.csv")
    per_ds = cocoop.per_dataset_table(b2n, out, k=K)
    chance = cocoop.chance_levels(ev, list(DATASETS))
    assert chance["mean"]["H"] == pytest.approx(20.0)
    shots = cocoop.shots_table(b2n, out)
    figs = [cocoop.figure_base_to_new(per_ds, chance=chance, k=K, n_seeds=3),
            cocoop.figure_curves(shots[shots.method != "zero_shot"], x="k", xlabel="K", methods=["coop", "cocoop"],
                                 zero_shot=shots[shots.method == "zero_shot"].iloc[0], chance=chance["mean"],
                                 paper_at=(16, cocoop.PAPER_BASE_TO_NEW))]
    for fig in figs:
        assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "chance (best constant prediction)" in labels and "zero-shot (hand-written prompt)" in labels
        assert any(x.startswith("paper") for x in labels)


def test_the_concept_world_is_decided_by_the_same_rules_under_its_own_ids(tmp_path):
    """The concept world's tables (concepts_<table>.csv) and outcomes (concepts/<key>) give the same findings with the
    ids prefixed; the digits world's verdicts are unchanged by them; the domain-shift claim pools every shift dataset."""
    from vpkit.report import load_outcomes

    d = write_results(tmp_path / "r", acc={("cocoop", "cross"): 0.6, ("coop", "cross"): 0.4, ("cocoop", "shift"): 0.7,
                                           ("coop", "shift"): 0.55, ("zero_shot", "shift"): 0.3})
    plain = verdicts(d)
    src = write_results(tmp_path / "c", acc={("coop", "new"): 0.05, ("cocoop", "new"): 0.05, ("zero_shot", "new"): 0.05,
                                             ("cocoop", "shift"): 0.7, ("coop", "shift"): 0.55,
                                             ("zero_shot", "shift"): 0.3})  # the concept world: new runs at chance
    for f in src.glob("*.csv"):
        (d / f"concepts_{f.name}").write_text(f.read_text())
    shift = pd.read_csv(src / "domain_shift.csv")  # a second shift dataset, "b": the claim must pool both
    out = {**load_outcomes(d), **{f"concepts/{k}": v for k, v in load_outcomes(src).items()}}
    for m in cocoop.METHOD_ORDER:
        for s in ((0,) if m == "zero_shot" else SEEDS):
            k = 0 if m == "zero_shot" else K
            for t in ("test", "inverted"):  # on b, CoCoOp is exactly CoOp: the pooled margin halves
                out[f"concepts/{cocoop.outcome_key('shift', m, 'b', t, k, s)}"] = out[
                    f"concepts/{cocoop.outcome_key('shift', 'coop' if m == 'cocoop' else m, 'a', t, k, s)}"]
    pd.concat([shift, shift.assign(dataset="b")]).to_csv(d / "concepts_domain_shift.csv", index=False)
    (d / "setup.json").write_text(json.dumps({"vlm": "offline", "concepts_vlm": "offline_concepts"}))
    report.Results(d, profile="smoke", seed=0).outcomes(out)
    both = {c.id: c for c in cocoop.claims_from_results(d)}
    assert {k: both[k].verdict for k in plain} == plain
    concept = {k: c for k, c in both.items() if k.startswith("concepts_")}
    assert set(concept) == {f"concepts_{k}" for k in cocoop.CONCEPT_CLAIMS}
    assert all(c.statement.startswith("Concept world") for c in concept.values())
    assert concept["concepts_learned_gt_zero_shot_base"].verdict == stats.HOLDS
    assert concept["concepts_cocoop_gt_coop_new"].verdict == stats.NOT_TESTABLE  # the chance rule, as above
    shifted = concept["concepts_domain_shift_cocoop_gt_coop"].decision
    assert shifted.verdict == stats.HOLDS and shifted.margin == pytest.approx(7.5, abs=0.01)  # (15 + 0) / 2 points


def test_a_concept_world_that_could_not_run_is_one_not_testable_claim(tmp_path):
    d = write_results(tmp_path / "r")
    (d / "setup.json").write_text(json.dumps({"vlm": "offline", "concepts_skipped": "the emoji corpus is not fetched"}))
    c = {x.id: x for x in cocoop.claims_from_results(d)}
    assert c["concepts_new_classes_above_chance"].verdict == stats.NOT_TESTABLE
    assert "not fetched" in c["concepts_new_classes_above_chance"].decision.reason
    assert not any(k.startswith("concepts_") for k in c if k != "concepts_new_classes_above_chance")


def test_the_concept_world_needs_its_unseen_shift_style(monkeypatch):
    """An unseen style among ``shift_styles`` that is not fetched skips the concept world with the command to run
    (its claims would otherwise average over fewer shifted copies than the design fixed)."""
    from vpkit.data import emoji

    assert "openmoji" in cocoop.CONCEPT_WORLD["shift_styles"]
    monkeypatch.setattr(emoji, "not_fetched", lambda: None)
    monkeypatch.setattr(emoji, "unseen_missing", lambda s: f"the unseen emoji style {s!r} is not fetched: run x")
    assert "'openmoji' is not fetched" in cocoop.concept_world_missing(["twitter", "openmoji"])
    assert cocoop.concept_world_missing(["twitter"]) is None
    monkeypatch.setattr(emoji, "unseen_missing", lambda s: None)
    assert cocoop.concept_world_missing(["twitter", "openmoji"]) is None

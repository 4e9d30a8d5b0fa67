"""Notebook 01_vpt's claims, decided from saved results alone (``study.claims_from_results``) on constructed
tables and per-example outcomes: each claim can hold, fail or be inconclusive, and says why when it cannot be
tested; plus the protocol pieces behind them (the edge-extended lr grid, the ablation's reuse of main runs) and
the figures."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vpkit import report, stats  # noqa: E402
from vpkit.studies import vpt as study  # noqa: E402

N = 400  # test images per task
SEEDS = (0, 1, 2)
TASKS = {"nat_a": ("natural", 10), "nat_b": ("natural", 10), "str_a": ("structured", 8), "str_b": ("structured", 6)}
PCT = {"linear": 0.018, "vpt_shallow": 0.027, "vpt_deep": 0.12, "full": 100.0}


def _flags(p, rng):
    return rng.random(N) < p


def write_results(path, acc, *, ablation=None, tasks=TASKS, pct=PCT, seeds=SEEDS):
    """A results folder as notebook 01_vpt writes it: ``acc[method][task]`` is the true accuracy of every seed's
    run; ``ablation`` maps ``(study, variant)`` to an accuracy (``None`` for the main setting, which reuses the main
    VPT-deep runs of ``str_a``)."""
    rng = np.random.default_rng(0)
    res = report.Results(path, profile="smoke", seed=0)
    res.table("tasks", pd.DataFrame([{"task": t, "group": g, "classes": c, "train1000": 1000, "test": N}
                                     for t, (g, c) in tasks.items()]))
    rows, outcomes, summary = [], {}, []
    for m, per_task in acc.items():
        for t in tasks:
            if t not in per_task:
                continue
            for s in seeds:
                key = study.outcome_key(m, t, s)
                outcomes[key] = _flags(per_task[t], rng)
                rows.append({"task": t, "tuned_on": t, "outcome_key": key, "method": m, "seed": s, "base_lr": 0.1,
                             "acc_test": outcomes[key].mean(), "trainable": int(pct[m] * 1000),
                             "percent_of_backbone": pct[m]})
            summary.append({"task": t, "method": m, "trainable": int(pct[m] * 1000), "percent_of_backbone": pct[m]})
    res.table("runs", pd.DataFrame(rows))
    res.table("main_per_task", pd.DataFrame(summary))
    ab_rows = []
    for (st, variant), p in (ablation or {}).items():
        for s in seeds:
            if p is None:
                key = study.outcome_key("vpt_deep", "str_a", s)
            else:
                key = study.outcome_key("vpt_deep", "str_a", s, f"{st}={variant}")
                outcomes[key] = _flags(p, rng)
            ab_rows.append({"variant": variant, "task": "str_a", "study": st, "is_default": p is None,
                            "outcome_key": key, "method": "vpt_deep", "seed": s, "acc_test": outcomes[key].mean(),
                            "trainable": 1})
    res.table("ablations", pd.DataFrame(ab_rows, columns=["variant", "task", "study", "is_default", "outcome_key",
                                                          "method", "seed", "acc_test", "trainable"]))
    res.outcomes(outcomes)
    return path


def uniform(**acc):
    return {m: {t: a for t in TASKS} for m, a in acc.items()}


def verdicts(path):
    return {c.id: c for c in study.claims_from_results(path)}


ABLATION = {("num_tokens", "1"): 0.75, ("num_tokens", "5"): None, ("prompt_depth", "1"): 0.3,
            ("prompt_depth", "12"): None, ("location", "prepend"): None, ("location", "add"): 0.85}


def test_clear_wins_hold_and_clear_losses_do_not(tmp_path):
    acc = uniform(vpt_deep=0.7, vpt_shallow=0.5, linear=0.4, full=0.85)
    c = verdicts(write_results(tmp_path, acc, ablation=ABLATION))
    assert c["deep>shallow"].verdict == stats.HOLDS and c["deep>linear"].verdict == stats.HOLDS
    assert c["shallow>linear"].verdict == stats.HOLDS
    assert c["deep>full"].verdict == stats.FAILS
    d = c["deep>shallow"].decision
    assert d.unit == "points" and d.n_seeds == 3 and d.n_examples == 4 * N and d.ci_low < 20 < d.ci_high
    assert "3 seeds, then examples" in d.test
    # ablations: one deep prompt (0.75) vs shallow (0.5) on str_a; add (0.85) beats prepend (0.7); depth 12 vs 1
    assert c["one_deep_prompt>shallow"].verdict == stats.HOLDS
    assert c["prepend>add"].verdict == stats.FAILS
    assert c["all_layers>first_layer"].verdict == stats.HOLDS
    assert c["deep_under_1pct_params"].verdict == stats.HOLDS and c["deep_under_1pct_params"].decision.margin == 0.12
    assert "deep beats full fine-tuning on 20 of the 24 tasks" in c["deep>full"].paper.lower().replace("vpt-", "")
    assert "5 FGVC + 19 VTAB-1k" in c["deep>full"].paper and "Fig. 6" in c["one_deep_prompt>shallow"].paper
    assert all(isinstance(x.holds, bool) and x.decision is not None for x in c.values())


def test_equal_methods_are_inconclusive(tmp_path):
    acc = uniform(vpt_deep=0.6, vpt_shallow=0.6, linear=0.6, full=0.6)
    c = verdicts(write_results(tmp_path, acc, ablation={("num_tokens", "1"): 0.6, ("location", "prepend"): None,
                                                         ("location", "add"): 0.6}))
    for cid in ("deep>shallow", "deep>linear", "deep>full", "shallow>linear", "structured_gain_vs_linear",
                "one_deep_prompt>shallow", "prepend>add"):
        assert c[cid].verdict == stats.INCONCLUSIVE, (cid, c[cid].decision)


def test_structured_gain_is_a_difference_of_group_gains(tmp_path):
    acc = {"vpt_deep": {"nat_a": 0.6, "nat_b": 0.6, "str_a": 0.7, "str_b": 0.7},
           "linear": {"nat_a": 0.58, "nat_b": 0.58, "str_a": 0.2, "str_b": 0.2},
           "full": {"nat_a": 0.3, "nat_b": 0.3, "str_a": 0.75, "str_b": 0.75},
           "vpt_shallow": {t: 0.5 for t in TASKS}}
    c = verdicts(write_results(tmp_path, acc))
    assert c["structured_gain_vs_linear"].verdict == stats.HOLDS  # +50 structured vs +2 natural
    assert c["structured_gain_vs_full"].verdict == stats.FAILS  # -5 structured vs +30 natural
    assert c["structured_gain_vs_linear"].decision.margin == pytest.approx(
        100 * ((0.7 - 0.2) - (0.6 - 0.58)), abs=6)


def test_untestable_claims_say_why(tmp_path):
    nat_only = {t: v for t, v in TASKS.items() if v[0] == "natural"}
    acc = {m: {t: 0.5 for t in nat_only} for m in ("vpt_deep", "linear", "full")}  # no VPT-shallow, no ablations
    c = verdicts(write_results(tmp_path, acc, tasks=nat_only))
    assert c["structured_gain_vs_linear"].verdict == stats.NOT_TESTABLE
    assert "both the Natural and the Structured" in c["structured_gain_vs_linear"].decision.reason
    assert c["deep>shallow"].verdict == stats.NOT_TESTABLE and "vpt_shallow" in c["deep>shallow"].decision.reason
    for cid in ("one_deep_prompt>shallow", "prepend>add", "all_layers>first_layer"):
        assert c[cid].verdict == stats.NOT_TESTABLE and "ablations did not run" in c[cid].decision.reason
    assert c["deep>linear"].verdict == stats.INCONCLUSIVE  # testable: same images, equal accuracy


def test_too_many_parameters_do_not_hold_and_a_missing_variant_is_not_testable(tmp_path):
    acc = uniform(vpt_deep=0.6, vpt_shallow=0.5, linear=0.4, full=0.7)
    c = verdicts(write_results(tmp_path, acc, pct={**PCT, "vpt_deep": 1.5},
                               ablation={("location", "prepend"): None, ("location", "add"): 0.3}))
    assert c["deep_under_1pct_params"].verdict == stats.FAILS
    assert c["prepend>add"].verdict == stats.HOLDS
    assert c["one_deep_prompt>shallow"].verdict == stats.NOT_TESTABLE
    assert "no deep(1 prompt) run" in c["one_deep_prompt>shallow"].decision.reason


def test_one_seed_uses_the_paired_bootstrap_and_recomputes_identically(tmp_path):
    acc = uniform(vpt_deep=0.7, vpt_shallow=0.5, linear=0.4, full=0.85)
    path = write_results(tmp_path, acc, ablation=ABLATION, seeds=(0,))
    first, second = study.claims_from_results(path), study.claims_from_results(path)
    assert [x.as_dict() for x in first] == [x.as_dict() for x in second]
    c = {x.id: x for x in first}
    assert c["deep>shallow"].decision.n_seeds == 1 and c["deep>shallow"].verdict == stats.HOLDS
    assert c["one_deep_prompt>shallow"].decision.test.startswith("paired bootstrap")


def test_grid_extends_at_its_edge_along_its_own_ladder(monkeypatch):
    from vpkit.studies.vpt import RunResult

    assert study.next_grid_value([1.6, 0.48, 0.16], up=True) == 4.8
    assert study.next_grid_value([4.8, 1.6, 0.48, 0.16], up=True) == 16.0
    assert study.next_grid_value([1.6, 0.48, 0.16], up=False) == 0.048
    assert study.next_grid_value([4.8e-4, 1.6e-4, 4.8e-5], up=False) == 1.6e-5
    with pytest.raises(ValueError):
        study.next_grid_value([0.1], up=True)

    def fake(score):
        def run(method, backbone, train_set, eval_sets, *, base_lr, weight_decay, seed, **kw):
            return RunResult(method, seed, base_lr, weight_decay, {k: score(base_lr) for k in eval_sets}, 1, 0.1, 1.0,
                             1.0, 0.5)
        return run

    splits = {k: None for k in ("train800", "val200", "train1000", "test")}
    kw = dict(num_classes=2, weight_decays=[0.0], train=study.TrainConfig())
    monkeypatch.setattr(study, "train_and_eval", fake(lambda lr: lr))  # larger is always better
    (lr, _), runs = study.tune("linear", None, splits, base_lrs=[1.6, 0.48, 0.16], extend=2, **kw)
    assert [r.base_lr for r in runs] == [1.6, 0.48, 0.16, 4.8, 16.0] and lr == 16.0  # at most 2 extensions
    monkeypatch.setattr(study, "train_and_eval", fake(lambda lr: -abs(np.log(lr / 4.8))))  # peak at 4.8
    (lr, _), runs = study.tune("linear", None, splits, base_lrs=[1.6, 0.48, 0.16], extend=2, **kw)
    assert [r.base_lr for r in runs] == [1.6, 0.48, 0.16, 4.8, 16.0] and lr == 4.8
    monkeypatch.setattr(study, "train_and_eval", fake(lambda lr: -abs(np.log(lr / 0.48))))  # inside: no extension
    (lr, _), runs = study.tune("linear", None, splits, base_lrs=[1.6, 0.48, 0.16], extend=2, **kw)
    assert len(runs) == 3 and lr == 0.48
    monkeypatch.setattr(study, "train_and_eval", fake(lambda lr: float("nan")))  # everything diverged: stop
    (_, _), runs = study.tune("linear", None, splits, base_lrs=[1.6, 0.48], extend=2, **kw)
    assert len(runs) == 2
    grid = [r.row(task="t") | {"acc_val200": r.acc["val200"]} for r in runs]
    table = study.lr_choices(grid, [{"task": "t", "method": "linear", "base_lr": 1.6}])
    assert bool(table["on_edge"].iloc[0]) and table["tried"].iloc[0] == "1.6, 0.48"


def test_ablations_reuse_the_main_runs_for_the_default_variant(monkeypatch):
    from vpkit.studies.vpt import RunResult

    trained = []

    def run(method, backbone, train_set, eval_sets, *, base_lr, weight_decay, seed, method_kwargs=None, **kw):
        trained.append(dict(method_kwargs))
        return RunResult(method, seed, base_lr, weight_decay, {"test": 0.5}, 1, 0.1, 1.0, 1.0, 0.5,
                         method_kwargs=dict(method_kwargs), correct={"test": np.ones(4, bool)})

    monkeypatch.setattr(study, "train_and_eval", run)

    class _Test:
        num_classes, name = 2, "t"

    base = {"num_tokens": 5, "dropout": 0.1, "prompt_depth": 12, "location": "prepend", "output": "cls"}
    main = {study.outcome_key("vpt_deep", "t", s): RunResult("vpt_deep", s, 0.1, 0.0, {"test": 0.6}, 1, 0.1, 1.0, 1.0,
                                                            0.5, method_kwargs={"num_tokens": 5}) for s in (0, 1)}
    studies = study.vpt_ablation_studies(num_tokens=[1], depths=[], locations=["add"], outputs=[], max_depth=12,
                                         defaults=base)
    assert list(studies["num_tokens"]) == ["1", "5"] and list(studies["location"]) == ["prepend", "add"]
    assert studies["prompt_depth"] == {} and studies["output"] == {}
    collect = {}
    rows = study.run_ablations(None, {"train1000": None, "test": _Test()}, studies, base_lr=0.1, weight_decay=0.0,
                               seeds=[0, 1], train=study.TrainConfig(), base_kwargs=base, task="t", reuse=main,
                               collect=collect)
    assert len(trained) == 4, "num_tokens=1 and add, 2 seeds each: the default is never trained again"
    default = [r for r in rows if r["is_default"]]
    assert {r["outcome_key"] for r in default} == set(main) and all(r["acc_test"] == 0.6 for r in default)
    assert "vpt_deep[num_tokens=1]/t/0" in collect and "vpt_deep[location=add]/t/1" in collect
    with pytest.raises(ValueError, match="trained with"):
        study.run_ablations(None, {"train1000": None, "test": _Test()}, studies, base_lr=0.1, weight_decay=0.0,
                            seeds=[0], train=study.TrainConfig(), base_kwargs=base, task="t",
                            reuse={"k": RunResult("vpt_deep", 0, 0.1, 0.0, {}, 1, 0.1, 1.0, 1.0, 0.5,
                                                  method_kwargs={"num_tokens": 1})})


def test_figures_keep_legends_off_the_data_and_mark_chance(tmp_path):
    import matplotlib.pyplot as plt

    acc = uniform(vpt_deep=0.7, vpt_shallow=0.5, linear=0.1, full=0.85)
    path = write_results(tmp_path, acc, ablation=ABLATION)
    runs, tasks = pd.read_csv(path / "runs.csv"), pd.read_csv(path / "tasks.csv")
    flags = study.chance_flags(runs, tasks)
    low = set(flags.loc[~flags.above_chance, "method"])
    assert low == {"linear"}, "0.1 accuracy is at chance on the 10-class tasks and under it on the others"
    fig = study.main_figure(runs, tasks, order=["linear", "vpt_shallow", "vpt_deep", "full"], title="t",
                            paper=study.PAPER_GROUPS)
    assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("chance") == len(TASKS)  # the linear bars
    fig2 = study.ablation_figure(pd.read_csv(path / "ablations.csv"), tasks, references={"vpt_shallow": 0.5},
                                 title="t")
    assert fig2.legends and all(ax.get_legend() is None for ax in fig2.axes)
    assert [ax.get_title() for ax in fig2.axes] == [study.ABLATION_TITLES[s] for s in
                                                     ("num_tokens", "prompt_depth", "location")]
    assert fig2.axes[0].get_ylim() == (0.0, 100.0)  # in %
    ab = study.ablation_table(pd.read_csv(path / "ablations.csv"))
    assert ab["acc %"].between(0, 100).all() and ab["acc %"].max() > 1
    plt.close(fig)
    plt.close(fig2)


def test_the_scale_down_text_follows_the_profile():
    cfg, paper = study.settings("offline"), study.settings("paper")
    table = study.scale_down_table(cfg, paper).set_index("")
    assert f"{cfg['epochs']} epoch" in table.loc["schedule", "this run"]
    assert table.loc["seeds", "this run"].startswith(f"{len(cfg['seeds'])} (")
    assert "100 epochs" in table.loc["schedule", "paper"]
    text = study.run_description({**cfg, "epochs": 3}, steps_per_epoch=63)
    assert text.startswith("3 epochs (~63 steps) per run") and f"{len(cfg['seeds'])} seed" in text
    assert len(cfg["seeds"]) >= 3 and len(cfg["ablation_seeds"]) >= 3, "issue 16: >= 3 seeds per compared run"


def test_the_main_table_shows_the_95_interval_half_width_of_the_mean():
    runs = pd.DataFrame({"task": ["a"] * 3 + ["b"], "method": ["m"] * 4, "acc_test": [0.5, 0.6, 0.7, 0.4],
                         "base_lr": 0.1, "weight_decay": 0.0, "trainable": 1, "percent_of_backbone": 0.1,
                         "images_per_s": 1.0})
    summary = study.summarize(runs.to_dict("records"))
    table, _, _ = study.method_table(summary, {"a": "natural", "b": "natural"})
    m, lo, hi = stats.seed_interval([0.5, 0.6, 0.7])
    assert table.loc[0, "a"] == f"{100 * m:.1f} ± {100 * (hi - lo) / 2:.1f}"  # the t half-width, not the SD (10.0)
    assert table.loc[0, "b"] == "40.0"  # one seed: the mean alone

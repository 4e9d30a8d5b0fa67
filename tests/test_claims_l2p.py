"""Claims of notebook 05 (L2P + the image-prompt project) on constructed results: outcomes.npz + claims_setup.json
written to a temporary folder, then ``claims_from_results``. Each redesigned claim can come out holds, does not
hold / inconclusive, and not testable where that applies."""
import json

import numpy as np
import pytest

from vpkit import metrics, plots, report, stats
from vpkit.continual import ContinualResult
from vpkit.studies import image_prompts_l2p as l2p

SEEDS = [0, 1, 2]
T, N_PER_TASK, K, M = 3, 40, 2, 6


def _flags(p: float, n: int, rng) -> np.ndarray:
    """Exactly round(p * n) correct examples, at random places."""
    f = np.zeros(n, dtype=bool)
    f[rng.permutation(n)[:int(round(p * n))]] = True
    return f


def _result(name, acc, *, aware=None, seed=0, sizes=None):
    """A ContinualResult whose per-example flags reproduce ``acc`` (T x T, lower triangle) exactly."""
    acc = np.asarray(acc, dtype=float)
    sizes = sizes or [N_PER_TASK] * acc.shape[1]
    rng = np.random.default_rng(1000 * seed + sum(map(ord, name)))
    correct, task_aware = {}, {}
    joint = acc.shape[0] == 1 < acc.shape[1]  # joint training: tested once on every task
    for t in range(acc.shape[0]):
        for j in range(acc.shape[1] if joint else t + 1):
            correct[t, j] = _flags(acc[t, j], sizes[j], rng)
            a = acc[t, j] if aware is None else aware[t][j]
            task_aware[t, j] = _flags(a, sizes[j], rng)
    shown = np.array([[correct[t, j].mean() if (t, j) in correct else 0.0 for j in range(acc.shape[1])]
                      for t in range(acc.shape[0])])
    return ContinualResult(name, shown, 1.0, 10, correct=correct, task_aware=task_aware, joint=joint)


def _matrix(diag, final, mid=None):
    """T x T accuracy matrix: ``diag`` right after each task, ``final`` after the last, ``mid`` elsewhere."""
    a = np.zeros((T, T))
    for t in range(T):
        for j in range(t + 1):
            a[t, j] = diag if t == j else (final if t == T - 1 else (mid if mid is not None else diag))
    a[T - 1, T - 1] = diag
    return a


def _selection(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "collapsed":  # every image selects the same K prompts (a different set per seed)
        top = rng.permutation(M)[:K]
        return np.tile(np.sort(top), (n, 1))
    return np.stack([rng.permutation(M)[:K] for _ in range(n)])  # uniform use


def _write(tmp_path, runs: dict, selections: dict, *, sizes=None, sweep=None):
    sizes = sizes or [N_PER_TASK] * T
    labels = np.concatenate([np.full(n, j % M) for j, n in enumerate(sizes)])
    res = report.Results(tmp_path, profile="smoke", seed=0)
    res.outcomes(l2p.outcome_arrays(runs, selections, labels))
    setup = {"num_tasks": T, "task_sizes": sizes, "seeds": SEEDS, "top_k": K, "pool_size": M, "length": 5,
             "selection": "per_sample", "sweep": sweep or [["vae_gen_pool", 0.0], ["vae_gen_pool_lwf10", 10.0]],
             "prompt_class": list(range(M)), "num_classes": M, "task_classes": [[2 * j, 2 * j + 1] for j in range(T)]}
    (tmp_path / l2p.SETUP_FILE).write_text(json.dumps(setup))
    return {c.id: c for c in l2p.claims_from_results(tmp_path)}


def _all_seeds(name, acc, **kw):
    return {(name, s): _result(name, acc, seed=s, **kw) for s in SEEDS}


def _good_world():
    runs = {}
    runs |= _all_seeds("l2p", _matrix(0.9, 0.6))
    runs |= {("l2p_image_init", s): runs["l2p", s] for s in SEEDS}  # the same outcomes as L2P: a tie
    runs |= _all_seeds("l2p_patch_embed", _matrix(0.5, 0.1))
    runs |= _all_seeds("seq_ft", _matrix(0.9, 0.0), aware=[[0.5] * T] * T)
    runs |= _all_seeds("lwf", _matrix(0.9, 0.3), aware=[[0.9] * T] * T)
    runs |= _all_seeds("vae_gen", _matrix(0.5, 0.1))
    runs |= _all_seeds("cls_gen", _matrix(0.4, 0.1))
    runs |= _all_seeds("vae_gen_pool", _matrix(0.9, 0.1))
    runs |= _all_seeds("vae_gen_pool_lwf10", _matrix(0.7, 0.5))
    runs[("joint", 0)] = _result("joint", np.full((1, T), 0.9))
    n = T * N_PER_TASK
    sel = {(v, s): _selection("collapsed", n, s) for v in ("l2p", "l2p_image_init") for s in SEEDS}
    return runs, sel


def test_every_claim_holds_where_the_data_support_it(tmp_path):
    runs, sel = _good_world()
    c = _write(tmp_path, runs, sel)
    expect_holds = {"image_init_ge_l2p", "patch_embed_lt_l2p", "gen_lwf_lowers_forgetting", "gen_lwf_lowers_new_task_acc",
                    "lwf_lowers_forgetting_vs_ft", "lwf_keeps_more_task_aware_acc", "l2p_much_better_than_ft",
                    "l2p_selection_collapse", "generators_underperform", "gen_pool_best_generator"}
    for cid in expect_holds:
        assert c[cid].verdict == stats.HOLDS, (cid, c[cid].decision)
        assert c[cid].holds and c[cid].decision.n_seeds == 3
    assert c["no_class_prompt_relation"].verdict == stats.NOT_TESTABLE
    assert "by construction" in c["no_class_prompt_relation"].decision.reason
    assert "identical to L2P's on 100%" in c["no_class_prompt_relation"].ours
    # accuracy margins in percentage points; the selection share in percent
    assert c["l2p_much_better_than_ft"].decision.unit == "points"
    assert c["l2p_much_better_than_ft"].decision.margin == pytest.approx(40.0)
    assert c["l2p_selection_collapse"].decision.margin == pytest.approx(100.0)
    # every generator variant the statement covers is compared, the single-seed joint run is no claim's input
    assert "vae_gen_pool_lwf10" in c["generators_underperform"].statement
    assert "4 cases" in c["generators_underperform"].decision.test


def test_claims_fail_or_stay_undecided_when_the_data_say_so(tmp_path):
    runs, sel = _good_world()
    runs |= _all_seeds("l2p_image_init", _matrix(0.9, 0.3))  # 20 points below L2P: not non-inferior
    runs |= {("l2p_patch_embed", s): runs["l2p", s] for s in SEEDS}  # identical to L2P: a tie
    runs |= _all_seeds("seq_ft", _matrix(0.9, 0.45), aware=[[0.9] * T] * T)  # L2P above it by 10 points, not 20
    runs |= _all_seeds("lwf", _matrix(0.9, 0.15), aware=[[0.5] * T] * T)  # forgets more, keeps less task-aware
    runs |= _all_seeds("vae_gen_pool", _matrix(0.6, 0.6))  # no forgetting
    runs |= _all_seeds("vae_gen_pool_lwf10", _matrix(0.95, 0.75))  # above L2P; more forgetting, more plasticity
    runs |= _all_seeds("vae_gen", _matrix(0.95, 0.9))  # a generator-only variant above generator + pool
    n = T * N_PER_TASK
    sel = {(v, s): _selection("uniform", n, s) for v in ("l2p", "l2p_image_init") for s in SEEDS}
    c = _write(tmp_path, runs, sel)
    fails = {"image_init_ge_l2p", "l2p_much_better_than_ft", "l2p_selection_collapse", "lwf_lowers_forgetting_vs_ft",
             "lwf_keeps_more_task_aware_acc", "generators_underperform", "gen_pool_best_generator",
             "gen_lwf_lowers_forgetting", "gen_lwf_lowers_new_task_acc"}
    for cid in fails:
        assert c[cid].verdict == stats.FAILS, (cid, c[cid].decision)
        assert not c[cid].holds
    assert c["patch_embed_lt_l2p"].verdict == stats.INCONCLUSIVE  # a tie: the interval contains 0
    assert c["l2p_selection_collapse"].decision.margin == pytest.approx(100 * K / M, abs=8)  # uniform use: K/M


def test_fine_tuning_and_lwf_at_the_floor_are_not_comparable_by_forgetting(tmp_path):
    runs, sel = _good_world()
    runs |= _all_seeds("seq_ft", _matrix(0.9, 0.0), aware=[[0.6] * T] * T)
    runs |= _all_seeds("lwf", _matrix(0.8, 0.0), aware=[[0.6] * T] * T)  # both keep 0% of the old tasks
    c = _write(tmp_path, runs, sel)
    assert c["lwf_lowers_forgetting_vs_ft"].verdict == stats.NOT_TESTABLE
    assert "floor" in c["lwf_lowers_forgetting_vs_ft"].decision.reason
    assert c["lwf_keeps_more_task_aware_acc"].verdict == stats.INCONCLUSIVE  # equal task-aware accuracy


def test_a_small_difference_over_noisy_seeds_is_inconclusive(tmp_path):
    runs, sel = _good_world()
    # image init 2 points below on average but 10 points apart between seeds: the interval straddles -2
    for s, f in zip(SEEDS, (0.55, 0.65, 0.54)):
        runs[("l2p_image_init", s)] = _result("l2p_image_init", _matrix(0.9, f), seed=s)
    c = _write(tmp_path, runs, sel)
    assert c["image_init_ge_l2p"].verdict == stats.INCONCLUSIVE


def test_missing_runs_leave_their_claims_out(tmp_path):
    runs, sel = _good_world()
    runs = {k: v for k, v in runs.items() if k[0] in ("l2p", "seq_ft") and k != ("l2p", 2)}
    c = _write(tmp_path, runs, {})
    assert set(c) == set()  # L2P lacks a claim seed: nothing it takes part in is decided
    runs[("l2p", 2)] = _result("l2p", _matrix(0.9, 0.6), seed=2)
    assert set(_write(tmp_path, runs, {})) == {"l2p_much_better_than_ft"}


def test_per_example_metrics_reproduce_the_accuracy_matrix_metrics(tmp_path):
    """Unequal task sizes: the weighted per-example means equal average accuracy, new-task accuracy and forgetting
    of vpkit.metrics, averaged over seeds, and the claims' margins are their differences in points."""
    sizes = [30, 50, 20]
    mats = {s: np.array([[0.9, 0, 0], [0.5, 0.8, 0], [0.2, 0.4, 0.7]]) + 0.05 * s for s in SEEDS}
    runs = {("vae_gen_pool", s): _result("vae_gen_pool", mats[s], seed=s, sizes=sizes) for s in SEEDS}
    runs |= {("vae_gen_pool_lwf10", s): _result("vae_gen_pool_lwf10", _matrix(0.6, 0.3), seed=s, sizes=sizes)
             for s in SEEDS}
    out = l2p.outcome_arrays(runs, {}, np.zeros(sum(sizes), dtype=int))
    a = l2p._stack(out, "vae_gen_pool", "class_il", SEEDS)
    shown = [runs["vae_gen_pool", s].acc_matrix for s in SEEDS]
    assert l2p.final_row_examples(a, sizes).mean() == pytest.approx(np.mean([metrics.average_accuracy(m) for m in shown]))
    assert l2p.new_task_examples(a, sizes).mean() == pytest.approx(np.mean([np.diag(m).mean() for m in shown]))
    assert l2p.forgetting_examples(a, sizes).mean() == pytest.approx(np.mean([metrics.forgetting(m) for m in shown]))
    T_ = 3
    setup = {"num_tasks": T_, "task_sizes": sizes, "seeds": SEEDS, "top_k": K, "pool_size": M, "length": 5,
             "selection": "per_sample", "sweep": [["vae_gen_pool", 0.0], ["vae_gen_pool_lwf10", 10.0]],
             "prompt_class": [], "num_classes": M, "task_classes": [[0, 1], [2, 3], [4, 5]]}
    c = {x.id: x for x in l2p.decide_claims(out, setup)}
    f = lambda n: np.mean([runs[n, s].forgetting for s in SEEDS])  # noqa: E731
    assert c["gen_lwf_lowers_forgetting"].decision.margin == pytest.approx(100 * (f("vae_gen_pool_lwf10") - f("vae_gen_pool")))


def test_selection_statistics_on_hand_made_selections():
    sel = np.array([[[0, 1], [0, 1], [0, 2], [3, 4]]])  # one seed, four images; prompts 0, 1 most used
    v = l2p.top_k_share_examples(sel, 6)
    assert v[0].tolist() == [1.0, 1.0, 0.5, 0.0] and v.mean() == pytest.approx(5 / 8)
    # own prompt: image i of class y selects prompt y? minus its other selections / (C - 1)
    own = l2p.own_prompt_examples(sel, np.array([0, 1, 5, 3]), prompt_class=list(range(6)), num_classes=6)
    assert own[0].tolist() == pytest.approx([1 - 1 / 5, 1 - 1 / 5, 0 - 2 / 5, 1 - 1 / 5])
    counts = l2p.counts_from_ids(sel[0], np.array([0, 1, 5, 3]), num_classes=6, pool_size=6)
    assert counts.sum().item() == 8 and counts[0, 0] == 1 and counts[5, 2] == 1


def test_lwf_sweep_and_tradeoff_rows():
    good, bad = [[0.9, 0], [0.8, 0.9]], [[0.9, 0], [0.0, 0.9]]
    results = {"vae_gen_pool": ContinualResult("v", np.asarray(good, float), 1.0, 10),
               "vae_gen_pool_lwf10": ContinualResult("w", np.asarray(bad, float), 1.0, 10)}
    sweep = l2p.lwf_sweep(results, [1.0, 10.0])
    assert sweep == [("vae_gen_pool", 0.0), ("vae_gen_pool_lwf10", 10.0)]
    assert l2p.lwf_sweep(list(results), [10.0]) == sweep  # a list of names works too
    rows = l2p.lwf_tradeoff_rows(results, sweep)
    assert rows[0]["forgetting"] == pytest.approx(10.0) and rows[1]["forgetting"] == pytest.approx(90.0)


def test_tables_and_figures_from_constructed_runs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    runs, _ = _good_world()
    variants = l2p.project_variants(gen_lwf_weights=(10.0,))
    params = {n: (100, 25) for n, _ in runs}
    by_seed = pd.DataFrame(l2p.run_rows(runs, params))
    table = pd.DataFrame(l2p.summary_rows(by_seed, variants))
    row = table.set_index("method").loc["l2p"]
    assert row.n_seeds == 3 and row.avg_acc == pytest.approx(70.0) and row.avg_acc_lo <= 70.0 <= row.avg_acc_hi
    assert table.set_index("method").loc["joint"].n_seeds == 1 and np.isnan(table.set_index("method").loc["joint"].avg_acc_lo)
    assert table.set_index("method").loc["lwf"].old_task_aware_acc == pytest.approx(90.0)
    trade = l2p.lwf_tradeoff_table(table, l2p.lwf_sweep(table.method.tolist(), [10.0]))
    assert trade.gen_lwf_weight.tolist() == [0.0, 10.0]
    figs = [l2p.accuracy_matrices_figure(runs, table), l2p.average_accuracy_figure(table, num_classes=10),
            l2p.lwf_tradeoff_figure(trade, num_classes=10)]
    n_axes = len(figs[0].axes)
    assert n_axes >= len({n for n, _ in runs})  # one panel per variant: all of them
    for f in figs:
        plt.close(f)
    assert len({l2p.variant_color(n) for n in variants}) == len(variants)  # one colour per variant
    assert l2p.variant_color("l2p") == plots.method_color("l2p") != plots.method_color("linear") and l2p.variant_color("seq_ft") == l2p.variant_color("ft")


def test_a_real_tiny_run_saves_outcomes_that_match_its_accuracy_matrix(tmp_path):
    """Through the task loop on a tiny ViT: per-example flags average to the accuracy matrix, the selected ids
    give the selection counts, and the saved outcomes decide claims."""
    import torch

    from vpkit import continual
    from vpkit.backbones import build_backbone
    from vpkit.data import ImageSet
    from vpkit.data.continual import class_incremental_split
    from vpkit.methods import build_l2p_model

    tiny = build_backbone("test_vit", pretrained=False, img_size=None)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 4
    x = (torch.linspace(0, 255, 4)[y].view(-1, 1, 1, 1) + 20 * torch.randn(48, 1, tiny.img_size, tiny.img_size,
                                                                        generator=g)).clamp(0, 255).to(torch.uint8)
    ds = ImageSet(x, y, [f"c{i}" for i in range(4)], "toy")
    tasks = class_incremental_split(ds, ds, num_tasks=2, seed=0)
    q = continual.cache_queries(tiny, tasks, batch_size=16)
    cfg = l2p.L2PConfig(pool_size=4, length=1, top_k=2)
    r = continual.run_continual(build_l2p_model(tiny, 4, cfg).model, tasks, tiny, name="l2p", queries=q,
                                cfg=continual.ContinualConfig(epochs=1, batch_size=8, lr=1e-2, eval_batch_size=5))
    for (t, j), f in r.correct.items():
        assert f.dtype == bool and len(f) == len(tasks[j].test) and f.mean() == pytest.approx(r.acc_matrix[t, j])
        assert r.task_aware[t, j].mean() >= f.mean()  # fewer candidate classes: never less accurate
    model = build_l2p_model(tiny, 4, cfg).model
    ids = l2p.selected_ids(model, q.test, batch_size=5)
    labels = torch.cat([t.test.labels for t in tasks])
    assert torch.equal(l2p.counts_from_ids(ids, labels, num_classes=4, pool_size=4),
                       l2p.selection_counts(model, torch.cat(q.test), labels, 4))  # per sample: order-free
    out = l2p.outcome_arrays({("l2p", 0): r}, {("l2p", 0): ids}, labels)
    assert out["l2p/class_il/seed0"].shape == (2, len(labels)) and out["l2p/selection/seed0"].shape == (len(labels), 2)

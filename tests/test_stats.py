"""vpkit.stats on constructed data: a clear win, a clear loss, a tie, a paired design the unpaired SE misses."""
import numpy as np
import pytest

from vpkit import stats


def outcomes(p, n, seed):
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_clear_win_clear_loss_and_tie():
    a, b = outcomes(0.9, 400, 1), outcomes(0.5, 400, 2)
    win = stats.paired_bootstrap(a, b)
    assert win.verdict == stats.HOLDS and win.ci_low > 0 and win.holds
    loss = stats.paired_bootstrap(b, a)
    assert loss.verdict == stats.FAILS and loss.ci_high < 0
    tie = stats.paired_bootstrap(a, np.roll(a, 1))  # same accuracy, shuffled pairing
    assert tie.verdict == stats.INCONCLUSIVE and tie.ci_low < 0 < tie.ci_high
    assert stats.paired_bootstrap(b, a, direction="<").verdict == stats.HOLDS


def test_paired_design_decides_what_an_unpaired_interval_cannot():
    """b is a with 12 of 400 wrong answers turned right: +3 points on exactly the same examples. An unpaired
    normal interval (two independent binomials) contains 0; the paired bootstrap does not."""
    a = outcomes(0.6, 400, 3)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:12]] = 1.0
    d = stats.paired_bootstrap(b, a)
    pa, pb = a.mean(), b.mean()
    se_unpaired = np.sqrt(pa * (1 - pa) / 400 + pb * (1 - pb) / 400)
    assert (pb - pa) - 1.96 * se_unpaired < 0, "the unpaired interval is inconclusive by construction"
    assert d.verdict == stats.HOLDS and d.margin == pytest.approx(0.03)


def test_hierarchical_bootstrap_widens_with_seed_noise():
    rng = np.random.default_rng(0)
    base = (rng.random((1, 300)) < 0.7).astype(float)
    calm = np.repeat(base, 3, axis=0)
    noisy = np.stack([(rng.random(300) < p).astype(float) for p in (0.55, 0.7, 0.85)])
    ref = np.full((3, 300), 0.6)
    c = stats.hierarchical_bootstrap(calm, ref)
    n = stats.hierarchical_bootstrap(noisy, ref)
    assert c.n_seeds == 3 and c.n_examples == 300 and "3 seeds" in c.test
    assert (n.ci_high - n.ci_low) > (c.ci_high - c.ci_low)
    again = stats.hierarchical_bootstrap(noisy, ref)
    assert (again.ci_low, again.ci_high) == (n.ci_low, n.ci_high), "fixed bootstrap seed: reproducible"


def test_equivalence_holds_only_inside_the_margin():
    assert stats.verdict(-0.004, 0.006, direction="~", margin=0.01) == stats.HOLDS
    assert stats.verdict(-0.004, 0.016, direction="~", margin=0.01) == stats.INCONCLUSIVE
    assert stats.verdict(0.02, 0.03, direction="~", margin=0.01) == stats.FAILS
    with pytest.raises(ValueError, match="margin"):
        stats.verdict(0.0, 0.1, direction="~")
    with pytest.raises(ValueError, match="allowed"):
        stats.verdict(0.0, 0.1, direction=">=")


def test_binomial_against_chance_and_exact_counts():
    above = stats.binomial_vs_chance(40, 100, 0.1)
    assert above.verdict == stats.HOLDS and above.margin == pytest.approx(0.3) and above.ci_low > 0
    near = stats.binomial_vs_chance(12, 100, 0.1)
    assert near.verdict == stats.INCONCLUSIVE
    assert stats.exact(5, direction="<", threshold=10, what="prompts used").verdict == stats.HOLDS
    assert stats.exact(10, direction="<", threshold=10).verdict == stats.INCONCLUSIVE  # on the threshold


def test_correlation_needs_more_than_a_handful_of_points():
    x = np.arange(30, dtype=float)
    strong = stats.correlation_bootstrap(x, x + np.random.default_rng(1).normal(0, 3, 30))
    assert strong.verdict == stats.HOLDS and strong.margin > 0.9
    few = stats.correlation_bootstrap([1, 2, 3, 4, 5, 6], [0.2, 0.1, 0.4, 0.3, 0.2, 0.5])
    assert few.verdict == stats.INCONCLUSIVE
    with pytest.raises(ValueError, match="at least 4"):
        stats.correlation_bootstrap([1, 2], [2, 1])


def test_not_testable_carries_its_reason_and_is_not_holds():
    d = stats.not_testable("every method sits at chance on the new classes")
    assert d.verdict == stats.NOT_TESTABLE and not d.holds and d.as_dict()["reason"]
    with pytest.raises(ValueError, match="reason"):
        stats.not_testable("")


def test_decision_records_its_claimed_side_and_threshold_through_scaling():
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.17).astype(float)
    d = stats.compare(a, threshold=0.40).scaled()
    assert d.verdict == stats.FAILS and (d.direction, d.threshold) == (">", pytest.approx(40.0))
    assert d.claimed == "> 40" and d.as_dict()["threshold"] == pytest.approx(40.0)
    eq = stats.exact(3.0, direction="~", margin=5.0)
    assert (eq.direction, eq.threshold, eq.claimed) == ("~", 5.0, "within ±5")
    assert stats.exact(0.5, direction="<", threshold=1.0).claimed == "< 1"
    assert stats.not_testable("why").claimed == ""
    # against chance the record is accuracy - chance, so the threshold on that scale is 0, not chance
    vc = stats.binomial_vs_chance(30, 100, 0.1).scaled()
    assert vc.margin == pytest.approx(20.0) and (vc.direction, vc.threshold) == (">", 0.0)


def test_every_reports_the_case_closest_to_its_threshold_whatever_the_direction():
    # "<" claims: the weakest case is the one whose upper bound is highest, not the one with the lowest lower bound
    near = stats.Decision(stats.HOLDS, -1.0, -3.0, -0.5, 10, None, "t", direction="<", threshold=0.0)
    far = stats.Decision(stats.HOLDS, -9.0, -12.0, -6.0, 10, None, "t", direction="<", threshold=0.0)
    d = stats.every({"near": near, "far": far})
    assert d.ci_high == -0.5 and "weakest: near" in d.test and (d.direction, d.threshold) == ("<", 0.0)
    # ">" claims with different thresholds: the distance to each case's own threshold decides
    a = stats.Decision(stats.HOLDS, 50.0, 45.0, 55.0, 10, None, "t", direction=">", threshold=44.0)
    b = stats.Decision(stats.HOLDS, 10.0, 5.0, 15.0, 10, None, "t", direction=">", threshold=0.0)
    assert "weakest: a" in stats.every({"a": a, "b": b}).test


def test_interval_text_states_a_threshold_other_than_zero():
    from vpkit.report import interval_text

    rec = stats.compare(np.r_[np.ones(17), np.zeros(83)], threshold=0.40).scaled().as_dict()
    assert interval_text(rec).endswith("points, claimed > 40")
    plain = stats.compare(np.r_[np.ones(60), np.zeros(40)], np.r_[np.ones(40), np.zeros(60)]).scaled().as_dict()
    assert "claimed" not in interval_text(plain)
    old = {k: v for k, v in rec.items() if k not in ("direction", "threshold")}  # a record from before the field
    assert "claimed" not in interval_text(old)

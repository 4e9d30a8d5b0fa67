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

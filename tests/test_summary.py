"""Claims with decisions in metrics.json, per-example outcomes, and results/SUMMARY.md."""
import json

import numpy as np
import pytest

from vpkit import harness, report, stats


def test_claim_takes_its_holds_from_the_decision_and_records_the_interval(tmp_path):
    d = stats.paired_bootstrap(np.r_[np.ones(80), np.zeros(20)], np.r_[np.ones(50), np.zeros(50)]).scaled()
    c = report.Claim("a>b", "A beats B", "+3", "+30 points", decision=d)
    assert c.holds and c.verdict == "holds"
    rec = c.as_dict()
    assert rec["unit"] == "points" and rec["ci_low"] > 0 and rec["margin"] == pytest.approx(30.0)
    with pytest.raises(ValueError, match="disagrees"):
        report.Claim("x", "x", None, None, holds=False, decision=d)
    with pytest.raises(ValueError, match="needs a decision"):
        report.Claim("x", "x", None, None)
    legacy = report.Claim("y", "sign", None, 0.1, True).as_dict()
    assert legacy["verdict"] is None and legacy["test"].startswith("sign only")
    r = report.Results(tmp_path / "src", profile="smoke", seed=0)
    r.metrics({"acc": 1.0}, [c, report.Claim("y", "sign", None, 0.1, True)])
    md = report.claims_markdown(json.loads((tmp_path / "src" / "metrics.json").read_text()))
    assert "+30.00 [" in md and "sign only: holds (no interval)" in md


def test_outcomes_round_trip_compactly(tmp_path):
    r = report.Results(tmp_path, profile="smoke", seed=0)
    correct = np.random.default_rng(0).random(10_000) < 0.7
    r.outcomes({"m/ds/0": correct, "m/ds/0/pred": np.arange(10_000) % 10, "f": correct.astype(float)})
    back = report.load_outcomes(tmp_path)
    assert back["m/ds/0"].dtype == bool and (back["m/ds/0"] == correct).all()
    assert back["f"].dtype == bool and back["m/ds/0/pred"].dtype == np.int16
    assert (tmp_path / report.OUTCOMES).stat().st_size < 30_000
    assert report.load_outcomes(tmp_path / "nothing") == {}


def test_summary_counts_verdicts_per_source(tmp_path):
    for name, claims in {"a": [report.Claim("1", "s", None, None, decision=stats.exact(3, threshold=1)),
                               report.Claim("2", "s", None, None, decision=stats.not_testable("by construction"))],
                         "b": [report.Claim("3", "s", None, None, True)]}.items():
        report.Results(tmp_path / name, profile="offline", seed=0).metrics({}, claims)
    md = report.summary_markdown(tmp_path, ["a", "b", "missing"])
    assert "| a | 2 | 1 | 0 | 0 | 1 | 0 | 0% |" in md and "| b | 1 | 0 | 0 | 0 | 0 | 1 | – |" in md
    assert "by construction" in md
    assert report.sync_summary(tmp_path, ["a", "b"]) and not report.sync_summary(tmp_path, ["a", "b"], check=True)


def test_committed_summary_is_current():
    assert not report.sync_summary(report.REPO_ROOT / "results", list(harness.NOTEBOOKS), check=True), \
        "run: python3 -m vpkit summary"


def test_every_and_bootstrap_statistic():
    win = stats.exact(2.0)
    loss = stats.exact(-1.0)
    unsure = stats.paired_bootstrap(np.r_[1, 0, 1, 0, 1.0], np.r_[0, 1, 1, 0, 1.0])
    assert stats.every({"x": win, "y": win}).verdict == stats.HOLDS
    assert stats.every({"x": win, "y": loss, "z": unsure}).verdict == stats.FAILS
    e = stats.every({"x": win, "z": unsure})
    assert e.verdict == stats.INCONCLUSIVE and "weakest: z" in e.test
    rng = np.random.default_rng(0)
    base = {("base", m): (rng.random((3, 400)) < p) for m, p in (("a", 0.8), ("b", 0.6))}
    new = {("new", m): (rng.random((3, 300)) < p) for m, p in (("a", 0.5), ("b", 0.7))}
    h = lambda m, r: 2 * m[("base", r)] * m[("new", r)] / (m[("base", r)] + m[("new", r)])  # noqa: E731
    d = stats.bootstrap_statistic(lambda m: h(m, "a") - h(m, "b"), {**base, **new}, what="H")
    assert d.n_seeds == 3 and d.n_examples == 700 and d.ci_low <= d.margin <= d.ci_high
    one = stats.compare(base[("base", "a")][:1], base[("base", "b")][:1])
    assert one.n_seeds == 1 and one.verdict == stats.HOLDS

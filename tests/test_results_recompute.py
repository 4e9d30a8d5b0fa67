"""Every committed claim that carries an interval can be recomputed from ``results/`` alone: a study's
``claims_from_results(results_dir)`` reads the saved tables and per-example outcomes (``outcomes.npz``), and must
give the verdicts, margins and intervals its ``metrics.json`` holds."""
import json

import pytest

from vpkit import report, studies

ROOT = report.REPO_ROOT / "results"


def _recomputable():
    for name in studies.STUDIES:
        d = ROOT / name
        if (d / report.OUTCOMES).exists() and hasattr(studies.study(name), "claims_from_results"):
            yield name


def test_outcome_files_are_compact():
    for f in ROOT.glob(f"*/{report.OUTCOMES}"):
        assert f.stat().st_size < 1_000_000, f"{f} is {f.stat().st_size} bytes; keep per-example outcomes < 1 MB"


@pytest.mark.parametrize("name", list(_recomputable()) or ["(none yet)"])
def test_claims_recompute_from_saved_outcomes(name):
    if name == "(none yet)":
        pytest.skip("no results/<source>/ with outcomes.npz and a study with claims_from_results yet")
    saved = {c["id"]: c for c in json.loads((ROOT / name / "metrics.json").read_text())["claims"]}
    again = {c.id: c.as_dict() for c in studies.study(name).claims_from_results(ROOT / name)}
    assert set(again) == set(saved)
    for cid, c in again.items():
        s = saved[cid]
        assert c["verdict"] == s["verdict"], cid
        for k in ("margin", "ci_low", "ci_high"):
            assert (c[k] is None) == (s[k] is None) and (c[k] is None or c[k] == pytest.approx(s[k], abs=1e-9)), (cid, k)
        if "threshold" in s:  # records written since claims keep their claimed side and threshold
            assert (c["direction"], c["threshold"]) == (s["direction"], pytest.approx(s["threshold"])), cid

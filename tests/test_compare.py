"""vpkit.compare: two replications compared (times, outcomes, verdicts) on constructed results roots."""
import json

import numpy as np
import pytest

from vpkit import compare, device


def _claim(cid, verdict, margin, lo, hi):
    return {"id": cid, "statement": cid, "verdict": verdict, "margin": margin, "ci_low": lo, "ci_high": hi,
            "unit": "points", "holds": verdict == "holds"}


def _write(root, name, *, claims, outcomes, precision="bf16", seconds=600.0, sha="abc1234"):
    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"profile": "offline", "claims": claims}))
    (d / "run.json").write_text(json.dumps({"git": {"sha": sha, "dirty": False}, "precision": precision,
                                            "cpu_capability": "AVX512", "torch_threads": 1, "wall_time_s": seconds}))
    np.savez(d / "outcomes.npz", **outcomes)


def _pair(tmp_path, *, flip=False, verdict_b="holds"):
    rng = np.random.default_rng(0)
    outs = {"m/d/0": rng.random(100) < 0.6, "m/d/1": rng.random(100) < 0.4, "preds": np.arange(10, dtype=np.int16)}
    outs_b = {k: v.copy() for k, v in outs.items()}
    if flip:
        outs_b["m/d/0"][:5] = ~outs_b["m/d/0"][:5]
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "vpt", claims=[_claim("c1", "holds", 2.0, 1.0, 3.0), _claim("c2", "inconclusive", 0.5, -1, 2)],
           outcomes=outs)
    _write(b, "vpt", claims=[_claim("c1", verdict_b, 2.0, 1.0 if verdict_b == "holds" else -0.5, 3.0),
                             _claim("c2", "inconclusive", 0.4, -1, 2)], outcomes=outs_b, precision="fp32",
           seconds=900.0)
    return a, b


def test_identical_runs_move_nothing(tmp_path):
    a, b = _pair(tmp_path)
    cmp = compare.compare_runs(a, b, ["vpt"])
    o = cmp["notebooks"][0]["outcomes"]
    assert o["runs_compared"] == o["runs_identical"] == 3
    assert o["examples"] == o["examples_identical"] == 210
    assert o["mean_abs_accuracy_diff"] == 0.0
    assert not any(c["moved"] for c in cmp["claims"])


def test_flipped_outcomes_and_a_moved_verdict_are_reported(tmp_path):
    a, b = _pair(tmp_path, flip=True, verdict_b="inconclusive")
    cmp = compare.compare_runs(a, b, ["vpt"])
    o = cmp["notebooks"][0]["outcomes"]
    assert o["runs_identical"] == 2 and o["examples_identical"] == 205
    # 5 of 100 examples flipped in one of the two boolean runs: |delta accuracy| is 5 points or less there
    x = np.load(a / "vpt" / "outcomes.npz")["m/d/0"]
    expected = abs(float(x.mean()) - float(np.concatenate([~x[:5], x[5:]]).mean())) * 100 / 2
    assert o["mean_abs_accuracy_diff"] == pytest.approx(expected)
    moved = [c["claim"] for c in cmp["claims"] if c["moved"]]
    assert moved == ["c1"]
    md = compare.compare_markdown(cmp, label_a="bf16", label_b="fp32")
    assert "| vpt | `c1` | holds |" in md and "**yes**" in md
    assert "1.50x" in md  # 15 vs 10 minutes
    assert "1 of 2 |" in md


def test_missing_notebook_and_missing_root(tmp_path):
    a, b = _pair(tmp_path)
    cmp = compare.compare_runs(a, b, ["vpt", "cocoop"])
    row = cmp["notebooks"][1]
    assert row["missing"] == ["a/cocoop/metrics.json", "b/cocoop/metrics.json"]
    assert "missing: a/cocoop/metrics.json" in compare.compare_markdown(cmp)
    with pytest.raises(FileNotFoundError, match="root_b"):
        compare.compare_runs(a, tmp_path / "nowhere", ["vpt"])


def test_cli_writes_the_report_and_rejects_unknown_names(tmp_path, capsys):
    a, b = _pair(tmp_path, verdict_b="does not hold")
    out = tmp_path / "out"
    assert compare.main([str(a), str(b), "--out", str(out), "--label-a", "bf16"], names=["vpt"]) == 0
    assert {f.name for f in out.iterdir()} == {compare.REPORT, compare.NOTEBOOK_TABLE, compare.CLAIM_TABLE}
    assert "1 of 2 verdicts differ" in capsys.readouterr().out
    import pandas as pd

    claims = pd.read_csv(out / compare.CLAIM_TABLE)
    assert claims["moved"].tolist() == [True, False]
    assert compare.main([str(a), str(b), "--out", str(out), "vpt"], names=["vpt"]) == 0  # names after the options
    with pytest.raises(SystemExit):
        compare.main([str(a), str(b), "nope", "--out", str(out)], names=["vpt"])
    with pytest.raises(SystemExit):
        compare.main([str(a), str(tmp_path / "nowhere"), "--out", str(out)], names=["vpt"])


def test_run_json_records_isa_limits(monkeypatch):
    for k in device.ISA_LIMIT_VARS:
        monkeypatch.delenv(k, raising=False)
    assert "isa_limits" not in device.describe()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert device.describe()["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_a_claim_of_one_run_only_is_new_not_moved(tmp_path):
    a, b = _pair(tmp_path)
    m = json.loads((b / "vpt" / "metrics.json").read_text())
    m["claims"].append(_claim("c3", "holds", 5.0, 4.0, 6.0))
    (b / "vpt" / "metrics.json").write_text(json.dumps(m))
    cmp = compare.compare_runs(a, b, ["vpt"])
    c3 = next(c for c in cmp["claims"] if c["claim"] == "c3")
    assert not c3["moved"] and c3["only_in"] == "B" and c3["verdict_a"] is None
    md = compare.compare_markdown(cmp)
    assert "| only in B |" in md and "0 of 2 (1 only in B) |" in md and "**yes**" not in md

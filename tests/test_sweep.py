"""Parameter sweeps: grid parsing, run ids, and a 2-point smoke sweep on a local Ray instance (loopback only, network
guard on) that is skipped when current, survives a failing point, and matches the local engine."""
import json

import pytest

from vpkit import report, sweep


def test_grid_points_and_run_ids():
    g = sweep.parse_grid(["seed=0,1", "datasets=['digits'],['mnist5k']"], "visual_prompting")
    assert g == {"seed": [0, 1], "datasets": [["digits"], ["mnist5k"]]}
    pts = sweep.points(g)
    assert len(pts) == 4 and pts[0] == {"datasets": ["digits"], "seed": 0}
    ids = [sweep.run_id(p) for p in pts]
    assert ids[0] == "datasets=digits__seed=0" and len(set(ids)) == 4
    long = sweep.run_id({"datasets": ["fashion_mnist"] * 12})
    assert len(long) <= 80 and "~" in long
    with pytest.raises(ValueError, match="allowed"):
        sweep.parse_grid(["lr=0.1"], "visual_prompting")
    with pytest.raises(ValueError, match="at least one"):
        sweep.parse_grid([], "visual_prompting")
    with pytest.raises(ValueError, match="both swept"):
        sweep.run_sweep("visual_prompting", {"seed": [0]}, sets={"seed": 1})
    with pytest.raises(ValueError, match="engine"):
        sweep.run_sweep("visual_prompting", {"seed": [0]}, engine="slurm")


def _metrics(root, rid):
    m = json.loads((root / "sweeps" / "visual_prompting" / rid / "metrics.json").read_text())
    return {k: v for k, v in m["headline"].items() if k != "minutes"}, [(c["id"], c["verdict"], c["margin"])
                                                                         for c in m["claims"]]


@pytest.mark.slow
def test_smoke_sweep_on_local_ray_resumes_survives_failures_and_matches_local(tmp_path):
    ray = pytest.importorskip("ray")
    fixed = {"precision": "fp32"}  # a measured precision could differ between two loaded runs
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    try:
        rows = sweep.run_sweep("visual_prompting", {"seed": [0, 1]}, sets=fixed, engine="ray", results_root=tmp_path)
        assert [r["status"] for r in rows] == ["done", "done"], rows
        for rid in ("seed=0", "seed=1"):
            d = tmp_path / "sweeps" / "visual_prompting" / rid
            assert (d / "metrics.json").exists() and (d / "run.json").exists() and (d / "outcomes.npz").exists()
        again = sweep.run_sweep("visual_prompting", {"seed": [0, 1]}, sets=fixed, engine="ray", results_root=tmp_path)
        # skipped when the code is committed and unchanged (CI's fresh clone); a dirty tree re-runs by design
        expected = "done" if report.git_state()["dirty"] else "skipped (current)"
        assert [r["status"] for r in again] == [expected] * 2, again
        bad = sweep.run_sweep("visual_prompting", {"datasets": [["digits"], ["no_such_dataset"]]}, sets=fixed,
                              engine="ray", results_root=tmp_path)
        status = {r["run_id"]: r for r in bad}
        assert status["datasets=digits"]["status"] == "done"
        assert status["datasets=no_such_dataset"]["status"] == "failed" and "no_such_dataset" in \
            status["datasets=no_such_dataset"]["error"]
        assert (tmp_path / "sweeps" / "visual_prompting" / "datasets=no_such_dataset" /
                "FAILED-02_visual_prompting.ipynb").exists()
    finally:
        ray.shutdown()
    local = tmp_path / "local"
    rows = sweep.run_sweep("visual_prompting", {"seed": [0, 1]}, sets=fixed, engine="local", jobs=2,
                           results_root=local, progress=False)
    assert [r["status"] for r in rows] == ["done", "done"]
    for rid in ("seed=0", "seed=1"):
        assert _metrics(local, rid) == _metrics(tmp_path, rid), f"{rid}: the local engine must give the same metrics"
    out = sweep.write_collection("visual_prompting", results_root=tmp_path)
    summary = out.read_text()
    assert (out.parent / "summary.md").exists() and (out.parent / "points.csv").exists()
    assert "param:datasets" in summary and "n_runs" in summary

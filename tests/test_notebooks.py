"""One papermill smoke run per notebook, with the network guard on, asserting on what it wrote."""
import json
import os

import papermill as pm
import pytest

from vpkit import harness, stats

NAMES = list(harness.NOTEBOOKS)
REQUIRED_PARAMETERS = {"profile", "seed", "results_dir"}  # what the harness and the tests pass


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    cache = {}

    def run(name):
        if name not in cache:
            assert os.environ.get("VPKIT_NO_NETWORK") == "1"
            harness.run_notebook(name, profile="smoke", results_root=root, progress=False, timeout=900)
            cache[name] = root / name
        return cache[name]
    return run


@pytest.mark.parametrize("name", NAMES)
def test_notebook_declares_parameters(name):
    params = pm.inspect_notebook(str(harness.notebook_path(name)))
    assert REQUIRED_PARAMETERS <= set(params), f"{name} must declare {REQUIRED_PARAMETERS} in its parameters cell"




@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_writes_results(name, smoke_runs):
    out = smoke_runs(name)
    metrics = json.loads((out / "metrics.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert metrics["profile"] == "smoke" and metrics["headline"]
    for c in metrics["claims"]:
        assert {"id", "statement", "paper", "ours", "holds", "verdict", "ci_low", "ci_high", "test"} <= set(c)
        assert isinstance(c["holds"], bool) and c["verdict"] in (*stats.VERDICTS, None)
    assert run["network_blocked"] is True, "the smoke run must execute with the network guard on"
    assert (out / harness.NOTEBOOKS[name]).exists()
    assert list(out.glob("*.png")) and list(out.glob("*.csv"))
    assert not list(out.glob(".running-*"))


@pytest.mark.slow
def test_same_seed_same_metrics(smoke_runs, tmp_path):
    first = json.loads((smoke_runs("backbones") / "metrics.json").read_text())
    harness.run_notebook("backbones", profile="smoke", results_root=tmp_path, progress=False, timeout=900)
    second = json.loads((tmp_path / "backbones" / "metrics.json").read_text())
    assert first["headline"] == second["headline"]


def test_failing_notebook_names_the_cell(tmp_path, monkeypatch):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'offline'\nseed = 0\nresults_dir = ''", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "bad.ipynb").write_text(nbformat.writes(nb))
    monkeypatch.setattr(harness, "NOTEBOOK_DIR", tmp_path)
    monkeypatch.setitem(harness.NOTEBOOKS, "bad", "bad.ipynb")
    with pytest.raises(harness.NotebookFailed, match="ValueError: boom"):
        harness.run_notebook("bad", profile="smoke", results_root=tmp_path / "res", progress=False)
    assert not list((tmp_path / "res" / "bad").glob("*.ipynb")), "a failed run leaves no executed notebook"


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="allowed"):
        harness.run_notebook(NAMES[0], profile="fast")

"""The harness: --set parsing and validation, resumable replicate (is_current), results paths in Jupyter."""
import json
import subprocess

import pytest

from vpkit import harness, report


def test_set_values_are_literals_and_keys_are_the_notebooks_parameters():
    got = harness.parse_sets(["seed=3", "datasets=['digits']", "precision=fp32", "n_train=None"], "backbones")
    assert got == {"seed": 3, "datasets": ["digits"], "precision": "fp32", "n_train": None}
    with pytest.raises(ValueError, match="allowed: .*'seed'"):
        harness.parse_sets(["epochs=2"], "backbones")  # not a parameter of 00_backbones
    with pytest.raises(ValueError, match="KEY=VALUE"):
        harness.parse_sets(["seed"], "backbones")
    with pytest.raises(SystemExit):
        harness.main(["replicate", "backbones", "--set", "nonsense=1", "--results", "/nonexistent"])


def _fake_run(root, name, *, sha, dirty=False, parameters=None):
    out = root / name
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"git": {"sha": sha, "dirty": dirty}}))
    params = {"profile": "offline", "results_dir": str(out), **(parameters or {})}
    (out / harness.NOTEBOOKS[name]).write_text(json.dumps({"metadata": {"papermill": {"parameters": params}}}))


def _head():
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=harness.REPO_ROOT, capture_output=True,
                          text=True).stdout.strip()


def _clean(paths=("vpkit", "notebooks")):
    return not subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=harness.REPO_ROOT,
                              capture_output=True, text=True).stdout.strip()


def test_a_run_is_current_only_for_the_same_parameters_and_code(tmp_path):
    sha = _head()
    _fake_run(tmp_path / "a", "vlm", sha=sha)
    same = harness.is_current("vlm", parameters={"profile": "offline"}, results_root=tmp_path / "a")
    assert same == _clean(), "current exactly when nothing under vpkit/ or the notebook changed since the run"
    assert not harness.is_current("vlm", parameters={"profile": "offline", "seed": 1}, results_root=tmp_path / "a")
    assert not harness.is_current("vlm", parameters={"profile": "smoke"}, results_root=tmp_path / "a")
    _fake_run(tmp_path / "b", "vlm", sha=sha, dirty=True)
    assert not harness.is_current("vlm", parameters={"profile": "offline"}, results_root=tmp_path / "b")
    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=harness.REPO_ROOT,
                           capture_output=True, text=True).stdout.split()[0]
    _fake_run(tmp_path / "c", "vlm", sha=first)  # the first commit: vpkit/ has changed since
    assert not harness.is_current("vlm", parameters={"profile": "offline"}, results_root=tmp_path / "c")
    assert not harness.is_current("vlm", parameters={"profile": "offline"}, results_root=tmp_path / "none")


def test_relative_results_dir_is_taken_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path / ".." if (tmp_path / "..").exists() else tmp_path)
    res = report.Results("results/x", profile="smoke", seed=0)
    assert res.dir == tmp_path / "results" / "x" and res.dir.is_dir()
    assert report.Results(tmp_path / "abs", profile="smoke", seed=0).dir == tmp_path / "abs"


def test_replicate_dry_run_flags_are_checked_and_passed_to_each_notebook(tmp_path, monkeypatch):
    for argv in (["replicate", "vlm", "--dry-run"],  # the default profile is offline: a dry run is of paper
                 ["replicate", "vlm", "--real-device"],  # --real-device needs --dry-run
                 ["replicate", "vlm", "--profile", "paper", "--dry-run", "--results",
                  str(harness.REPO_ROOT / "results")]):  # never under results/
        with pytest.raises(SystemExit):
            harness.main(argv)
    calls = []

    def fake_run(name, *, profile, results_root, parameters, dry_run):
        calls.append((name, profile, dry_run))
        out = tmp_path / name
        out.mkdir(parents=True, exist_ok=True)
        return out / harness.NOTEBOOKS[name]

    monkeypatch.setattr(harness, "run_notebook", fake_run)
    monkeypatch.setattr(harness, "is_current", lambda *a, **k: True)  # a dry run never skips as "current"
    assert harness.main(["replicate", "vlm", "cocoop", "--profile", "paper", "--dry-run", "--real-device",
                         "--results", str(tmp_path)]) == 0
    assert calls == [("vlm", "paper", "device"), ("cocoop", "paper", "device")]
    assert harness.main(["replicate", "vlm", "--profile", "paper", "--dry-run", "--results", str(tmp_path)]) == 0
    assert calls[-1] == ("vlm", "paper", "virtual_cuda")

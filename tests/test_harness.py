"""The harness: --set parsing and validation, resumable replicate (is_current), results paths in Jupyter."""
import json
import os
import subprocess
import threading
import time

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


def test_jobs_are_checked_and_auto_runs_two_at_once_only_offline_on_a_cpu_only_machine():
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(SystemExit):
            harness.main(["replicate", "vlm", "--jobs", bad])
    assert harness.parse_jobs("auto") == "auto" and harness.parse_jobs("3") == 3
    assert harness.auto_jobs("offline", cores=2, cuda=False) == 2
    assert harness.auto_jobs("offline", cores=8, cuda=False) == 2
    assert harness.auto_jobs("offline", cores=1, cuda=False) == 1
    assert harness.auto_jobs("offline", cores=16, cuda=True) == 1  # one GPU: one notebook at a time
    assert harness.auto_jobs("paper", cores=16, cuda=False) == 1
    assert harness.auto_jobs("smoke", cores=16, cuda=False) == 1
    assert harness.auto_jobs("offline", dry_run=True, cores=16, cuda=False) == 1


def test_longest_first_orders_by_the_last_run_and_puts_unknown_ones_first(tmp_path):
    import json

    for n, s in (("vpt", 800.0), ("vlm", 150.0), ("cocoop", 560.0)):
        (tmp_path / n).mkdir()
        (tmp_path / n / "run.json").write_text(json.dumps({"wall_time_s": s}))
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "run.json").write_text("{not json")
    order = harness.longest_first(["vlm", "cocoop", "backbones", "vpt", "pro_tuning"], tmp_path,
                                  fallback_root=tmp_path / "none")
    assert order == ["backbones", "pro_tuning", "vpt", "cocoop", "vlm"]


def test_longest_first_falls_back_to_another_results_folder(tmp_path):
    """An empty --results folder is ordered by the committed results (the fallback), not left in declared order."""
    import json

    for n, s in (("vlm", 100.0), ("l2p", 900.0)):
        (tmp_path / "committed" / n).mkdir(parents=True)
        (tmp_path / "committed" / n / "run.json").write_text(json.dumps({"wall_time_s": s}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "vlm").mkdir()
    (tmp_path / "empty" / "vlm" / "run.json").write_text(json.dumps({"wall_time_s": 1000.0}))  # its own run wins
    assert harness.longest_first(["l2p", "vlm"], tmp_path / "empty", fallback_root=tmp_path / "committed") == \
        ["vlm", "l2p"]
    assert harness.longest_first(["vlm", "l2p"], tmp_path / "nothing", fallback_root=tmp_path / "committed") == \
        ["l2p", "vlm"]


def _fake_results(tmp_path, walls):
    import json

    for n, s in walls.items():
        (tmp_path / n).mkdir(parents=True, exist_ok=True)
        (tmp_path / n / "run.json").write_text(json.dumps({"wall_time_s": s, "torch_threads": 1}))


def test_replicate_jobs_runs_notebooks_at_once_longest_first_with_a_share_of_the_cores(tmp_path, monkeypatch, capsys):
    from vpkit import device

    _fake_results(tmp_path, {"vlm": 10.0, "vpt": 30.0, "cocoop": 20.0})
    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    monkeypatch.setattr(device, "available_cores", lambda: 4)
    both = threading.Barrier(2, timeout=20)  # the first two notebooks must be running at the same time
    calls = []

    def fake_run(name, *, profile, results_root, parameters, dry_run, progress):
        calls.append((name, os.environ.get(device.THREADS_ENV), os.environ.get("OMP_NUM_THREADS"), progress))
        if name in ("vpt", "cocoop"):
            both.wait()
        return tmp_path / name / harness.NOTEBOOKS[name]

    monkeypatch.setattr(harness, "run_notebook", fake_run)
    assert harness.main(["replicate", "vlm", "vpt", "cocoop", "--jobs", "2", "--force", "--results",
                         str(tmp_path)]) == 0
    assert [c[0] for c in calls[:2]] == ["vpt", "cocoop"] and calls[2][0] == "vlm"  # longest first
    assert {c[1:] for c in calls} == {("2", "2", False)}  # 4 cores / 2 jobs; no interleaved progress bars
    assert device.THREADS_ENV not in os.environ  # the pins are the kernels', not left in this process
    out = capsys.readouterr().out
    assert "sum of notebooks" in out and "wall clock (2 at once)" in out


def test_replicate_jobs_keeps_a_pinned_thread_count_and_stops_starting_after_a_failure(tmp_path, monkeypatch, capsys):
    from vpkit import device

    _fake_results(tmp_path, {"vlm": 10.0, "vpt": 30.0, "cocoop": 20.0})
    monkeypatch.setenv(device.THREADS_ENV, "3")
    calls, vpt_failed = [], threading.Event()

    def fake_run(name, *, profile, results_root, parameters, dry_run, progress):
        calls.append((name, os.environ.get(device.THREADS_ENV)))
        if name == "vpt":
            vpt_failed.set()
            raise harness.NotebookFailed("01_vpt.ipynb failed in cell 3: RuntimeError: boom")
        vpt_failed.wait(20)
        time.sleep(0.5)  # cocoop is still running when vpt's failure is seen
        return tmp_path / name / harness.NOTEBOOKS[name]

    monkeypatch.setattr(harness, "run_notebook", fake_run)
    # 2 jobs, 3 notebooks: vpt fails while cocoop runs; cocoop finishes, vlm is never started
    assert harness.main(["replicate", "vlm", "vpt", "cocoop", "--jobs", "2", "--force", "--results",
                         str(tmp_path)]) == 1
    assert {c[1] for c in calls} == {"3"}
    assert sorted(c[0] for c in calls) == ["cocoop", "vpt"]
    assert "FAILED: 01_vpt.ipynb failed in cell 3" in capsys.readouterr().err

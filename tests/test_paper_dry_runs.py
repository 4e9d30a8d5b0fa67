"""Every notebook's ``paper`` profile reaches its end as a paper-shape dry run under the CPU virtual CUDA
(:mod:`vpkit.dryrun`): paper architectures with random weights, fake data of the paper datasets' shapes, 2 steps per
training run, the network blocked, every device move the GPU path needs checked. Each takes up to a few minutes."""
import json

import pytest

from vpkit import harness


@pytest.mark.slow
@pytest.mark.parametrize("name", list(harness.NOTEBOOKS))
def test_paper_profile_dry_run_reaches_the_end_on_virtual_cuda(name, tmp_path):
    out = harness.run_notebook(name, profile="paper", results_root=tmp_path, dry_run="virtual_cuda", progress=False)
    run = json.loads((out.parent / "run.json").read_text())
    assert run["profile"] == "paper" and run["dry_run"] is True and run["virtual_cuda"] is True
    assert run["device"].startswith("cuda") and run["network_blocked"] is True
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics.get("claims"), "the dry run must reach the claims"

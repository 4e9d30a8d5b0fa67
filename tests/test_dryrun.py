"""The dry-run machinery: the CPU virtual CUDA fails where CUDA would, and a dry run cuts what it should."""
import numpy as np
import pytest
import torch
from torch import nn

from vpkit import data, device, dryrun, profiles, train
from vpkit.dryrun import VirtualCudaError, is_tagged


@pytest.fixture
def vcuda():
    with dryrun.dry_run():
        yield


def test_a_module_moved_to_cuda_rejects_cpu_inputs_as_cuda_would(vcuda):
    m = nn.Linear(4, 3).to("cuda")
    assert next(m.parameters()).device.type == "cuda" and next(m.parameters()).is_cuda
    with pytest.raises(VirtualCudaError, match="same device"):
        m(torch.randn(2, 4))
    out = m(torch.randn(2, 4, device="cuda"))
    assert out.device.type == "cuda" and is_tagged(out)
    assert not is_tagged(out.detach().cpu()) and out.detach().cpu().device.type == "cpu"


def test_moving_copies_and_leaves_the_source_where_it_was(vcuda):
    x = torch.randn(3)
    y = x.to("cuda")
    assert is_tagged(y) and not is_tagged(x)  # a device move copies: the CPU tensor stays a CPU tensor
    assert is_tagged(y[1:]) and is_tagged(y.view(3, 1))  # views live where their storage lives
    assert not is_tagged(y.cpu()) and is_tagged(y)
    assert is_tagged(x.cuda()) and is_tagged(torch.zeros(2).to(y)) and is_tagged(torch.zeros(2).to(y.device))
    assert is_tagged(y.to(torch.float64))  # a dtype cast keeps the device
    assert is_tagged(y.new_zeros(2)) and not is_tagged(y.new_zeros(2, device="cpu"))  # an explicit device= decides


def test_a_deep_copy_stays_on_its_device_buffers_included(vcuda):
    import copy

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(memory_format=torch.channels_last).to("cuda")
    c = copy.deepcopy(m)  # as on CUDA: parameters and buffers (BatchNorm running stats) stay on the GPU
    assert all(is_tagged(t) for t in (*c.parameters(), *c.buffers()))
    c.eval()(torch.zeros(1, 3, 8, 8, device="cuda"))
    cpu = copy.deepcopy(nn.BatchNorm2d(4))
    assert not any(is_tagged(t) for t in (*cpu.parameters(), *cpu.buffers()))


def test_numpy_of_a_cuda_tensor_fails_and_zero_dim_cpu_scalars_mix(vcuda):
    y = torch.ones(2, device="cuda")
    with pytest.raises(VirtualCudaError, match="numpy"):
        y.numpy()
    with pytest.raises(VirtualCudaError, match="numpy"):
        np.asarray(y * 2)  # numpy's own conversion (Tensor.__array__) fails like .numpy()
    assert np.asarray(y.cpu()).tolist() == [1.0, 1.0]
    assert is_tagged(y * torch.tensor(2.0))  # CUDA accepts 0-dim CPU tensors
    with pytest.raises(VirtualCudaError):
        torch.cat([y, torch.ones(2)])
    assert is_tagged(y[torch.tensor([0])])  # CPU index tensors are accepted by CUDA


def test_a_training_step_on_virtual_cuda_keeps_everything_on_it(vcuda):
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to("cuda")
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(5, 4, device="cuda"), torch.randint(0, 2, (5,)).to("cuda")
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    assert all(is_tagged(p.grad) for p in m.parameters())  # autograd's grads live with their parameters
    nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    assert all(is_tagged(p) for p in m.parameters())
    assert isinstance(loss.item(), float)


def test_device_auto_is_the_virtual_cuda_only_inside_a_dry_run():
    assert device.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with dryrun.dry_run():
        assert device.resolve_device("auto").type == "cuda"
    with dryrun.dry_run(virtual_cuda=False):
        assert dryrun.active() and device.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not dryrun.active() and not dryrun.virtual_cuda_active()


def test_fit_and_predict_are_cut_in_a_dry_run_and_run_on_the_device(vcuda):
    ds = data.ImageSet(torch.randint(0, 255, (40, 3, 8, 8), dtype=torch.uint8), torch.arange(40) % 2,
                       ["a", "b"], "toy")
    loader = data.Loader(ds, batch_size=4, size=8, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True)
    x, _ = next(iter(loader))
    assert is_tagged(x)  # the Loader resizes on the device
    m = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    seen = []
    hist = train.fit(m, loader, epochs=3, lr=0.1, progress=False,
                     callbacks=[lambda e, h: seen.append(e)])
    assert len(hist.epoch) == 1 and seen == [0]  # 2 of 10 steps per epoch: stopped inside the first epoch
    out = train.evaluate(m, data.Loader(ds, batch_size=4, size=8, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert out["n"] == dryrun.MAX_EVAL_BATCHES * 4 and not is_tagged(out["correct"])


def test_a_diverged_fit_raises_diverged():
    ds = data.ImageSet(torch.randint(0, 255, (8, 3, 4, 4), dtype=torch.uint8), torch.arange(8) % 2, ["a", "b"], "t")
    loader = data.Loader(ds, batch_size=4, size=4, mean=(0.5,) * 3, std=(0.5,) * 3)
    m = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    with torch.no_grad():
        m[1].weight.fill_(float("nan"))
    with pytest.raises(train.Diverged):
        train.fit(m, loader, epochs=1, lr=0.1, progress=False)


def test_torchvision_paper_sets_are_fake_and_shaped_in_a_dry_run(vcuda):
    ds = data.load_torchvision("cifar100", "train")
    assert ds.images.shape == (100 * dryrun.FAKE_TRAIN_PER_CLASS, 3, 32, 32) and len(ds.classes) == 100
    te = data.load_torchvision("sun397", "test", size=224, center_crop=True)
    assert te.images.shape[1:] == (3, 224, 224) and int(te.labels.max()) == 396


def test_dry_run_cuts_apply_only_to_the_paper_profile_of_a_dry_run():
    table = {"smoke": {"a": 1}, "offline": {"a": 2}, "paper": {"a": 3, "b": [1, 2, 3]}}
    cuts = {"b": [1]}
    assert profiles.resolve(table, "paper", dry_run_cuts=cuts)["b"] == [1, 2, 3]
    with dryrun.dry_run(virtual_cuda=False):
        assert profiles.resolve(table, "paper", dry_run_cuts=cuts)["b"] == [1]
        assert profiles.resolve(table, "paper", {"b": [2]}, dry_run_cuts=cuts)["b"] == [2]  # overrides win
        assert profiles.resolve(table, "offline", dry_run_cuts=cuts)["a"] == 2
        with pytest.raises(ValueError, match="lacks"):
            profiles.resolve(table, "paper", dry_run_cuts={"zzz": 1})


def test_the_harness_never_dry_runs_into_results_nor_another_profile(tmp_path):
    from vpkit import harness

    with pytest.raises(ValueError, match="scratch"):
        harness.run_notebook("vlm", profile="paper", dry_run="virtual_cuda")
    with pytest.raises(ValueError, match="paper"):
        harness.run_notebook("vlm", profile="offline", dry_run="virtual_cuda", results_root=tmp_path)
    with pytest.raises(ValueError, match="dry_run"):
        harness.run_notebook("vlm", profile="paper", dry_run="gpu", results_root=tmp_path)

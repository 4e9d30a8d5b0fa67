"""Precision and threads chosen by measurement (vpkit.device): the choice logic under fake timers, forced modes."""
import copy
import json

import pytest
import torch

from vpkit import device


@pytest.fixture(autouse=True)
def restore_device_state():
    state, threads = copy.deepcopy(device._STATE), torch.get_num_threads()
    yield
    device._STATE.clear()
    device._STATE.update(state)
    torch.set_num_threads(threads)


def bf16_costs(factor):
    """A fake timer: a probe costs ``factor`` seconds under CPU bf16 autocast and 1 s in fp32."""
    return lambda fn: factor if torch.is_autocast_enabled("cpu") else 1.0


def test_slow_bf16_chooses_fp32_and_fast_bf16_chooses_bf16():
    slow = device.measure_precision(timer=bf16_costs(7.0))  # an AVX2-only CPU: bf16 emulated
    assert slow["matmul_bf16_speedup"] == pytest.approx(1 / 7) and device.choose_precision(slow) == "fp32"
    fast = device.measure_precision(timer=bf16_costs(0.5))  # native bf16
    assert fast["forward_bf16_speedup"] == pytest.approx(2.0) and device.choose_precision(fast) == "bf16"
    # "clearly faster" on every probe: a 10% gain is not enough, nor a gain on one probe only
    assert device.choose_precision(device.measure_precision(timer=bf16_costs(0.9))) == "fp32"
    assert device.choose_precision({"matmul_bf16_speedup": 2.0, "forward_bf16_speedup": 1.0}) == "fp32"


def test_auto_follows_the_measurement_into_the_loops():
    device.configure(precision="auto", threads=None, timer=bf16_costs(7.0))
    assert device.precision("cpu") == "fp32"
    with device.autocast(torch.device("cpu"), amp=True):
        assert not torch.is_autocast_enabled("cpu")
    device.configure(precision="auto", threads=None, timer=bf16_costs(0.5))
    assert device.precision("cpu") == "bf16"
    with device.autocast(torch.device("cpu"), amp=True):
        assert torch.is_autocast_enabled("cpu")
    with device.autocast(torch.device("cpu"), amp=False):  # a loop that asks for fp32 gets fp32
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("forced, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_forced_precision_is_honoured_whatever_the_timer_says(forced, dtype):
    calls = []
    info = device.configure(precision=forced, threads=None, timer=lambda fn: calls.append(1) or 1.0)
    assert not calls, "a forced precision measures nothing"
    assert info["precision"] == forced and info["precision_setting"] == forced
    a = torch.randn(8, 8)
    with device.autocast(torch.device("cpu"), amp=True):
        assert (a @ a).dtype == dtype


def test_fit_records_the_precision_it_trained_in():
    from vpkit.train import fit

    model = torch.nn.Linear(4, 2)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    device.configure(precision="fp32", threads=None)
    assert fit(model, batches, epochs=1, lr=0.1, amp=True, progress=False).precision == "fp32"
    device.configure(precision="bf16", threads=None)
    assert fit(model, batches, epochs=1, lr=0.1, amp=True, progress=False).precision == "bf16"
    assert fit(model, batches, epochs=1, lr=0.1, amp=False, progress=False).precision == "fp32"


def test_thread_choice(monkeypatch):
    monkeypatch.delenv(device.THREADS_ENV, raising=False)  # measure, as a user's run does
    assert device.choose_threads({1: 1.0, 2: 0.55}) == 2  # an idle 2-core machine
    assert device.choose_threads({1: 0.1, 2: 1.0}) == 1  # oversubscribed: one thread much faster
    assert device.choose_threads({1: 0.95, 2: 1.0}) == 2  # not clearly faster: keep every core
    secs = device.measure_threads(candidates=(1, 2), timer=lambda fn: 1.0 / torch.get_num_threads())
    assert secs == {1: 1.0, 2: 0.5}
    info = device.configure(precision="fp32", threads="auto",
                            timer=lambda fn: 1.0 if torch.get_num_threads() == 1 else 5.0)
    assert info["torch_threads"] == 1 and set(info["thread_seconds"]) >= {"1"}
    assert device.configure(precision="fp32", threads=1)["torch_threads"] == 1


def test_the_threads_environment_variable_pins_auto_and_is_checked(monkeypatch):
    monkeypatch.setenv(device.THREADS_ENV, "1")
    assert device.configure(precision="fp32", threads="auto", timer=lambda fn: 1.0)["torch_threads"] == 1
    assert "thread_seconds" not in device.describe()  # pinned: nothing measured
    monkeypatch.setenv(device.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match=device.THREADS_ENV):
        device.configure(precision="fp32", threads="auto")


@pytest.mark.parametrize("kw, match", [({"precision": "fp16"}, "allowed"), ({"threads": 0}, "threads"),
                                       ({"threads": "many"}, "threads")])
def test_bad_settings_name_the_allowed_values(kw, match):
    with pytest.raises(ValueError, match=match):
        device.configure(**kw)


def test_run_json_records_precision_and_cpu(tmp_path):
    from vpkit import report

    device.configure(precision="fp32", threads=1)
    res = report.Results(tmp_path / "r", profile="smoke", seed=0, config={})
    run = json.loads(res.run_info().read_text())
    assert run["precision"] == "fp32" and run["precision_setting"] == "fp32" and run["torch_threads"] == 1
    assert run["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and run["cpu_model"]


def test_replicate_offers_the_same_precisions_and_prints_a_summary():
    from vpkit import harness

    assert harness.PRECISIONS == device.PRECISIONS
    table = harness.summary_table([{"notebook": "vpt", "minutes": 2.0, "precision": "fp32", "threads": 2, "cpu": "x"},
                                   {"notebook": "vlm", "minutes": 1.5, "precision": "fp32", "threads": 2, "cpu": "x"}])
    assert "vpt" in table and table.splitlines()[-1].split() == ["total", "3.5"]


def test_fp16_loops_get_a_grad_scaler_and_cpu_loops_do_not():
    from vpkit.train import needs_grad_scaler

    device.configure(precision="bf16", threads=None)
    assert not needs_grad_scaler(torch.device("cpu"), True)
    device.configure(precision="auto", threads=None, timer=bf16_costs(0.5))
    assert needs_grad_scaler(torch.device("cuda"), True)  # CUDA autocast defaults to fp16
    assert not needs_grad_scaler(torch.device("cuda"), False)
    device.configure(precision="bf16", threads=None)
    assert not needs_grad_scaler(torch.device("cuda"), True)


# ----------------------------------------------------------------------------------------------------------
# The attention kernel: plain matmuls under CPU bf16 autocast, the fused kernel otherwise, the same function
# ----------------------------------------------------------------------------------------------------------

def test_cpu_vits_switch_kernel_with_the_autocast_state_and_compute_the_same_function():
    from vpkit import backbones as bb

    torch.manual_seed(0)
    b = bb.build_backbone("vit_s14_dinov2", pretrained=False, img_size=28)
    flags = [m.fused_attn for m in b.model.modules() if hasattr(m, "fused_attn")]
    assert flags and all(isinstance(f, device.CpuBf16Unfused) for f in flags)
    assert bool(flags[0])  # fp32: the fused kernel
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not bool(flags[0])  # bf16: plain matmuls
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert bool(flags[0])
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    outs = {}
    for setting in ("fused", "plain"):
        device.apply_attention(b.model, setting)
        with torch.no_grad():
            outs[setting] = b.model(x)
    assert torch.allclose(outs["fused"], outs["plain"], atol=1e-5, rtol=1e-5)
    # the gradients a prompt-tuning step sends back through the frozen blocks, too (fp32: both kernels exact)
    grads = {}
    for setting in ("fused", "plain"):
        device.apply_attention(b.model, setting)
        t = torch.randn(2, 10, b.embed_dim, generator=torch.Generator().manual_seed(1), requires_grad=True)
        (b.model.norm(b.model.blocks(t))[:, 0] ** 2).sum().backward()
        grads[setting] = t.grad
    assert grads["fused"].abs().max() > 0 and torch.allclose(grads["fused"], grads["plain"], atol=1e-5, rtol=1e-4)


def test_minilm_runs_eager_on_the_cpu_and_matches_sdpa():
    from vpkit import vlm

    _, bert = vlm.load_minilm()
    assert bert.config._attn_implementation == "eager" and device.attention_setting(bert)["hf"] == ["eager"]
    x = torch.randn(3, 9, 384, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 6:] = 0
    with torch.no_grad():
        eager = bert(inputs_embeds=x, attention_mask=mask).last_hidden_state
        device.apply_attention(bert, "fused")
        assert bert.config._attn_implementation == "sdpa"
        sdpa = bert(inputs_embeds=x, attention_mask=mask).last_hidden_state
    assert torch.allclose(eager[:, :6], sdpa[:, :6], atol=1e-4) and torch.allclose(eager[1:], sdpa[1:], atol=1e-4)


def test_attention_setting_is_recorded_and_bad_values_are_named():
    assert "attention" in device.describe()
    with pytest.raises(ValueError, match="setting='flash'.*allowed"):
        device.apply_attention(torch.nn.Linear(2, 2), "flash")


# ----------------------------------------------------------------------------------------------------------
# Frozen Linear weights cast to bf16 once (the same bits as autocast's per-call cast); CNNs in channels_last
# ----------------------------------------------------------------------------------------------------------

def _linear_pair(seed: int = 0):
    torch.manual_seed(seed)
    plain = torch.nn.Linear(16, 8)
    cached = device.cache_frozen_bf16(torch.nn.Sequential(torch.nn.Linear(16, 8)))[0]
    cached.load_state_dict(plain.state_dict())
    for p in (*plain.parameters(), *cached.parameters()):
        p.requires_grad_(False)
    return plain, cached


def test_frozen_linear_bf16_copy_is_bit_identical_to_autocast_and_follows_weight_changes():
    plain, cached = _linear_pair()
    assert type(cached) is device.FrozenBf16Linear and isinstance(cached, torch.nn.Linear)
    assert list(cached.state_dict()) == ["weight", "bias"]  # nothing new in the state dict
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = plain(x), cached(x)
    assert b.dtype == torch.bfloat16 and torch.equal(a, b)
    assert "_bf16_copy" in cached.__dict__  # the copy was made ...
    ga, = torch.autograd.grad(a.float().sum(), x)
    gb, = torch.autograd.grad(b.float().sum(), x)
    assert torch.equal(ga, gb)  # ... and the gradient to the input is the same too
    # an in-place change of the weight (load_state_dict, copy_) makes a new copy, never a stale one
    with torch.no_grad():
        plain.weight.mul_(2)
        cached.weight.mul_(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(plain(x), cached(x))
    # fp32 (no autocast): the plain fp32 layer
    assert torch.equal(plain(x), cached(x)) and cached(x).dtype == torch.float32


def test_a_trainable_weight_is_never_served_from_the_copy():
    plain, cached = _linear_pair()
    cached.weight.requires_grad_(True)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = cached(x)
    assert "_bf16_copy" not in cached.__dict__
    y.float().sum().backward()
    assert cached.weight.grad is not None and cached.weight.grad.abs().sum() > 0
    # a trainable bias with a frozen weight (BitFit): weight from the copy, the bias still trains
    plain, cached = _linear_pair()
    cached.bias.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, ref = cached(x), plain(x)
    assert torch.equal(y, ref)
    y.float().sum().backward()
    assert cached.bias.grad is not None and cached.weight.grad is None


def test_backbones_cache_frozen_linears_and_keep_cnns_channels_last():
    from vpkit import backbones as bb

    vit = bb.build_backbone("test_vit", pretrained=False)
    lin = [m for m in vit.model.modules() if isinstance(m, torch.nn.Linear)]
    assert lin and all(type(m) is device.FrozenBf16Linear for m in lin)
    cnn = bb.build_backbone("test_cnn", pretrained=False)
    convs = [p for p in cnn.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    # the same function as the contiguous model (fp32; different kernels round differently, not more)
    import copy

    ref = copy.deepcopy(cnn.model).to(memory_format=torch.contiguous_format)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(cnn.model(x), ref(x), atol=1e-4, rtol=1e-4)

"""The on-disk feature cache (vpkit.featcache): one computation per key, any changed input a new entry, atomic
entries, the switch-off, and the backbones study's cached path equal to the uncached one."""
import torch

from vpkit import featcache


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return {"x": value.clone()}

    return compute, calls


def test_second_call_loads_what_the_first_computed(tmp_path, monkeypatch):
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    x = torch.arange(6.0).reshape(2, 3)
    compute, calls = _counting(x)
    v1, i1 = featcache.cached(("k", x, 3), compute)
    v2, i2 = featcache.cached(("k", x, 3), compute)
    assert len(calls) == 1 and not i1["hit"] and i2["hit"]
    assert torch.equal(v1["x"], v2["x"]) and i2["seconds"] == i1["seconds"] and i1["key"] == i2["key"]
    assert list((tmp_path / "features").glob("*.pt")) and not list((tmp_path / "features").glob("*.tmp"))


def test_any_changed_input_is_a_new_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    x = torch.zeros(4, dtype=torch.uint8)
    m = torch.nn.Linear(2, 2)
    base = ("k", m, x, {"size": 32})
    keys = {featcache.digest(*base)}
    y = x.clone()
    y[0] = 1
    keys.add(featcache.digest("k", m, y, {"size": 32}))  # one image byte
    keys.add(featcache.digest("k", m, x.float(), {"size": 32}))  # the dtype
    keys.add(featcache.digest("k", m, x, {"size": 64}))  # a setting
    m2 = torch.nn.Linear(2, 2)
    keys.add(featcache.digest("k", m2, x, {"size": 32}))  # the weights
    keys.add(featcache.digest("k", m, x, {"size": 32}, featcache.digest))  # the code
    assert len(keys) == 6
    assert featcache.digest(*base) == featcache.digest("k", m, x.clone(), {"size": 32})


def test_use_false_and_the_switch_off_never_write(tmp_path, monkeypatch):
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    compute, calls = _counting(torch.ones(2))
    featcache.cached(("k",), compute, use=False)
    featcache.cached(("k",), compute, use=False)
    assert len(calls) == 2 and not (tmp_path / "features").exists()
    monkeypatch.setenv(featcache.ENV, "0")
    assert not featcache.enabled(True) and not featcache.enabled(False)
    monkeypatch.setenv(featcache.ENV, "1")
    assert featcache.enabled(True) and not featcache.enabled(False)
    monkeypatch.setenv(featcache.ENV, "0")  # the switch reaches cached(): it computes every time and writes nothing
    featcache.cached(("k",), compute)
    featcache.cached(("k",), compute)
    assert len(calls) == 4 and not (tmp_path / "features").exists()


def test_the_attention_kernel_is_part_of_the_key():
    import timm

    from vpkit import device

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, num_classes=0, depth=1)
    keys = set()
    for setting in ("fused", "plain", "auto"):
        device.apply_attention(vit, setting)
        keys.add(featcache.digest("k", vit))
    assert len(keys) == 3


def test_the_memory_format_is_part_of_the_key():
    conv = torch.nn.Conv2d(3, 4, 3)
    before = featcache.digest("k", conv)
    conv.to(memory_format=torch.channels_last)  # the same values, other kernels: other bf16 bits
    assert featcache.digest("k", conv) != before
    conv.to(memory_format=torch.contiguous_format)
    assert featcache.digest("k", conv) == before


def test_an_unreadable_entry_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    compute, calls = _counting(torch.ones(2))
    _, info = featcache.cached(("k",), compute)
    (tmp_path / "features" / f"{info['key']}.pt").write_bytes(b"not a torch file")
    v, info2 = featcache.cached(("k",), compute)
    assert len(calls) == 2 and not info2["hit"] and torch.equal(v["x"], torch.ones(2))
    assert featcache.cached(("k",), compute)[1]["hit"]


def test_backbones_cached_featurize_equals_featurize(tmp_path, monkeypatch):
    from vpkit import backbones as bb
    from vpkit.data import ImageSet
    from vpkit.studies import backbones as study

    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    torch.manual_seed(0)
    b = bb.build_backbone("efficientnet_lite0", pretrained=False, img_size=32)
    g = torch.Generator().manual_seed(0)
    ds = ImageSet(torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(5),
                  [str(i) for i in range(5)])
    ref = study.featurize(b, ds, batch_size=2, precision="fp32")
    (f1, i1), (f2, i2) = (study.cached_featurize(b, ds, batch_size=2, precision="fp32") for _ in range(2))
    assert not i1["hit"] and i2["hit"]
    for got in (f1, f2):
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    # other weights (the same architecture re-initialised): not the cached entry
    torch.manual_seed(1)
    b2 = bb.build_backbone("efficientnet_lite0", pretrained=False, img_size=32)
    (f3, i3) = study.cached_featurize(b2, ds, batch_size=2, precision="fp32")
    assert not i3["hit"] and not torch.equal(f3[0], ref[0])


def test_the_cache_keeps_under_its_cap_dropping_the_least_recently_used(tmp_path, monkeypatch):
    import os
    import time

    import pytest

    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    x = torch.zeros(64 * 1024)  # 256 KiB per entry
    keys = []
    for i in range(3):
        _, info = featcache.cached(("k", i), lambda: {"x": x.clone()})
        keys.append(info["key"])
        p = tmp_path / "features" / f"{info['key']}.pt"
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))  # written in order, a second apart
    featcache.cached(("k", 0), lambda: {"x": x.clone()})  # a hit: entry 0 is now the most recently used
    monkeypatch.setenv(featcache.MAX_MB_ENV, "0.6")  # room for two entries
    _, info = featcache.cached(("k", 3), lambda: {"x": x.clone()})
    left = {p.stem for p in (tmp_path / "features").glob("*.pt")}
    assert left == {keys[0], info["key"]}  # 1 and 2 were the least recently used
    monkeypatch.setenv(featcache.MAX_MB_ENV, "0")  # a cap below one entry still keeps the one just written
    _, info = featcache.cached(("k", 4), lambda: {"x": x.clone()})
    assert {p.stem for p in (tmp_path / "features").glob("*.pt")} == {info["key"]}
    monkeypatch.setenv(featcache.MAX_MB_ENV, "lots")
    with pytest.raises(ValueError, match="VPKIT_FEATURE_CACHE_MAX_MB='lots'.*allowed"):
        featcache.max_bytes()

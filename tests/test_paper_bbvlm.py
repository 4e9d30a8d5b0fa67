"""The ``paper`` profiles of notebooks 00_backbones and 00_vlm (issue 17): they name the papers' datasets, model and
settings; every paper dataset they use loads in a dry run with its class count and shape; their GPU paths run under
the virtual CUDA of :mod:`vpkit.dryrun`; :func:`paper_cost` follows the settings. Offline, seconds."""
import numpy as np
import pytest
import torch

from vpkit import backbones as bb
from vpkit import dryrun
from vpkit.data import ImageSet
from vpkit.studies import backbones as bbs
from vpkit.studies import vlm as vs

PAPER_SETS = ["cifar10", "cifar100", "eurosat", "dtd", "flowers102", "oxford_pets"]


def test_paper_settings_name_the_papers_datasets_and_models():
    cfg = bbs.settings("paper")
    assert cfg["backbones"] == ["vit_b16_in21k", "resnet50"]
    assert cfg["img_sizes"] == {"vit_b16_in21k": 224, "resnet50": 224}
    assert set(PAPER_SETS) <= set(cfg["datasets"]) and cfg["n_train"] == 1000 and cfg["n_test"] is None
    assert cfg["fewshot_from"] == "pool"  # K-shot draws from the whole training split, as CLIP Fig. 6
    assert bb.BACKBONES["vit_b16_in21k"][0].__closure__  # the timm builder
    arch = [c.cell_contents for c in bb.BACKBONES["vit_b16_in21k"][0].__closure__ if isinstance(c.cell_contents, str)]
    assert arch == ["vit_base_patch16_224.orig_in21k"]  # VPT's official checkpoint
    v = vs.settings("paper")
    assert v["vlm"] == "clip_vit_b16" and set(PAPER_SETS) <= set(v["datasets"]) and "mnist5k" in v["datasets"]
    assert vs.PAPER_TEMPLATES["eurosat"] == ("a centered satellite photo of {}.",)  # CoOp's zsclip.py
    for mod in (bbs, vs):
        assert mod.PAPER_DEVIATIONS and all(len(r) == 3 for r in mod.PAPER_DEVIATIONS)
    # the offline profiles keep their protocol (no pool draws, the offline sets only)
    for mod in (bbs, vs):
        off = mod.settings("offline")
        assert "fewshot_from" not in off and off["datasets"] == ["fashion_mnist", "mnist5k", "digits"]


def test_dry_run_cuts_apply_only_in_a_dry_run():
    assert bbs.settings("paper")["datasets"] != bbs.DRY_RUN["datasets"]
    with dryrun.dry_run():
        b, v = bbs.settings("paper"), vs.settings("paper")
    assert b["datasets"] == ["cifar10"] and b["n_train"] == 10 and b["img_sizes"]["vit_b16_in21k"] == 224
    assert b["precision_check"] == ["vit_b16_in21k", "cifar10"]
    assert v["datasets"] == ["cifar10", "digits"] and v["vlm"] == "clip_vit_b16" and v["vocab_stride"] == 100


@pytest.mark.parametrize("name", PAPER_SETS)
def test_paper_dataset_loads_in_a_dry_run(name):
    classes, native = dryrun.PAPER_SHAPES[name]
    with dryrun.dry_run():
        pool, test = bbs.load_dataset(name, size=224)
    side = native or 224
    for ds in (pool, test):
        assert ds.num_classes == classes and ds.images.shape[1:] == (3, side, side)
        assert set(ds.labels.tolist()) == set(range(classes))


def _fake_set(n=6, size=32, classes=3):
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                    torch.arange(n) % classes, [f"c{i}" for i in range(classes)])


def test_backbone_gpu_path_under_virtual_cuda():
    """featurize moves the backbone to the (virtual) GPU; imagenet_topk on that same backbone then fed it CPU photos
    (VirtualCudaError before the fix: the photo tensor did not follow the model's device), and patch_pca_rgb
    called ``.numpy()`` on device tokens."""
    with dryrun.dry_run():
        cnn = bb.build_backbone("test_cnn", pretrained=False)
        f, y = bbs.featurize(cnn, _fake_set(size=cnn.img_size), batch_size=4)
        assert f.shape == (6, cnn.embed_dim) and not dryrun.is_tagged(f) and not dryrun.is_tagged(y)
        assert next(cnn.model.parameters()).device.type == "cuda"
        photos = {"a": np.zeros((40, 40, 3), dtype=np.uint8), "b": np.full((40, 50, 3), 200, dtype=np.uint8)}
        rows = bbs.imagenet_topk(cnn, photos, k=3)
        assert len(rows) == 2 and 0 <= rows[0]["top1_prob"] <= 1
        vit = bb.build_backbone("test_vit", pretrained=False)
        bbs.featurize(vit, _fake_set(size=vit.img_size), batch_size=4)
        maps = bbs.patch_pca_rgb(vit, list(photos.values()), size=vit.img_size)
        assert len(maps) == 2 and isinstance(maps[0], np.ndarray)


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_vlm_zero_shot_under_virtual_cuda(name):
    """The study moves CLIP to the device (``study.build``); zero_shot_eval then compares device features with CPU
    labels only after ``.cpu()`` (before the fix: VirtualCudaError at ``zero_shot_predict(...) == test.labels``, and
    ``linear_probe_predict`` called numpy on device features). ``digits`` is an offline set, ``cifar10`` a fake
    torchvision one; K-shot draws come from the pool."""
    with dryrun.dry_run():
        vlm = vs.build({"vlm": "test_clip", "img_size": None})
        assert vlm.device.type == "cuda"
        rows, probes, out = vs.zero_shot_eval(vlm, name, n_train=10, n_test=4, shots=[1], fewshot_seeds=2,
                                              batch_size=4, fewshot_from="pool")
    assert len(rows) == 2 and {r["n_test"] for r in rows} == {4}
    assert [p["n_draws"] for p in probes] == [1, 2]
    assert all(isinstance(v, np.ndarray) and v.shape == (4,) for v in out.values())
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and (name == "digits" or chosen[0]["invert"] is False)  # colour photos: never inverted


def test_paper_cost_follows_the_settings():
    cfg = bbs.settings("paper", datasets=["cifar10"])
    c = bbs.paper_cost(cfg)
    per_rep = 1000 + 10000 + min(50000, 10 * 10 * 10)
    assert c["evaluated_images_per_representation"] == {"cifar10": per_rep}
    assert c["evaluated_images"] == 4 * per_rep + (1000 + 10000) + 16 + 8  # + precision check + photos
    assert c["training_runs"] == 0 and c["training_images_seen"] == 0 and "vit_b16_224" in c["step_kind"]
    assert bbs.paper_cost(bbs.settings("paper", datasets=["cifar10"], n_test=500))["evaluated_images"] < c[
        "evaluated_images"]
    full = bbs.paper_cost(bbs.settings("paper"))
    assert set(full["evaluated_images_per_representation"]) == set(bbs.settings("paper")["datasets"])
    v = vs.paper_cost(vs.settings("paper", datasets=["cifar100"]))
    assert v["evaluated_images_per_dataset"] == {"cifar100": 2 * 10000 + 1000 + min(50000, 100 * 4 * 10)}
    assert v["step_kind"] == "clip_vitb16_224_image_encode" and v["training_runs"] == 0
    assert v["encoded_texts"] == 100 * len(vs.ZERO_SHOT_TEMPLATES) + 1000 + 10


def test_precision_claim_names_fp16_on_cuda(tmp_path):
    """On a GPU the run's mixed precision is fp16 autocast (vpkit.device.precision); the claim says so instead of
    calling it bf16 (issue 17's probe: the "bf16" rows were fp16 on CUDA)."""
    from vpkit import report

    a = np.arange(200) % 3 > 0
    out = {"bb-pretrained/ds/linear/0": a, "bb-random/ds/linear/0": a, "raw/ds/linear/0": a,
           "precision-fp16/bb-pretrained/ds/linear/0": a, "precision-fp32/bb-pretrained/ds/linear/0": a}
    res = report.Results(tmp_path, profile="smoke", seed=0)
    res.outcomes(out)
    res.json(bbs.PROTOCOL, {"datasets": ["ds"], "backbones": ["bb"], "shots": [], "fewshot_seeds": 1, "n_train": 10,
                            "n_test": {"ds": 200}, "img_sizes": {"bb": 224}, "mixed_precision": "fp16",
                            "precision_check": ["bb", "ds"]})
    ids = {c.id: c for c in bbs.claims_from_results(tmp_path)}
    assert "fp16_keeps_accuracy" in ids and "bf16_keeps_accuracy" not in ids
    assert ids["fp16_keeps_accuracy"].statement.startswith("fp16 autocast")

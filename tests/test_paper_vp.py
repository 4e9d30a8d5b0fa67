"""The ``paper`` profile of notebook 02_visual_prompting (issue 17): its settings name the paper's datasets, model and
hyper-parameters; every paper dataset loads (fake, in a dry run) with its class count and shape; the GPU path runs
under the virtual CUDA; a diverged run scores NaN; ``paper_cost`` follows the settings. No network, seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vpkit import data as data_lib
from vpkit import dryrun, stats
from vpkit import train as train_lib
from vpkit import vlm as vlm_lib
from vpkit.methods import build_vp_classifier, build_vp_tp
from vpkit.prompts import pixel
from vpkit.studies import visual_prompting as vp


def test_paper_settings_name_the_papers_datasets_model_and_hyper_parameters():
    cfg = vp.settings("paper")
    assert cfg["datasets"] == ["cifar100", "cifar10", "flowers102", "food101", "eurosat", "sun397", "svhn",
                               "oxford_pets", "dtd", "clevr_count"]
    assert (cfg["vlm"], cfg["vision_backbone"], cfg["img_size"]) == ("clip_vit_b32", "resnet50_tv", 224)
    assert (cfg["optimizer"], cfg["lr"], cfg["epochs"], cfg["batch_size"], cfg["vision_batch_size"]) == \
        ("sgd", 40.0, 1000, 256, 128)
    assert (cfg["warmup_steps"], cfg["prompt_size"], cfg["mappings"], cfg["amp"]) == (1000, 30, ["first_n"], True)
    assert cfg["n_train"] is None and cfg["n_test"] is None and cfg["n_val"] == 0  # every image, as the paper
    assert cfg["both_polarities"] is False and pixel.TP_TEMPLATE == "This is a photo of a {}"
    for name in cfg["datasets"]:
        assert name in data_lib.TORCHVISION_DATASETS and name in dryrun.PAPER_SHAPES
        assert vp.chosen_polarity(name) is False  # natural images are never inverted
    # a dry run applies the study's cuts (batch sizes, two datasets, one width), never to other profiles
    with dryrun.dry_run():
        cut = vp.settings("paper")
        assert cut["datasets"] == vp.DRY_RUN["datasets"] and cut["lr"] == 40.0 and cut["epochs"] == 1000
        assert vp.settings("offline")["datasets"] == ["fashion_mnist", "mnist5k", "digits"]
    assert set(vp.DRY_RUN) <= set(cfg)


@pytest.mark.parametrize("name", vp.PAPER_DATASETS)
def test_each_paper_dataset_loads_in_a_dry_run(name):
    classes, native = dryrun.PAPER_SHAPES[name]
    vp._PAPER_CACHE.clear()
    with dryrun.dry_run():
        train, val, test = vp.task_data(name, seed=0, n_train=None, n_test=None, size=224)
    side = native or 224
    for d in (train, test):
        assert d.num_classes == classes and tuple(d.images.shape[1:]) == (3, side, side)
        assert d.labels.min() == 0 and d.labels.max() == classes - 1
    assert len(val) == 0
    if name == "clevr_count":
        assert train.classes[0] == "3 objects" and train.classes[-1] == "10 objects"
    vp._PAPER_CACHE.clear()


def test_clevr_count_labels_are_made_contiguous(monkeypatch):
    """torchvision's CLEVRClassification labels are object counts 3..10 (and no class names): 0..7 here."""
    def fake(name, split, **kw):
        labels = torch.arange(3, 11).repeat(2 if split == "train" else 1)
        return data_lib.ImageSet(torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8), labels,
                                 [str(i) for i in range(11)], name)
    monkeypatch.setattr(data_lib, "load_torchvision", fake)
    vp._PAPER_CACHE.clear()
    train, test = vp.paper_data("clevr_count", size=8)
    assert train.labels.tolist() == list(range(8)) * 2 and test.labels.tolist() == list(range(8))
    assert train.classes == [f"{n} objects" for n in range(3, 11)] == test.classes
    vp._PAPER_CACHE.clear()


def _tiny_sets(n_classes=3, per_class=4, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    def one(k):
        imgs = torch.randint(0, 256, (n_classes * k, 3, side, side), generator=g, dtype=torch.uint8)
        return data_lib.ImageSet(imgs, torch.arange(n_classes).repeat_interleave(k), ["cat", "dog", "car"], "tiny")
    return one(per_class), one(2)


def test_gpu_path_runs_under_virtual_cuda():
    """VP+TP on a tiny open_clip CLIP and VP on a tiny timm CNN, then the frozen probes, under the virtual CUDA.
    Before the placement fix ``frozen_outputs`` fed the loader's CUDA batches to the VLM wherever it was: a CPU VLM
    before the first ``fit`` raises ``VirtualCudaError`` (mixed devices) on the old code, checked. After a ``fit`` it
    returned CUDA features that sklearn turns into numpy (a real GPU raises; the virtual CUDA does not see
    ``np.asarray``), so the features must come back untagged (asserted below; tagged on the old code)."""
    from vpkit.backbones import build_backbone

    train, test = _tiny_sets()
    with dryrun.dry_run():
        vlm = vlm_lib.build_vlm("test_clip")
        assert not dryrun.is_tagged(next(vlm.parameters()))
        out = vp.frozen_outputs(vlm, train, invert=False, batch_size=4)  # VLM on the CPU, batches on "cuda"
        assert dryrun.is_tagged(next(vlm.parameters())) and not dryrun.is_tagged(out["features"])
        tf = vp.text_classifier(vlm, "tiny", train.classes)
        assert dryrun.is_tagged(tf)  # text features live where the VLM does
        m = build_vp_tp(vlm, tf, template="padding", prompt_size=4, seed=0)
        kw = dict(epochs=2, lr=40.0, optimizer="sgd", batch_size=4, seed=0, amp=True, warmup_steps=1000,
                  eval_batch_size=4)
        r = vp.train_and_evaluate(m, train, test, vlm, invert=False, **kw)
        assert not r["diverged"] and 0 <= r["acc"] <= 1 and not dryrun.is_tagged(r["correct"])
        probes = vp.linear_probes(vlm, train, test, invert=False, batch_size=4, train_logits=False)
        assert len(probes["probe_features_correct"]) == len(r["correct"])  # the same test images
        cnn = build_backbone("test_cnn", pretrained=False)
        mv = build_vp_classifier(cnn, pixel.first_n_mapping(3), template="random_patch", prompt_size=8, seed=0)
        rv = vp.train_and_evaluate(mv, train, test, cnn, invert=False, **{**kw, "lr": 0.1})
        assert not rv["diverged"]
        logits, y = vp.imagenet_logits(cnn, test, invert=False, batch_size=4, with_labels=True)
        assert not dryrun.is_tagged(logits) and len(logits) == len(y)
        grid, titles = vp.prompt_image_rows({("padding", "tiny"): m.model.prompter}, {"tiny": test.subset([0])}, vlm)
        assert len(titles) == 1 and grid[0][1][0].shape == (32, 32, 3)


def test_a_diverged_run_scores_nan_and_its_claims_are_not_testable(monkeypatch):
    train, test = _tiny_sets()
    vlm = vlm_lib.build_vlm("test_clip")
    m = build_vp_tp(vlm, vp.text_classifier(vlm, "tiny", train.classes), prompt_size=4, seed=0)

    def diverge(*a, **k):
        raise train_lib.Diverged("loss became nan at epoch 0; lower lr=40")
    monkeypatch.setattr(vp, "fit", diverge)
    r = vp.train_and_evaluate(m, train, test, vlm, invert=False, epochs=1, lr=40.0, optimizer="sgd", batch_size=4,
                              seed=0, amp=False)
    assert r["diverged"] and math.isnan(r["acc"]) and torch.isnan(r["correct"]).all()
    assert 0 <= r["before"] <= 1  # the frozen baseline is still measured
    d = vp._compare(np.asarray(r["correct"]), np.asarray(r["before_correct"], float))
    assert d.verdict == stats.NOT_TESTABLE and "diverged" in d.reason
    assert vp._margin(d) == "diverged"


def test_paper_cost_follows_the_settings():
    cfg = vp.settings("paper")
    c = vp.paper_cost(cfg)
    sizes = vp.PAPER_SPLIT_SIZES
    n_abl = 2 + len(set(cfg["widths"]) - {cfg["prompt_size"]})
    assert c["runs"] == len(cfg["datasets"]) * (1 + len(cfg["mappings"])) + n_abl
    assert c["epochs"] == c["runs"] * cfg["epochs"]
    want = cfg["epochs"] * (sum(sizes[d][0] for d in cfg["datasets"]) * (1 + len(cfg["mappings"]))
                            + n_abl * sizes[cfg["ablation_dataset"]][0])
    assert c["train_images"] == want == sum(c["by_step_kind"].values())
    assert c["step_kind"] == "clip_vitb32_224_vp_padding_train" and c["eval_images"] > 0
    twice = vp.paper_cost({**cfg, "epochs": 2 * cfg["epochs"], "n_seeds": 3})
    assert twice["train_images"] == 6 * c["train_images"] and twice["runs"] == 3 * c["runs"]
    small = vp.paper_cost({**cfg, "datasets": ["cifar10"], "widths": [], "mappings": ["first_n", "frequency"]})
    assert small["runs"] == 1 + 2 + 2
    with pytest.raises(ValueError, match="split sizes"):
        vp.paper_cost({**cfg, "datasets": ["digits"]})

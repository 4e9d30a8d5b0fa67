"""Notebook 03_pro_tuning's ``paper`` profile (issue 17): the paper's datasets, model and settings, the paper
datasets' loaders in a dry run, the GPU path under virtual CUDA, divergence, and the cost counts. No network,
seconds."""
import math

import pytest
import torch

from vpkit import backbones as bb
from vpkit import dryrun
from vpkit.data import TORCHVISION_DATASETS, ImageSet, loader_for, shift
from vpkit.prompts import protuning
from vpkit.studies import pro_tuning as study

ALL_METHODS = ["linear", "full", "partial_1", "partial_2", "bias", "adapter", "side", "protuning"]


def test_paper_settings_name_the_papers_data_model_and_hyper_parameters():
    cfg = study.settings("paper")
    # the checked long-tail claim: CIFAR-100-LT IR 100 on ResNet-101 (and IR 50), the ViT check on DeiT-B
    assert (cfg["dataset"], cfg["backbone"], cfg["img_size"]) == ("cifar100", "resnet101", 224)
    assert cfg["settings"] == {"balanced": 1, "lt50": 50, "lt100": 100}
    assert cfg["n_max"] is None and cfg["balanced_per_class"] is None  # CIFAR-LT n_max = the whole class
    assert cfg["test_per_class"] is None and cfg["corruption_per_class"] is None  # the whole test set
    assert cfg["train_on_full_pool"] is True
    assert cfg["methods"] == ALL_METHODS and set(cfg["lrs"]) == set(ALL_METHODS)
    assert cfg["optimizer"] == "sgd" and cfg["vit_optimizer"] == "adamw"
    assert (cfg["epochs"], cfg["batch_size"]) == (100, 128)
    assert cfg["vit_backbone"] == "deit_b16" and set(cfg["vit_lrs"]) >= set(cfg["vit_methods"])
    assert cfg["corruptions"] is None  # all 13 implemented types
    for name in (cfg["backbone"], cfg["vit_backbone"], "resnet50_tv"):
        assert name in bb.BACKBONES
    assert bb.BACKBONES["resnet101"][1] == "cnn" and bb.BACKBONES["deit_b16"][1] == "vit"
    # the paper's CIFAR-10 / ResNet-50 experiment is the same notebook with two parameters
    c10 = study.settings("paper", dataset="cifar10", backbone="resnet50_tv")
    assert (c10["dataset"], c10["backbone"]) == ("cifar10", "resnet50_tv")
    # the deviations that stay are named (the notebook prints them)
    text = study.deviations_text(cfg)
    assert text.startswith("**Paper profile: deviations") and len(study.PAPER_DEVIATIONS) >= 5


def test_offline_and_smoke_keep_the_settings_their_numbers_came_from():
    for profile in ("smoke", "offline"):
        cfg = study.settings(profile)
        assert cfg["optimizer"] == cfg["vit_optimizer"] == "adamw" and cfg["vit_lrs"] is None
        assert cfg["eval_batch_size"] == 128 and cfg["train_on_full_pool"] is False


def test_dry_run_cuts_apply_only_to_a_paper_dry_run():
    with dryrun.dry_run():
        cut = study.settings("paper")
        assert cut["n_seeds"] == 1 and cut["corruptions"] == ["gaussian_noise"] and cut["eval_batch_size"] == 1
        assert (cut["dataset"], cut["backbone"], cut["img_size"], cut["optimizer"]) == \
            ("cifar100", "resnet101", 224, "sgd")  # shapes, architectures and optimisers are not cut
        assert cut["methods"] == ALL_METHODS and any(len(v) > 1 for v in cut["lrs"].values())
        assert study.settings("offline") == study.settings("offline") and study.settings("offline")["n_seeds"] == 3
    assert study.settings("paper")["n_seeds"] == 3


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_paper_datasets_load_in_a_dry_run(name, classes):
    assert name in TORCHVISION_DATASETS and name in study.PAPER_SPLITS
    with dryrun.dry_run():
        pool, test = study.dataset_pair(name)
    for ds in (pool, test):
        assert ds.num_classes == classes and len(ds.classes) == classes
        assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape[1:]) == (3, 32, 32)
    assert study.PAPER_SPLITS[name][2] == classes


def test_training_sets_take_the_whole_pool_and_cifar_lt_sizes():
    # the probe's crash: balanced_per_class=5000 after holdout() removed 100 per class; None takes what is there
    g = torch.Generator().manual_seed(0)
    pool = ImageSet(torch.randint(0, 255, (60, 3, 8, 8), dtype=torch.uint8, generator=g),
                    torch.arange(3).repeat_interleave(20), ["a", "b", "c"], "toy")
    rest, val = shift.holdout(pool, per_class=4, seed=0)
    sets = study.train_sets_for(rest, {"balanced": 1, "lt4": 4}, seed=0, n_max=None, balanced_per_class=None)
    assert shift.class_counts(sets["balanced"]) == [16, 16, 16]
    assert shift.class_counts(sets["lt4"]) == [16, 8, 4]
    cfg = {"corruption_setting": "balanced", "settings": {"balanced": 1}, "n_max": None, "balanced_per_class": None,
           "train_on_full_pool": True}
    full_sets = study.train_sets_for(pool, cfg["settings"], seed=0, n_max=None, balanced_per_class=None)
    sel = study.selection_set(cfg, rest, full_sets, seed=0)
    assert len(full_sets["balanced"]) == 60 and len(sel) == 48  # the validation images stay out of selection
    held = {tuple(x.flatten()[:24].tolist()) for x in val.images}
    assert not held & {tuple(x.flatten()[:24].tolist()) for x in sel.images}
    # the CIFAR-LT convention (Cao et al.): CIFAR-100-LT IR 100 / 50 and CIFAR-10-LT IR 100 / 50 image counts
    assert sum(shift.long_tail_counts(500, 100, 100)) == 10847
    assert sum(shift.long_tail_counts(500, 100, 50)) == 10847 + (12608 - 10847)
    assert sum(shift.long_tail_counts(5000, 10, 100)) == 12406
    assert sum(shift.long_tail_counts(5000, 10, 50)) == 13996


def _toy(n_per_class=2, classes=3, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 255, (n_per_class * classes, 3, side, side), dtype=torch.uint8, generator=g),
                    torch.arange(classes).repeat_interleave(n_per_class), [f"c{i}" for i in range(classes)], "toy")


def test_prompt_maps_follows_the_models_device_under_virtual_cuda():
    """Before the fix ``prompt_maps`` fed its CPU batch to the CUDA model (VirtualCudaError: 'Expected all tensors
    to be on the same device'), ~20 GPU-hours into a paper run."""
    with dryrun.dry_run():
        b = bb.build_backbone("test_cnn", img_size=32)
        model = protuning.ProTuningModel(b.model, kind="cnn", embed_dim=b.embed_dim, num_classes=3, img_size=32)
        model.to("cuda")
        assert next(model.parameters()).device.type == "cuda"
        x = torch.rand(2, 3, 32, 32)  # a CPU batch, as the notebook's loader cell can give it
        maps = protuning.prompt_maps(model, x)
        assert len(maps) == len(model.stage_names) and all(not dryrun.is_tagged(d["feature"]) for d in maps)
        assert all(math.isfinite(d["relative_norm"]) for d in maps)
        # stage_channels' dummy input follows a body already on the device (it was a CPU tensor)
        assert protuning.stage_channels(model.body, "cnn", model.stage_names, 32) == \
            [p.conv1.in_channels for p in model.prompts]


def test_one_grid_and_corruption_pass_runs_under_virtual_cuda():
    """The GPU path of the notebook at tiny shapes: lr selection, the method grid (SGD, as the paper profile),
    the corruption tables (one prediction pass per cell in a dry run) and prompt_maps on the kept model."""
    with dryrun.dry_run():
        b = bb.build_backbone("test_cnn", img_size=32)
        pool, test = _toy(4), _toy(2, seed=1)
        sets = study.train_sets_for(pool, {"balanced": 1, "lt2": 2}, seed=0, n_max=None, balanced_per_class=None)
        kw = dict(num_classes=3, epochs=1, batch_size=2, weight_decay=0.0, amp=True, optimizer="sgd",
                  eval_batch_size=2, method_kwargs={"protuning": {"reduction": 3}})
        lrs, trials = study.select_lrs(["linear", "protuning"], b, sets["balanced"], test,
                                       lrs={"linear": [0.01, 0.1], "protuning": [0.01]}, seed=0, progress=False, **kw)
        assert len(trials) == 2 and lrs["protuning"] == 0.01
        rows, kept, out = study.run_methods(["linear", "protuning"], b, sets, test, lrs=lrs, seed=0,
                                            keep_setting="balanced", progress=False, **kw)
        assert len(rows) == 4 and not any(r["diverged"] for r in rows) and set(kept) == {"linear", "protuning"}
        suite = shift.corruption_suite(test, corruptions=["contrast"])
        corr, c_out = study.corruption_tables({0: kept}, test, suite, b, amp=True, batch_size=2)
        flags = c_out[study.outcome_key("protuning", "corruption", 0)]
        assert flags.shape[0] == len(suite.keys) and flags.shape[1] == len(c_out[study.outcome_key(
            "protuning", "corruption_clean", 0)])
        xb, _ = next(iter(loader_for(test, b, batch_size=2)))
        assert protuning.prompt_maps(kept["protuning"].model, xb)


def test_a_diverged_run_scores_nan_and_the_grid_goes_on(monkeypatch):
    from vpkit import train

    real_fit = train.fit

    def fit(model, loader, **kw):
        if kw["lr"] > 1:
            raise train.Diverged("loss became nan")
        return real_fit(model, loader, **kw)

    monkeypatch.setattr(train, "fit", fit)
    b = bb.build_backbone("test_cnn", img_size=32)
    pool, test = _toy(2), _toy(1, seed=1)
    kw = dict(num_classes=3, epochs=1, batch_size=2, weight_decay=0.0, amp=False, eval_batch_size=8)
    lrs, trials = study.select_lrs(["linear"], b, pool, test, lrs={"linear": [10.0, 0.01]}, seed=0, progress=False,
                                   **kw)
    assert lrs == {"linear": 0.01} and [t["diverged"] for t in trials] == [True, False]
    rows, kept, out = study.run_methods(["linear", "bias"], b, {"balanced": pool}, test, lrs={"linear": 10.0,
                                        "bias": 0.01}, seed=0, keep_setting="balanced", progress=False, **kw)
    by = {r["method"]: r for r in rows}
    assert by["linear"]["diverged"] and math.isnan(by["linear"]["acc"]) and not by["bias"]["diverged"]
    assert set(kept) == {"bias"} and set(out) == {study.outcome_key("bias", "balanced", 0)}


def test_paper_cost_is_computed_from_the_settings():
    cfg = study.settings("paper")
    c = study.paper_cost(cfg)
    n_cnn_trials = sum(len(v) for m, v in cfg["lrs"].items() if m in cfg["methods"] and len(v) > 1)
    n_vit_trials = sum(len(cfg["vit_lrs"][m]) for m in cfg["vit_methods"] if len(cfg["vit_lrs"][m]) > 1)
    grid = cfg["n_seeds"] * len(cfg["settings"]) * len(cfg["methods"]) + cfg["n_seeds"] * len(cfg["vit_methods"])
    assert c["runs"] == n_cnn_trials + n_vit_trials + grid == 114
    assert c["epochs"] == c["runs"] * cfg["epochs"]
    # CNN part by hand: trials on the 450-per-class selection set, grid on CIFAR-100, -LT50, -LT100
    cnn = c["parts"][0]
    assert cnn["train_images_seen"] == 100 * (24 * 45000 + 3 * 8 * (50000 + 12608 + 10847))
    assert cnn["step_kind"] == c["step_kind"] == "resnet101_224_protuning_train"
    assert c["train_images_seen"] == sum(p["train_images_seen"] for p in c["parts"])
    assert c["eval_images"] == sum(p["eval_images"] for p in c["parts"])
    # the counts follow the settings
    half = study.paper_cost({**cfg, "epochs": 50})
    assert half["train_images_seen"] * 2 == c["train_images_seen"] and half["eval_images"] == c["eval_images"]
    c10 = study.paper_cost(study.settings("paper", dataset="cifar10", backbone="resnet50_tv"))
    assert c10["step_kind"] == "resnet50_224_protuning_train" and c10["dataset"] == "cifar10"
    with pytest.raises(ValueError, match="paper dataset"):
        study.paper_cost(study.settings("offline"))

"""01_vpt's ``paper`` profile (issue 17): the paper's tasks, model and hyper-parameters, every VTAB-1k task's loader
on fake paper-shaped data, the study's GPU path under the virtual CUDA, divergence, and ``paper_cost``."""
import math

import numpy as np
import pytest
import torch

from vpkit import backbones, data, dryrun
from vpkit.backbones import build_backbone
from vpkit.data import tasks as task_lib
from vpkit.studies import vpt as study

OFFICIAL_PROMPT_LRS = [50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05]  # KMnP/vpt tune_vtab.py
OFFICIAL_FINETUNE_LRS = {0.001, 0.0001, 0.0005, 0.005}
OFFICIAL_WDS = {0.01, 0.001, 0.0001, 0.0}


def test_paper_settings_name_the_papers_tasks_model_and_hyper_parameters():
    cfg = study.settings("paper")
    assert cfg["backbone"] == "vit_b16_in21k" and cfg["img_size"] == 224
    entry = backbones.BACKBONES["vit_b16_in21k"]
    assert entry[2] == 224 and entry[3] == backbones.IMAGENET_MEAN and entry[4] == backbones.IMAGENET_STD
    # the 10 VTAB-1k tasks torchvision offers, with VTAB's groups; the other 9 named with a reason
    assert cfg["tasks"] == list(task_lib.VTAB_TORCHVISION)
    assert len(task_lib.VTAB_TORCHVISION) + len(task_lib.VTAB_MISSING) == 19
    groups = [task_lib.TASK_GROUPS[t] for t in cfg["tasks"]]
    assert groups.count("natural") == 7 and groups.count("specialized") == 2 and groups.count("structured") == 1
    assert (cfg["n_train"], cfg["n_val"], cfg["n_test"]) == (800, 200, None)
    assert (cfg["optimizer"], cfg["epochs"], cfg["warmup_epochs"], cfg["batch_size"]) == ("sgd", 100, 10, 128)
    assert cfg["seeds"] == [42, 44, 82, 100, 800] and cfg["grid_extend"] == 0 and cfg["tune_on"] == {}
    assert set(cfg["weight_decays"]) == OFFICIAL_WDS
    for m in ("linear", "vpt_shallow", "vpt_deep"):
        assert cfg["base_lrs"][m] == OFFICIAL_PROMPT_LRS
    assert set(cfg["base_lrs"]["full"]) == OFFICIAL_FINETUNE_LRS
    assert cfg["methods"] == ["linear", "vpt_shallow", "vpt_deep", "full"]
    assert cfg["extra_methods"] == ["partial_1", "bias", "adapter"]
    assert cfg["ablation_num_tokens"] == [1, 5, 10, 50, 100, 200]
    assert cfg["ablation_locations"] == ["prepend", "add"]
    assert cfg["ablation_outputs"] == ["cls", "image_mean", "prompt_mean"]
    tc = study.TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"])
    assert tc.lr(50.0) == pytest.approx(25.0)  # base_lr * 128 / 256
    # every deviation that stays is named
    assert len(study.paper_deviations()) >= 5 and len(study.vtab_coverage()) == 19


def test_settings_take_overrides_that_repeat_notebook_parameters():
    """The probe: ``settings(..., tasks=..., **overrides)`` raised TypeError when overrides held ``tasks`` etc."""
    over = {"tasks": ["digits"], "methods": ["linear"], "epochs": 3, "seeds": [0], "n_test": 5, "extra_methods": []}
    cfg = study.settings("offline", overrides=over, tasks=None, methods=None, epochs=None, seeds=None, n_test=None)
    assert (cfg["tasks"], cfg["methods"], cfg["epochs"], cfg["n_test"], cfg["extra_methods"]) == \
        (["digits"], ["linear"], 3, 5, [])
    cfg = study.settings("offline", overrides=over, tasks=["mnist5k"], epochs=2)  # the notebook parameter wins
    assert cfg["tasks"] == ["mnist5k"] and cfg["epochs"] == 2
    with pytest.raises(ValueError, match="unknown parameter"):
        study.settings("offline", overrides={"not_a_setting": 1})


def test_dry_run_cuts_reach_every_method_and_ablation_kind():
    paper = study.settings("paper")
    with dryrun.dry_run():
        cut = study.settings("paper")
    assert set(study.DRY_RUN) <= set(paper)
    for k in ("backbone", "img_size", "optimizer", "epochs", "warmup_epochs", "methods", "extra_methods",
              "num_tokens", "ablation_task"):
        assert cut[k] == paper[k], k
    assert cut["ablation_task"] in cut["tasks"] and {task_lib.TASK_GROUPS[t] for t in cut["tasks"]} >= \
        {"natural", "structured"}
    assert all(len(cut["base_lrs"][m]) >= 1 for m in cut["methods"] + cut["extra_methods"])
    assert any(len(cut["base_lrs"][m]) * len(cut["weight_decays"]) > 1 for m in cut["methods"])  # tune() runs
    for k in ("ablation_locations", "ablation_outputs"):
        assert set(cut[k]) == set(paper[k])
    assert cut["ablation_num_tokens"] and cut["ablation_depths"]


@pytest.mark.parametrize("name", list(task_lib.VTAB_TORCHVISION))
def test_every_paper_task_loads_in_a_dry_run_with_its_class_count_and_shape(name):
    spec = task_lib.VTAB_TORCHVISION[name]
    classes, native = dryrun.PAPER_SHAPES[spec.dataset]
    with dryrun.dry_run():
        pool, test = task_lib.load_task(name)
        splits = data.vtab_splits(pool, test, seed=0, n_train=2, n_val=1, n_test=2)  # PCAM: 2 x 2 fakes
    assert classes == spec.classes == pool.num_classes == test.num_classes
    side = native or spec.size
    assert side is not None and pool.images.shape[1:] == (3, side, side) and test.images.shape[1:] == (3, side, side)
    assert int(pool.labels.max()) < spec.classes and int(test.labels.min()) >= 0
    assert name in pool.name and len(splits["train1000"]) == 3


def test_clevr_count_labels_become_vtab_classes(monkeypatch):
    """torchvision's CLEVRClassification labels a scene by its object count (3..10); VTAB's count_all has 8 classes."""
    def fake(name, split, **kw):
        labels = torch.arange(3, 11).repeat(2)
        return data.ImageSet(torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8), labels,
                             [str(i) for i in range(11)], name)

    monkeypatch.setattr(data, "load_torchvision", fake)
    pool, test = task_lib.load_task("clevr_count_all")
    assert pool.num_classes == 8 and pool.labels.tolist()[:8] == list(range(8)) and pool.classes[0] == "3"
    with pytest.raises(ValueError, match="VTAB-1k task 'dmlab' cannot be loaded"):
        task_lib.load_task("dmlab")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a machine shared with other jobs each op waits for it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    return build_backbone("test_vit", img_size=32)  # 32 px: 4 patches of 16 px, 64 dims, 6 blocks, random init


def _splits(n_classes=3, n=12, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    pool = data.ImageSet(torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8),
                         torch.arange(n) % n_classes, [f"c{i}" for i in range(n_classes)], "toy")
    test = data.ImageSet(torch.randint(0, 256, (6, 3, side, side), generator=g, dtype=torch.uint8),
                         torch.arange(6) % n_classes, pool.classes, "toy")
    return data.vtab_splits(pool, test, seed=0, n_train=6, n_val=3)


def test_the_study_gpu_path_runs_under_virtual_cuda(tiny):
    """Every method, the grid search and every ablation kind of the study on a tiny ViT under the virtual CUDA
    (``device="auto"`` -> cuda): a CPU tensor meeting a CUDA one anywhere would raise VirtualCudaError."""
    tc = study.TrainConfig(epochs=2, batch_size=2, warmup_epochs=1, amp=True)
    suite = {"toy": _splits()}
    lrs = {"linear": [1.0, 0.1], "vpt_shallow": [1.0], "vpt_deep": [1.0], "full": [0.001], "partial_1": [0.001],
           "bias": [0.1], "adapter": [0.1]}
    collected = {}
    with dryrun.dry_run():
        final, grid = study.run_suite(tiny, suite, methods=list(lrs), base_lrs=lrs, weight_decays=[1e-4],
                                      seeds=[0], train=tc, method_kwargs={"vpt_deep": {"num_tokens": 2},
                                                                          "vpt_shallow": {"num_tokens": 2}},
                                      collect=collected, log=None)
        base = {"num_tokens": 2, "dropout": 0.1, "prompt_depth": len(tiny.stages), "location": "prepend",
                "output": "cls"}
        studies = study.vpt_ablation_studies(num_tokens=[1], depths=[1], locations=["add"],
                                             outputs=["image_mean", "prompt_mean"], max_depth=len(tiny.stages),
                                             defaults=base)
        ab = study.run_ablations(tiny, suite["toy"], studies, base_lr=1.0, weight_decay=1e-4, seeds=[0], train=tc,
                                 base_kwargs=base, task="toy", collect=collected)
    assert len(final) == len(lrs) and len(grid) == 2
    assert all(isinstance(r.correct["test"], np.ndarray) for r in collected.values())
    assert {r["study"] for r in ab} == {"num_tokens", "prompt_depth", "location", "output"}
    assert all(math.isfinite(r["acc_test"]) for r in final + ab)


def test_a_diverged_run_scores_nan_and_the_protocol_goes_on(tiny, monkeypatch):
    from vpkit import train

    calls = []

    def fit(model, loader, **kw):
        calls.append(kw["lr"])
        if kw["lr"] > 1.0:
            raise train.Diverged("loss became nan")
        return real_fit(model, loader, **kw)

    real_fit = study.fit
    monkeypatch.setattr(study, "fit", fit)
    tc = study.TrainConfig(epochs=1, batch_size=2, warmup_epochs=0)
    (lr, wd), grid = study.tune("linear", tiny, _splits(), num_classes=3, base_lrs=[1000.0, 0.5],
                                weight_decays=[0.0], train=tc)
    bad = [r for r in grid if r.base_lr == 1000.0][0]
    assert math.isnan(bad.acc["val200"]) and lr == 0.5 and len(calls) == 2


def test_paper_cost_follows_the_settings():
    cfg = study.settings("paper")
    c = study.paper_cost(cfg)
    n_tasks, wds = len(cfg["tasks"]), len(cfg["weight_decays"])
    per_task = sum(len(cfg["base_lrs"][m]) * wds + len(cfg["seeds"]) for m in cfg["methods"]) + \
        sum(len(cfg["base_lrs"][m]) * wds + len(cfg["extra_seeds"]) for m in cfg["extra_methods"])
    # ablation runs: every non-default variant x ablation seed (+ default runs of seeds the main table lacks)
    n_variants = (len(cfg["ablation_num_tokens"]) - 1) + (len(cfg["ablation_depths"]) - 1) + \
        (len(cfg["ablation_locations"]) - 1) + (len(cfg["ablation_outputs"]) - 1)
    n_ablation = n_variants * len(cfg["ablation_seeds"])
    assert c["training_runs"] == n_tasks * per_task + n_ablation
    assert c["total_epochs"] == cfg["epochs"] * c["training_runs"]
    grid_runs = n_tasks * sum(len(cfg["base_lrs"][m]) * wds for m in cfg["methods"] + cfg["extra_methods"])
    final_runs = c["training_runs"] - grid_runs
    assert c["train_images_seen"] == cfg["epochs"] * (grid_runs * cfg["n_train"] +
                                                      final_runs * (cfg["n_train"] + cfg["n_val"]))
    assert c["step_kind"] == "vit_b16_224_vpt_deep_train"
    assert sum(r["runs"] for r in c["by_method"].values()) == c["training_runs"]
    # one more seed adds one run per (task, main method), the ablation's default of that seed being reused
    more = study.paper_cost({**cfg, "seeds": cfg["seeds"] + [7]})
    assert more["training_runs"] == c["training_runs"] + n_tasks * len(cfg["methods"])
    # evaluated images: val200 per grid run, the task's test split per final run
    test_sizes = {t: task_lib.VTAB_TORCHVISION[t].test_images for t in cfg["tasks"]}
    n_final = len(cfg["methods"]) * len(cfg["seeds"]) + len(cfg["extra_methods"]) * len(cfg["extra_seeds"])
    assert c["eval_images"] == grid_runs * cfg["n_val"] + sum(n_final * v for v in test_sizes.values()) + \
        n_ablation * test_sizes[cfg["ablation_task"]]

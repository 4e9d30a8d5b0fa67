"""The ``paper`` profile of notebook 05 (L2P on Split CIFAR-100): its settings are the official ones, its dataset loads
at paper shape in a dry run, its GPU path runs under the virtual CUDA, and :func:`paper_cost` follows the settings."""
import dataclasses

import numpy as np
import pytest
import torch

from vpkit import continual, dryrun
from vpkit.backbones import BACKBONES, build_backbone
from vpkit.data import ImageSet, load_torchvision
from vpkit.data.continual import BatchLoader, class_incremental_split
from vpkit.methods import build_l2p_model
from vpkit.prompts import l2p
from vpkit.studies import image_prompts_l2p as study


def test_paper_settings_are_the_official_l2p_ones():
    cfg = study.settings("paper")
    # Split CIFAR-100 10 x 10, classes in their natural order (l2p-pytorch configs/cifar100_l2p.py, shuffle=False)
    assert (cfg["dataset"], cfg["num_tasks"], cfg["shuffle_classes"]) == ("cifar100", 10, False)
    assert cfg["n_train_per_class"] is None and cfg["n_test_per_class"] is None and cfg["tasks_run"] is None
    # ViT-B/16 ImageNet-21k at 224 px (the port loads imagenet21k/ViT-B_16.npz = timm's .orig_in21k)
    assert cfg["backbone"] == "vit_b16_in21k" and cfg["img_size"] == 224
    assert BACKBONES["vit_b16_in21k"][0].__closure__[0].cell_contents == "vit_base_patch16_224.orig_in21k"
    # Adam, constant lr 0.03 * 16 / 256 at batch 16 (one GPU), clip 1, 5 epochs per task, no weight decay
    tc = study.train_config(cfg)
    assert (tc.optimizer, tc.schedule, tc.grad_clip, tc.weight_decay) == ("adam", "constant", 1.0, 0.0)
    assert (tc.batch_size, tc.epochs, tc.eval_batch_size) == (16, 5, 16)
    assert tc.lr == pytest.approx(0.03 * 16 / 256)
    # [0, 1] inputs, RandomResizedCrop + flip for training, Resize(256) + CenterCrop(224) for testing
    assert (tc.normalize, tc.augment, tc.eval_crop_pct) == (False, True, 224 / 256)
    assert tc.train_mask == "task" and tc.test_order == "mixed"
    # pool M=10, L=5, N=5, pull 0.1, batch-wise selection, uniform init, prompt-token head
    assert (cfg["pool_size"], cfg["length"], cfg["top_k"], cfg["pull_coeff"], cfg["selection"]) == (10, 5, 5, 0.1,
                                                                                                    "batch")
    pc = study.project_variants(pool_size=10, selection="batch")["l2p"].model
    assert (pc.prompt_init, pc.key_init, pc.head_type) == ("uniform", "uniform", "prompt")
    # every variant of the project is run (image-init, patch-embedded, generated prompts, LwF) on 3 seeds
    assert cfg["variants"] is None and cfg["seeds"] == [0, 1, 2] and cfg["single_seed"] == []
    names = set(study.project_variants(gen_lwf_weights=cfg["gen_lwf_weights"]))
    assert {"seq_ft", "lwf", "joint", "l2p", "l2p_image_init", "l2p_patch_embed", "vae_gen", "cls_gen",
            "vae_gen_pool"} <= names and sum(n.startswith("vae_gen_pool_lwf") for n in names) == 3


def test_dry_run_cuts_apply_only_in_a_dry_run_and_keep_every_variant():
    assert study.settings("paper")["seeds"] == [0, 1, 2]
    assert set(study.DRY_RUN) <= set(study.PROFILES["paper"])
    with dryrun.dry_run():
        cut = study.settings("paper")
        off = study.settings("offline")
    assert cut["seeds"] == [0] and cut["tasks_run"] == 2 and cut["batch_size"] == 1 and cut["gen_lwf_weights"] == [1.0]
    assert off == study.settings("offline")  # no cut outside the paper profile
    # what a dry run may not cut: sizes, architecture, classes, optimiser, methods
    for k in ("backbone", "img_size", "dataset", "num_tasks", "lr", "epochs", "pool_size", "length", "top_k",
              "selection", "variants", "normalize", "augment", "eval_crop_pct"):
        assert cut[k] == study.PROFILES["paper"][k], k
    assert len(study.project_variants(gen_lwf_weights=cut["gen_lwf_weights"])) == 11  # every kind, one LwF weight


def test_cifar100_loads_at_paper_shape_in_a_dry_run_and_splits_10_by_10():
    with dryrun.dry_run():
        pool, test = (load_torchvision("cifar100", s) for s in ("train", "test"))
        cfg = study.settings("paper")
        tasks = study.split_tasks(pool, test, cfg, seed=cfg["split_seed"])
        study.init_images(pool, count=cfg["pool_size"], size=32, mean=(0.0,) * 3, std=(1.0,) * 3,
                          class_names=cfg["init_classes"])
    assert pool.num_classes == test.num_classes == 100
    assert pool.images.shape[1:] == (3, 32, 32) and pool.images.dtype == torch.uint8
    assert len(tasks) == 2 and all(len(t.classes) == 10 for t in tasks)  # the first 2 of 10 tasks (dry-run cut)
    assert tasks[0].classes == list(range(10)) and tasks[1].classes == list(range(10, 20))  # natural order
    full = class_incremental_split(pool, test, num_tasks=10, seed=0, shuffle_classes=False)
    assert len(full) == 10 and sorted(c for t in full for c in t.classes) == list(range(100))


def test_official_test_transform_resize_256_center_crop_224():
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    x[..., 2:30, 2:30] = 255  # a 2-pixel black border: Resize(256) makes it 16 px, CenterCrop(224) removes it
    ds = ImageSet(x, torch.tensor([0, 1]), ["a", "b"], "t")
    b, _ = next(iter(BatchLoader(ds, batch_size=2, size=224, mean=(0.0,) * 3, std=(1.0,) * 3, normalize=False,
                                 crop_pct=224 / 256, device="cpu")))
    assert b.images.shape == (2, 3, 224, 224) and 0 <= b.images.min() and b.images.max() <= 1
    assert b.images[..., 4:-4, 4:-4].min() > 0.99  # the border is cropped away (bicubic ringing aside)
    plain, _ = next(iter(BatchLoader(ds, batch_size=2, size=224, mean=(0.0,) * 3, std=(1.0,) * 3, normalize=False,
                                     device="cpu")))
    assert plain.images[..., 0, 0].max() < 0.01  # the offline straight resize keeps it


def _toy(n_per_class=4, classes=4, size=32):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.randint(0, 256, (len(y), 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(x, y, [f"c{i}" for i in range(classes)], "toy")


def test_gpu_path_of_every_variant_under_virtual_cuda():
    """The paper profile's GPU path at tiny shapes: query cache (moves the shared backbone to the GPU), a model built
    with keys from CPU init images (``key_init="query"``: raised "two devices" in ``L2PModel.__init__`` before the
    fix), augmented training with LwF from a frozen copy and generator LwF, the test-time crop, then the prompt-image
    figure rows (raised on ``.numpy()`` of a CUDA prompt and on CPU inputs to the CUDA generator before the fix)."""
    with dryrun.dry_run():
        tiny = build_backbone("test_vit", pretrained=False, img_size=None)
        ds = _toy()
        tasks = class_incremental_split(ds, ds, num_tasks=2, seed=0, shuffle_classes=False)
        q = continual.cache_queries(tiny, tasks, batch_size=8, normalize=False, train=False, crop_pct=224 / 256)
        assert q.train is None and not dryrun.is_tagged(q.test[0])  # queries come back on the CPU
        assert next(tiny.model.parameters()).device.type == "cuda"
        x0, cls0 = study.init_images(ds, count=4, size=tiny.img_size, mean=(0.0,) * 3, std=(1.0,) * 3)
        assert not dryrun.is_tagged(x0)
        variants = study.project_variants(pool_size=4, length=2, top_k=2, selection="batch", gen_lwf_weights=[1.0],
                                          gen_size=16)
        base = continual.ContinualConfig(epochs=1, batch_size=4, lr=1e-3, normalize=False, augment=True,
                                         eval_crop_pct=224 / 256, eval_batch_size=4)
        models = {}
        for name in ("l2p_image_init_keys", "lwf", "joint", "l2p_image_init", "l2p_patch_embed", "cls_gen",
                     "vae_gen_pool", "vae_gen_pool_lwf1"):
            r, m = study.run_variant(variants[name], tiny, tasks, train_cfg=base, queries=q, init_images=x0,
                                     num_classes=4)
            assert not r.diverged and np.isfinite(r.acc_matrix).all(), name
            models[name] = m.model
        ids = study.selected_ids(models["l2p_patch_embed"], q.test, batch_size=4)
        assert ids.shape == (len(ds), 2)
        xs = study.init_images(ds, count=4, size=tiny.img_size, mean=(0.0,) * 3, std=(1.0,) * 3, seed=1)[0]
        rows = study.prompt_image_rows(models, x0, mean=(0.0,) * 3, std=(1.0,) * 3, vae_inputs=xs)
        assert [r[0] for r in rows][-2:] == ["VAE inputs", "VAE generated"]
        assert all(isinstance(im, np.ndarray) for _, ims in rows for im in ims)


def test_key_init_from_cpu_images_on_a_cuda_body():
    """The probe's first crash (``l2p.py``: CPU init images into a CUDA body) in isolation."""
    with dryrun.dry_run():
        tiny = build_backbone("test_vit", pretrained=False, img_size=None)
        tiny.model.to("cuda")
        x0 = torch.rand(3, 3, tiny.img_size, tiny.img_size)
        m = build_l2p_model(tiny, 5, l2p.L2PConfig(pool_size=3, top_k=2, prompt_init="image", key_init="query"),
                            init_images=x0).model
        m.to("cuda")
        assert torch.allclose(m.pool.key.detach().cpu(), m.query(x0.to("cuda")).cpu(), atol=1e-5)


def test_a_diverged_run_scores_nan_and_the_rest_goes_on(monkeypatch):
    from vpkit import train

    tiny = build_backbone("test_vit", pretrained=False, img_size=None)
    ds = _toy()
    tasks = class_incremental_split(ds, ds, num_tasks=2, seed=0, shuffle_classes=False)
    variants = study.project_variants(pool_size=4, length=2, top_k=2)

    def boom(*a, **k):
        raise train.Diverged("loss became nan")

    monkeypatch.setattr(continual, "fit", boom)
    out = study.run_all({"l2p": variants["l2p"]}, ["l2p"], seeds=[0], single_seed=[], backbone=tiny, tasks=tasks,
                        train_cfg=continual.ContinualConfig(epochs=1, batch_size=4), queries=None, pool=ds,
                        pool_size=4, mean=tiny.mean, std=tiny.std, num_classes=4, log=lambda *_: None)
    r = out["runs"]["l2p", 0]
    assert r.diverged and np.isnan(r.average_accuracy) and np.isnan(r.forgetting)
    rows = study.run_rows(out["runs"], out["params"])
    assert rows[0]["diverged"] and np.isnan(rows[0]["avg_acc"]) and np.isnan(rows[0]["old_task_aware_acc"])
    assert ("l2p", 0) not in out["selections"]
    arrays = study.outcome_arrays(out["runs"], out["selections"], torch.cat([t.test.labels for t in tasks]))
    assert list(arrays) == ["labels/test/all"]


def test_paper_cost_follows_the_settings():
    cfg = study.settings("paper")
    c = study.paper_cost(cfg)
    n_var = len(study.project_variants(gen_lwf_weights=cfg["gen_lwf_weights"]))
    assert c["training_runs"] == n_var * 3 == 39
    # 12 continual variants x 10 task fits + 1 joint fit, per seed; 5 epochs each
    assert c["fit_calls"] == 3 * (12 * 10 + 1) and c["epochs"] == 5 * c["fit_calls"]
    assert c["train_images"] == 39 * 5 * 50_000
    assert c["eval_images"] == 3 * (12 * 55 * 1_000 + 10_000)
    assert c["step_kind"] == "vit_b16_224_l2p_train"
    # computed from cfg: one seed and half the epochs halve what they should
    fewer = study.paper_cost({**cfg, "seeds": [0], "epochs": 2})
    assert fewer["training_runs"] == 13 and fewer["train_images"] == 13 * 2 * 50_000
    assert fewer["eval_images"] == c["eval_images"] // 3
    with dryrun.dry_run():
        cut = study.paper_cost(study.settings("paper"))
    assert cut["training_runs"] == 11 and cut["fit_calls"] == 10 * 2 + 1

"""Profile settings per notebook, in one place: ``smoke`` (CI), ``offline`` (default), ``paper``.

A notebook's ``parameters`` cell holds literals (``profile``, ``seed``, ``results_dir`` and optional
overrides); :func:`settings` turns them into one validated dict.
"""
from __future__ import annotations

import copy

PROFILE_NAMES = ("smoke", "offline", "paper")

PROFILES: dict[str, dict[str, dict]] = {
    "vlm": {
        "smoke": dict(vlm="offline", img_size=64, datasets=["digits"], n_train=60, n_test=40, batch_size=64, photos=2,
                      vocab_stride=10),
        "offline": dict(vlm="offline", img_size=160, datasets=["fashion_mnist", "mnist5k", "digits"], n_train=1000,
                        n_test=1000, batch_size=64, photos=6, vocab_stride=1),
        "paper": dict(vlm="clip_vit_b16", img_size=None, datasets=["fashion_mnist", "mnist5k", "digits"],
                      n_train=1000, n_test=None, batch_size=64, photos=6, vocab_stride=1),
    },
    # 02: visual prompting (Bahng et al. 2022). Offline: the offline VLM at 64 px, padding 8 px (~30/224), a few
    # dozen training images per dataset, a few epochs of Adam; paper: CLIP ViT-B/32, SGD lr 40, 1000 epochs.
    # num_threads=1: on the shared 2-core machine one torch thread trained ~10x faster than two (measured).
    "visual_prompting": {
        "smoke": dict(vlm="offline", vision_backbone=None, img_size=32, datasets=["digits"], both_polarities=False,
                      n_train=10, n_test=10, epochs=1, batch_size=10, lr=0.1, optimizer="adam", warmup_epochs=0,
                      amp=True, prompt_size=4, patch_size=8, widths=[], mappings=["frequency"],
                      ablation_dataset="digits", num_threads=1),
        "offline": dict(vlm="offline", vision_backbone=None, img_size=64,
                        datasets=["fashion_mnist", "mnist5k", "digits"], both_polarities=True, n_train=100,
                        n_test=300, epochs=5, batch_size=20, lr=0.1, optimizer="adam", warmup_epochs=0,
                        amp=True, prompt_size=8, patch_size=16, widths=[2, 4, 16],
                        mappings=["first_n", "frequency"], ablation_dataset="fashion_mnist", num_threads=1),
        "paper": dict(vlm="clip_vit_b32", vision_backbone="resnet50", img_size=None,
                      datasets=["fashion_mnist", "mnist5k", "digits"], both_polarities=True, n_train=1000,
                      n_test=None, epochs=1000, batch_size=256, lr=40.0, optimizer="sgd", warmup_epochs=1,
                      amp=True, prompt_size=30, patch_size=50, widths=[1, 5, 10, 50],
                      mappings=["first_n", "frequency"], ablation_dataset="fashion_mnist", num_threads=None),
    },
    # 05: L2P + the image-prompt project (continual learning). Offline: Split Fashion-MNIST 5x2, 40 images per
    # class, 56 px, 5 epochs per task (the paper's epochs, prompt length and top-N); lr from a pilot
    # (0.003 / 0.01 / 0.03 / 0.1 on L2P).
    "image_prompts_l2p": {
        "smoke": dict(backbone="vit_s14_dinov2", img_size=14, dataset="fashion_mnist", num_tasks=2, split_seed=None,
                      n_train_per_class=1, n_test_per_class=1, epochs=1, batch_size=8, lr=0.01, amp=False,
                      pool_size=10, length=1, top_k=2, pull_coeff=0.1, selection="per_sample", lwf_weight=1.0,
                      gen_lwf_weights=[1.0], gen_size=28, init_classes=None, variants=None),
        "offline": dict(backbone="vit_s14_dinov2", img_size=56, dataset="fashion_mnist", num_tasks=5,
                        split_seed=None, n_train_per_class=40, n_test_per_class=40, epochs=5, batch_size=8,
                        lr=0.03, amp=True, pool_size=10, length=5, top_k=5, pull_coeff=0.1,
                        selection="per_sample", lwf_weight=1.0, gen_lwf_weights=[1.0, 10.0], gen_size=28,
                        init_classes=None,
                        variants=["seq_ft", "lwf", "joint", "l2p", "l2p_image_init", "l2p_image_init_keys",
                                  "l2p_patch_embed", "vae_gen", "cls_gen", "vae_gen_pool", "vae_gen_pool_lwf1",
                                  "vae_gen_pool_lwf10"]),
        "paper": dict(backbone="vit_b16_in21k", img_size=224, dataset="cifar100", num_tasks=10, split_seed=42,
                      n_train_per_class=None, n_test_per_class=None, epochs=5, batch_size=16, lr=0.03 * 16 / 256,
                      amp=True, pool_size=10, length=5, top_k=5, pull_coeff=0.1, selection="batch",
                      lwf_weight=1.0, gen_lwf_weights=[0.1, 1.0, 10.0], gen_size=32,
                      init_classes=["apple", "boy", "maple tree", "mountain", "bee", "chair", "lion", "poppy",
                                    "crab", "bus"], variants=None),
    },
    # 03: Pro-Tuning (Nie et al. 2024). Offline: Fashion-MNIST, long-tailed (IR 50/100) and balanced subsets,
    # EfficientNet-Lite0 at 64 px (+ a ViT-S/14 check at 56 px), 3 epochs, lr per method chosen from 4 values on a
    # held-out balanced validation split (a first 3-value grid put 4 of 8 choices on its edge), a 13-type
    # corruption benchmark.
    "pro_tuning": {
        "smoke": dict(dataset="digits", backbone="efficientnet_lite0", img_size=32,
                      methods=["linear", "full", "protuning"],
                      settings={"balanced": 1, "lt100": 100}, n_max=8, balanced_per_class=2,
                      test_per_class=2, val_per_class=1, epochs=1, batch_size=16, weight_decay=1e-4, amp=True,
                      train_amp=False, lrs={"linear": [1e-2], "full": [1e-3], "protuning": [3e-3, 1e-2]},
                      param_archs={"resnet50": 10},
                      reduction=3, blend="add", corruption_setting="balanced",
                      corruptions=["gaussian_noise", "contrast"], corruption_per_class=1,
                      vit_backbone="vit_s14_dinov2", vit_img_size=28, vit_methods=["protuning"], vit_setting="lt100",
                      vit_num_stages=4),
        "offline": dict(dataset="fashion_mnist", backbone="efficientnet_lite0", img_size=64,
                        methods=["linear", "full", "partial_1", "partial_2", "bias", "adapter", "side", "protuning"],
                        settings={"balanced": 1, "lt50": 50, "lt100": 100}, n_max=100, balanced_per_class=20,
                        test_per_class=20, val_per_class=10, epochs=3, batch_size=8, weight_decay=1e-4, amp=True,
                        train_amp=False,
                        lrs={"linear": [1e-3, 3e-3, 1e-2, 3e-2], "full": [1e-4, 3e-4, 1e-3, 3e-3],
                             "partial_1": [1e-3, 3e-3, 1e-2, 3e-2], "partial_2": [3e-4, 1e-3, 3e-3, 1e-2],
                             "bias": [1e-3, 3e-3, 1e-2, 3e-2], "adapter": [3e-4, 1e-3, 3e-3, 1e-2],
                             "side": [1e-3, 3e-3, 1e-2, 3e-2], "protuning": [3e-4, 1e-3, 3e-3, 1e-2]},
                        reduction=3, blend="add", corruption_setting="balanced", corruptions=None,
                        corruption_per_class=2, vit_backbone="vit_s14_dinov2", vit_img_size=56,
                        param_archs={"resnet50": 10, "resnet101": 100},
                        vit_methods=["linear", "protuning"], vit_setting="lt100", vit_num_stages=4),
        "paper": dict(dataset="cifar10", backbone="resnet50", img_size=224,
                      methods=["linear", "full", "partial_1", "partial_2", "bias", "adapter", "side", "protuning"],
                      settings={"balanced": 1, "lt50": 50, "lt100": 100}, n_max=5000, balanced_per_class=5000,
                      test_per_class=1000, val_per_class=100, epochs=100, batch_size=128, weight_decay=1e-4,
                      amp=True, train_amp=True,
                      lrs={"linear": [3e-3, 1e-2, 3e-2], "full": [1e-4, 3e-4, 1e-3], "partial_1": [3e-4, 1e-3, 3e-3],
                           "partial_2": [3e-4, 1e-3, 3e-3], "bias": [1e-3, 3e-3, 1e-2], "adapter": [1e-3, 3e-3, 1e-2],
                           "side": [1e-3, 3e-3, 1e-2], "protuning": [1e-3, 3e-3, 1e-2]},
                      reduction=3, blend="add", corruption_setting="balanced", corruptions=None,
                      corruption_per_class=1000, vit_backbone="vit_b16_in21k", vit_img_size=224,
                      param_archs={"resnet50": 10, "resnet101": 100},
                      vit_methods=["linear", "full", "protuning"], vit_setting="lt100", vit_num_stages=4),
    },
    "vpt": {  # notebooks/01_vpt.ipynb (Jia et al. 2022); lr = base_lr * batch_size / 256
        "smoke": dict(backbone="vit_s14_dinov2", img_size=28, tasks=["digits", "dsprites_location"], render_size=28,
                      n_train=24, n_val=8, n_test=16, methods=["linear", "vpt_shallow", "vpt_deep", "full"],
                      extra_methods=["bias"], seeds=[0], extra_seeds=[0],
                      base_lrs={"linear": [0.08], "vpt_shallow": [0.08, 0.02], "vpt_deep": [0.08], "full": [8e-4],
                                "bias": [8e-3]},
                      weight_decays=[1e-4], tune_on={"dsprites_location": "digits"}, optimizer="adamw", epochs=1,
                      batch_size=16, warmup_epochs=0, amp=True, num_tokens=5, ablation_task="dsprites_location",
                      ablation_num_tokens=[1], ablation_depths=[1], ablation_locations=["add"],
                      ablation_outputs=["image_mean"], ablation_seeds=[0]),
        "offline": dict(backbone="vit_s14_dinov2", img_size=56,
                        tasks=["digits", "fashion_mnist", "mnist5k", "dsprites_location", "clevr_count"],
                        render_size=56, n_train=800, n_val=200, n_test=300,
                        methods=["linear", "vpt_shallow", "vpt_deep", "full"],
                        extra_methods=["partial_1", "bias", "adapter"], seeds=[0, 1], extra_seeds=[0],
                        base_lrs={"linear": [0.48, 0.16], "vpt_shallow": [0.16, 0.048], "vpt_deep": [0.16, 0.048],
                                  "full": [1.6e-3, 4.8e-4], "partial_1": [4.8e-3], "bias": [0.048],
                                  "adapter": [0.048]},
                        weight_decays=[1e-4], tune_on={"fashion_mnist": "digits", "mnist5k": "digits",
                                                       "clevr_count": "dsprites_location"},
                        optimizer="adamw", epochs=1, batch_size=16, warmup_epochs=0.2, amp=True, num_tokens=5,
                        ablation_task="dsprites_location", ablation_num_tokens=[1, 5, 10, 50],
                        ablation_depths=[1, 6, 12], ablation_locations=["prepend", "add"],
                        ablation_outputs=["cls", "image_mean", "prompt_mean"], ablation_seeds=[0]),
        "paper": dict(backbone="vit_b16_in21k", img_size=224,
                      tasks=["cifar100", "dsprites_location", "dsprites_orientation", "clevr_count"], render_size=224,
                      n_train=800, n_val=200, n_test=None,
                      methods=["linear", "vpt_shallow", "vpt_deep", "full"],
                      extra_methods=["partial_1", "bias", "adapter"], seeds=[0, 1, 2, 3, 4],
                      extra_seeds=[0, 1, 2, 3, 4],
                      base_lrs={**{m: [50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05] for m in
                                   ["linear", "bias", "adapter", "vpt_shallow", "vpt_deep"]},
                                "partial_1": [1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01],
                                "full": [0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.0025, 0.001]},
                      weight_decays=[0.01, 1e-3, 1e-4, 0.0], tune_on={}, optimizer="sgd", epochs=100,
                      batch_size=128, warmup_epochs=10, amp=True, num_tokens=10, ablation_task="cifar100",
                      ablation_num_tokens=[1, 5, 10, 50], ablation_depths=[1, 3, 6, 9, 12],
                      ablation_locations=["prepend", "add"], ablation_outputs=["cls", "image_mean", "prompt_mean"],
                      ablation_seeds=[0, 1, 2]),
    },
    # 04: CoOp / CoCoOp (Zhou et al. 2022) on the offline VLM with frozen image features computed once.
    # Offline: 3 datasets, K in {1, 2, 4, 8, 16}, 3 seeds, CoOp 20 epochs (paper 200), CoCoOp 4 epochs at batch 4
    # (paper 10 at batch 1); num_threads=1: one torch thread trains these tiny text batches faster than two.
    "cocoop": {
        "smoke": dict(vlm="offline", img_size=32, datasets=["digits"], shots=[2], n_test_per_class=2, seeds=[0],
                      n_ctx=4, ctx_init="a photo of a", template="a photo of a {}.",
                      coop=dict(epochs=1, batch_size=4, lr=0.2), cocoop=dict(epochs=1, batch_size=2, lr=0.05),
                      optimizer="sgd", warmup_epochs=0, shift_dataset="digits", shifts=["inverted"],
                      cross=[], ablation_dataset="digits", ablation_init=False, ablation_seeds=[0],
                      ablation_n_ctx=[1], ablation_bigger_coop=False, timing_batch=2, timing_repeats=1, num_threads=1),
        "offline": dict(vlm="offline", img_size=128, datasets=["fashion_mnist", "mnist5k", "digits"],
                        shots=[1, 2, 4, 8, 16], n_test_per_class=50, seeds=[1, 2, 3], n_ctx=4, ctx_init="a photo of a",
                        template="a photo of a {}.", coop=dict(epochs=20, batch_size=16, lr=0.2),
                        cocoop=dict(epochs=4, batch_size=4, lr=0.05), optimizer="sgd", warmup_epochs=1,
                        shift_dataset="fashion_mnist", shifts=["inverted", "gaussian_noise:3"],
                        cross=[["mnist5k", "digits"]], ablation_dataset="fashion_mnist", ablation_init=True,
                        ablation_seeds=[1, 2, 3], ablation_n_ctx=[1, 8, 16], ablation_bigger_coop=True,
                        timing_batch=8, timing_repeats=3, num_threads=1),
        "paper": dict(vlm="clip_vit_b16", img_size=None,
                      datasets=["eurosat", "dtd", "flowers102", "oxford_pets", "food101", "caltech101",
                                "fgvc_aircraft", "sun397"],
                      shots=[1, 2, 4, 8, 16], n_test_per_class=None, seeds=[1, 2, 3], n_ctx=4,
                      ctx_init="a photo of a", template="a photo of a {}.",
                      coop=dict(epochs=200, batch_size=32, lr=0.002), cocoop=dict(epochs=10, batch_size=1, lr=0.002),
                      optimizer="sgd", warmup_epochs=1, shift_dataset="caltech101",
                      shifts=["inverted", "gaussian_noise:3", "contrast:3"],
                      cross=[["caltech101", d] for d in ["eurosat", "dtd", "flowers102", "oxford_pets", "food101",
                                                         "fgvc_aircraft", "sun397"]],
                      ablation_dataset="dtd", ablation_init=True, ablation_seeds=[1, 2, 3],
                      ablation_n_ctx=[1, 8, 16], ablation_bigger_coop=True, timing_batch=32, timing_repeats=3,
                      num_threads=None),
    },
    "backbones": {
        "smoke": dict(backbones=["vit_s14_dinov2", "efficientnet_lite0"], datasets=["digits"], n_train=60,
                      n_test=40, shots=[1], fewshot_seeds=1, img_sizes={"vit_s14_dinov2": 56,
                                                                          "efficientnet_lite0": 64},
                      photos=2, pca_size=112),
        "offline": dict(backbones=["vit_s14_dinov2", "efficientnet_lite0"],
                        datasets=["fashion_mnist", "mnist5k", "digits"], n_train=1000, n_test=1000,
                        shots=[1, 5, 10], fewshot_seeds=5,
                        img_sizes={"vit_s14_dinov2": 112, "efficientnet_lite0": 224}, photos=16, pca_size=224),
        "paper": dict(backbones=["vit_b16_in21k", "resnet50"], datasets=["fashion_mnist", "mnist5k", "digits"],
                      n_train=1000, n_test=None, shots=[1, 5, 10], fewshot_seeds=5,
                      img_sizes={"vit_b16_in21k": 224, "resnet50": 224}, photos=16, pca_size=224),
    },
}


def settings(notebook: str, profile: str, **overrides) -> dict:
    """The settings of ``notebook`` under ``profile``, with non-None ``overrides`` applied and checked."""
    if notebook not in PROFILES:
        raise ValueError(f"unknown notebook={notebook!r}; known: {sorted(PROFILES)}")
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r}; allowed: {PROFILE_NAMES}")
    cfg = copy.deepcopy(PROFILES[notebook][profile])
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in cfg:
            raise ValueError(f"unknown parameter {k!r} for notebook {notebook!r}; allowed: {sorted(cfg)}")
        cfg[k] = v
    cfg["profile"] = profile
    return cfg

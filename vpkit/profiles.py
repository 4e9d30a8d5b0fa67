"""Profile settings per notebook, in one place: ``smoke`` (CI), ``offline`` (default), ``paper``.

A notebook's ``parameters`` cell holds literals (``profile``, ``seed``, ``results_dir`` and optional
overrides); :func:`settings` turns them into one validated dict.
"""
from __future__ import annotations

import copy

PROFILE_NAMES = ("smoke", "offline", "paper")

PROFILES: dict[str, dict[str, dict]] = {
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

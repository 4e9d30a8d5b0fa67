"""Study of notebook ``00_backbones``: what the frozen offline backbones know before any prompt is learned.

Linear and few-shot probes of pretrained vs randomly initialised features vs raw pixels, ImageNet top-k on
photos, patch-feature PCA.

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import ImageSet, few_shot_indices, loader_for, photo_tensor, to_model_input
from ..metrics import linear_probe
from ..profiles import resolve
from ..train import extract_features


PROFILES = {
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
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 00_backbones's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="backbones")


def featurize(backbone, ds: ImageSet, *, batch_size: int = 64, amp: bool = True, progress: bool = False,
              desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pooled features of every image in ``ds`` (bf16 autocast by default)."""
    from ..device import autocast, resolve_device

    dev = resolve_device("auto")
    with autocast(dev, amp):
        return extract_features(backbone, loader_for(ds, backbone, batch_size=batch_size), progress=progress,
                                desc=desc)


def raw_pixels(ds: ImageSet, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened pixel values in [0, 1] (optionally resized), the 'no backbone' baseline."""
    x = ds.images.float() / 255.0
    if size is not None:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.flatten(1), ds.labels


def probe_rows(train_x, train_y, test_x, test_y, *, shots, fewshot_seeds: int, seed: int, classes: int,
               **labels) -> list[dict]:
    """Linear-probe accuracy on all training features, and K-shot accuracy averaged over seeds."""
    rows = [{**labels, "setting": "linear (all)", "n_train": len(train_y),
             "acc": linear_probe(train_x, train_y, test_x, test_y), "acc_std": 0.0}]
    for k in shots:
        accs = []
        for s in range(fewshot_seeds):
            idx = few_shot_indices(torch.as_tensor(train_y), k, seed=seed + s, num_classes=classes)
            accs.append(linear_probe(train_x[idx], train_y[idx], test_x, test_y))
        rows.append({**labels, "setting": f"{k}-shot", "n_train": k * classes, "acc": float(np.mean(accs)),
                     "acc_std": float(np.std(accs))})
    return rows


@torch.no_grad()
def imagenet_topk(backbone, photos: dict, *, k: int = 5) -> list[dict]:
    """Top-k ImageNet predictions of a backbone with a 1000-way classifier on each photo."""
    from ..data import imagenet_class_names

    names = imagenet_class_names()
    rows = []
    for name, photo in photos.items():
        x = to_model_input(photo_tensor(photo), size=backbone.img_size, mean=backbone.mean, std=backbone.std)
        p = backbone.logits(x).softmax(-1)[0]
        top = p.topk(k)
        rows.append({"photo": name, **{f"top{i + 1}": f"{names[j]} ({v:.2f})"
                                       for i, (v, j) in enumerate(zip(top.values.tolist(), top.indices.tolist()))},
                     "top1_prob": top.values[0].item()})
    return rows


@torch.no_grad()
def patch_pca_rgb(backbone, photos: list[np.ndarray], *, size: int) -> list[np.ndarray]:
    """First three principal components of ViT patch tokens (fit jointly over ``photos``) as RGB maps."""
    if backbone.kind != "vit":
        raise ValueError(f"patch PCA needs a ViT backbone, got kind={backbone.kind!r}")
    xs = torch.cat([to_model_input(photo_tensor(p), size=size, mean=backbone.mean, std=backbone.std)
                    for p in photos])
    tokens = backbone.model.forward_features(xs)[:, backbone.model.num_prefix_tokens:]  # (B, N, D)
    grid = size // backbone.patch_size
    flat = tokens.reshape(-1, tokens.shape[-1]).double()
    flat = flat - flat.mean(0)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comp = (flat @ v[:3].T).reshape(len(photos), grid, grid, 3)
    lo, hi = comp.amin(dim=(0, 1, 2)), comp.amax(dim=(0, 1, 2))
    comp = (comp - lo) / (hi - lo + 1e-8)
    return [c.numpy() for c in comp]

"""What frozen representations know: linear / few-shot probes, ImageNet top-k, patch-feature PCA."""
from __future__ import annotations

import numpy as np
import torch

from .data import ImageSet, few_shot_indices, loader_for, to_model_input
from .metrics import linear_probe
from .train import extract_features


def featurize(backbone, ds: ImageSet, *, batch_size: int = 64, amp: bool = True, progress: bool = False,
              desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pooled features of every image in ``ds`` (bf16 autocast by default)."""
    from .train import _autocast, resolve_device

    dev = resolve_device("auto")
    with _autocast(dev, amp):
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


def photo_tensor(photo: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xSxS uint8, centre-cropped to a square."""
    h, w = photo.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return torch.from_numpy(np.ascontiguousarray(photo[top:top + s, left:left + s])).permute(2, 0, 1)[None]


@torch.no_grad()
def imagenet_topk(backbone, photos: dict, *, k: int = 5) -> list[dict]:
    """Top-k ImageNet predictions of a backbone with a 1000-way classifier on each photo."""
    from .data import imagenet_class_names

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

"""The visual-prompting study (Bahng et al. 2022) as functions: data, one train+evaluate run, baselines, gap.

Notebook 02 calls these; the prompts themselves live in :mod:`vpkit.prompts.pixel`.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import data as data_lib
from . import vlm as vlm_lib
from .metrics import linear_probe
from .prompts import pixel
from .train import evaluate, fit, predict


def task_data(name: str, *, seed: int, n_train: int, n_test: int | None) -> tuple[data_lib.ImageSet, data_lib.ImageSet]:
    """``n_train`` training images drawn by ``seed`` from the pool and a fixed test subset."""
    pool, test = data_lib.offline_dataset(name)
    sp = data_lib.vtab_splits(pool, test, seed=seed, n_train=n_train, n_val=0, n_test=n_test)
    return sp["train800"], sp["test"]


def chosen_polarity(name: str) -> bool:
    """The label-free polarity rule of :func:`vpkit.vlm.dark_background` on the dataset's training pool."""
    pool, _ = data_lib.offline_dataset(name)
    return vlm_lib.dark_background(pool.images[:2000])


def loader(ds, model, *, batch_size: int, invert: bool, shuffle: bool = False, seed: int = 0) -> data_lib.Loader:
    """Batches sized/normalised for ``model``: a VLM (``.preprocess``) or a :class:`~vpkit.backbones.Backbone`."""
    pp = getattr(model, "preprocess", model)
    return data_lib.Loader(ds, batch_size=batch_size, size=pp.img_size, mean=pp.mean, std=pp.std, shuffle=shuffle,
                           seed=seed, invert=invert)


def text_classifier(vlm, name: str, classes: list[str], template: str = pixel.TP_TEMPLATE) -> torch.Tensor:
    """TP: the text features of ``template`` for each class (prompt-friendly names where the VLM module has them)."""
    return vlm.classifier_weights(vlm_lib.DATASET_CLASSNAMES.get(name, classes), (template,))


def train_and_evaluate(method, train, test, model, *, invert: bool, epochs: int, lr: float, optimizer: str,
                       batch_size: int, seed: int, amp: bool, warmup_epochs: float = 0.0,
                       momentum: float = 0.9) -> dict:
    """Accuracy of ``method.model`` before training (zero prompt = the frozen baseline) and after training only
    its prompt; with the run's seconds, training throughput and trainable-parameter count."""
    torch.manual_seed(seed)
    if hasattr(method.model, "prompter"):
        method.model.prompter.reset_generator(seed)
    te = loader(test, model, batch_size=max(batch_size, 64), invert=invert)
    before = evaluate(method.model, te, amp=amp)["acc"]
    t0 = time.perf_counter()
    hist = fit(method.model, loader(train, model, batch_size=batch_size, invert=invert, shuffle=True, seed=seed),
               epochs=epochs, lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=0.0,
               warmup_epochs=warmup_epochs, amp=amp, progress=False)
    after = evaluate(method.model, te, amp=amp)["acc"]
    return {"method": method.name, "before": before, "acc": after, "train_acc": hist.train_acc[-1],
            "final_loss": hist.loss[-1], "trainable": method.report.trainable,
            "train_images_per_s": hist.throughput, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def frozen_outputs(vlm, ds, *, invert: bool, batch_size: int = 64, amp: bool = True) -> dict[str, torch.Tensor]:
    """One frozen pass of the offline VLM's image side: Lite0 pooled features, ImageNet logits, joint embedding."""
    feats, logits, emb = [], [], []
    for x, _ in loader(ds, vlm, batch_size=batch_size, invert=invert):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            if hasattr(vlm, "image_parts"):
                f, lg = vlm.image_parts(x)
                z = vlm.alignment.image(f.float(), lg.float())
            else:  # open_clip: no ImageNet head; the embedding stands in for the features
                z = vlm.encode_image(x, normalize=False)
                f, lg = z, None
        feats.append(f.float())
        emb.append(torch.nn.functional.normalize(z.float(), dim=-1))
        if lg is not None:
            logits.append(lg.float())
    out = {"features": torch.cat(feats), "embedding": torch.cat(emb)}
    if logits:
        out["imagenet_logits"] = torch.cat(logits)
    return out


def gap_measure(imagenet_logits: torch.Tensor) -> float:
    """Distribution gap to the pre-training data as ``1 - mean max-softmax`` of the frozen ImageNet classifier
    (Hendrycks & Gimpel 2017: in-distribution inputs get confident predictions). Needs no reference images,
    which an FID/LPIPS against ImageNet would (we have none offline)."""
    return float(1.0 - imagenet_logits.softmax(-1).max(-1).values.mean())


@torch.no_grad()
def imagenet_logits(backbone, ds, *, invert: bool, batch_size: int = 64, amp: bool = True) -> torch.Tensor:
    """The frozen vision-only classifier's ImageNet logits (no prompt)."""
    return predict(backbone.model, loader(ds, backbone, batch_size=batch_size, invert=invert), amp=amp)[0]


def linear_probes(vlm, train, test, *, invert: bool, amp: bool = True, vision=None) -> dict:
    """Logistic-regression probes (CLIP-style) on frozen image-tower features and on the joint embedding, plus the
    gap measure on the test images (ImageNet logits of the VLM's own tower, or of ``vision`` when it has none)."""
    tr = frozen_outputs(vlm, train, invert=invert, amp=amp)
    te = frozen_outputs(vlm, test, invert=invert, amp=amp)
    if "imagenet_logits" not in te and vision is not None:
        tr["imagenet_logits"] = imagenet_logits(vision, train, invert=invert, amp=amp)
        te["imagenet_logits"] = imagenet_logits(vision, test, invert=invert, amp=amp)
    out = {"probe_features": linear_probe(tr["features"], train.labels, te["features"], test.labels),
           "probe_embedding": linear_probe(tr["embedding"], train.labels, te["embedding"], test.labels)}
    if "imagenet_logits" in te:
        out["gap"] = gap_measure(te["imagenet_logits"])
        out["train_imagenet_logits"] = tr["imagenet_logits"]
    return out


def correlation(x, y) -> dict:
    """Pearson r (and Spearman rho) with the number of points; NaN when fewer than 3 points or no spread."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"pearson_r": float("nan"), "spearman_rho": float("nan"), "n": int(len(x))}
    from scipy.stats import spearmanr

    return {"pearson_r": float(np.corrcoef(x, y)[0, 1]), "spearman_rho": float(spearmanr(x, y)[0]),
            "n": int(len(x))}


def mapping_from_logits(kind: str, train_logits: torch.Tensor | None, labels: torch.Tensor, num_classes: int):
    """``first_n`` (the paper) or ``frequency`` (from the unprompted model's training-set predictions)."""
    if kind == "first_n":
        return pixel.first_n_mapping(num_classes)
    if kind == "frequency":
        if train_logits is None:
            raise ValueError("mapping='frequency' needs the frozen model's ImageNet logits on the training set")
        return pixel.frequency_mapping(train_logits, labels, num_classes)
    raise ValueError(f"mapping={kind!r}; allowed: ('first_n', 'frequency')")


__all__ = ["task_data", "chosen_polarity", "loader", "text_classifier", "train_and_evaluate", "frozen_outputs",
           "gap_measure", "imagenet_logits", "linear_probes", "correlation", "mapping_from_logits", "predict"]

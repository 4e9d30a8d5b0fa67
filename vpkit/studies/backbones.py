"""Study of notebook ``00_backbones``: what the frozen offline backbones know before any prompt is learned.

Linear and few-shot probes of pretrained vs randomly initialised features vs raw pixels, the mixed-precision
check, ImageNet top-k on photos, patch-feature PCA; the claims (:func:`claims_from_results`).

Protocol (fixed before any result is seen):

* every representation (raw pixels; each backbone pretrained and randomly initialised) is probed on the same
  1000 training images (VTAB-1k style) and evaluated on the **whole** fixed test set of each dataset
  (Fashion-MNIST 10,000, MNIST-5k 1,000, digits 597), so every comparison is paired over the same test images;
* the linear probe (logistic regression on standardised features, deterministic given the features) uses all
  1000 training images; a K-shot probe uses K images per class, drawn ``fewshot_seeds`` times (the draws are
  the "seeds"; draw ``s`` picks the same images for every representation);
* features are extracted once per (representation, dataset) in the run's mixed precision and reused by every
  probe; the mixed-precision check re-extracts one backbone on one dataset in fp32 (the only extra pass; on the
  first ``precision_check_n_test`` test images).

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import stats
from ..data import ImageSet, few_shot_indices, loader_for, photo_tensor, to_model_input
from ..metrics import linear_probe_predict
from ..profiles import resolve
from ..report import Claim, load_outcomes

PROFILES = {
    "smoke": dict(backbones=["vit_s14_dinov2", "efficientnet_lite0"], datasets=["digits"], n_train=60,
                  n_test=40, shots=[1], fewshot_seeds=3, img_sizes={"vit_s14_dinov2": 56,
                                                                         "efficientnet_lite0": 64},
                  precision_check=["vit_s14_dinov2", "digits"], precision_check_n_test=None, photos=2,
                  pca_size=112, feature_cache=False),
    # n_test None: the whole fixed test set (Fashion-MNIST 10,000, MNIST-5k 1,000, digits 597)
    "offline": dict(backbones=["vit_s14_dinov2", "efficientnet_lite0"],
                    datasets=["fashion_mnist", "mnist5k", "digits"], n_train=1000, n_test=None,
                    shots=[1, 5, 10], fewshot_seeds=10,
                    img_sizes={"vit_s14_dinov2": 112, "efficientnet_lite0": 224},
                    # the fp32 re-extraction is the one extra pass: the first 5000 Fashion-MNIST test images (on
                    # the committed run's 1000 images bf16 and fp32 probes disagreed on 0.8%: ~+-0.25 points at 5000)
                    precision_check=["vit_s14_dinov2", "fashion_mnist"], precision_check_n_test=5000, photos=16,
                    # frozen features are kept on disk (vpkit.featcache), keyed by everything that decides them: a
                    # second run on this machine loads them (the timings table keeps the computation's seconds)
                    pca_size=224, feature_cache=True),
    # paper (a GPU and internet): ViT-B/16 ImageNet-21k (VPT's official checkpoint, timm orig_in21k) and ResNet-50
    # (timm a1_in1k) at 224 px, probed on natural-image datasets of CLIP's linear-probe suite (CLIP Sec. 3.2 / Table 10)
    # that torchvision downloads, plus the offline sets (cheap on a GPU). Deviations from CLIP's linear-probe protocol
    # that stay (named in the notebook's "Paper profile: deviations" table, :data:`PAPER_DEVIATIONS`): VTAB-1k style
    # 1000 training images for the full-data probe (CLIP: the whole training split), sklearn's default C = 1 (CLIP:
    # C swept on a validation split), K-shot draws of K images per class from the whole training split (as CLIP
    # Fig. 6), EuroSAT's fixed 70/30 split of its one set, raw pixels resized to ``raw_size``.
    "paper": dict(backbones=["vit_b16_in21k", "resnet50"],
                  datasets=["cifar10", "cifar100", "eurosat", "dtd", "flowers102", "oxford_pets",
                            "fashion_mnist", "mnist5k", "digits"],
                  n_train=1000, n_test=None, shots=[1, 5, 10], fewshot_seeds=10,
                  img_sizes={"vit_b16_in21k": 224, "resnet50": 224},
                  precision_check=["vit_b16_in21k", "cifar100"], precision_check_n_test=None, photos=16,
                  pca_size=224, fewshot_from="pool", raw_size=32, batch_size=256, feature_cache=True),
}

# Cuts of the paper profile's paper-shape dry run (vpkit.dryrun): the fewest points that reach every code path -
# one torchvision paper dataset (the offline loader is the offline profile's and the smoke run's path), one K, two
# few-shot draws (the t-interval branch), a few images per split and the photos; image sizes, architectures,
# class counts and the precision check are unchanged. batch_size is a dry-run cut too (2 batches per pass).
DRY_RUN = dict(datasets=["cifar10"], n_train=10, n_test=4, shots=[1], fewshot_seeds=2, photos=2,
               precision_check=["vit_b16_in21k", "cifar10"], precision_check_n_test=2, batch_size=8,
               feature_cache=False)

# The paper profile's remaining deviations from the papers it draws on, shown in the notebook.
PAPER_DEVIATIONS = [
    ("full-data linear probe", "1000 training images per dataset (VTAB-1k style: 800 + 200)",
     "CLIP Sec. 3.2 / Table 10: the whole training split"),
    ("probe regularisation", "sklearn LogisticRegression, C = 1, features standardised",
     "CLIP: L-BFGS logistic regression, C swept on a validation split"),
    ("K-shot probes", "K images per class from the whole training split, 10 draws",
     "CLIP Fig. 6: K = 1, 2, 4, 8, 16 from the training split"),
    ("EuroSAT split", "a fixed, class-stratified 70/30 split of torchvision's one set",
     "CLIP: its own 10/class-balanced split (no official one)"),
    ("mixed-size images", "shorter side resized to 224 (bicubic) + centre crop, stored once",
     "as CLIP's test transform"),
    ("32 / 64 px images (CIFAR, EuroSAT)", "upsampled to 224 bilinear on the device",
     "CLIP / timm: bicubic resize"),
    ("raw-pixel baseline", "pixels resized to 32 x 32 (3,072 values)", "no paper (a reference of this notebook)"),
]
# The claims' fixed choices (decided before any run; see claims_from_results). The few-shot claims use the
# largest K of the profile (10 offline).
PRECISION_MARGIN = 0.01  # "changes linear-probe accuracy by at most 1 point": equivalence margin, as a fraction
CHANCE = 0.1  # every offline dataset has 10 balanced-ish classes
PROTOCOL = "protocol.json"


def settings(profile: str, **overrides) -> dict:
    """Notebook 00_backbones's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    cfg = resolve(PROFILES, profile, overrides, notebook="backbones", dry_run_cuts=DRY_RUN)
    bb, ds = cfg["precision_check"]
    if bb not in cfg["backbones"] or ds not in cfg["datasets"]:
        cfg["precision_check"] = [cfg["backbones"][0], cfg["datasets"][0]]
    return cfg


# (training pool, test set) sizes of the paper profile's datasets, for :func:`paper_cost` (torchvision's splits as
# vpkit.data.TORCHVISION_DATASETS concatenates them: DTD / Flowers102 train + val, Pets trainval; EuroSAT the fixed
# 70/30 split of its 27,000 images; the offline sets as vpkit.data.offline_dataset splits them)
SPLIT_SIZES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000), "eurosat": (18900, 8100), "dtd": (3760, 1880),
               "flowers102": (2040, 6149), "oxford_pets": (3680, 3669), "fashion_mnist": (60000, 10000),
               "mnist5k": (4000, 1000), "digits": (1200, 597)}


def num_classes(name: str) -> int:
    from ..dryrun import PAPER_SHAPES

    return PAPER_SHAPES[name][0] if name in PAPER_SHAPES else 10  # the offline sets have 10 classes


def paper_cost(cfg: dict) -> dict:
    """What the ``paper`` profile ``cfg`` costs, computed from it: no training run (frozen features + CPU linear
    probes), so the GPU work is feature extraction - every representation (each backbone pretrained and random)
    featurises the 1000 training images, the test set and the K-shot images of each dataset (at most
    classes x max K x draws when they come from the pool), plus the fp32 re-extraction of the precision check
    (only when the run's mixed precision is not fp32: fp16 on a GPU), the ImageNet top-5 photos and the PCA photos.
    ``linear_probe_fits`` are CPU (sklearn) fits."""
    reps = 2 * len(cfg["backbones"])
    per_rep, evaluated, fits = {}, 0, 0
    k_max = max(cfg["shots"]) if cfg["shots"] else 0
    for ds in cfg["datasets"]:
        pool, test = SPLIT_SIZES[ds]
        n_te = min(test, cfg["n_test"] or test)
        fs = min(pool, num_classes(ds) * k_max * cfg["fewshot_seeds"]) if cfg.get("fewshot_from") == "pool" else 0
        per_rep[ds] = cfg["n_train"] + n_te + fs
        evaluated += reps * per_rep[ds]
        fits += (reps + 1) * (1 + len(cfg["shots"]) * cfg["fewshot_seeds"])
    bb_check, ds_check = cfg["precision_check"]
    if ds_check in SPLIT_SIZES:
        n_te = min(SPLIT_SIZES[ds_check][1], cfg["n_test"] or SPLIT_SIZES[ds_check][1])
        evaluated += cfg["n_train"] + min(n_te, cfg["precision_check_n_test"] or n_te)
    evaluated += cfg["photos"] + 2 * 4  # top-5 photos (the CNN) and the PCA photos (ViT pretrained + random)
    return {"training_runs": 0, "training_epochs": 0, "training_images_seen": 0, "evaluated_images": evaluated,
            "evaluated_images_per_representation": per_rep, "representations": reps,
            "linear_probe_fits_cpu": fits, "img_sizes": dict(cfg["img_sizes"]),
            "step_kind": "vit_b16_224_resnet50_224_frozen_inference"}


# ----------------------------------------------------------------------------------------------------------
# Representations and features
# ----------------------------------------------------------------------------------------------------------

RAW = "raw"


def rep_id(backbone: str, pretrained: bool) -> str:
    """The identifier of a representation in outcome keys: ``raw`` or ``<backbone>-pretrained|random``."""
    return f"{backbone}-{'pretrained' if pretrained else 'random'}"


def rep_label(rep: str) -> str:
    """``raw pixels`` / ``vit_s14_dinov2 (pretrained)`` / ``vit_s14_dinov2 (random init)`` for tables and legends."""
    if rep == RAW:
        return "raw pixels"
    name, _, kind = rep.rpartition("-")
    return f"{name} ({'pretrained' if kind == 'pretrained' else 'random init'})"


def setting_id(k: int | None) -> str:
    return "linear" if k is None else f"{k}shot"


def setting_label(k: int | None) -> str:
    return "linear (all)" if k is None else f"{k}-shot"


def _autocast(dev: torch.device, precision: str | None):
    """``None``: the run's mixed precision (:func:`vpkit.device.autocast` with ``amp=True``); ``"fp32"``: none;
    ``"bf16"`` / ``"fp16"``: forced."""
    from ..device import autocast

    if precision is None:
        return autocast(dev, True)
    if precision == "fp32":
        return torch.autocast(dev.type, enabled=False)
    return torch.autocast(dev.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


@torch.no_grad()
def featurize(backbone, ds: ImageSet, *, batch_size: int = 64, precision: str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pooled features of every image in ``ds`` (``precision`` as in :func:`_autocast`).

    CNNs run in channels-last memory format (about 1.5x faster on CPU for Lite0's depthwise convolutions; the
    same weights)."""
    from ..device import resolve_device

    dev = resolve_device("auto")
    model = backbone.model.to(dev).eval()
    cl = backbone.kind == "cnn"
    if cl:
        model.to(memory_format=torch.channels_last)
    feats, labels = [], []
    with _autocast(dev, precision):
        for x, y in loader_for(ds, backbone, batch_size=batch_size):
            x = x.to(dev)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            feats.append(backbone.features(x).float().cpu())
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def cached_featurize(backbone, ds: ImageSet, *, batch_size: int = 64, precision: str | None = None,
                     use: bool = True) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
    """:func:`featurize` through the on-disk feature cache (:func:`vpkit.featcache.cached`): the key is the
    backbone's weights and preprocessing, the images and labels, the batch size, the precision actually used
    and the code of this path. -> ``((features, labels), info)``, ``info["hit"]`` / ``info["seconds"]`` (the
    computation's own seconds, also for a hit)."""
    from .. import featcache
    from ..data import Loader
    from ..device import precision as run_precision, resolve_device

    dev = resolve_device("auto")
    used = run_precision(dev) if precision is None else precision
    parts = ("backbones.featurize", backbone.model, backbone.kind, backbone.img_size, list(backbone.mean),
             list(backbone.std), ds.images, ds.labels, batch_size, used, dev.type,
             featurize, _autocast, loader_for, Loader, to_model_input, type(backbone).features)

    def compute():
        f, y = featurize(backbone, ds, batch_size=batch_size, precision=precision)
        return {"features": f, "labels": y}

    value, info = featcache.cached(parts, compute, use=use)
    return (value["features"], value["labels"]), info


def raw_pixels(ds: ImageSet, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened pixel values in [0, 1] (optionally resized), the 'no backbone' baseline."""
    x = ds.images.float() / 255.0
    if size is not None:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.flatten(1), ds.labels


# ----------------------------------------------------------------------------------------------------------
# Probes
# ----------------------------------------------------------------------------------------------------------

def probe_outcomes(train_x, train_y, test_x, test_y, *, shots, fewshot_seeds: int, seed: int,
                   classes: int, fewshot=None) -> dict[int | None, np.ndarray]:
    """Per-example correct flags ``{K: (draws, n_test) bool}``: ``None`` is the linear probe on every training
    image (one deterministic run), ``K`` the K-shot probe on ``fewshot_seeds`` draws (draw ``s`` uses seed
    ``seed + s``, so every representation sees the same images).

    ``fewshot = (x, y, draws)``: the K-shot probes use these features instead, ``draws[K]`` the index arrays
    into them (:func:`fewshot_draws`: K per class from the whole training pool, as CLIP Fig. 6)."""
    test_y = np.asarray(test_y)
    out = {None: (linear_probe_predict(train_x, train_y, test_x) == test_y)[None]}
    if fewshot is not None:
        fx, fy, draws = fewshot
        for k in shots:
            out[k] = np.stack([linear_probe_predict(fx[idx], fy[idx], test_x) == test_y for idx in draws[k]])
        return out
    ty = torch.as_tensor(train_y)
    for k in shots:
        rows = []
        for s in range(fewshot_seeds):
            idx = few_shot_indices(ty, k, seed=seed + s, num_classes=classes)
            rows.append(linear_probe_predict(train_x[idx], train_y[idx], test_x) == test_y)
        out[k] = np.stack(rows)
    return out


def fewshot_draws(labels, *, shots, fewshot_seeds: int, seed: int, classes: int):
    """K-shot draws from a whole training pool: ``(union, {K: [indices into union]})``, ``union`` the sorted pool
    indices any draw uses (only those images are featurised). Draw ``s`` uses seed ``seed + s`` for every K, so
    the K = 1 images are among the K = 5 ones of the same draw."""
    labels = torch.as_tensor(labels)
    draws = {k: [few_shot_indices(labels, k, seed=seed + s, num_classes=classes) for s in range(fewshot_seeds)]
             for k in shots}
    picked = [i for v in draws.values() for i in v]
    union = torch.unique(torch.cat(picked)) if picked else torch.zeros(0, dtype=torch.long)
    pos = torch.full((len(labels),), -1, dtype=torch.long)
    pos[union] = torch.arange(len(union))
    return union, {k: [pos[i] for i in v] for k, v in draws.items()}


def load_dataset(name: str, *, size: int = 224) -> tuple[ImageSet, ImageSet]:
    """``(training pool, test set)`` of an offline dataset or of a torchvision paper dataset
    (:func:`vpkit.data.load_torchvision`); datasets of mixed image sizes are stored at ``size`` (shorter side
    resized, centre crop: CLIP's test transform), fixed-size ones (CIFAR 32 px, EuroSAT 64 px) as they are."""
    from ..data import OFFLINE_DATASETS, load_torchvision, offline_dataset
    from ..dryrun import PAPER_SHAPES

    if name in OFFLINE_DATASETS:
        return offline_dataset(name)
    kw = {} if PAPER_SHAPES.get(name, (0, None))[1] else dict(size=size, center_crop=True)
    return load_torchvision(name, "train", **kw), load_torchvision(name, "test", **kw)


def accuracy_row(correct: np.ndarray, **labels) -> dict:
    """Mean accuracy of ``(draws, n)`` correct flags with its 95% interval: the t-interval of the mean over draws
    when there are several (:func:`vpkit.plots.interval_of_mean`), the exact binomial (Clopper-Pearson) interval
    over test images for one run; ``acc_sd`` is the sample SD over draws (ddof = 1; 0 for one run)."""
    from scipy.stats import binomtest

    from ..plots import interval_of_mean

    c = np.asarray(correct, dtype=float)
    per_draw = c.mean(axis=1)
    if len(per_draw) > 1:
        lo, hi = interval_of_mean(per_draw)
        how = f"t-interval over {len(per_draw)} draws"
    else:
        ci = binomtest(int(c.sum()), c.shape[1]).proportion_ci(confidence_level=0.95, method="exact")
        lo, hi = ci.low, ci.high
        how = "Clopper-Pearson over test images"
    return {**labels, "acc": float(per_draw.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "acc_sd": float(per_draw.std(ddof=1)) if len(per_draw) > 1 else 0.0, "n_draws": len(per_draw),
            "n_test": c.shape[1], "interval": how}


def run_probes(cfg: dict, *, seed: int, progress: bool = True):
    """Every probe of the notebook: features once per (representation, dataset), every probe on them, and the
    mixed-precision check. Returns ``(rows, outcomes, timings, precision_rows, protocol)``: table rows (one per
    representation x dataset x setting), ``{"rep/dataset/setting/draw": bool array}`` for
    :meth:`vpkit.report.Results.outcomes`, feature-extraction timings, the precision check's table rows and the
    protocol record :func:`claims_from_results` reads."""
    from .. import backbones as bb
    from ..data import vtab_splits
    from ..device import precision as run_precision

    mixed = run_precision("auto")
    check_bb, check_ds = cfg["precision_check"]
    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    rows, outcomes, timings, prec_rows, n_test, chance = [], {}, [], [], {}, {}
    bs = cfg.get("batch_size", 64)
    raw_size = cfg.get("raw_size")
    use_cache = cfg.get("feature_cache", False)

    def feats(b, ds, precision=None):
        return cached_featurize(b, ds, batch_size=bs, precision=precision, use=use_cache)

    for ds_name in cfg["datasets"]:
        pool, test = load_dataset(ds_name, size=max(cfg["img_sizes"].values()))
        n_tr = int(cfg["n_train"] * 0.8)
        s = vtab_splits(pool, test, seed=seed, n_train=n_tr, n_val=cfg["n_train"] - n_tr, n_test=cfg["n_test"])
        tr, te = s["train1000"], s["test"]
        n_test[ds_name] = len(te)
        chance[ds_name] = 1.0 / pool.num_classes
        common = dict(shots=cfg["shots"], fewshot_seeds=cfg["fewshot_seeds"], seed=seed, classes=pool.num_classes)
        fs_set = draws = None
        # paper: K per class from the whole training split (CLIP Fig. 6); offline: from the n_train images
        if cfg.get("fewshot_from", "train1000") == "pool" and cfg["shots"]:
            union, draws = fewshot_draws(pool.labels, **common)
            fs_set = pool.subset(union)

        def fewshot(feats):
            return None if fs_set is None else (feats[0], feats[1], draws)

        def record(rep, res):
            for k, c in res.items():
                rows.append(accuracy_row(c, dataset=ds_name, representation=rep_label(rep), setting=setting_label(k),
                                         n_train=len(tr) if k is None else k * pool.num_classes))
                for d in range(c.shape[0]):
                    outcomes[f"{rep}/{ds_name}/{setting_id(k)}/{d}"] = c[d]

        raw_fs = fewshot(raw_pixels(fs_set, raw_size)) if fs_set is not None else None
        record(RAW, probe_outcomes(*raw_pixels(tr, raw_size), *raw_pixels(te, raw_size), **common, fewshot=raw_fs))
        for name in cfg["backbones"]:
            for pretrained in (True, False):
                rep = rep_id(name, pretrained)
                b = bb.build_backbone(name, pretrained=pretrained, img_size=cfg["img_sizes"][name])
                t0 = time.perf_counter()
                (ftr, i1), (fte, i2) = feats(b, tr), feats(b, te)
                infos = [i1, i2]
                ffs = None
                if fs_set is not None:
                    f3, i3 = feats(b, fs_set)
                    ffs, infos = fewshot(f3), infos + [i3]
                wall = time.perf_counter() - t0
                sec = sum(i["seconds"] for i in infos)  # the extraction's own seconds (stored with a cached entry)
                hit = all(i["hit"] for i in infos)
                n_img = len(tr) + len(te) + (len(fs_set) if fs_set is not None else 0)
                timings.append({"representation": rep_label(rep), "dataset": ds_name, "precision": mixed,
                                "img_size": b.img_size, "images": n_img, "seconds": sec,
                                "images_per_s": n_img / sec, "from_cache": hit})
                log(f"{ds_name} / {rep_label(rep)}: {n_img} images in {sec:.0f} s ({mixed})"
                    + (f"; loaded from the feature cache in {wall:.1f} s" if hit else ""))
                res = probe_outcomes(*ftr, *fte, **common, fewshot=ffs)
                record(rep, res)
                if pretrained and (name, ds_name) == (check_bb, check_ds) and mixed != "fp32":
                    # the probe's prediction for a test image does not depend on the other test images, so the
                    # mixed side on the first n_check images is the main pass's outcomes restricted to them
                    n_check = min(len(te), cfg["precision_check_n_test"] or len(te))
                    cm = res[None][0][:n_check]
                    prec_rows.append({"backbone": name, "dataset": ds_name, "precision": f"{mixed} autocast",
                                      "linear_probe_acc_pct": 100 * float(cm.mean()), "n_test": n_check,
                                      "images_per_s": n_img / sec})
                    outcomes[f"precision-{mixed}/{rep}/{ds_name}/linear/0"] = cm
                    te_check = te.subset(torch.arange(n_check))
                    (ftr, i1), (fte, i2) = feats(b, tr, "fp32"), feats(b, te_check, "fp32")
                    sec = i1["seconds"] + i2["seconds"]
                    c32 = linear_probe_predict(*ftr, fte[0]) == np.asarray(fte[1])
                    prec_rows.append({"backbone": name, "dataset": ds_name, "precision": "fp32",
                                      "linear_probe_acc_pct": 100 * float(c32.mean()), "n_test": n_check,
                                      "images_per_s": (len(tr) + n_check) / sec})
                    outcomes[f"precision-fp32/{rep}/{ds_name}/linear/0"] = c32
                    log(f"{ds_name} / {rep_label(rep)} in fp32 for the precision check: {sec:.0f} s")
    protocol = {"datasets": list(cfg["datasets"]), "backbones": list(cfg["backbones"]), "shots": list(cfg["shots"]),
                "fewshot_seeds": cfg["fewshot_seeds"], "n_train": cfg["n_train"], "n_test": n_test,
                "img_sizes": dict(cfg["img_sizes"]), "mixed_precision": mixed, "chance": chance,
                "precision_check": [check_bb, check_ds] if mixed != "fp32" else None}
    return rows, outcomes, timings, prec_rows, protocol


# ----------------------------------------------------------------------------------------------------------
# Claims
# ----------------------------------------------------------------------------------------------------------

NO_PAPER = "no figure in a paper (a check of the offline stand-ins, re-measured from the foundation issue)"


def _runs(out: dict, rep: str, ds: str, setting: str, prefix: str = "") -> np.ndarray:
    """``(draws, n)`` float outcomes of one representation / dataset / setting from ``outcomes.npz``."""
    keys = sorted((k for k in out if k.startswith(f"{prefix}{rep}/{ds}/{setting}/")),
                  key=lambda k: int(k.rsplit("/", 1)[1]))
    if not keys:
        raise KeyError(f"no outcomes for {prefix}{rep}/{ds}/{setting}")
    return np.stack([out[k] for k in keys]).astype(float)


def _pct(a: np.ndarray) -> str:
    return f"{100 * a.mean():.1f}%"


def claims_from_results(results_dir) -> list[Claim]:
    """Every claim of notebook 00_backbones, decided from what the notebook saved (``protocol.json``,
    ``outcomes.npz``) alone. Comparisons (fixed before any run):

    * ``<ds>/<bb>/pretrained>random`` and ``pretrained>raw``: linear-probe accuracy, pretrained minus the same
      architecture randomly initialised (or raw pixels), ``> 0``, paired bootstrap over the same test images
      (the probes are deterministic given the features: one run each);
    * ``<ds>/<bb>/pretrained>raw/<K>-shot`` (K the largest few-shot setting): the same at K images per class,
      hierarchical bootstrap over the few-shot draws (paired: draw s has the same images for both) then test
      images;
    * ``bf16_keeps_accuracy``: the run's mixed precision minus fp32, linear probe of one backbone on one dataset,
      equivalence within +-1 point (the whole interval inside), paired over the same test images; not testable
      when the run used fp32 throughout.
    """
    d = Path(results_dir)
    proto = json.loads((d / PROTOCOL).read_text())
    out = load_outcomes(d)
    k_claim = max(proto["shots"]) if proto["shots"] else None
    claims = []
    for ds in proto["datasets"]:
        raw = _runs(out, RAW, ds, "linear")
        for name in proto["backbones"]:
            pre = _runs(out, rep_id(name, True), ds, "linear")
            rnd = _runs(out, rep_id(name, False), ds, "linear")
            claims.append(Claim(
                f"{ds}/{name}/pretrained>random",
                f"{name} pretrained features beat the same architecture randomly initialised on {ds} "
                f"(linear probe on {proto['n_train']} training images, all {pre.shape[1]} test images)",
                paper=NO_PAPER, ours=f"{_pct(pre)} vs {_pct(rnd)}", decision=stats.compare(pre, rnd).scaled()))
            claims.append(Claim(
                f"{ds}/{name}/pretrained>raw",
                f"{name} pretrained features beat raw pixels on {ds} (linear probe on {proto['n_train']} training "
                f"images, all {pre.shape[1]} test images)",
                paper=NO_PAPER, ours=f"{_pct(pre)} vs {_pct(raw)}", decision=stats.compare(pre, raw).scaled()))
            if k_claim is not None:
                s = setting_id(k_claim)
                pk, rk = _runs(out, rep_id(name, True), ds, s), _runs(out, RAW, ds, s)
                claims.append(Claim(
                    f"{ds}/{name}/pretrained>raw/{k_claim}-shot",
                    f"{name} pretrained features beat raw pixels on {ds} with {k_claim} labelled images per class "
                    f"(linear probe; mean over {pk.shape[0]} draws of the training images)",
                    paper=NO_PAPER, ours=f"{_pct(pk)} vs {_pct(rk)}",
                    decision=stats.compare(pk, rk, seed_unit="draws").scaled()))
    check = proto.get("precision_check")
    mixed = proto["mixed_precision"]
    statement = (f"{mixed if mixed != 'fp32' else 'bf16'} autocast feature extraction changes linear-probe "
                 f"accuracy by at most {100 * PRECISION_MARGIN:g} point (vs fp32, same test images)")
    # the id names the precision actually used: fp16 autocast on CUDA (vpkit.device.precision), bf16 on CPU
    cid = f"{mixed}_keeps_accuracy" if mixed not in ("bf16", "fp32") else "bf16_keeps_accuracy"
    if check is None:
        claims.append(Claim(cid, statement, paper=NO_PAPER, ours="fp32 throughout",
                            decision=stats.not_testable(
                                "this run extracted every feature in fp32 (the measured precision choice found "
                                "bf16 not faster on this machine), so there is no mixed-precision extraction to "
                                "check")))
    else:
        name, ds = check
        rep = rep_id(name, True)
        a = _runs(out, rep, ds, "linear", prefix=f"precision-{mixed}/")
        b = _runs(out, rep, ds, "linear", prefix="precision-fp32/")
        claims.append(Claim(cid, statement, paper=NO_PAPER,
                            ours=f"{mixed} {_pct(a)} vs fp32 {_pct(b)} ({name}, {ds})",
                            decision=stats.compare(a, b, direction="~", margin=PRECISION_MARGIN).scaled()))
    return claims


def wide_table(probe, settings_order: list[str]):
    """Representation x setting accuracies in percent (one decimal), the table readers compare."""
    wide = probe.pivot_table(index=["dataset", "representation"], columns="setting", values="acc").reset_index()
    wide = wide[["dataset", "representation", *settings_order]]
    wide[settings_order] = (100 * wide[settings_order]).round(1)
    return wide.rename(columns={s: f"{s} (%)" for s in settings_order})


def percent_table(probe):
    """The long probe table with accuracy, interval and SD over draws in percent (``acc (%)``, ...): the table
    readers compare (figures, headline and claims keep fractions)."""
    out = probe.copy()
    cols = [c for c in ("acc", "ci_low", "ci_high", "acc_sd") if c in out]
    out[cols] = 100 * out[cols]
    return out.rename(columns={c: f"{c} (%)" for c in cols})


def headline(probe) -> dict:
    """``{"<dataset>/<representation>/linear": accuracy}`` (``raw_pixels``, ``<backbone>``, ``<backbone>_random``)."""
    names = {rep_label(RAW): "raw_pixels"}
    out = {}
    for r in probe[probe.setting == setting_label(None)].itertuples():
        rep = names.get(r.representation) or r.representation.replace(" (pretrained)", "").replace(" (random init)",
                                                                                                  "_random")
        out[f"{r.dataset}/{rep}/linear"] = float(r.acc)
    return out


# ----------------------------------------------------------------------------------------------------------
# ImageNet top-k, patch PCA
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def imagenet_topk(backbone, photos: dict, *, k: int = 5) -> list[dict]:
    """Top-k ImageNet predictions of a backbone with a 1000-way classifier on each photo: ``topN`` is
    ``"<class> (<probability>)"``, ``top1_class`` / ``top1_prob`` the first one's parts."""
    from ..data import imagenet_class_names

    from ..device import resolve_device

    names = imagenet_class_names()
    dev = resolve_device("auto")
    backbone.model.to(dev).eval()
    rows = []
    for name, photo in photos.items():
        x = to_model_input(photo_tensor(photo).to(dev), size=backbone.img_size, mean=backbone.mean, std=backbone.std)
        p = backbone.logits(x).float().softmax(-1)[0].cpu()
        top = p.topk(k)
        rows.append({"photo": name, **{f"top{i + 1}": f"{names[j]} ({v:.2f})"
                                       for i, (v, j) in enumerate(zip(top.values.tolist(), top.indices.tolist()))},
                     "top1_class": names[int(top.indices[0])], "top1_prob": top.values[0].item()})
    return rows


@torch.no_grad()
def patch_pca_rgb(backbone, photos: list[np.ndarray], *, size: int) -> list[np.ndarray]:
    """First three principal components of ViT patch tokens (fit jointly over ``photos``) as RGB maps."""
    from ..device import resolve_device

    if backbone.kind != "vit":
        raise ValueError(f"patch PCA needs a ViT backbone, got kind={backbone.kind!r}")
    dev = resolve_device("auto")
    backbone.model.to(dev).eval()
    xs = torch.cat([to_model_input(photo_tensor(p).to(dev), size=size, mean=backbone.mean, std=backbone.std)
                    for p in photos])
    tokens = backbone.model.forward_features(xs)[:, backbone.model.num_prefix_tokens:].float().cpu()  # (B, N, D)
    grid = size // backbone.patch_size
    flat = tokens.reshape(-1, tokens.shape[-1]).double()
    flat = flat - flat.mean(0)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comp = (flat @ v[:3].T).reshape(len(photos), grid, grid, 3)
    lo, hi = comp.amin(dim=(0, 1, 2)), comp.amax(dim=(0, 1, 2))
    comp = (comp - lo) / (hi - lo + 1e-8)
    return [c.numpy() for c in comp]


# ----------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------

def _rep_style(label: str) -> dict:
    """One fixed colour per backbone (:func:`vpkit.plots.method_color` of its name, listed in
    :data:`vpkit.plots.METHOD_COLORS`, the same in every figure); its random init is an open bar hatched in that
    colour; raw pixels have their own colour (``raw_pixels``)."""
    from ..plots import method_color

    if label == rep_label(RAW):
        return {"color": method_color("raw pixels")}
    name, _, kind = label.partition(" (")
    if kind.startswith("random"):
        return {"facecolor": "white", "edgecolor": method_color(name), "hatch": "////", "linewidth": 1.0}
    return {"color": method_color(name)}


def probe_figure(probe, *, settings_order: list[str], chance: float | dict = CHANCE):
    """Accuracy per setting, one panel per dataset, one bar per representation with its 95% interval
    (t-interval over few-shot draws; Clopper-Pearson over test images for the one full-data probe), in percent;
    dotted: chance (one value, or ``{dataset: chance}``); legend below the panels."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(probe["dataset"]))
    reps = list(dict.fromkeys(probe["representation"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False, sharey=True)
    width = 0.8 / len(reps)
    for ax, ds in zip(axes[0], datasets):
        sub = probe[probe.dataset == ds]
        for i, rep in enumerate(reps):
            r = sub[sub.representation == rep].set_index("setting").reindex(settings_order)
            x = np.arange(len(settings_order)) + (i - (len(reps) - 1) / 2) * width
            acc, lo, hi = 100 * r["acc"], 100 * r["ci_low"], 100 * r["ci_high"]
            ax.bar(x, acc, width, label=rep, yerr=np.vstack([acc - lo, hi - acc]), capsize=2,
                   error_kw={"elinewidth": 0.8}, **_rep_style(rep))
        ax.axhline(100 * (chance.get(ds, CHANCE) if isinstance(chance, dict) else chance), ls=":", c="k", lw=0.9,
                   label="chance")
        ax.set_xticks(np.arange(len(settings_order)), settings_order)
        ax.set_title(f"{ds} ({int(sub['n_test'].iloc[0])} test images)", fontsize=9)
        ax.set_ylim(0, 100)
    axes[0, 0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 3),
               fontsize=8, frameon=False)
    fig.suptitle("Frozen features: pretrained vs random init vs raw pixels (error bars: 95% interval)", y=1.02)
    fig.tight_layout()
    return fig


def photos_figure(photos: dict, top, *, title: str, cols: int = 4):
    """The photos with the top-1 ImageNet class and its probability (once) under each."""
    import matplotlib.pyplot as plt

    n = len(photos)
    cols = min(n, cols)
    rws = -(-n // cols)
    fig, axes = plt.subplots(rws, cols, figsize=(3.2 * cols, 3.2 * rws), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img), (_, r) in zip(axes.flat, photos.items(), top.iterrows()):
        ax.imshow(photo_tensor(img)[0].permute(1, 2, 0).numpy())
        ax.set_title(f"{name}\n{r['top1_class'].split(',')[0][:28]} ({r['top1_prob']:.2f})", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pca_figure(pca_photos: list, maps: dict, *, title: str):
    """Row 0: the photos; one row per entry of ``maps`` (label -> list of RGB maps), labelled at the left."""
    import matplotlib.pyplot as plt

    n = len(pca_photos)
    fig, axes = plt.subplots(1 + len(maps), n, figsize=(2.4 * n + 0.6, 2.4 * (1 + len(maps))), squeeze=False)
    for j, p in enumerate(pca_photos):
        axes[0, j].imshow(photo_tensor(p)[0].permute(1, 2, 0).numpy())
    for i, (label, ms) in enumerate(maps.items(), start=1):
        for j, m in enumerate(ms):
            axes[i, j].imshow(m, interpolation="nearest")
        axes[i, 0].set_ylabel(label, fontsize=9)
    axes[0, 0].set_ylabel("photo", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig

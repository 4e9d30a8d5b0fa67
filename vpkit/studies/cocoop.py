"""Study of notebook ``04_cocoop``: CoOp and CoCoOp (Zhou et al., IJCV 2022 / CVPR 2022) on a frozen VLM.

The prompt modules (context learner, CoOp, CoCoOp's Meta-Net) are :mod:`vpkit.prompts.coop`. This file holds
the rest: training and evaluation on precomputed image features, the K x seed base-to-new grid, cross-dataset
transfer, domain shift, step timing, the ablations, the paper's numbers, the claims.

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data import batch_indices
from ..profiles import resolve
from ..prompts.coop import CoCoOp, CoOp, build_prompt_model
from ..vlm import VLM


# 04: CoOp / CoCoOp (Zhou et al. 2022) on the offline VLM with frozen image features computed once.
# Offline: 3 datasets, K in {1, 2, 4, 8, 16}, 3 seeds, CoOp 20 epochs (paper 200), CoCoOp 4 epochs at batch 4
# (paper 10 at batch 1).
PROFILES = {
    "smoke": dict(vlm="offline", img_size=32, datasets=["digits"], shots=[2], n_test_per_class=2, seeds=[0],
                  n_ctx=4, ctx_init="a photo of a", template="a photo of a {}.",
                  coop=dict(epochs=1, batch_size=4, lr=0.2), cocoop=dict(epochs=1, batch_size=2, lr=0.05),
                  optimizer="sgd", warmup_epochs=0, shift_dataset="digits", shifts=["inverted"],
                  cross=[], ablation_dataset="digits", ablation_init=False, ablation_seeds=[0],
                  ablation_n_ctx=[1], ablation_bigger_coop=False, timing_batch=2, timing_repeats=1, train_views=0),
    "offline": dict(vlm="offline", img_size=128, datasets=["fashion_mnist", "mnist5k", "digits"],
                    shots=[1, 2, 4, 8, 16], n_test_per_class=50, seeds=[1, 2, 3], n_ctx=4, ctx_init="a photo of a",
                    template="a photo of a {}.", coop=dict(epochs=20, batch_size=16, lr=0.2),
                    cocoop=dict(epochs=4, batch_size=4, lr=0.05), optimizer="sgd", warmup_epochs=1,
                    shift_dataset="fashion_mnist", shifts=["inverted", "gaussian_noise:3"],
                    cross=[["mnist5k", "digits"]], ablation_dataset="fashion_mnist", ablation_init=True,
                    ablation_seeds=[1, 2, 3], ablation_n_ctx=[1, 8, 16], ablation_bigger_coop=True,
                    timing_batch=8, timing_repeats=3, train_views=0),
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
                  num_threads=None,
                  train_views=10),  # cached augmented views of each shot (official: a fresh view every epoch)
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 04_cocoop's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="cocoop")


# ----------------------------------------------------------------------------------------------------------
# Training and evaluation on precomputed image features
# ----------------------------------------------------------------------------------------------------------

class FeatureLoader:
    """``(features, labels)`` batches of precomputed image features; seeded shuffling per epoch."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.features, self.labels = features, torch.as_tensor(labels)
        self.batch_size, self.shuffle, self.seed, self._epoch = batch_size, shuffle, seed, 0

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        epoch = self._epoch
        self._epoch += int(self.shuffle)
        for idx in batch_indices(len(self.labels), self.batch_size, shuffle=self.shuffle, seed=self.seed, epoch=epoch):
            yield self.features[idx], self.labels[idx]


def train_prompt(method: str, vlm: VLM, classnames: list[str], features: torch.Tensor, labels: torch.Tensor, *,
                 epochs: int, batch_size: int, lr: float, optimizer: str = "sgd", weight_decay: float = 5e-4,
                 warmup_epochs: float = 1.0, seed: int = 0, progress: bool = False, **prompt_kw):
    """Train CoOp / CoCoOp on precomputed features with :func:`vpkit.train.fit` -> ``(model, History)``."""
    from ..train import fit

    torch.manual_seed(seed)
    model = build_prompt_model(method, vlm, classnames, seed=seed, **prompt_kw)
    hist = fit(model, FeatureLoader(features, labels, batch_size=batch_size, shuffle=True, seed=seed),
               epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
               progress=progress, desc=method)
    return model, hist


@torch.no_grad()
def correct_on(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, classnames: list[str] | None = None,
               *, batch_size: int = 64) -> torch.Tensor:
    """Per-example correctness (bool, one per feature row) of a prompt model, optionally over other
    ``classnames`` (new classes/datasets)."""
    old = None
    if classnames is not None and list(classnames) != model.classnames:
        old = model.classnames
        model.set_classnames(classnames)
    model.eval()
    try:
        if isinstance(model, CoOp):
            t = model.text_features()
            pred = (F.normalize(features.float(), dim=-1) @ t.t()).argmax(-1)
        else:
            pred = torch.cat([model(features[i:i + batch_size]).argmax(-1)
                              for i in range(0, len(features), batch_size)])
    finally:
        if old is not None:
            model.set_classnames(old)
    return pred == torch.as_tensor(labels)


@torch.no_grad()
def accuracy_on(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, classnames: list[str] | None = None,
                *, batch_size: int = 64) -> float:
    """Accuracy of a prompt model on features (the mean of :func:`correct_on`)."""
    return float(correct_on(model, features, labels, classnames, batch_size=batch_size).float().mean())


@torch.no_grad()
def zero_shot_accuracy(vlm: VLM, features: torch.Tensor, labels: torch.Tensor, classnames: list[str],
                       template: str = "a photo of a {}.") -> float:
    """CLIP zero-shot with the hand-written template (CoCoOp's baseline)."""
    w = vlm.classifier_weights(classnames, (template,))
    return float(((F.normalize(features.float(), dim=-1) @ w.t()).argmax(-1) == torch.as_tensor(labels))
                 .float().mean())


def step_seconds(model: nn.Module, fn, features: torch.Tensor, labels: torch.Tensor, *, repeats: int = 3) -> float:
    """Fastest of ``repeats`` training steps (cross-entropy forward + backward of ``fn``) after one warm-up."""
    fn(features).sum().backward()
    model.zero_grad(set_to_none=True)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.cross_entropy(fn(features), labels).backward()
        ts.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return min(ts)


def time_cocoop_step(model: CoCoOp, features: torch.Tensor, labels: torch.Tensor, *, repeats: int = 3) -> dict:
    """Seconds per training step (forward + backward) of CoCoOp batched vs the per-image loop, same batch."""
    out = {f"{name}_s_per_step": step_seconds(model, fn, features, labels, repeats=repeats)
           for name, fn in (("batched", model.forward), ("loop", model.forward_loop))}
    out["speedup"] = out["loop_s_per_step"] / out["batched_s_per_step"]
    out["batch_size"], out["num_classes"] = int(len(labels)), len(model.classnames)
    return out


# ----------------------------------------------------------------------------------------------------------
# Base-to-new experiments on the offline datasets (CoCoOp Sec. 4.1) with frozen image features
# ----------------------------------------------------------------------------------------------------------

@dataclass
class FeatureSet:
    """Frozen, normalised image features of one dataset: a K-shot training pool and a test set, plus shifted
    copies of the test set (``shifted[name]``) as the domain-shift analogue."""

    name: str
    classnames: list[str]
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    shifted: dict
    invert: bool
    seconds: float = 0.0
    # features of augmented views of the training pool (CoOp's RandomResizedCrop(0.08-1) + flip), same rows as
    # ``train``; empty = train on the un-augmented features only (the offline profile)
    train_views: list = field(default_factory=list)

    def train_split(self, classes: list[int], k: int, *, seed: int = 0):
        """The K-shot training features: the clean ones, or every augmented view of the same shots stacked."""
        if not self.train_views:
            return self.split("train", classes, k, seed=seed)
        parts = [dataclasses.replace(self, train=v, train_views=[]).split("train", classes, k, seed=seed)
                 for v in self.train_views]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def split(self, which: str, classes: list[int], k: int | None = None, *, seed: int = 0):
        """Features and relabelled labels (0..len(classes)-1) of ``classes``; ``k`` shots for ``train``."""
        feats, labels = {"train": (self.train, self.train_labels), "test": (self.test, self.test_labels)}.get(
            which) or (self.shifted[which], self.test_labels)
        keep = torch.nonzero(torch.isin(labels, torch.tensor(classes))).flatten()
        if k is not None:
            g = torch.Generator().manual_seed(seed)
            keep = torch.cat([keep[labels[keep] == c][torch.randperm(int((labels[keep] == c).sum()), generator=g)[:k]]
                              for c in classes])
        remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        return feats[keep], remap[labels[keep]]


def dataset_features(vlm: VLM, name: str, *, max_shots: int, n_test_per_class: int | None, seed: int = 0,
                     shifts: tuple[str, ...] = (), batch_size: int = 64, amp: bool = True,
                     image_size: int | None = None, train_views: int = 0) -> FeatureSet:
    """Encode ``max_shots`` training images per class and ``n_test_per_class`` test images per class once (no
    augmentation). Offline datasets are encoded in the polarity :func:`vpkit.vlm.dark_background` picks from
    the training pool; the ``paper`` datasets (:data:`vpkit.data.COOP_DATASETS`, via torchvision, resized to
    ``image_size``) as they are. ``shifts``: ``"inverted"`` (the other polarity) and/or
    ``"<corruption>:<severity>"`` from :mod:`vpkit.data.shift` (applied at native resolution), encoded from the same
    test images. ``train_views``: also encode that many augmented views of the training pool (CoOp's
    RandomResizedCrop(scale 0.08-1) + flip, seeded), which :func:`base_to_new` trains on in place of the
    official per-epoch augmentation."""
    from ..data import OFFLINE_DATASETS, few_shot_indices, load_torchvision, offline_dataset, random_resized_crop_flip
    from ..data.shift import corrupt
    from ..vlm import DATASET_CLASSNAMES, dark_background, encode_images

    from ..data import TORCHVISION_DATASETS

    if name not in OFFLINE_DATASETS and name not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown dataset name={name!r}; offline: {list(OFFLINE_DATASETS)}, "
                         f"paper (torchvision): {sorted(TORCHVISION_DATASETS)}")
    t0 = time.perf_counter()
    if name in OFFLINE_DATASETS:
        pool, test = offline_dataset(name)
        tr = pool.subset(few_shot_indices(pool.labels, max_shots, seed=seed, num_classes=pool.num_classes))
        te = test if n_test_per_class is None else test.subset(
            few_shot_indices(test.labels, n_test_per_class, seed=seed + 1, num_classes=test.num_classes))
        inv = dark_background(pool.images[:2000])
    else:  # the CoOp datasets: decode only the K-shot pool and the test images that are used
        size = image_size or vlm.preprocess.img_size
        tr = load_torchvision(name, "train", size=size, per_class=max_shots, seed=seed)
        te = load_torchvision(name, "test", size=size, per_class=n_test_per_class, seed=seed + 1)
        inv = False
    enc = lambda imgs, invert=inv: encode_images(vlm, imgs, invert=invert, batch_size=batch_size, amp=amp)  # noqa: E731
    shifted = {}
    for s in shifts:
        if s == "inverted":
            shifted[s] = enc(te.images, not inv)
        else:
            cname, sev = s.split(":")
            shifted[s] = enc(corrupt(te.images, cname, int(sev), seed=seed))
    views = []
    for v in range(train_views):
        g = torch.Generator().manual_seed(100 + v)
        x = random_resized_crop_flip(tr.images, size=tr.images.shape[-1], generator=g, scale=(0.08, 1.0))
        views.append(enc((x * 255).round().clamp(0, 255).to(torch.uint8)))
    return FeatureSet(name, list(DATASET_CLASSNAMES.get(name, tr.classes)), enc(tr.images), tr.labels,
                      enc(te.images), te.labels, shifted, inv, time.perf_counter() - t0, views)


# The official zero-shot baseline's hand-written template per dataset (CoOp trainers/zsclip.py); datasets not
# listed (the offline ones) use the default "a photo of a {}.".
ZERO_SHOT_TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.", "flowers102": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.", "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.", "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.", "sun397": "a photo of a {}.", "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.", "imagenet": "a photo of a {}.",
}


def zero_shot_template(dataset: str, default: str = "a photo of a {}.") -> str:
    """The official zero-shot template of ``dataset`` (:data:`ZERO_SHOT_TEMPLATES`), else ``default``."""
    return ZERO_SHOT_TEMPLATES.get(dataset, default)


def base_to_new(vlm: VLM, fs: FeatureSet, method: str, *, k: int, seed: int = 0, train_kw: dict,
                prompt_kw: dict | None = None) -> tuple[dict, nn.Module]:
    """CoCoOp's base-to-new protocol on one dataset: train ``method`` on ``k`` shots of the base classes
    (first ceil(n/2) labels), test on base and new classes separately; H = harmonic mean -> (row, model)."""
    from ..data import base_new_classes
    from ..metrics import harmonic_mean

    base, new = base_new_classes(len(fs.classnames))
    base_names, new_names = [fs.classnames[c] for c in base], [fs.classnames[c] for c in new]
    x, y = fs.train_split(base, k, seed=seed)
    if method == "zero_shot":
        model, hist = None, None
        tmpl = zero_shot_template(fs.name)
        acc_b = zero_shot_accuracy(vlm, *fs.split("test", base), base_names, tmpl)
        acc_n = zero_shot_accuracy(vlm, *fs.split("test", new), new_names, tmpl)
        n_train = 0
    else:
        kw = dict(train_kw)
        if fs.train_views:  # V cached views stand in for V epochs of fresh augmentation: the same number of steps
            kw["epochs"] = max(1, kw["epochs"] // len(fs.train_views))
        model, hist = train_prompt(method, vlm, base_names, x, y, seed=seed, **kw, **(prompt_kw or {}))
        acc_b = accuracy_on(model, *fs.split("test", base))
        acc_n = accuracy_on(model, *fs.split("test", new), new_names)
        n_train = sum(model.trainable_parameters().values())
    row = {"dataset": fs.name, "method": method, "k": k, "seed": seed, "base": acc_b, "new": acc_n,
           "H": harmonic_mean(acc_b, acc_n), "trainable_params": n_train,
           "train_seconds": hist.seconds if hist else 0.0,
           "steps": (len(hist.loss) * math.ceil(len(y) / train_kw["batch_size"])) if hist else 0}
    return row, model


# ----------------------------------------------------------------------------------------------------------
# The protocol of notebook 04: the K x seed grid, averages, transfer, timing, ablations, the papers' claims
# ----------------------------------------------------------------------------------------------------------

METHOD_ORDER = ("zero_shot", "coop", "cocoop")
# CoCoOp Table 1, averages over 11 datasets (base, new, H) and the EuroSAT H
PAPER_BASE_TO_NEW = {"zero_shot": (69.34, 74.22, 71.70, 60.03), "coop": (82.69, 63.22, 71.66, 68.69),
                     "cocoop": (80.47, 71.69, 75.83, 71.21)}


def base_to_new_grid(vlm: VLM, fsets: dict, *, datasets, shots, seeds, train_kw: dict, prompt_kw: dict,
                     methods=("coop", "cocoop"), linear_probe: bool = True, progress: bool = True):
    """Zero-shot once per dataset, then for every K and seed: the linear probe (reference) and each prompt
    method trained on K shots of the base classes -> (rows, models keyed by (dataset, method, K, seed)).
    ``train_kw[method]``: keyword arguments of :func:`train_prompt`."""
    from tqdm.auto import tqdm

    from ..data import base_new_classes
    from ..metrics import harmonic_mean, linear_probe as lp_acc

    rows, models = [], {}
    jobs = [(d, k, s) for d in datasets for k in shots for s in seeds]
    bar = tqdm(total=len(jobs) * len(methods), desc="base-to-new", disable=not progress)
    for name in datasets:
        rows.append(base_to_new(vlm, fsets[name], "zero_shot", k=0, train_kw={})[0])
    for name, k, s in jobs:
        fs = fsets[name]
        if linear_probe:
            base, new = base_new_classes(len(fs.classnames))
            lp = {split: lp_acc(*fs.split("train", cl, k, seed=s), *fs.split("test", cl))
                  for split, cl in (("base", base), ("new", new))}
            rows.append({"dataset": name, "method": "linear_probe", "k": k, "seed": s, **lp,
                         "H": harmonic_mean(lp["base"], lp["new"])})
        for method in methods:
            r, m = base_to_new(vlm, fs, method, k=k, seed=s, train_kw=train_kw[method], prompt_kw=prompt_kw)
            rows.append(r)
            models[(name, method, k, s)] = m
            bar.update()
    bar.close()
    return rows, models


def dataset_average(b2n, *, k: int, methods=METHOD_ORDER):
    """The papers' table at K shots: base and new accuracy averaged over seeds then datasets, H of the averages
    (as CoCoOp Table 1); ``*_sd``: standard deviation over seeds of the same per-seed averages. Zero-shot
    rows (k=0) are always included. -> DataFrame indexed by method."""
    import pandas as pd

    from ..metrics import harmonic_mean

    sel = b2n[b2n.method.isin(methods) & ((b2n.k == k) | (b2n.method == "zero_shot"))]
    per_seed = sel.groupby(["method", "seed", "dataset"])[["base", "new"]].mean().groupby(["method", "seed"]).mean()
    per_seed["H"] = [harmonic_mean(b, n) for b, n in zip(per_seed.base, per_seed.new)]
    avg = sel.groupby(["method", "dataset"])[["base", "new"]].mean().groupby("method").mean()
    avg["H"] = [harmonic_mean(b, n) for b, n in zip(avg.base, avg.new)]
    sd = per_seed.groupby("method")[["base", "new", "H"]].std(ddof=0).add_suffix("_sd")
    return pd.concat([avg, sd], axis=1).reindex([m for m in methods if m in avg.index])


def summary_with_paper(avg):
    """``avg`` (fractions) in %, beside the paper's averages over 11 datasets."""
    import pandas as pd

    paper = pd.DataFrame([{"method": m, "paper_base": v[0], "paper_new": v[1], "paper_H": v[2], "paper_eurosat_H": v[3]}
                          for m, v in PAPER_BASE_TO_NEW.items()])
    return avg.mul(100).round(2).reset_index().merge(paper, on="method", how="left")


def cross_dataset_rows(vlm: VLM, fsets: dict, pairs, models: dict, *, k: int, seeds, template: str) -> list[dict]:
    """CoCoOp Sec. 4.2 analogue: prompts learned on the source's base classes applied to every class of the
    target dataset (one row per pair, method and seed; zero-shot once per pair)."""
    rows = []
    for src, dst in pairs:
        fd = fsets[dst]
        x, y = fd.split("test", list(range(len(fd.classnames))))
        rows.append({"source": src, "target": dst, "method": "zero_shot", "seed": None,
                     "acc": zero_shot_accuracy(vlm, x, y, fd.classnames, zero_shot_template(dst, template))})
        rows += [{"source": src, "target": dst, "method": m, "seed": s,
                  "acc": accuracy_on(models[(src, m, k, s)], x, y, fd.classnames)}
                 for m in ("coop", "cocoop") for s in seeds if (src, m, k, s) in models]
    return rows


def domain_shift_rows(vlm: VLM, fs: FeatureSet, models: dict, *, k: int, seeds, template: str) -> list[dict]:
    """CoCoOp Sec. 4.3 analogue: the base-class test images, clean and in every shifted copy of ``fs``."""
    from ..data import base_new_classes

    base, _ = base_new_classes(len(fs.classnames))
    names = [fs.classnames[c] for c in base]
    rows = []
    for which in ["test", *fs.shifted]:
        x, y = fs.split(which, base)
        rows.append({"test_set": which, "method": "zero_shot", "seed": None,
                     "acc": zero_shot_accuracy(vlm, x, y, names, zero_shot_template(fs.name, template))})
        rows += [{"test_set": which, "method": m, "seed": s, "acc": accuracy_on(models[(fs.name, m, k, s)], x, y)}
                 for m in ("coop", "cocoop") for s in seeds if (fs.name, m, k, s) in models]
    return rows


def step_times(vlm: VLM, fs: FeatureSet, *, k: int, seed: int, batch: int, repeats: int, prompt_kw: dict) -> dict:
    """Seconds per training step on the same base-class batch: CoCoOp batched, CoCoOp per-image loop, CoOp."""
    from ..data import base_new_classes

    base, _ = base_new_classes(len(fs.classnames))
    x, y = fs.split("train", base, k, seed=seed)
    x, y = x[:batch], y[:batch]
    names = [fs.classnames[c] for c in base]
    out = time_cocoop_step(CoCoOp(vlm, names, seed=seed, **prompt_kw), x, y, repeats=repeats)
    coop = CoOp(vlm, names, seed=seed, **prompt_kw)
    out["coop_s_per_step"] = step_seconds(coop, coop, x, y, repeats=repeats)
    out["threads"] = torch.get_num_threads()
    out["precision"] = "fp32"  # the prompt steps run without autocast
    return out


def ablation_rows(vlm: VLM, fs: FeatureSet, b2n, models: dict, *, k: int, seeds, train_kw: dict, n_ctx: int,
                  ctx_init: str | None, init: bool, n_ctx_list, bigger: bool, progress: bool = True) -> list[dict]:
    """CoCoOp Sec. 5 on one dataset, for every seed: phrase vs random initialisation (both methods), context
    length (random init, both methods), and a "bigger CoOp" with as many context vectors as match CoCoOp's
    parameter count, capped by what the text tower's context length leaves after the longest class name."""
    from tqdm.auto import tqdm

    jobs = []
    for s in seeds:
        if init:
            jobs += [(m, s, n_ctx, m) for m in ("coop", "cocoop")]
        jobs += [(m, s, n, m) for n in n_ctx_list for m in ("coop", "cocoop")]
        if bigger and (fs.name, "cocoop", k, s) in models:
            n_fit = vlm.context_length - 1 - int(vlm.tokenize([f"{c}." for c in fs.classnames]).eot.max())
            n_big = min(n_fit, round(sum(models[(fs.name, "cocoop", k, s)].trainable_parameters().values()) / vlm.width))
            jobs.append(("coop", s, n_big, "coop_bigger"))
    rows = []
    for method in ("coop", "cocoop"):  # the phrase-initialised runs of the grid
        for s in seeds:
            hit = b2n[(b2n.dataset == fs.name) & (b2n.method == method) & (b2n.k == k) & (b2n.seed == s)]
            if len(hit):
                rows.append({**hit.iloc[0].to_dict(), "init": "phrase" if ctx_init else "random", "n_ctx": n_ctx})
    for method, s, n, label in tqdm(jobs, desc="ablations", disable=not progress):  # all random-initialised
        r, _ = base_to_new(vlm, fs, method, k=k, seed=s, train_kw=train_kw[method],
                           prompt_kw=dict(n_ctx=n, ctx_init=None))
        rows.append({**r, "method": label, "init": "random", "n_ctx": n})
    return rows


def paper_claims(avg, *, timing: dict, cross, shift, abl, n_ctx: int, ablation_note: str) -> list:
    """The papers' findings, each checked on our runs (``holds`` computed, never typed in). ``avg``: from
    :func:`dataset_average`; ``cross``/``shift``/``abl``: DataFrames of the row functions above."""
    from ..report import Claim

    A = avg

    def noise(col: str, first: str, second: str) -> str:
        """The margin against the seed standard deviations of both averages (empty without seeds)."""
        if f"{col}_sd" not in A.columns or A[f"{col}_sd"].isna().all():
            return ""
        d, sd = A.loc[first, col] - A.loc[second, col], max(A.loc[first, f"{col}_sd"], A.loc[second, f"{col}_sd"])
        return f"margin {d:+.3f}, seed sd up to {sd:.3f}" + (": within seed noise" if abs(d) <= sd else "")

    best_learned_new = max(("coop", "cocoop"), key=lambda m: A.loc[m, "new"])
    out = [
        Claim("coop_geq_cocoop_base", "CoOp >= CoCoOp on base classes", "82.69 vs 80.47",
              f"{A.loc['coop', 'base']:.3f} vs {A.loc['cocoop', 'base']:.3f}",
              bool(A.loc["coop", "base"] >= A.loc["cocoop", "base"]), noise("base", "coop", "cocoop")),
        Claim("cocoop_gt_coop_new", "CoCoOp > CoOp on new classes", "71.69 vs 63.22",
              f"{A.loc['cocoop', 'new']:.3f} vs {A.loc['coop', 'new']:.3f}",
              bool(A.loc["cocoop", "new"] > A.loc["coop", "new"]), noise("new", "cocoop", "coop")),
        Claim("cocoop_gt_coop_H", "CoCoOp > CoOp on the harmonic mean H", "75.83 vs 71.66",
              f"{A.loc['cocoop', 'H']:.3f} vs {A.loc['coop', 'H']:.3f}", bool(A.loc["cocoop", "H"] > A.loc["coop", "H"]),
              noise("H", "cocoop", "coop")),
        Claim("zero_shot_best_new", "Zero-shot CLIP is best on new classes (learned prompts overfit the base classes)",
              "74.22 vs CoCoOp 71.69 vs CoOp 63.22",
              f"zero-shot {A.loc['zero_shot', 'new']:.3f}, CoCoOp {A.loc['cocoop', 'new']:.3f}, CoOp {A.loc['coop', 'new']:.3f}",
              bool(A.loc["zero_shot", "new"] > max(A.loc["coop", "new"], A.loc["cocoop", "new"])),
              noise("new", "zero_shot", best_learned_new)),
        Claim("batched_faster_than_loop", "The batched CoCoOp text pass is faster per training step than the per-image loop",
              "official code loops over images (issue #21 there)",
              f"{timing['batched_s_per_step']:.3f} s vs {timing['loop_s_per_step']:.3f} s per step (batch {timing['batch_size']})",
              bool(timing["batched_s_per_step"] < timing["loop_s_per_step"])),
    ]
    c = cross[cross.method != "zero_shot"].groupby("method").acc.mean() if len(cross) else {}
    if {"coop", "cocoop"} <= set(getattr(c, "index", [])):
        pairs = ", ".join(sorted({f"{a} -> {b}" for a, b in zip(cross.source, cross.target)}))
        out.append(Claim("cocoop_gt_coop_cross_dataset", "CoCoOp transfers better than CoOp to another dataset",
                         "65.74 vs 63.88 (ImageNet -> 10 datasets)", f"{c['cocoop']:.3f} vs {c['coop']:.3f} ({pairs})",
                         bool(c["cocoop"] > c["coop"])))
    ab = abl.groupby(["method", "init", "n_ctx"])[["new", "H"]].mean()
    if all((m, i, n_ctx) in ab.index for m in ("coop", "cocoop") for i in ("phrase", "random")):
        d = {m: ab.loc[(m, "phrase", n_ctx), "H"] - ab.loc[(m, "random", n_ctx), "H"] for m in ("coop", "cocoop")}
        out.append(Claim("init_helps_cocoop_more", "Initialising the context from the phrase helps CoCoOp more than CoOp (H gain)",
                         "CoCoOp Sec. 5: word-embedding init matters more for CoCoOp",
                         f"H gain CoCoOp {d['cocoop']:+.3f} vs CoOp {d['coop']:+.3f} ({ablation_note})",
                         bool(d["cocoop"] > d["coop"])))
    for m in ("coop", "cocoop"):
        if m in ab.index.get_level_values(0) and "random" in ab.loc[m].index.get_level_values(0):
            ctx_new = ab.loc[(m, "random"), "new"].sort_index()
            if len(ctx_new) > 1:
                out.append(Claim(f"longer_context_helps_new_{m}",
                                 f"A longer {m} context gives higher new-class accuracy (longest vs shortest n_ctx)",
                                 "CoCoOp Sec. 5: longer context helps new classes",
                                 ", ".join(f"n_ctx {n}: {v:.3f}" for n, v in ctx_new.items()),
                                 bool(ctx_new.iloc[-1] > ctx_new.iloc[0])))
    big = abl[abl.method == "coop_bigger"]
    if len(big) and ("cocoop", "phrase", n_ctx) in ab.index:
        h_big, h_co = big.H.mean(), ab.loc[("cocoop", "phrase", n_ctx), "H"]
        out.append(Claim("bigger_coop_below_cocoop", "A bigger CoOp (as many context vectors as CoCoOp has parameters, "
                         "capped by the context length) stays below CoCoOp on H", "CoCoOp Sec. 5: a bigger CoOp does not close the gap",
                         f"bigger CoOp (n_ctx {int(big.n_ctx.iloc[0])}, {int(big.trainable_params.iloc[0])} params) H {h_big:.3f} "
                         f"vs CoCoOp {h_co:.3f}", bool(h_big < h_co)))
    sh = shift[shift.test_set != "test"].groupby("method").acc.mean() if len(shift) else {}
    if {"coop", "cocoop", "zero_shot"} <= set(getattr(sh, "index", [])):
        out.append(Claim("domain_shift_order", "Under domain shift CoCoOp >= CoOp >= zero-shot",
                         "59.91 / 59.28 / 57.18 (ImageNet -> V2/Sketch/A/R)",
                         f"CoCoOp {sh['cocoop']:.3f}, CoOp {sh['coop']:.3f}, zero-shot {sh['zero_shot']:.3f}",
                         bool(sh["cocoop"] >= sh["coop"] >= sh["zero_shot"])))
    return out

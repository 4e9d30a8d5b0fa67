"""Study of notebook ``01_vpt`` (Jia et al., "Visual Prompt Tuning", ECCV 2022).

The prompt module is :class:`vpkit.prompts.vpt.VPT`; this file holds the rest of the paper: the paper's
numbers (Table 1), its claims, the ablation studies, and the VTAB-1k protocol (Zhai et al. 2019, as used by
VPT Sec. 4.1) for any method of :mod:`vpkit.methods`:

1. **Tune**: for every (base_lr, weight_decay) of a grid, train on ``train800`` and score on ``val200``.
2. **Retrain** with the best pair on ``train1000`` (= train800 + val200), once per seed.
3. **Test** on the fixed test set; report mean and std over seeds.

Learning rates follow the official scaling ``lr = base_lr * batch_size / 256``; SGD with momentum 0.9 and a
cosine schedule with linear warmup (:func:`vpkit.train.fit`). Each run records its trainable-parameter count,
the share of the backbone and the training throughput (images/s) measured in that same run.

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..backbones import Backbone
from ..data import ImageSet, loader_for
from ..device import precision
from ..methods import build_method
from ..profiles import resolve
from ..prompts.vpt import init_head
from ..train import evaluate, fit, seed_everything


PROFILES = {  # notebooks/01_vpt.ipynb (Jia et al. 2022); lr = base_lr * batch_size / 256
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
                    # one more value on each side where the official head init put the validation choice on the
                    # edge of the former 2-value grids (linear, shallow: top; full: bottom; deep: both)
                    base_lrs={"linear": [1.6, 0.48, 0.16], "vpt_shallow": [0.48, 0.16, 0.048],
                              "vpt_deep": [0.48, 0.16, 0.048, 0.016], "full": [1.6e-3, 4.8e-4, 1.6e-4],
                              "partial_1": [4.8e-3], "bias": [0.048], "adapter": [0.048]},
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
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 01_vpt's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="vpt")


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method of a comparison (VPT Sec. 4.1 / Appendix A)."""

    epochs: int = 100
    batch_size: int = 128
    warmup_epochs: float = 10
    optimizer: str = "sgd"
    momentum: float = 0.9
    amp: bool = False
    eval_batch_size: int = 128
    # every method's linear head starts as the official code's (one MLP head class for linear, full and prompt
    # runs): kaiming-normal fan-out weights, bias -log 99 (vpkit.prompts.vpt.init_head); "torch" = nn.Linear's
    head_init: str = "official"

    def lr(self, base_lr: float) -> float:
        """The official linear scaling rule ``base_lr * batch_size / 256``."""
        return base_lr * self.batch_size / 256


@dataclass
class RunResult:
    method: str
    seed: int
    base_lr: float
    weight_decay: float
    acc: dict  # eval-set name -> accuracy
    trainable: int
    percent_of_backbone: float
    images_per_s: float
    train_seconds: float
    final_train_acc: float
    precision: str = "fp32"  # of the training steps: fp32 / bf16 (vpkit.device)
    method_kwargs: dict = field(default_factory=dict)

    def row(self, **labels) -> dict:
        d = asdict(self)
        acc = d.pop("acc")
        kw = d.pop("method_kwargs")
        return {**labels, **d, **{f"acc_{k}": v for k, v in acc.items()},
                "method_kwargs": ", ".join(f"{k}={v}" for k, v in kw.items())}


def train_and_eval(method: str, backbone: Backbone, train_set: ImageSet, eval_sets: dict[str, ImageSet], *,
                   num_classes: int, base_lr: float, weight_decay: float, seed: int, train: TrainConfig,
                   method_kwargs: dict | None = None, progress: bool = False) -> RunResult:
    """Build ``method`` (seeded), train it on ``train_set``, evaluate on every set of ``eval_sets``."""
    kw = dict(method_kwargs or {})
    seed_everything(seed)
    m = build_method(method, backbone, num_classes, **kw)
    init_head(m.model.head, train.head_init)
    loader = loader_for(train_set, backbone, batch_size=train.batch_size, shuffle=True, seed=seed)
    common = dict(method=method, seed=seed, base_lr=base_lr, weight_decay=weight_decay, trainable=m.report.trainable,
                  percent_of_backbone=m.report.percent_of_backbone, method_kwargs=kw,
                  precision=precision() if train.amp else "fp32")
    try:
        hist = fit(m.model, loader, epochs=train.epochs, lr=train.lr(base_lr), weight_decay=weight_decay,
                   optimizer=train.optimizer, momentum=train.momentum, warmup_epochs=train.warmup_epochs,
                   amp=train.amp, progress=progress, desc=f"{method} {train_set.name}")
    except FloatingPointError:  # diverged: scores NaN, so tuning never picks it
        nan = float("nan")
        return RunResult(acc={k: nan for k in eval_sets}, images_per_s=nan, train_seconds=nan, final_train_acc=nan,
                         **common)
    acc = {name: evaluate(m.model, loader_for(ds, backbone, batch_size=train.eval_batch_size), amp=train.amp)["acc"]
           for name, ds in eval_sets.items()}
    return RunResult(acc=acc, images_per_s=hist.throughput, train_seconds=hist.seconds,
                     final_train_acc=hist.train_acc[-1], **common)


def tune(method: str, backbone: Backbone, splits: dict[str, ImageSet], *, num_classes: int, base_lrs, weight_decays,
         train: TrainConfig, seed: int = 0, method_kwargs: dict | None = None,
         progress: bool = False) -> tuple[tuple[float, float], list[RunResult]]:
    """Grid search on train800 -> val200; returns the best (base_lr, weight_decay) and every grid run.

    A run that diverges (non-finite loss) scores NaN and is never chosen; ties go to the earlier grid point.
    """
    runs = []
    for base_lr, wd in itertools.product(base_lrs, weight_decays):
        runs.append(train_and_eval(method, backbone, splits["train800"], {"val200": splits["val200"]},
                                   num_classes=num_classes, base_lr=base_lr, weight_decay=wd, seed=seed, train=train,
                                   method_kwargs=method_kwargs, progress=progress))
    scores = [r.acc["val200"] if math.isfinite(r.acc["val200"]) else -1.0 for r in runs]
    best = runs[int(np.argmax(scores))]
    return (best.base_lr, best.weight_decay), runs


def vtab_protocol(method: str, backbone: Backbone, splits: dict[str, ImageSet], *, num_classes: int, base_lrs,
                  weight_decays, seeds, train: TrainConfig, method_kwargs: dict | None = None,
                  progress: bool = False) -> tuple[list[RunResult], list[RunResult]]:
    """Tune on train800/val200 (first seed), retrain on train1000 for every seed, test. Returns (final, grid)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if len(base_lrs) * len(weight_decays) > 1:
        (lr, wd), grid = tune(method, backbone, splits, num_classes=num_classes, base_lrs=base_lrs,
                              weight_decays=weight_decays, train=train, seed=seeds[0], method_kwargs=method_kwargs,
                              progress=progress)
    else:
        (lr, wd), grid = (base_lrs[0], weight_decays[0]), []
    final = [train_and_eval(method, backbone, splits["train1000"], {"test": splits["test"]}, num_classes=num_classes,
                            base_lr=lr, weight_decay=wd, seed=s, train=train, method_kwargs=method_kwargs,
                            progress=progress) for s in seeds]
    return final, grid


def summarize(rows, *, by=("task", "method"), value: str = "acc_test"):
    """Mean and std (over seeds) of ``value`` per group, plus the first row's parameter counts."""
    import pandas as pd

    df = pd.DataFrame(rows)
    agg = df.groupby(list(by), sort=False).agg(
        acc_mean=(value, "mean"), acc_std=(value, lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0),
        n_seeds=(value, "size"), base_lr=("base_lr", "first"), weight_decay=("weight_decay", "first"),
        trainable=("trainable", "first"), percent_of_backbone=("percent_of_backbone", "first"),
        images_per_s=("images_per_s", "mean"))
    return agg.reset_index()


def run_suite(backbone: Backbone, suite: dict[str, dict[str, ImageSet]], *, methods, base_lrs: dict,
              weight_decays, seeds, train: TrainConfig, method_kwargs: dict | None = None,
              tune_on: dict[str, str] | None = None, progress: bool = False,
              log=print) -> tuple[list[dict], list[dict]]:
    """:func:`vtab_protocol` for every task of ``suite`` (task -> splits) and every method.

    ``base_lrs`` maps a method name to its base-lr grid; ``method_kwargs`` maps a method name to builder
    kwargs. ``tune_on`` (budget saver) maps a task to another task of the suite whose tuned (base_lr,
    weight_decay) it reuses instead of running its own grid; that task must come earlier in ``suite``.
    Returns (final rows, grid rows), each row labelled with task and method (and ``tuned_on``).
    """
    method_kwargs, tune_on = method_kwargs or {}, tune_on or {}
    missing = [m for m in methods if m not in base_lrs]
    if missing:
        raise ValueError(f"base_lrs has no grid for methods {missing}; give one list per method")
    order = list(suite)
    for task, donor in tune_on.items():
        if task in suite and (donor not in suite or order.index(donor) > order.index(task)):
            raise ValueError(f"tune_on[{task!r}]={donor!r} must be a task of the suite listed before {task!r}")
    final_rows, grid_rows, best = [], [], {}
    for task, splits in suite.items():
        num_classes = splits["test"].num_classes
        donor = tune_on.get(task, task)
        for method in methods:
            lrs, wds = base_lrs[method], weight_decays
            if donor != task:
                lrs, wds = [best[(donor, method)][0]], [best[(donor, method)][1]]
            final, grid = vtab_protocol(method, backbone, splits, num_classes=num_classes, base_lrs=lrs,
                                        weight_decays=wds, seeds=seeds, train=train,
                                        method_kwargs=method_kwargs.get(method), progress=progress)
            best[(task, method)] = (final[0].base_lr, final[0].weight_decay)
            final_rows += [r.row(task=task, tuned_on=donor) for r in final]
            grid_rows += [r.row(task=task) for r in grid]
            if log:
                accs = [r.acc["test"] for r in final]
                log(f"{task:22s} {method:12s} base_lr={final[0].base_lr:<6g} wd={final[0].weight_decay:<6g} "
                    f"test acc {np.mean(accs):.3f} ({len(accs)} seeds) {final[0].images_per_s:.1f} img/s")
    return final_rows, grid_rows


def run_variants(backbone: Backbone, splits: dict[str, ImageSet], *, method: str, variants: dict[str, dict],
                 base_lr: float, weight_decay: float, seeds, train: TrainConfig, base_kwargs: dict | None = None,
                 progress: bool = False, log=print, cache: dict | None = None, **labels) -> list[dict]:
    """Ablation: train ``method`` on train1000 with each variant's kwargs (over ``base_kwargs``) and test.

    Variants that resolve to the same kwargs (e.g. the default length in the length study and the default
    depth in the depth study) are trained once per ``cache`` and reused.
    """
    rows = []
    cache = {} if cache is None else cache
    for label, kw in variants.items():
        for s in seeds:
            full_kw = {**(base_kwargs or {}), **kw}
            key = (method, s, base_lr, weight_decay, tuple(sorted(full_kw.items())))
            if key not in cache:
                cache[key] = train_and_eval(method, backbone, splits["train1000"], {"test": splits["test"]},
                                            num_classes=splits["test"].num_classes, base_lr=base_lr,
                                            weight_decay=weight_decay, seed=s, train=train, method_kwargs=full_kw,
                                            progress=progress)
            r = cache[key]
            rows.append(r.row(variant=label, **labels))
            if log:
                log(f"{method} {label:24s} seed {s}: test acc {r.acc['test']:.3f} ({r.images_per_s:.1f} img/s)")
    return rows


def group_means(summary, groups: dict[str, str], *, value: str = "acc_mean"):
    """Mean of ``value`` over the tasks of each group (e.g. natural / structured), per method."""
    df = summary.assign(group=summary["task"].map(groups))
    if df["group"].isna().any():
        raise ValueError(f"tasks without a group: {sorted(df.loc[df['group'].isna(), 'task'].unique())}")
    out = df.groupby(["method", "group"], sort=False)[value].mean().unstack("group")
    out["all"] = df.groupby("method", sort=False)[value].mean()
    return out.reset_index()


def method_table(summary, groups: dict[str, str]):
    """The VPT paper's main table from :func:`summarize`'s output: per method, ``mean ± std`` per task (in %),
    the group means, trainable parameters and throughput -> (table, group means indexed by method, per-method
    parameter/throughput frame)."""
    main = summary.pivot_table(index="method", columns="task", values="acc_mean", sort=False)
    std = summary.pivot_table(index="method", columns="task", values="acc_std", sort=False)
    cells = (100 * main).round(1).astype(str) + " ± " + (100 * std).round(1).astype(str)
    grp = group_means(summary, groups).set_index("method")
    per_method = summary.groupby("method", sort=False).agg(
        trainable=("trainable", "first"), percent_of_backbone=("percent_of_backbone", "first"),
        images_per_s=("images_per_s", "mean"))
    table = cells.join((100 * grp).round(2).add_prefix("mean_")).join(per_method).reset_index()
    return table, grp, per_method


def vpt_ablation_studies(*, num_tokens, depths, locations, outputs, max_depth: int) -> dict[str, dict[str, dict]]:
    """VPT Sec. 4.3's studies as variants of VPT-deep: prompt length, depth, location and output head."""
    return {"num_tokens": {str(n): {"num_tokens": n} for n in num_tokens},
            "prompt_depth": {str(d): {"prompt_depth": d} for d in depths if d <= max_depth},
            "location": {loc: {"location": loc} for loc in locations},
            "output": {o: {"output": o} for o in outputs}}


def run_ablations(backbone: Backbone, splits: dict[str, ImageSet], studies: dict, *, base_lr: float,
                  weight_decay: float, seeds, train: TrainConfig, base_kwargs: dict, task: str) -> list[dict]:
    """Every study of :func:`vpt_ablation_studies` on one task with VPT-deep's tuned lr/wd; variants equal to the
    defaults are trained once and shared between studies."""
    rows, cache = [], {}
    for study, variants in studies.items():
        rows += run_variants(backbone, splits, method="vpt_deep", variants=variants, base_lr=base_lr,
                             weight_decay=weight_decay, seeds=seeds, train=train, base_kwargs=base_kwargs, cache=cache,
                             task=task, study=study)
    return rows


# ----------------------------------------------------------------------------------------------------------
# The paper's numbers (Jia et al. 2022, ViT-B/16 supervised ImageNet-21k; mean accuracy %) and claims
# ----------------------------------------------------------------------------------------------------------

PAPER_GROUPS = {  # Table 1: method -> group -> mean accuracy
    "full": {"FGVC": 88.54, "natural": 75.88, "specialized": 83.36, "structured": 47.64},
    "linear": {"FGVC": 79.32, "natural": 68.93, "specialized": 77.16, "structured": 26.84},
    "vpt_shallow": {"FGVC": 84.62, "natural": 76.81, "specialized": 79.66, "structured": 46.98},
    "vpt_deep": {"FGVC": 89.11, "natural": 78.48, "specialized": 82.43, "structured": 54.98},
}
PAPER_CIFAR100 = {"full": 68.9, "linear": 63.4, "vpt_shallow": 77.7, "vpt_deep": 78.8}  # VTAB-1k CIFAR-100


def _gap(p: dict, a: str, b: str, group: str) -> float:
    return round(p[a][group] - p[b][group], 2)


def paper_claims(groups_table, per_task, *, ablation=None) -> list:
    """The paper's headline claims, checked on our results.

    ``groups_table``: :func:`group_means` output (accuracy in [0, 1]; columns natural /
    structured / all); ``per_task``: :func:`summarize` output; ``ablation``: optional rows
    with ``study``, ``variant`` and ``acc_test`` (for the 1-prompt and location claims).
    """
    from ..report import Claim

    g = groups_table.set_index("method")
    pt = per_task.pivot_table(index="task", columns="method", values="acc_mean")
    P = PAPER_GROUPS
    claims = []

    def has(*ms):
        return all(m in g.index for m in ms)

    if has("vpt_deep", "vpt_shallow"):
        d = float(g.loc["vpt_deep", "all"] - g.loc["vpt_shallow", "all"])
        claims.append(Claim("deep>shallow", "VPT-deep beats VPT-shallow (mean test accuracy over the suite; "
                            "ours = deep - shallow, points)",
                            f"+{_gap(P, 'vpt_deep', 'vpt_shallow', 'natural')} Natural, "
                            f"+{_gap(P, 'vpt_deep', 'vpt_shallow', 'structured')} Structured",
                            round(100 * d, 2), bool(d > 0)))
    if has("vpt_deep", "linear"):
        d = float(g.loc["vpt_deep", "all"] - g.loc["linear", "all"])
        claims.append(Claim("deep>linear", "VPT-deep beats the linear probe (mean over the suite; ours = deep - "
                            "linear, points)", f"+{_gap(P, 'vpt_deep', 'linear', 'natural')} Natural, "
                            f"+{_gap(P, 'vpt_deep', 'linear', 'structured')} Structured",
                            round(100 * d, 2), bool(d > 0)))
    if has("vpt_deep", "full"):
        d = float(g.loc["vpt_deep", "all"] - g.loc["full", "all"])
        wins = int((pt["vpt_deep"] > pt["full"]).sum())
        claims.append(Claim("deep>full", "VPT-deep matches or beats full fine-tuning (mean over the suite; ours = "
                            "deep - full, points)", "deep beats full in 20 of 24 VTAB tasks; "
                            f"+{_gap(P, 'vpt_deep', 'full', 'natural')} Natural, "
                            f"+{_gap(P, 'vpt_deep', 'full', 'structured')} Structured",
                            round(100 * d, 2), bool(d > 0), note=f"deep beats full in {wins} of {len(pt)} tasks"))
    if {"natural", "structured"} <= set(g.columns):
        for base in ("linear", "full"):
            if not has("vpt_deep", base):
                continue
            gs = float(g.loc["vpt_deep", "structured"] - g.loc[base, "structured"])
            gn = float(g.loc["vpt_deep", "natural"] - g.loc[base, "natural"])
            claims.append(Claim(
                f"structured_gain_vs_{base}",
                f"VPT-deep's gain over {base} is larger on Structured than on Natural tasks (ours = structured "
                f"gain - natural gain, points)",
                round(_gap(P, "vpt_deep", base, "structured") - _gap(P, "vpt_deep", base, "natural"), 2),
                round(100 * (gs - gn), 2), bool(gs > gn),
                note=f"ours: structured {100 * gs:+.2f}, natural {100 * gn:+.2f} points"))
    if ablation is not None and len(ablation):
        ab = ablation.groupby(["study", "variant"])["acc_test"].mean()
        if ("num_tokens", "1") in ab.index and "vpt_shallow" in pt.columns:
            task = ablation["task"].iloc[0]
            d = float(ab[("num_tokens", "1")] - pt.loc[task, "vpt_shallow"])
            claims.append(Claim("one_deep_prompt>shallow", f"VPT-deep with a single prompt per layer beats "
                                f"VPT-shallow ({task}; ours = difference, points)", "holds (Fig. 7, VTAB)",
                                round(100 * d, 2), bool(d > 0)))
        if ("location", "prepend") in ab.index and ("location", "add") in ab.index:
            d = float(ab[("location", "prepend")] - ab[("location", "add")])
            claims.append(Claim("prepend>add", "Prepending prompts beats adding them to the patch embeddings "
                                "(ours = prepend - add, points)", "holds (Fig. 5)", round(100 * d, 2), bool(d > 0)))
    if has("vpt_deep"):
        pct = float(per_task.loc[per_task.method == "vpt_deep", "percent_of_backbone"].max())
        claims.append(Claim("deep_under_1pct_params", "VPT-deep trains < 1% of the backbone's parameters "
                            "(ours = max % over tasks, prompts + head)", "< 1%", round(pct, 3), bool(pct < 1.0)))
    return claims

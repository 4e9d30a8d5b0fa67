"""Study of notebook ``05_image_prompts_l2p``: L2P (Wang et al., CVPR 2022) and the image-prompt project on it.

The prompt pool, image prompts and generators are :mod:`vpkit.prompts.l2p`; the task loop is
:mod:`vpkit.continual`. This file holds the variants of the project as one flat table, the numbers quoted
in the source, the selection analysis, the prompt images, the LwF sweep, the claims.

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.

Claims (:func:`claims_from_results`) are decided from what the notebook saved - ``outcomes.npz`` (per-example
correct flags of every evaluation of every run, and the prompts each test image selects) and
``claims_setup.json`` (task sizes, seeds, pool settings) - with the intervals of :mod:`vpkit.stats`; each claim's
comparison, metric, direction and threshold are fixed in :data:`CLAIM_RULES` and the code below, not chosen after
a run.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import stats
from ..methods import build_l2p_model
from ..profiles import resolve
from ..prompts.l2p import L2PConfig, L2PModel, select_top_k


# 05: L2P + the image-prompt project (continual learning). Offline: Split Fashion-MNIST 5x2, 20 training and 40
# test images per class, 56 px, 5 epochs per task (the paper's epochs, prompt length and top-N); lr 0.03 for every
# variant, from a pilot on L2P (0.003 / 0.01 / 0.03 / 0.1). ``seeds``: the training seeds (initialisation, batch
# order, initialisation images) of every variant a claim compares; the class order and the image subsets come from
# the notebook's ``seed`` and are the same for every run, so all runs are tested on the same images (paired).
# ``single_seed``: descriptive runs (no claim reads them) trained on the first seed only, to stay in the budget.
# ``tasks_run``: train and test only the first that many tasks of the split (None: all; a dry-run cut).
# ``eval_crop_pct``: un-augmented inputs resized to size / crop_pct then centre-cropped (None: straight resize).
# ``eval_batch_size``: test batches (batch-wise selection votes within a test batch).
#
# Paper (L2P, Split CIFAR-100 10 x 10), as the official PyTorch port JH-LEE-KR/l2p-pytorch (configs/cifar100_l2p.py,
# train_cifar100_l2p.sh: one GPU) and google-research/l2p: ViT-B/16 ImageNet-21k (the port loads
# imagenet21k/ViT-B_16.npz = timm vit_base_patch16_224.orig_in21k), frozen; Adam (0.9, 0.999), constant lr
# 0.03 * batch / 256 = 0.001875 at batch 16, no weight decay, gradients clipped to norm 1, 5 epochs per task, the
# optimiser re-created for each task; pool M=10, length L=5, top-N=5, batch-wise selection (train and test), CLS
# query of the frozen model on the same (augmented) view, keys and prompts uniform(-1, 1), pull coefficient 0.1,
# head on the mean of the prompt tokens, train-time mask of the other tasks' logits; classes in their natural order;
# inputs in [0, 1] (no mean/std), RandomResizedCrop(224, scale 0.05-1, ratio 3/4-4/3) + flip for training,
# Resize(256, bicubic) + CenterCrop(224) for testing, test batches of 16. Deviations that remain (also in the
# notebook's "Paper profile: deviations" cell): mixed precision (amp=True: fp16 + GradScaler or bf16 on a GPU; the
# port trains in fp32); three training seeds (0, 1, 2) instead of the port's one (seed 42); each task's test set in
# one fixed permutation instead of CIFAR's file order (both interleave the classes; only batch-wise selection can
# tell); resizing on tensors (torch bilinear / bicubic) instead of PIL; the bounds (seq_ft / lwf / joint) train
# L2P's prompt budget (one N*L-token prompt + head), not the L2P paper's fine-tuned ViT; LwF weight 1, temperature
# 2 (the L2P paper does not give its LwF settings); the project's variants (image prompts, generators, LwF on the
# generator) have no official code: their sizes (gen_size 32, init classes below) are ours.
PROFILES = {
    "smoke": dict(backbone="vit_s14_dinov2", img_size=14, dataset="fashion_mnist", num_tasks=2, split_seed=None,
                  shuffle_classes=True, normalize=True, augment=False, n_train_per_class=1, n_test_per_class=1,
                  epochs=1, batch_size=8, lr=0.01, amp=False,
                  pool_size=10, length=1, top_k=2, pull_coeff=0.1, selection="per_sample", lwf_weight=1.0,
                  gen_lwf_weights=[1.0], gen_size=28, init_classes=None, variants=None, seeds=[0, 1],
                  single_seed=["joint", "l2p_image_init_keys"], tasks_run=None, eval_crop_pct=None,
                  eval_batch_size=16),
    "offline": dict(backbone="vit_s14_dinov2", img_size=56, dataset="fashion_mnist", num_tasks=5,
                    split_seed=None, shuffle_classes=True, normalize=True, augment=False, n_train_per_class=20,
                    n_test_per_class=40, epochs=5, batch_size=8,
                    lr=0.03, amp=True, pool_size=10, length=5, top_k=5, pull_coeff=0.1,
                    selection="per_sample", lwf_weight=1.0, gen_lwf_weights=[1.0, 10.0], gen_size=28,
                    init_classes=None,
                    variants=["seq_ft", "lwf", "joint", "l2p", "l2p_image_init", "l2p_image_init_keys",
                              "l2p_patch_embed", "vae_gen", "cls_gen", "vae_gen_pool", "vae_gen_pool_lwf1",
                              "vae_gen_pool_lwf10"],
                    seeds=[0, 1, 2], single_seed=["joint", "l2p_image_init_keys"], tasks_run=None,
                    eval_crop_pct=None, eval_batch_size=16),
    "paper": dict(backbone="vit_b16_in21k", img_size=224, dataset="cifar100", num_tasks=10, split_seed=42,
                  shuffle_classes=False,  # official: classes in their natural order
                  normalize=False, augment=True,  # official: [0, 1] inputs, RandomResizedCrop + flip
                  n_train_per_class=None, n_test_per_class=None, epochs=5, batch_size=16, lr=0.03 * 16 / 256,
                  amp=True, pool_size=10, length=5, top_k=5, pull_coeff=0.1, selection="batch",
                  lwf_weight=1.0, gen_lwf_weights=[0.1, 1.0, 10.0], gen_size=32,
                  init_classes=["apple", "boy", "maple tree", "mountain", "bee", "chair", "lion", "poppy",
                                "crab", "bus"], variants=None, seeds=[0, 1, 2], single_seed=[],
                  tasks_run=None, eval_crop_pct=224 / 256, eval_batch_size=16),
}

# CIFAR-100 class ids of the paper profile's init classes (apple, boy, maple tree, mountain, bee, chair, lion, poppy,
# crab, bus): a dry run's fake CIFAR-100 names its classes "cifar100 class <id>"
_INIT_CLASS_IDS = (0, 11, 47, 49, 6, 20, 43, 62, 26, 13)

# Paper-shape dry run (vpkit.dryrun): every variant (each prompt form, init, generator, LwF and the bounds) and the
# LwF-on-the-generator kind kept; cut to one training seed, one generator-LwF weight, the first two tasks of the
# 10 x 10 split (task 1: no old classes; task 2: LwF, the masks over seen classes, the generator LwF, forgetting)
# and, as dry-run cuts, training batches of 1 and test batches of 2 (fit stops after 2 steps, each test after 2
# batches; a ViT-B/16 pass costs ~0.4 CPU-s an image, so images, not steps, set the dry run's time).
DRY_RUN = dict(seeds=[0], single_seed=[], gen_lwf_weights=[1.0], tasks_run=2,
               batch_size=1, eval_batch_size=2,  # dry-run cuts (paper: 16 and 16)
               init_classes=[f"cifar100 class {i}" for i in _INIT_CLASS_IDS])


def settings(profile: str, **overrides) -> dict:
    """Notebook 05_image_prompts_l2p's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked
    (in a paper-shape dry run, the :data:`DRY_RUN` cuts first)."""
    cfg = resolve(PROFILES, profile, overrides, notebook="image_prompts_l2p", dry_run_cuts=DRY_RUN)
    if not cfg["seeds"] or len(set(cfg["seeds"])) != len(cfg["seeds"]):
        raise ValueError(f"seeds={cfg['seeds']!r} must be a non-empty list of distinct training seeds")
    return cfg


# torchvision's train / test split sizes of the paper datasets (for :func:`paper_cost`)
SPLIT_SIZES = {"cifar100": (50_000, 10_000)}


def train_config(cfg: dict):
    """The base :class:`vpkit.continual.ContinualConfig` of ``cfg`` (each variant overrides a few fields)."""
    from ..continual import ContinualConfig

    return ContinualConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], optimizer="adam",
                           amp=cfg["amp"], normalize=cfg["normalize"], augment=cfg["augment"],
                           eval_crop_pct=cfg["eval_crop_pct"], eval_batch_size=cfg["eval_batch_size"])


def paper_cost(cfg: dict) -> dict:
    """What ``cfg`` (the paper profile's settings) costs, for GPU-hour estimates: ``training_runs`` (variant x seed),
    ``fit_calls`` (one per task of a continual run, one per joint run), ``epochs`` (sum over fit calls of the epochs
    each trains: 5 per task), ``train_images`` (sum over fit calls of epochs x that fit's train set), ``eval_images``
    (test images through the prompted model: after task t every task j <= t), ``frozen_images`` (the query cache, and
    with augmentation one frozen query pass per training image plus LwF's frozen teacher on every training image of
    tasks 2..T: counted apart, a forward pass only) and ``step_kind``."""
    from ..dryrun import PAPER_SHAPES

    name = cfg["dataset"]
    if name not in SPLIT_SIZES:
        raise ValueError(f"paper_cost knows the split sizes of {sorted(SPLIT_SIZES)}, not dataset={name!r}")
    n_train, n_test = SPLIT_SIZES[name]
    C = PAPER_SHAPES[name][0]
    T = cfg["num_tasks"]
    run_T = cfg.get("tasks_run") or T
    tr_task = (cfg["n_train_per_class"] * C if cfg["n_train_per_class"] else n_train) // T
    te_task = (cfg["n_test_per_class"] * C if cfg["n_test_per_class"] else n_test) // T
    variants = project_variants(pool_size=cfg["pool_size"], length=cfg["length"], top_k=cfg["top_k"],
                                pull_coeff=cfg["pull_coeff"], selection=cfg["selection"], lwf_weight=cfg["lwf_weight"],
                                gen_lwf_weights=cfg["gen_lwf_weights"], gen_size=cfg["gen_size"])
    names = cfg["variants"] or list(variants)
    seeds = cfg["seeds"]
    runs = [(n, s) for s in seeds for n in names if s == seeds[0] or n not in cfg["single_seed"]]
    fits = epochs = train_images = eval_images = 0
    frozen = te_task * run_T + (0 if cfg["augment"] else tr_task * run_T)  # the query cache, once
    for n, _ in runs:
        v = variants[n]
        if v.joint:
            fits += 1
            epochs += cfg["epochs"]
            seen = cfg["epochs"] * tr_task * run_T
            eval_images += te_task * run_T
        else:
            fits += run_T
            epochs += cfg["epochs"] * run_T
            seen = cfg["epochs"] * tr_task * run_T
            eval_images += te_task * run_T * (run_T + 1) // 2
        train_images += seen
        if cfg["augment"]:
            frozen += seen  # the query of every augmented view
            if v.train.get("lwf_weight"):
                frozen += cfg["epochs"] * tr_task * (run_T - 1)  # LwF's frozen teacher on tasks 2..T
    return {"training_runs": len(runs), "fit_calls": fits, "epochs": epochs, "train_images": train_images,
            "eval_images": eval_images, "frozen_images": frozen,
            "step_kind": f"{'vit_b16' if cfg['backbone'] == 'vit_b16_in21k' else cfg['backbone']}_{cfg['img_size']}"
                         "_l2p_train"}


# ----------------------------------------------------------------------------------------------------------
# Prompt selection
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def selection_counts(model: L2PModel, queries: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     batch_size: int = 64) -> torch.Tensor:
    """(num_classes, pool_size) how often each prompt is selected for each class's images (from cached
    queries; batch-wise selection is applied per batch of ``batch_size`` in the given order)."""
    if model.pool is None:
        raise ValueError("the model has no prompt pool")
    M = model.pool.pool_size
    counts = torch.zeros(num_classes, M, dtype=torch.long)
    for i in range(0, len(queries), batch_size):
        q, y = queries[i:i + batch_size], labels[i:i + batch_size]
        idx, _ = select_top_k(q, model.pool.key.detach().cpu().float(), model.pool.top_k, model.pool.selection)
        for k in range(idx.shape[1]):
            counts.index_put_((y, idx[:, k]), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return counts


@torch.no_grad()
def selected_ids(model: L2PModel, task_queries: list[torch.Tensor], *, batch_size: int = 16, shuffle: bool = True,
                 seed: int | None = None) -> torch.Tensor:
    """(N, top_k) prompt ids each test image selects after training, every task's cached queries concatenated in
    dataset order. Batches follow the evaluation (:func:`vpkit.continual._test_loader`: a fixed permutation per task
    in batches of ``batch_size``), so batch-wise selection sees the batches the test saw."""
    from ..continual import TEST_ORDER_SEED
    from ..data import batch_indices

    if model.pool is None:
        raise ValueError("the model has no prompt pool")
    keys = model.pool.key.detach().cpu().float()
    out = []
    for q in task_queries:
        ids = torch.zeros(len(q), model.pool.top_k, dtype=torch.long)
        for b in batch_indices(len(q), batch_size, shuffle=shuffle, seed=TEST_ORDER_SEED if seed is None else seed,
                               epoch=0):
            ids[b] = select_top_k(q[b].float(), keys, model.pool.top_k, model.pool.selection)[0]
        out.append(ids)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------------
# The variants of the image-prompt project, as one flat table of (L2PConfig, training overrides, protocol)
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    model: L2PConfig
    train: dict  # overrides of vpkit.continual.ContinualConfig
    joint: bool = False
    label: str = ""


def project_variants(*, pool_size: int = 10, length: int = 5, top_k: int = 5, pull_coeff: float = 0.1,
                     selection: str = "per_sample", gen_lwf_weights=(0.1, 1.0, 10.0), lwf_weight: float = 1.0,
                     gen_length: int | None = None, gen_size: int = 28) -> dict[str, Variant]:
    """Every run of the notebook: bounds (sequential fine-tuning / LwF / joint training of a single prompt of
    N*L tokens + head, i.e. what L2P trains without the pool), L2P, and the project's variants 1-4."""
    pool = dict(pool_size=pool_size, length=length, top_k=top_k, pull_coeff=pull_coeff, selection=selection)
    gl = gen_length or length
    gen = dict(gen_length=gl, gen_size=gen_size)
    single = L2PConfig(use_pool=False, shared_length=length * top_k)
    v = [
        Variant("seq_ft", single, dict(train_mask="seen"), label="sequential fine-tuning (lower bound)"),
        Variant("lwf", single, dict(train_mask="seen", lwf_weight=lwf_weight), label=f"LwF (weight {lwf_weight})"),
        Variant("joint", single, dict(train_mask="seen"), joint=True, label="joint training (upper bound)"),
        Variant("l2p", L2PConfig(**pool), {}, label="L2P (random init)"),
        Variant("l2p_image_init", L2PConfig(**pool, prompt_init="image"), {},
                label="image-initialised prompts, no patch embedding"),
        Variant("l2p_image_init_keys", L2PConfig(**pool, prompt_init="image", key_init="query"), {},
                label="image-initialised prompts + keys from the same images (ours)"),
        Variant("l2p_patch_embed", L2PConfig(**pool, prompt_form="image", image_tokens="pool"), {},
                label=f"image prompts through the patch embedding (pooled to L={length})"),
        Variant("vae_gen", L2PConfig(use_pool=False, generator="vae", **gen), {}, label="VAE generator prompts"),
        Variant("cls_gen", L2PConfig(use_pool=False, generator="cls", **gen), {}, label="CLS-token generator"),
        Variant("vae_gen_pool", L2PConfig(**pool, generator="vae", **gen), {}, label="VAE generator + pool"),
    ]
    for w in gen_lwf_weights:
        v.append(Variant(f"vae_gen_pool_lwf{w:g}", L2PConfig(**pool, generator="vae", **gen),
                         dict(gen_lwf_weight=float(w)), label=f"VAE generator + pool + LwF on the generator ({w:g})"))
    return {x.name: x for x in v}


def run_variant(variant: Variant, backbone, tasks, *, train_cfg, queries=None, init_images=None,
                num_classes: int | None = None, progress: bool = False):
    """Build the variant's model on ``backbone`` and run it through the task loop (or joint training).

    Returns ``(ContinualResult, Method)``; ``train_cfg`` is the base :class:`ContinualConfig`.
    """
    from .. import continual

    import time

    from ..train import Diverged

    C = num_classes or tasks[0].train.num_classes
    method = build_l2p_model(backbone, C, variant.model, init_images=init_images)
    cfg = dataclasses.replace(train_cfg, **variant.train)
    run = continual.run_joint if variant.joint else continual.run_continual
    t0 = time.perf_counter()
    try:
        res = run(method.model, tasks, backbone, cfg=cfg, name=variant.name, queries=queries, num_classes=C,
                  progress=progress)
    except Diverged:  # a NaN/inf loss: the run scores NaN (marked diverged) and the notebook goes on
        res = continual.diverged_result(variant.name, len(tasks), joint=variant.joint,
                                        seconds=time.perf_counter() - t0)
    return res, method


def split_tasks(pool, test, cfg: dict, *, seed: int):
    """The class-incremental split of ``cfg`` (``num_tasks`` tasks; class order and image subsets from ``seed``),
    keeping the first ``cfg["tasks_run"]`` tasks when that is set (a dry-run cut)."""
    from ..data.continual import class_incremental_split

    tasks = class_incremental_split(pool, test, num_tasks=cfg["num_tasks"], seed=seed,
                                    shuffle_classes=cfg["shuffle_classes"], n_train_per_class=cfg["n_train_per_class"],
                                    n_test_per_class=cfg["n_test_per_class"])
    return tasks if cfg.get("tasks_run") is None else tasks[:cfg["tasks_run"]]


# ----------------------------------------------------------------------------------------------------------
# Numbers quoted in the source (Split CIFAR-100, 10 tasks): average accuracy % / forgetting
# ----------------------------------------------------------------------------------------------------------

PAPER_NUMBERS = {
    # variant: (project's avg acc, project's forgetting, L2P-paper avg acc, L2P-paper forgetting, note)
    "seq_ft": (None, None, 33.61, 86.87, "L2P paper, FT-seq"),
    "lwf": (None, None, 60.69, 27.77, "L2P paper"),
    "joint": (None, None, None, None, "upper bound; no number in the source text"),
    "l2p": (83.86, 7.63, 83.83, 7.63, "L2P paper 83.83/7.63; DualPrompt's report 83.86/7.35; project cites 83.86/7.63"),
    "l2p_image_init": (84.3, 6.53, None, None, "project variant 2: better than L2P"),
    "l2p_image_init_keys": (None, None, None, None, "not in the source: our control for the selection analysis"),
    "l2p_patch_embed": (74.0, 11.91, None, None, "project variant 1: prompt count grows ~10x"),
    "vae_gen": (None, None, None, None, "project: harder to train, forgets (no number)"),
    "cls_gen": (None, None, None, None, "project: trains better, much lower accuracy (no number)"),
    "vae_gen_pool": (None, None, None, None, "project: best of the generator variants (no number)"),
}


def paper_numbers(name: str) -> tuple:
    if name.startswith("vae_gen_pool_lwf"):
        return (None, None, None, None, "project: less forgetting, lower new-task accuracy (no number)")
    return PAPER_NUMBERS.get(name, (None, None, None, None, ""))


def init_images(pool, *, count: int, size: int, mean, std, class_names=None, seed: int = 0) -> tuple:
    """One training image per class, for ``count`` classes (the named ones, else 0..count-1 cycling), as
    normalised model inputs (count, 3, size, size) plus the class ids used - the project initialised its 10
    prompts from 10 class images."""
    from ..data import to_model_input

    if class_names is not None:
        missing = [c for c in class_names if c not in pool.classes]
        if missing:
            raise ValueError(f"init class names {missing} not in the dataset's classes")
        ids = [pool.classes.index(c) for c in class_names]
    else:
        ids = [i % pool.num_classes for i in range(count)]
    if len(ids) != count:
        raise ValueError(f"{len(ids)} init classes for a pool of {count} prompts")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in ids:
        members = torch.nonzero(pool.labels == c).flatten()
        picks.append(members[torch.randint(len(members), (1,), generator=g)].item())
    imgs = pool.images[torch.tensor(picks)]
    return to_model_input(imgs, size=size, mean=mean, std=std), ids


@torch.no_grad()
def selection_summary(counts: torch.Tensor, *, top_k: int, prompt_class: list[int] | None = None,
                      min_share: float = 0.01) -> dict:
    """Collapse and class-prompt relation from a (classes, prompts) selection-count matrix.

    ``prompts_used``: prompts holding >= ``min_share`` of all selections (l2p#18: ~4 of 10 in the official
    code); ``top_k_share``: share of selections on the N most used prompts (1.0 = the same N for everything).
    With ``prompt_class`` (prompt m was initialised from class ``prompt_class[m]``): ``own_prompt_rate`` = how
    often a class's images select its own prompt, against ``other_class_rate``, the same prompt's rate for
    the other classes' images (no relation: equal rates).
    """
    c = counts.double()
    per_prompt = c.sum(0)
    share = per_prompt / per_prompt.sum().clamp_min(1)
    out = {"prompts_used": int((share >= min_share).sum()), "pool_size": int(c.shape[1]),
           "top_k_share": float(share.sort(descending=True).values[:top_k].sum()),
           "selection_entropy_bits": float(-(share[share > 0] * share[share > 0].log2()).sum())}
    if prompt_class is not None:
        n_img = c.sum(1) / top_k  # images per class (each image selects top_k prompts)
        own, other = [], []
        for m, cls in enumerate(prompt_class):
            if cls >= c.shape[0] or n_img[cls] == 0:
                continue
            own.append(c[cls, m] / n_img[cls])
            rest = [k for k in range(c.shape[0]) if k != cls and n_img[k] > 0]
            other.append(c[rest, m].sum() / n_img[rest].sum())
        out["own_prompt_rate"] = float(torch.stack(own).mean()) if own else float("nan")
        out["other_class_rate"] = float(torch.stack(other).mean()) if other else float("nan")
    return out


def selection_fractions(counts: torch.Tensor, top_k: int) -> torch.Tensor:
    """(classes, prompts) share of each class's images that select each prompt (rows of a top-N selection
    sum to N; 1.0 = every image of the class selects that prompt)."""
    return counts.float() / counts.sum(1, keepdim=True).clamp_min(1) * top_k


def to_image(x: torch.Tensor, mean, std):
    """A normalised (3, H, W) model input (or learned image prompt) as an H x W x 3 array in [0, 1]."""
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (x.detach().float().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()


@torch.no_grad()
def prompt_image_rows(models: dict, init_x: torch.Tensor, *, mean, std, vae_inputs: torch.Tensor | None = None):
    """Rows for :func:`vpkit.plots.image_grid`: the pool's initialisation images, the learned image prompts of
    the patch-embedding route, the image-initialised (L x d) token prompts as matrices, and the VAE
    generator's targets and outputs for ``vae_inputs``."""
    rows = [("init images", [to_image(x, mean, std) for x in init_x])]
    if "l2p_patch_embed" in models:
        rows.append(("learned image prompts", [to_image(x, mean, std) for x in models["l2p_patch_embed"].pool.prompt]))
    if "l2p_image_init" in models:
        rows.append(("image-init tokens (L x d)", [p.detach().float().cpu().numpy()
                                                   for p in models["l2p_image_init"].pool.prompt]))
    if "vae_gen_pool" in models and vae_inputs is not None:
        g = models["vae_gen_pool"].generator.eval()
        x = vae_inputs.to(next(g.parameters()).device)  # the generator sits where training left it (a GPU)
        rows.append(("VAE inputs", [to_image(t, mean, std) for t in g.target(x)]))
        rows.append(("VAE generated", [to_image(t, mean, std) for t in g.deterministic(x)]))
    return rows


def counts_from_ids(ids, labels, *, num_classes: int, pool_size: int) -> torch.Tensor:
    """(num_classes, pool_size) selection counts from the (N, top_k) ids of :func:`selected_ids` and N labels."""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.zeros(num_classes, pool_size, dtype=torch.long)
    counts.index_put_((labels[:, None].expand_as(ids).reshape(-1), ids.reshape(-1)),
                      torch.ones(ids.numel(), dtype=torch.long), accumulate=True)
    return counts


# ----------------------------------------------------------------------------------------------------------
# Running every variant over the training seeds
# ----------------------------------------------------------------------------------------------------------

KEEP = ("l2p", "l2p_image_init", "l2p_image_init_keys", "l2p_patch_embed", "vae_gen_pool")  # models the figures read


def run_all(variants: dict[str, Variant], names: list[str], *, seeds: list[int], single_seed, backbone, tasks,
            train_cfg, queries, pool, pool_size: int, init_classes=None, mean, std, num_classes: int,
            progress: bool = False, log=print) -> dict:
    """Every variant in ``names`` for every training seed (``single_seed`` variants: the first seed only), each
    seed with its own initialisation images (one per class, :func:`init_images`). Returns ``runs`` ((name, seed) ->
    ContinualResult), ``selections`` ((name, seed) -> (N, top_k) ids of :func:`selected_ids`), ``params`` (name ->
    (trainable parameters, prompt tokens)), ``models`` (first seed's models of :data:`KEEP`) and ``init`` (seed ->
    (init images, their class ids))."""
    from .. import train

    out = {"runs": {}, "selections": {}, "params": {}, "models": {}, "init": {}}
    for s in seeds:
        x0, cls0 = init_images(pool, count=pool_size, size=backbone.img_size, mean=mean, std=std,
                               class_names=init_classes, seed=s)
        out["init"][s] = (x0, cls0)
        for name in names:
            if s != seeds[0] and name in single_seed:
                continue
            train.seed_everything(s)
            r, m = run_variant(variants[name], backbone, tasks, train_cfg=dataclasses.replace(train_cfg, seed=s),
                               queries=queries, init_images=x0, num_classes=num_classes, progress=progress)
            out["runs"][name, s] = r
            out["params"][name] = (m.report.trainable, m.model.num_prompt_tokens())
            if r.diverged:
                log(f"{name:22s} seed {s}  diverged (non-finite loss): scores NaN")
                continue
            if m.model.pool is not None:
                out["selections"][name, s] = selected_ids(m.model, queries.test, batch_size=train_cfg.eval_batch_size,
                                                          shuffle=train_cfg.test_order == "mixed")
            if s == seeds[0] and name in KEEP:
                out["models"][name] = m.model
            log(f"{name:22s} seed {s}  avg {100 * r.average_accuracy:5.1f}  forgetting {100 * r.forgetting:5.1f}  "
                f"{r.seconds:5.0f}s  {r.train_images / max(sum(h.seconds for h in r.histories), 1e-9):.1f} train img/s")
    return out


# ----------------------------------------------------------------------------------------------------------
# Tables: one row per run, one per variant (mean and t-interval over seeds), the LwF sweep
# ----------------------------------------------------------------------------------------------------------

def old_task_aware_accuracy(r) -> float:
    """Task-aware accuracy (predictions over the task's own classes) on the old tasks after the last task."""
    T = r.acc_matrix.shape[0]
    if r.joint or T < 2 or r.diverged:
        return float("nan")
    return float(np.mean([r.task_aware[T - 1, j].mean() for j in range(T - 1)]))


def run_rows(runs: dict, params: dict) -> list[dict]:
    """One row per (variant, seed): average accuracy, forgetting, new-task accuracy, the old tasks' task-aware
    accuracy (all %), training images, seconds, trainable parameters, prompt tokens."""
    rows = []
    for (name, s), r in runs.items():
        rows.append({**r.row(), "method": name, "seed": s, "old_task_aware_acc": 100 * old_task_aware_accuracy(r),
                     "trainable_params": params[name][0], "prompt_tokens": params[name][1]})
    return rows


SUMMARY_METRICS = ("avg_acc", "forgetting", "new_task_acc", "old_task_aware_acc")


def metric_range(m: str) -> tuple[float, float]:
    """What metric ``m`` (in %) can be: accuracies lie in [0, 100], forgetting in [-100, 100]."""
    return (-100.0, 100.0) if m == "forgetting" else (0.0, 100.0)


def clip_interval(lo: float, hi: float, m: str) -> tuple[float, float]:
    """A t-interval's ends cut to :func:`metric_range` (over 3 seeds one can reach past 0 or 100 %); NaN stays NaN."""
    a, b = metric_range(m)
    return float(np.clip(lo, a, b)), float(np.clip(hi, a, b))


def summary_rows(run_table, variants: dict[str, Variant]) -> list[dict]:
    """One row per variant: the mean over seeds of each metric of :data:`SUMMARY_METRICS` with its 95% t-interval
    (``_lo`` / ``_hi``, :func:`vpkit.plots.interval_of_mean`, its ends clipped to what the metric can be,
    :func:`clip_interval`; a single seed has no interval), beside the source's numbers (:func:`paper_numbers`)."""
    from ..plots import interval_of_mean

    rows = []
    for name, g in run_table.groupby("method", sort=False):
        p = paper_numbers(name)
        row = {"method": name, "variant": variants[name].label if name in variants else name, "n_seeds": len(g)}
        for m in SUMMARY_METRICS:
            lo, hi = clip_interval(*interval_of_mean(g[m]), m) if len(g) > 1 else (float("nan"), float("nan"))
            row.update({m: float(g[m].mean()), f"{m}_lo": lo, f"{m}_hi": hi})
        row.update({"trainable_params": int(g.trainable_params.iloc[0]), "prompt_tokens": int(g.prompt_tokens.iloc[0]),
                    "seconds_per_run": float(g.seconds.mean()), "project_avg_acc": p[0], "project_forgetting": p[1],
                    "l2p_paper_avg_acc": p[2], "l2p_paper_forgetting": p[3], "source_note": p[4]})
        rows.append(row)
    return rows


def lwf_sweep(results, weights, *, base: str = "vae_gen_pool") -> list[tuple[str, float]]:
    """(run name, generator-LwF weight) of the sweep present in ``results`` (names, or a dict keyed by name);
    weight 0 is ``base`` itself."""
    sweep = [(base, 0.0)] + [(f"{base}_lwf{w:g}", float(w)) for w in weights]
    return [(n, w) for n, w in sweep if n in results]


def lwf_tradeoff_rows(results: dict, sweep: list[tuple[str, float]]) -> list[dict]:
    """One seed's sweep: forgetting, new-task and average accuracy (%) per generator-LwF weight."""
    return [{"gen_lwf_weight": w, "forgetting": 100 * results[n].forgetting,
             "new_task_acc": 100 * results[n].new_task_accuracy, "avg_acc": 100 * results[n].average_accuracy}
            for n, w in sweep]


def lwf_tradeoff_table(summary, sweep: list[tuple[str, float]]):
    """The sweep's rows of the variant summary (means and t-intervals over seeds) with the weight."""
    import pandas as pd

    by = summary.set_index("method")
    cols = ["n_seeds"] + [c for m in ("forgetting", "new_task_acc", "avg_acc") for c in (m, f"{m}_lo", f"{m}_hi")]
    return pd.DataFrame([{"gen_lwf_weight": w, "method": n, **by.loc[n, cols].to_dict()} for n, w in sweep])


# ----------------------------------------------------------------------------------------------------------
# Per-example outcomes and the claims' setup, as saved for claims_from_results
# ----------------------------------------------------------------------------------------------------------

SETUP_FILE = "claims_setup.json"


def outcome_arrays(runs: dict, selections: dict, labels) -> dict:
    """``{"<variant>/<kind>/seed<s>": array}`` for :meth:`vpkit.report.Results.outcomes`: ``class_il`` and
    ``task_aware`` are (rows, N) correct flags, row t = after task t (one row for joint training), columns = every
    task's test images in task order (columns of tasks not yet seen are False); ``selection`` the (N, top_k) prompt
    ids each test image selects after the last task; ``labels/test/all`` the N test labels."""
    out = {"labels/test/all": np.asarray(labels, dtype=np.int16)}
    for (name, s), r in runs.items():
        if r.diverged:  # no outcomes: the claims that read this run are left out
            continue
        rows = r.acc_matrix.shape[0]
        T = r.acc_matrix.shape[1]
        sizes = [len(r.correct[rows - 1, j]) for j in range(T)]
        for kind, flags in (("class_il", r.correct), ("task_aware", r.task_aware)):
            a = np.zeros((rows, sum(sizes)), dtype=bool)
            for (t, j), f in flags.items():
                a[t, sum(sizes[:j]):sum(sizes[:j + 1])] = f
            out[f"{name}/{kind}/seed{s}"] = a
    for (name, s), ids in selections.items():
        out[f"{name}/selection/seed{s}"] = np.asarray(ids, dtype=np.int16)
    return out


def claims_setup(tasks, cfg: dict, *, sweep, prompt_class, num_classes: int) -> dict:
    """What :func:`claims_from_results` needs besides the outcomes (``claims_setup.json``)."""
    return {"num_tasks": len(tasks), "task_sizes": [len(t.test) for t in tasks], "seeds": list(cfg["seeds"]),
            "top_k": cfg["top_k"], "pool_size": cfg["pool_size"], "length": cfg["length"],
            "selection": cfg["selection"], "sweep": [[n, w] for n, w in sweep], "prompt_class": list(prompt_class),
            "num_classes": num_classes, "task_classes": [list(t.classes) for t in tasks]}


# ----------------------------------------------------------------------------------------------------------
# The claims, from saved results alone
# ----------------------------------------------------------------------------------------------------------

# Fixed before any run (issue 16): the comparisons' thresholds. Accuracies are fractions here; decisions are
# reported in percentage points (Decision.scaled).
CLAIM_RULES = {
    "noninferiority_margin": 0.02,  # image init ">=" L2P: at most 2 points below
    "l2p_over_ft_by": 0.20,  # L2P ">>" sequential fine-tuning: by more than 20 points
}
GENERATOR_PREFIXES = ("vae_gen", "cls_gen")


def _stack(out: dict, name: str, kind: str, seeds) -> np.ndarray | None:
    """(seeds, ...) array of one variant's saved outcomes, or None unless every claim seed is there."""
    keys = [f"{name}/{kind}/seed{s}" for s in seeds]
    if not all(k in out for k in keys):
        return None
    return np.stack([np.asarray(out[k]) for k in keys])


def _columns(sizes) -> list[slice]:
    edges = np.cumsum([0, *sizes])
    return [slice(int(edges[j]), int(edges[j + 1])) for j in range(len(sizes))]


def _weighted(parts: list[np.ndarray], sizes) -> np.ndarray:
    """Concatenate per-task (seeds, n_j) outcome blocks, each weighted so that the mean over all columns is the
    unweighted mean over tasks of the task means (average accuracy over tasks, whatever the task sizes)."""
    total, k = sum(sizes), len(sizes)
    return np.concatenate([p.astype(float) * total / (k * n) for p, n in zip(parts, sizes)], axis=1)


def final_row_examples(a: np.ndarray, sizes) -> np.ndarray:
    """(seeds, N) per-example outcomes whose mean is the average accuracy (last row of the accuracy matrix)."""
    return _weighted([a[:, -1, c] for c in _columns(sizes)], sizes)


def new_task_examples(a: np.ndarray, sizes) -> np.ndarray:
    """(seeds, N) per-example outcomes whose mean is the new-task accuracy (mean of the diagonal)."""
    return _weighted([a[:, j, c] for j, c in enumerate(_columns(sizes))], sizes)


def forgetting_examples(a: np.ndarray, sizes) -> np.ndarray:
    """(seeds, N_old) per-example differences whose mean is the forgetting of :func:`vpkit.metrics.forgetting`,
    averaged over seeds: for each seed and old task j the step t* < T-1 with the highest accuracy on j is taken
    from the run (ties: the earliest), then each example contributes correct(after t*) - correct(after T-1). The
    bootstrap keeps t* fixed (a plug-in; it does not re-maximise per resample)."""
    S, T, _ = a.shape
    cols = _columns(sizes)[:T - 1]
    parts = []
    for j, c in enumerate(cols):
        best = np.array([int(np.argmax([a[s, t, c].mean() for t in range(T - 1)])) for s in range(S)])
        parts.append(a[np.arange(S), best][:, c].astype(float) - a[:, T - 1, c])
    return _weighted(parts, sizes[:T - 1])


def old_task_examples(a: np.ndarray, sizes) -> np.ndarray:
    """(seeds, N_old) last-row outcomes of the old tasks (j < T-1), weighted to their mean over tasks."""
    T = a.shape[1]
    return _weighted([a[:, T - 1, c] for c in _columns(sizes)[:T - 1]], sizes[:T - 1])


def top_k_share_examples(sel: np.ndarray, pool_size: int) -> np.ndarray:
    """(seeds, N): for each test image, the share of its top-N selections that fall on its seed's N most used
    prompts (ties: lower id). The mean is the top-N share: 1 = every image selects the same N prompts (complete
    collapse), N/M = uniform use. The most used set is fixed per seed from the run (a plug-in)."""
    S, N, K = sel.shape
    out = np.zeros((S, N))
    for s in range(S):
        counts = np.bincount(sel[s].ravel(), minlength=pool_size)
        top = np.argsort(-counts, kind="stable")[:K]
        out[s] = np.isin(sel[s], top).sum(1) / K
    return out


def own_prompt_examples(sel: np.ndarray, labels: np.ndarray, prompt_class, num_classes: int) -> np.ndarray:
    """(seeds, N): [image selects the prompt initialised from its class] - (its selections of the other classes'
    prompts) / (C - 1); the mean is the own-class rate minus the other-class rate of :func:`selection_summary`
    when every class has one prompt. Images of classes without a prompt count 0."""
    S, N, K = sel.shape
    own = {c: m for m, c in enumerate(prompt_class)}
    out = np.zeros((S, N))
    for i, y in enumerate(labels):
        if int(y) not in own:
            continue
        hit = (sel[:, i] == own[int(y)]).any(1).astype(float)
        out[:, i] = hit - (K - hit) / (num_classes - 1)
    return out


def claims_from_results(results_dir) -> list:
    """Every claim of notebook 05, decided from ``outcomes.npz`` and ``claims_setup.json`` in ``results_dir``
    alone (what the notebook wrote before it called this)."""
    from ..report import load_outcomes

    d = Path(results_dir)
    setup = json.loads((d / SETUP_FILE).read_text())
    return decide_claims(load_outcomes(d), setup)


def _pct(x: np.ndarray) -> str:
    return f"{100 * x.mean():.1f}"


def decide_claims(out: dict, setup: dict) -> list:
    """The source's conclusions (and L2P's), each with its comparison fixed here and its verdict from the 95%
    interval of :mod:`vpkit.stats` (hierarchical bootstrap over the training seeds, then the shared test images,
    pairs kept; a paired bootstrap over test images for one seed). A claim whose runs are missing is left out."""
    from ..report import Claim

    seeds, sizes, T = setup["seeds"], setup["task_sizes"], setup["num_tasks"]
    K, M = setup["top_k"], setup["pool_size"]
    S = len(seeds)
    names = sorted({k.split("/")[0] for k in out if "/class_il/" in k})
    A = {n: a for n in names if (a := _stack(out, n, "class_il", seeds)) is not None and a.shape[1] == T}
    TA = {n: a for n in A if (a := _stack(out, n, "task_aware", seeds)) is not None}
    avg = {n: final_row_examples(a, sizes) for n, a in A.items()}
    seeds_txt = f"{S} seed{'s' * (S > 1)}"
    claims = []

    def vs(a, b):
        return f"{_pct(a)} vs {_pct(b)} ({seeds_txt})"

    if {"l2p", "l2p_image_init"} <= set(A):
        m = CLAIM_RULES["noninferiority_margin"]
        claims.append(Claim(
            "image_init_ge_l2p", f"image-initialised prompts (no patch embedding) are at least as accurate as "
            f"random-initialised L2P: average accuracy at most {100 * m:g} points below (non-inferiority)",
            "84.3 vs 83.86 (the source project's figures, Split CIFAR-100; "
            "the L2P paper itself reports 83.83)", vs(avg["l2p_image_init"], avg["l2p"]),
            note="image init - L2P, average accuracy; same seeds, splits and key initialisation",
            decision=stats.compare(avg["l2p_image_init"], avg["l2p"], direction=">", threshold=-m).scaled()))
    if {"l2p", "l2p_patch_embed"} <= set(A):
        claims.append(Claim(
            "patch_embed_lt_l2p", "image prompts through the patch embedding are less accurate than L2P (average "
            "accuracy)", "74 vs 83.86 (the source project's figures, Split CIFAR-100; "
            "the L2P paper itself reports 83.83)", vs(avg["l2p_patch_embed"], avg["l2p"]),
            note=f"patch embedding - L2P; prompt count kept at L={setup['length']} per prompt by pooling patch tokens",
            decision=stats.compare(avg["l2p_patch_embed"], avg["l2p"], direction="<").scaled()))
    sweep = [(n, w) for n, w in setup["sweep"] if n in A]
    if len(sweep) > 1:
        (n0, _), (nw, w) = sweep[0], max(sweep[1:], key=lambda nw_: nw_[1])
        f0, fw = forgetting_examples(A[n0], sizes), forgetting_examples(A[nw], sizes)
        claims.append(Claim(
            "gen_lwf_lowers_forgetting", f"LwF on the generator (the sweep's largest weight, {w:g}) lowers "
            "forgetting", "less forgetting (no figure in the source)", vs(fw, f0),
            note=f"{nw} - {n0}, forgetting (points)", decision=stats.compare(fw, f0, direction="<").scaled()))
        t0, tw = new_task_examples(A[n0], sizes), new_task_examples(A[nw], sizes)
        claims.append(Claim(
            "gen_lwf_lowers_new_task_acc", f"LwF on the generator (weight {w:g}) lowers new-task accuracy (mean of "
            "the accuracy-matrix diagonal)", "lower accuracy on new tasks (no figure in the source)", vs(tw, t0),
            note=f"{nw} - {n0}, new-task accuracy", decision=stats.compare(tw, t0, direction="<").scaled()))
    if {"lwf", "seq_ft"} <= set(A) and T > 1:
        fl, ff = forgetting_examples(A["lwf"], sizes), forgetting_examples(A["seq_ft"], sizes)
        old_l, old_f = old_task_examples(A["lwf"], sizes), old_task_examples(A["seq_ft"], sizes)
        if not old_l.any() and not old_f.any():
            dec = stats.not_testable(
                "both runs keep 0% of every old task after the last task on every seed (the class-incremental "
                "floor), so their forgetting equals their new-task accuracy and the difference measures plasticity, "
                "not forgetting; the task-aware claim lwf_keeps_more_task_aware_acc compares what they retain")
        else:
            dec = stats.compare(fl, ff, direction="<").scaled()
        claims.append(Claim(
            "lwf_lowers_forgetting_vs_ft", "LwF forgets less than sequential fine-tuning (class-incremental "
            "forgetting)", "27.77 vs 86.87 (L2P paper, forgetting %)", vs(fl, ff),
            note=f"LwF - fine-tuning, forgetting; old tasks after the last task: {_pct(old_l)} vs {_pct(old_f)} %",
            decision=dec))
        if {"lwf", "seq_ft"} <= set(TA):
            al, af = old_task_examples(TA["lwf"], sizes), old_task_examples(TA["seq_ft"], sizes)
            k = len(setup["task_classes"][0])
            claims.append(Claim(
                "lwf_keeps_more_task_aware_acc", "given the task id, LwF keeps more of the old tasks than sequential "
                "fine-tuning (task-aware accuracy on the old tasks after the last task)",
                "no task-aware figure in the L2P paper (class-incremental only: forgetting 27.77 vs 86.87)", vs(al, af),
                note=f"LwF - fine-tuning; predictions restricted to each task's {k} classes (chance {100 / k:.0f}%); "
                     "LwF distils the old classes' logits, which is what task-aware accuracy reads",
                decision=stats.compare(al, af, direction=">").scaled()))
    if {"l2p", "seq_ft"} <= set(A):
        by = CLAIM_RULES["l2p_over_ft_by"]
        claims.append(Claim(
            "l2p_much_better_than_ft", f"L2P >> sequential fine-tuning (average accuracy, by more than {100 * by:g} "
            "points)", "83.83 vs 33.61 (L2P paper)", vs(avg["l2p"], avg["seq_ft"]), note="L2P - fine-tuning",
            decision=stats.compare(avg["l2p"], avg["seq_ft"], direction=">", threshold=by).scaled()))
    sel_l2p = _stack(out, "l2p", "selection", seeds)
    if sel_l2p is not None:
        v = top_k_share_examples(sel_l2p.astype(int), M)
        thr = (1 + K / M) / 2
        used = np.mean([(np.bincount(x.ravel(), minlength=M) / x.size >= 0.01).sum() for x in sel_l2p.astype(int)])
        claims.append(Claim(
            "l2p_selection_collapse", f"L2P's prompt selection collapses onto a few prompts: the top-{K} most used of "
            f"{M} prompts take more than {100 * thr:.0f}% of all selections (halfway from uniform use, {100 * K / M:.0f}"
            "%, to complete collapse, 100%)", "4 of 10 prompts used (prompts 3, 6, 7, 9) in a re-run of the official "
            "code (google-research/l2p issue #18); not a figure of the L2P paper",
            f"top-{K} share {100 * v.mean():.1f}%; {used:.1f} of {M} prompts hold >= 1% ({seeds_txt})",
            note=f"{setup['selection']} selection on every test image after the last task",
            decision=dataclasses.replace(stats.compare(v, direction=">", threshold=thr).scaled(100, "%"),
                                         unit="% of selections")))
    sel_ii = _stack(out, "l2p_image_init", "selection", seeds)
    if sel_ii is not None:
        labels = np.asarray(out["labels/test/all"])
        d = own_prompt_examples(sel_ii.astype(int), labels, setup["prompt_class"], setup["num_classes"])
        same = ""
        if sel_l2p is not None:
            eq = (np.sort(sel_ii, axis=-1) == np.sort(sel_l2p, axis=-1)).all(-1)
            same = f"; selections identical to L2P's on {100 * eq.mean():.0f}% of test images"
        claims.append(Claim(
            "no_class_prompt_relation", "classes do not preferentially select the prompt initialised from their image",
            "no relation found (no figure in the source)",
            f"own-class minus other-class selection rate {d.mean():+.2f} ({seeds_txt}){same}",
            decision=stats.not_testable(
                "impossible by construction: the keys, which alone decide the selection, learn only from the pull "
                "term (query vs key) and never see the prompts, so the image a prompt was initialised from cannot "
                "steer which images select it (only the shared gradient-clipping scale couples them); the control "
                "l2p_image_init_keys, whose keys start at those images' queries, shows a built-in relation")))
    gens = [n for n in A if n.startswith(GENERATOR_PREFIXES)]
    if gens and "l2p" in A:
        ds = {g: stats.compare(avg["l2p"], avg[g], direction=">").scaled() for g in gens}
        claims.append(Claim(
            "generators_underperform", f"every generator variant ({', '.join(gens)}) is below L2P (average accuracy)",
            "generators underperformed (no figure in the source)",
            f"L2P {_pct(avg['l2p'])} vs " + ", ".join(f"{g} {_pct(avg[g])}" for g in gens) + f" ({seeds_txt})",
            note="L2P - each generator variant", decision=stats.every(ds, what="every generator variant")))
    solo = [n for n in ("vae_gen", "cls_gen") if n in A]
    if solo and "vae_gen_pool" in A:
        ds = {g: stats.compare(avg["vae_gen_pool"], avg[g], direction=">").scaled() for g in solo}
        claims.append(Claim(
            "gen_pool_best_generator", "generator + pool beats each generator-only variant (average accuracy)",
            "best generator variant (no figure in the source)",
            f"{_pct(avg['vae_gen_pool'])} vs " + ", ".join(f"{g} {_pct(avg[g])}" for g in solo) + f" ({seeds_txt})",
            note="vae_gen_pool - each generator-only variant",
            decision=stats.every(ds, what="every generator-only variant")))
    return claims


# ----------------------------------------------------------------------------------------------------------
# Figures of notebook 05 (colours: one per variant in every figure)
# ----------------------------------------------------------------------------------------------------------

# The project-wide colours (vpkit.plots.method_color) of the methods it knows (fine-tuning, LwF, L2P); the project's
# own variants get fixed colours of their own (the hash fallback would give two of them the same colour).
VARIANT_COLORS = {"joint": "#3b3b3b", "l2p_image_init": "#1f9e89", "l2p_image_init_keys": "#8fd175",
                  "l2p_patch_embed": "#17becf", "vae_gen": "#ff7f0e", "cls_gen": "#bcbd22",
                  "vae_gen_pool": "#e377c2", "vae_gen_pool_lwf1": "#b5338a", "vae_gen_pool_lwf10": "#6a1b5d"}
METHOD_ALIASES = {"seq_ft": "ft"}  # names vpkit.plots.METHOD_COLORS knows this method by


def variant_color(name: str) -> str:
    from ..plots import method_color

    return VARIANT_COLORS.get(name) or method_color(METHOD_ALIASES.get(name, name))


def mean_matrices(runs: dict) -> dict:
    """name -> (seed-mean accuracy matrix, number of seeds, joint?)."""
    by: dict = {}
    for (name, _), r in runs.items():
        by.setdefault(name, []).append(r)
    return {n: (np.mean([r.acc_matrix for r in rs], axis=0), len(rs), rs[0].joint) for n, rs in by.items()}


def accuracy_matrices_figure(runs: dict, summary, *, max_cols: int = 4):
    """Every variant's accuracy matrix (mean over its seeds; row = after task t, column = task), titled with the
    mean average accuracy and forgetting over seeds; joint training has one row (tested once, after training on
    all tasks)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    mats = mean_matrices(runs)
    by = summary.set_index("method")
    n = len(mats)
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.9 * rows), squeeze=False)
    for ax, (name, (a, k, joint)) in zip(axes.flat, mats.items()):
        a = 100 * a
        mask = np.zeros_like(a, dtype=bool) if joint else np.triu(np.ones_like(a, dtype=bool), 1)
        sns.heatmap(a, mask=mask, vmin=0, vmax=100, annot=a.shape[1] <= 6, fmt=".0f", cmap="viridis", cbar=False,
                    ax=ax, annot_kws={"size": 7}, xticklabels=range(1, a.shape[1] + 1),
                    yticklabels=["all"] if joint else range(1, a.shape[0] + 1))
        r = by.loc[name]
        fg = "" if joint else f", forgetting {r.forgetting:.0f}"
        ax.set_title(f"{name}\navg {r.avg_acc:.0f}{fg} ({k} seed{'s' * (k > 1)})", fontsize=8)
        ax.set_xlabel("task")
        ax.set_ylabel("trained on" if joint else "after task")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Accuracy (%) on each task, mean over seeds", y=1.0, fontsize=10)
    fig.tight_layout()
    return fig


def _err(df, m):
    """Error-bar lengths of column ``m`` from its ``_lo``/``_hi`` interval, clipped to what the metric can be (a
    t-interval over 3 seeds can reach past 0 or 100 %: accuracies lie in [0, 100], forgetting in [-100, 100])."""
    floor, top = metric_range(m)
    lo = np.clip(df[f"{m}_lo"].to_numpy(float), floor, top)
    hi = np.clip(df[f"{m}_hi"].to_numpy(float), floor, top)
    mid = df[m].to_numpy(float)
    return np.nan_to_num(np.vstack([mid - lo, hi - mid]), nan=0.0)


def average_accuracy_figure(summary, *, num_classes: int):
    """Average accuracy and forgetting of every variant: mean over seeds with the 95% interval of the mean (error
    bars; none for single-seed runs), the source's own numbers on Split CIFAR-100 as reference marks (compare
    orderings: the scale differs), and chance for average accuracy (1 / classes)."""
    import matplotlib.pyplot as plt

    df = summary.reset_index(drop=True)
    y = np.arange(len(df))[::-1]
    colors = [variant_color(n) for n in df.method]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.38 * len(df) + 1.6), sharey=True)
    for ax, m, proj, l2p, title in ((axes[0], "avg_acc", "project_avg_acc", "l2p_paper_avg_acc", "average accuracy (%)"),
                                    (axes[1], "forgetting", "project_forgetting", "l2p_paper_forgetting",
                                     "forgetting (%)")):
        v = df[m].to_numpy(float)
        ax.barh(y, np.nan_to_num(v), xerr=_err(df, m), color=colors, alpha=0.85, error_kw={"lw": 1, "capsize": 2})
        ax.scatter(df[proj], y, marker="D", s=28, facecolor="white", edgecolor="black", zorder=3,
                   label="source: the image-prompt project on L2P (Split CIFAR-100 10x10)")
        ax.scatter(df[l2p], y, marker="|", s=120, color="black", zorder=3, label="L2P paper (Split CIFAR-100 10x10)")
        ax.set_xlabel(title)
        if m == "forgetting":  # can be negative (training a later task helped an earlier one): show those bars whole
            low = float(np.nanmin(np.concatenate([[0.0], np.nan_to_num(v) - _err(df, m)[0]])))
            ax.set_xlim(min(0.0, low - 3), 100)
            if low < 0:
                ax.axvline(0, color="black", lw=0.8)
        else:
            ax.set_xlim(0, 100)
    axes[0].axvline(100 / num_classes, color="grey", ls=":", lw=1.2, label=f"chance (1/{num_classes} classes)")
    axes[0].set_yticks(y, [f"{n} ({k})" for n, k in zip(df.method, df.n_seeds)], fontsize=8)
    axes[0].set_ylabel("variant (seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle("Ours: Split Fashion-MNIST 5x2, mean over seeds with 95% interval of the mean", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


TRADEOFF_LABELS = {"forgetting": "forgetting", "new_task_acc": "new-task accuracy", "avg_acc": "average accuracy"}


def lwf_tradeoff_figure(trade, *, num_classes: int):
    """Forgetting, new-task and average accuracy (%) against the generator-LwF weight: mean over seeds with the 95%
    interval of the mean (clipped to what the metric can be), the three metrics set slightly apart so their bars do
    not hide each other. The source gives no numbers for this sweep. (A second panel of new-task accuracy against
    forgetting showed the same three means, all overlapping, with bars spanning most of both axes: nothing the
    table does not say, so it is gone.)"""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    pos = np.arange(len(trade), dtype=float)
    styles = {"forgetting": ("o", "-", -0.1), "new_task_acc": ("s", "--", 0.0), "avg_acc": ("^", "-.", 0.1)}
    for m, (mk, ls, dx) in styles.items():
        ax.errorbar(pos + dx, trade[m], yerr=_err(trade, m), marker=mk, ls=ls, color="0.25", capsize=3,
                    label=TRADEOFF_LABELS[m])
    ax.axhline(100 / num_classes, color="grey", ls=":", lw=1.2, label=f"chance, average accuracy (1/{num_classes})")
    ax.set_xticks(pos, [f"{w:g}\n({n})" for w, n in zip(trade.gen_lwf_weight, trade.method)], fontsize=8)
    ax.set_xlim(pos[0] - 0.4, pos[-1] + 0.4)
    low = min(0.0, *(trade[m].to_numpy(float) - _err(trade, m)[0]).tolist())  # forgetting can be negative
    ax.set_ylim(low - 3, 103)  # room for the caps of bars clipped at 0 / 100 %
    ax.set_xlabel("LwF weight on the generator (run)")
    ax.set_ylabel("%")
    seeds = sorted({int(k) for k in trade.n_seeds if np.isfinite(k)})
    ax.set_title(f"mean over {'/'.join(map(str, seeds))} seeds, 95% interval of the mean", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def selection_figure(counts: dict, *, top_k: int, class_names: list[str], seen: list[int], init_cls: list[int],
                     seed: int):
    """The class x prompt selection-frequency heatmaps of the pools (one seed), with full class names."""
    from ..plots import selection_heatmaps

    sel = {n: selection_summary(k, top_k=top_k) for n, k in counts.items()}
    fig = selection_heatmaps({n: selection_fractions(k, top_k)[seen] for n, k in counts.items()},
                             row_labels=[class_names[c] for c in seen], col_labels=[class_names[c] for c in init_cls],
                             titles={n: f"{n} (seed {seed})\ntop-{top_k} share {s['top_k_share']:.2f}, "
                                        f"{s['prompts_used']} of {k.shape[1]} prompts used"
                                     for (n, s), k in zip(sel.items(), counts.values())})
    fig.set_size_inches(4.3 * len(counts), 4.6)
    for ax in fig.axes[:len(counts)]:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.tick_params(axis="y", labelrotation=0, labelsize=7)
        ax.set_ylabel("test images of class")
    fig.tight_layout()
    return fig

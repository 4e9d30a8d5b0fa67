"""Class-incremental continual learning: the task loop around :func:`vpkit.train.fit`.

Task splits and batches: :mod:`vpkit.data.continual`.

Protocol (L2P, Wang et al. CVPR 2022, Sec. 4.1): tasks arrive in sequence, each with new classes; there is no
task id at test time. After training task ``t`` the model is tested on every task ``j <= t`` and the
accuracy matrix ``A[t, j]`` is filled (row = after task t, column = task); the upper triangle is 0 by
definition (classes not seen yet cannot be predicted: predictions range over the classes seen so far).
Average accuracy and forgetting come from :mod:`vpkit.metrics`. Every evaluation also keeps its per-example
outcomes (:attr:`ContinualResult.correct`, and the task-aware ones in :attr:`ContinualResult.task_aware`), so
intervals can be computed over test examples (:mod:`vpkit.stats`).

Models plug in by duck typing, not by subclassing a trainer: a model maps a
:class:`vpkit.data.continual.Batch` (or a plain image tensor) to logits over all classes, and may offer
``forward_parts(batch)`` returning an object with ``logits`` and optional ``aux_loss`` (e.g. L2P's pull term, a
generator's ELBO) and ``gen_out`` plus a ``generator`` module (for LwF on a generator). Frozen per-image
quantities (the L2P query, LwF teacher logits) are computed once and travel with the batch, which is valid
without augmentation (the offline default); with ``augment=True`` (the official L2P inputs) the query is computed
per augmented view in the forward pass and LwF teachers come from a frozen copy of the model.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .data import ImageSet
from .data.continual import BatchLoader, Task
from .device import autocast, resolve_device
from .train import SCHEDULES, fit

TRAIN_MASKS = ("task", "seen")
TEST_ORDERS = ("mixed", "by_class")
TEST_ORDER_SEED = 1234  # the fixed permutation of every task's test set under test_order="mixed"


# ----------------------------------------------------------------------------------------------------------
# Frozen outputs computed once
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def outputs(fn, loader, *, device: str = "auto", amp: bool = False) -> torch.Tensor:
    """Concatenated ``fn(batch)`` over a loader (no grad, model in eval mode beforehand)."""
    dev = resolve_device(device)
    outs = []
    for x, _ in loader:
        with autocast(dev, amp):
            outs.append(fn(x.to(dev)).float().cpu())
    return torch.cat(outs)


@dataclass
class QueryCache:
    """Frozen CLS queries of every task's train and test images (L2P Sec. 3.3: ``q(x)`` = the frozen
    pretrained model's CLS feature), computed once and shared by every run on the same backbone."""

    train: list[torch.Tensor] | None  # None when not cached (augmented training computes the query per view)
    test: list[torch.Tensor]


def cache_queries(backbone, tasks: list[Task], *, batch_size: int = 64, amp: bool = False,
                  device: str = "auto", normalize: bool = True, train: bool = True,
                  crop_pct: float | None = None) -> QueryCache:
    """``backbone.features`` (pooled CLS, pre-logits) of every test image of ``tasks`` and, with ``train``, of every
    train image (with augmented training the train queries are computed per view, so caching them is wasted
    work: 50,000 ViT-B passes on Split CIFAR-100). ``normalize`` / ``crop_pct`` must be the evaluation's inputs
    (:class:`vpkit.data.continual.BatchLoader`). Batches are resized on ``device`` and the queries come back on the
    CPU."""
    backbone.model.to(resolve_device(device)).eval()
    f = lambda b: backbone.features(b.images)  # noqa: E731
    mk = lambda ds: BatchLoader(ds, batch_size=batch_size, size=backbone.img_size, mean=backbone.mean,  # noqa: E731
                                std=backbone.std, normalize=normalize, crop_pct=crop_pct, device=device)
    return QueryCache([outputs(f, mk(t.train), amp=amp, device=device) for t in tasks] if train else None,
                      [outputs(f, mk(t.test), amp=amp, device=device) for t in tasks])


# ----------------------------------------------------------------------------------------------------------
# The task loop
# ----------------------------------------------------------------------------------------------------------

@dataclass
class ContinualConfig:
    """Training settings of one continual run (defaults: the L2P PyTorch port, Split CIFAR-100)."""

    epochs: int = 5
    batch_size: int = 16
    lr: float = 0.03 * 16 / 256  # L2P: 0.03 * batch / 256
    optimizer: str = "adam"
    weight_decay: float = 0.0
    train_mask: str = "task"  # "task": L2P's mask of logits outside the current task; "seen": all seen classes
    lwf_weight: float = 0.0  # LwF (Li & Hoiem 2017) distillation of old-class logits
    lwf_temperature: float = 2.0
    gen_lwf_weight: float = 0.0  # LwF on a generator: MSE to the previous task's generator outputs
    amp: bool = False
    seed: int = 0
    # the official optimisation (l2p-pytorch configs/cifar100_l2p.py): constant lr, gradients clipped to norm 1
    schedule: str = "constant"
    grad_clip: float | None = 1.0
    # the official evaluation: each task's test set in dataset order (classes interleaved) in batches of 16, so
    # the batch-wise prompt vote (selection="batch") sees many classes; "by_class" = class blocks (a label leak
    # for batch-wise selection)
    eval_batch_size: int = 16
    test_order: str = "mixed"
    # the official inputs are [0, 1] images with RandomResizedCrop(0.05-1) + flip; vpkit's offline profile keeps
    # normalised, un-augmented inputs so that the frozen queries are computed once per image (a deliberate
    # difference); augment=True computes the query of every augmented view in the forward pass instead
    normalize: bool = True
    augment: bool = False
    # the official test transform, Resize(224 / crop_pct) + CenterCrop(224) with crop_pct = 224 / 256 (l2p-pytorch
    # datasets.py); None (offline) resizes straight to the model's size. Applies to every un-augmented batch
    eval_crop_pct: float | None = None

    def __post_init__(self):
        if self.train_mask not in TRAIN_MASKS:
            raise ValueError(f"train_mask={self.train_mask!r}; allowed: {TRAIN_MASKS}")
        if self.test_order not in TEST_ORDERS:
            raise ValueError(f"test_order={self.test_order!r}; allowed: {TEST_ORDERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; allowed: {SCHEDULES}")

        for k in ("lwf_weight", "gen_lwf_weight"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k}={getattr(self, k)} must be >= 0")
        if self.lwf_temperature <= 0:
            raise ValueError(f"lwf_temperature={self.lwf_temperature} must be > 0")


@dataclass
class ContinualResult:
    name: str
    acc_matrix: np.ndarray  # T x T (or 1 x T for joint training)
    seconds: float
    train_images: int
    histories: list = field(default_factory=list)
    joint: bool = False
    # per-example outcomes of every evaluation, in each task's dataset order: (t, j) -> bool array of task j's test
    # examples after task t; ``correct`` over the classes seen so far (class-incremental, what acc_matrix averages),
    # ``task_aware`` over task j's own classes (the task id given: task-incremental accuracy)
    correct: dict = field(default_factory=dict)
    task_aware: dict = field(default_factory=dict)
    # train.fit raised train.Diverged (a NaN/inf loss): the accuracy matrix is NaN and there are no outcomes
    diverged: bool = False

    @property
    def average_accuracy(self) -> float:
        return metrics.average_accuracy(self.acc_matrix)

    @property
    def forgetting(self) -> float:
        return float("nan") if self.joint else metrics.forgetting(self.acc_matrix)

    @property
    def new_task_accuracy(self) -> float:
        return float("nan") if self.joint else new_task_accuracy(self.acc_matrix)

    def row(self) -> dict:
        return {"method": self.name, "avg_acc": 100 * self.average_accuracy, "forgetting": 100 * self.forgetting,
                "new_task_acc": 100 * self.new_task_accuracy, "train_images": self.train_images,
                "seconds": round(self.seconds, 1), "diverged": self.diverged}


def diverged_result(name: str, num_tasks: int, *, joint: bool = False, seconds: float = float("nan")
                    ) -> ContinualResult:
    """What a run whose :func:`vpkit.train.fit` raised :class:`vpkit.train.Diverged` scores: a NaN accuracy
    matrix (so average accuracy and forgetting are NaN), no per-example outcomes, ``diverged=True``; the notebook
    goes on (the same rule as every study)."""
    rows = 1 if joint else num_tasks
    return ContinualResult(name, np.full((rows, num_tasks), np.nan), seconds, 0, joint=joint, diverged=True)


def new_task_accuracy(acc_matrix) -> float:
    """Mean of the diagonal: accuracy on each task right after learning it (plasticity)."""
    a = np.asarray(acc_matrix, dtype=float)
    return float(np.mean(np.diag(a)))


def class_mask(classes, num_classes: int, device=None) -> torch.Tensor:
    m = torch.zeros(num_classes, dtype=torch.bool, device=device)
    m[torch.as_tensor(list(classes), dtype=torch.long, device=device)] = True
    return m


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """L2P's train-time mask: logits of classes outside ``allowed`` (bool, num_classes) become -inf."""
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def _forward_parts(model, x):
    if hasattr(model, "forward_parts"):
        return model.forward_parts(x)
    return _Plain(model(x))


@dataclass
class _Plain:
    logits: torch.Tensor
    aux_loss: torch.Tensor | float = 0.0
    gen_out: torch.Tensor | None = None


def lwf_loss(logits: torch.Tensor, teacher: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """LwF distillation on the old classes: T^2 * KL(softmax(teacher/T) || softmax(logits/T))."""
    t = temperature
    s = F.log_softmax(logits[:, old] / t, dim=-1)
    p = F.softmax(teacher[:, old] / t, dim=-1)
    return F.kl_div(s, p, reduction="batchmean") * t * t


def make_loss(*, current: torch.Tensor, seen: torch.Tensor, cfg: ContinualConfig, old: torch.Tensor | None,
              old_generator: nn.Module | None, teacher_model: nn.Module | None = None):
    """``loss_fn(model, batch, y) -> (loss, logits)`` for :func:`vpkit.train.fit`: masked cross-entropy
    + the model's auxiliary loss (pull term, generator loss) + optional LwF terms. LwF teachers come cached in
    the batch or, with augmentation, from ``teacher_model`` (a frozen copy) on the same augmented view."""

    def loss_fn(model, x, y):
        out = _forward_parts(model, x)
        logits = out.logits.float()
        allowed = current if cfg.train_mask == "task" else seen
        masked = mask_logits(logits, allowed)
        loss = F.cross_entropy(masked, y) + out.aux_loss
        if cfg.lwf_weight and old is not None and old.any():
            teacher = x.teacher
            if teacher is None and teacher_model is not None:
                with torch.no_grad():
                    teacher = teacher_model(x).float()
            if teacher is None:
                raise ValueError("lwf_weight > 0 needs cached teacher logits in the batch or a teacher_model")
            loss = loss + cfg.lwf_weight * lwf_loss(logits, teacher, old, cfg.lwf_temperature)
        if cfg.gen_lwf_weight and old_generator is not None:
            with torch.no_grad():
                target = old_generator.deterministic(model.generator_input(x))
            loss = loss + cfg.gen_lwf_weight * F.mse_loss(out.gen_out.float(), target.float())
        return loss, masked
    return loss_fn


@torch.no_grad()
def evaluate_task_outcomes(model, loader, seen: torch.Tensor, task_classes: torch.Tensor | None = None, *,
                           amp: bool = False, device: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-example outcomes of one task's test set, in the dataset's order (whatever order the loader feeds):
    ``correct`` with predictions restricted to the classes seen so far (no task id: class-incremental), and, with
    ``task_classes`` (bool mask of the task's classes), ``task_aware`` with predictions restricted to the task's
    own classes (the task id given: task-incremental). One forward pass serves both. In a paper-shape dry run
    (:mod:`vpkit.dryrun`) only the first :data:`vpkit.dryrun.MAX_EVAL_BATCHES` batches are tested (the rest count as
    wrong), as every prediction pass there."""
    from . import dryrun
    from .data import batch_indices

    dev = resolve_device(device)
    model.eval()
    n = len(loader.ds)
    order = torch.cat(list(batch_indices(n, loader.batch_size, shuffle=loader.shuffle, seed=loader.seed,
                                         epoch=loader._epoch))) if n else torch.zeros(0, dtype=torch.long)
    flags, aware = [], []
    for i, (x, y) in enumerate(loader):
        if dryrun.active() and i >= dryrun.MAX_EVAL_BATCHES:
            break
        with autocast(dev, amp):
            logits = model(x.to(dev)).float().cpu()
        flags.append(mask_logits(logits, seen.cpu()).argmax(-1) == y)
        if task_classes is not None:
            aware.append(mask_logits(logits, task_classes.cpu()).argmax(-1) == y)
    correct = torch.zeros(n, dtype=torch.bool)
    task_aware = torch.zeros(n, dtype=torch.bool) if task_classes is not None else None
    if flags:
        done = order[:sum(len(f) for f in flags)]
        correct[done] = torch.cat(flags)
        if task_aware is not None:
            task_aware[done] = torch.cat(aware)
    return correct, task_aware


@torch.no_grad()
def evaluate_task(model, loader, seen: torch.Tensor, *, amp: bool = False, device: str = "auto") -> float:
    """Accuracy with predictions restricted to the classes seen so far (no task id)."""
    correct, _ = evaluate_task_outcomes(model, loader, seen, amp=amp, device=device)
    return correct.sum().item() / max(len(correct), 1)


def _loader(ds, backbone, cfg, *, shuffle, seed=0, query=None, teacher=None, batch_size=None, augment=False,
            device="auto"):
    return BatchLoader(ds, batch_size=batch_size or cfg.batch_size, size=backbone.img_size, mean=backbone.mean,
                       std=backbone.std, shuffle=shuffle, seed=seed, query=query, teacher=teacher,
                       normalize=cfg.normalize, augment=augment, crop_pct=None if augment else cfg.eval_crop_pct,
                       device=device)


def _test_loader(ds, backbone, cfg, *, query=None, device="auto"):
    """A task's test set in ``cfg.test_order`` (``mixed``: one fixed permutation, the same for every run) in
    batches of ``cfg.eval_batch_size``."""
    return _loader(ds, backbone, cfg, shuffle=cfg.test_order == "mixed", seed=TEST_ORDER_SEED, query=query,
                   batch_size=cfg.eval_batch_size, device=device)


def run_continual(model: nn.Module, tasks: list[Task], backbone, *, cfg: ContinualConfig, name: str,
                  queries: QueryCache | None = None, num_classes: int | None = None, eval_batch_size: int = 64,
                  progress: bool = False, device: str = "auto") -> ContinualResult:
    """Train ``model`` on ``tasks`` in order with :func:`vpkit.train.fit`; fill the accuracy matrix.

    ``eval_batch_size`` is for the LwF teacher pass only; tests run in ``cfg.eval_batch_size`` batches in
    ``cfg.test_order``.

    LwF teachers are the model as it was before the task (logits cached on the task's training images);
    LwF on a generator compares with a frozen copy of ``model.generator`` taken at the task start.
    """
    T = len(tasks)
    C = num_classes or tasks[0].train.num_classes
    acc = np.zeros((T, T))
    seen_classes: list[int] = []
    hists = []
    correct, task_aware = {}, {}
    t0 = time.perf_counter()
    n_img = 0
    for t, task in enumerate(tasks):
        old = class_mask(seen_classes, C) if seen_classes else None
        seen_classes += list(task.classes)
        seen, current = class_mask(seen_classes, C), class_mask(task.classes, C)
        q_tr = queries.train[t] if queries is not None and not cfg.augment else None
        teacher = teacher_model = None
        if cfg.lwf_weight and old is not None and cfg.augment:  # a frozen copy scores each augmented view
            teacher_model = copy.deepcopy(model).eval()
            for p in teacher_model.parameters():
                p.requires_grad_(False)
        elif cfg.lwf_weight and old is not None:
            model.eval()
            teacher = outputs(model, _loader(task.train, backbone, cfg, shuffle=False, query=q_tr,
                                             batch_size=eval_batch_size, device=device), amp=cfg.amp, device=device)
        old_gen = None
        if cfg.gen_lwf_weight and t > 0 and getattr(model, "generator", None) is not None:
            old_gen = copy.deepcopy(model.generator).eval()
            for p in old_gen.parameters():
                p.requires_grad_(False)
        loader = _loader(task.train, backbone, cfg, shuffle=True, seed=cfg.seed * 1000 + t, query=q_tr,
                         teacher=teacher, augment=cfg.augment, device=device)
        hists.append(fit(model, loader, epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer,
                         weight_decay=cfg.weight_decay, amp=cfg.amp, device=device, progress=progress,
                         schedule=cfg.schedule, grad_clip=cfg.grad_clip,
                         desc=f"{name} task {t + 1}/{T}",
                         loss_fn=make_loss(current=current, seen=seen, cfg=cfg, old=old, old_generator=old_gen,
                                           teacher_model=teacher_model)))
        n_img += cfg.epochs * len(task.train)
        for j in range(t + 1):
            q_te = queries.test[j] if queries is not None else None
            ok, aware = evaluate_task_outcomes(model, _test_loader(tasks[j].test, backbone, cfg, query=q_te, device=device), seen,
                                               class_mask(tasks[j].classes, C), amp=cfg.amp, device=device)
            correct[t, j], task_aware[t, j] = ok.numpy(), aware.numpy()
            acc[t, j] = ok.sum().item() / max(len(ok), 1)
    return ContinualResult(name, acc, time.perf_counter() - t0, n_img, hists, correct=correct, task_aware=task_aware)


def run_joint(model: nn.Module, tasks: list[Task], backbone, *, cfg: ContinualConfig, name: str = "joint",
              queries: QueryCache | None = None, num_classes: int | None = None, progress: bool = False,
              device: str = "auto") -> ContinualResult:
    """Upper bound: one training run on the union of all tasks (every class at once), then each task tested."""
    C = num_classes or tasks[0].train.num_classes
    all_classes = [c for t in tasks for c in t.classes]
    seen = class_mask(all_classes, C)
    images = torch.cat([t.train.images for t in tasks])
    labels = torch.cat([t.train.labels for t in tasks])
    union = ImageSet(images, labels, tasks[0].train.classes, tasks[0].train.name)
    q = torch.cat(queries.train) if queries is not None and not cfg.augment else None
    t0 = time.perf_counter()
    cfg_joint = copy.copy(cfg)
    cfg_joint.train_mask = "seen"
    hist = fit(model, _loader(union, backbone, cfg, shuffle=True, seed=cfg.seed * 1000, query=q, augment=cfg.augment,
                       device=device),
               epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay, amp=cfg.amp,
               device=device, progress=progress, desc=name, schedule=cfg.schedule, grad_clip=cfg.grad_clip,
               loss_fn=make_loss(current=seen, seen=seen, cfg=cfg_joint, old=None, old_generator=None))
    correct, task_aware = {}, {}
    for j, t in enumerate(tasks):
        ok, aware = evaluate_task_outcomes(model, _test_loader(t.test, backbone, cfg, query=queries.test[j]
                                                               if queries is not None else None, device=device),
                                           seen, class_mask(t.classes, C), amp=cfg.amp, device=device)
        correct[0, j], task_aware[0, j] = ok.numpy(), aware.numpy()
    row = [int(correct[0, j].sum()) / max(len(correct[0, j]), 1) for j in range(len(tasks))]
    return ContinualResult(name, np.array([row]), time.perf_counter() - t0, cfg.epochs * len(union), [hist],
                           joint=True, correct=correct, task_aware=task_aware)

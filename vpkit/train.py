"""One plain training loop used by every method: ``fit`` / ``evaluate``, plus freezing and feature helpers.

Loop state is local; the returned history is data. Devices and autocast come from :mod:`vpkit.device`.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import dryrun
from .device import autocast, precision, resolve_device

OPTIMIZERS = ("sgd", "adam", "adamw")


class Diverged(FloatingPointError):
    """A training loss became NaN/inf. Every study catches it the same way: the run scores NaN (its row says
    ``diverged``) and the notebook goes on; lower the learning rate to avoid it."""

SCHEDULES = ("cosine", "constant")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class TrainableReport:
    """Which parameters train: names, count, and the share of the frozen backbone."""

    names: list[str]
    trainable: int
    total: int
    backbone: int | None = None

    @property
    def percent_of_backbone(self) -> float:
        base = self.backbone if self.backbone else self.total
        return 100.0 * self.trainable / max(base, 1)

    def __str__(self) -> str:
        return (f"{self.trainable:,} trainable of {self.total:,} parameters "
                f"({self.percent_of_backbone:.3f}% of the backbone) in {len(self.names)} tensors")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def freeze_except(model: nn.Module, trainable: Iterable[str] | Callable[[str], bool] = (), *,
                  backbone: nn.Module | None = None) -> TrainableReport:
    """Freeze every parameter of ``model`` except those whose name starts with one of ``trainable``
    (or for which ``trainable(name)`` is true); report names and counts.

    Raises if a prefix matches nothing, so a typo cannot silently freeze a method's own parameters.
    """
    if callable(trainable):
        keep = trainable
        prefixes = None
    else:
        prefixes = tuple(trainable)
        keep = lambda n: n.startswith(prefixes) if prefixes else False  # noqa: E731
    names = []
    for n, p in model.named_parameters():
        on = bool(keep(n))
        p.requires_grad_(on)
        if on:
            names.append(n)
    if prefixes:
        for pre in prefixes:
            if not any(n.startswith(pre) for n in names):
                raise ValueError(f"trainable prefix {pre!r} matches no parameter of the model")
    total = count_parameters(model)
    return TrainableReport(names=names, trainable=count_parameters(model, trainable_only=True), total=total,
                           backbone=count_parameters(backbone) if backbone is not None else None)


def set_train_mode(model: nn.Module) -> None:
    """``train()`` for the trainable parts only: a module whose own parameters are all frozen goes to
    ``eval()`` so frozen BatchNorm statistics never move."""
    model.train()
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            m.eval()


def cosine_warmup(step: int, *, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_multiplier(step: int, *, total: int, warmup: int, schedule: str = "cosine") -> float:
    """LR multiplier of ``schedule``: ``cosine`` (:func:`cosine_warmup`) or ``constant`` (1 after the warmup)."""
    if schedule == "cosine":
        return cosine_warmup(step, total=total, warmup=warmup)
    if schedule == "constant":
        return (step + 1) / warmup if warmup > 0 and step < warmup else 1.0
    raise ValueError(f"schedule={schedule!r}; allowed: {SCHEDULES}")


def needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    """True when a mixed-precision loop on ``device`` runs in fp16 (CUDA's default autocast), which needs a
    ``GradScaler``; bf16 and fp32 keep fp32's exponent range and do not."""
    return bool(amp) and precision(device) == "fp16"


def fused_ok(params) -> bool:
    """Whether torch's fused optimizer kernels (one pass over every parameter instead of a loop of small ops) apply:
    every parameter a floating-point tensor on a CPU or CUDA device. Measured on the 2-core project machine, one step
    over ViT-S/14's 21.5M parameters: AdamW 44 -> 13 ms, SGD with momentum 15 -> 8 ms; the update is the same up to
    float rounding (AdamW 3e-8 after 11 steps, SGD bit-identical)."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def make_optimizer(params, *, optimizer: str, lr: float, weight_decay: float, momentum: float = 0.9):
    """SGD (with ``momentum``), Adam or AdamW over the parameters that require grad; fused kernels where
    :func:`fused_ok`."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: call freeze_except with the method's parameter names")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}; allowed: {OPTIMIZERS}")
    kw = {"fused": True} if fused_ok(params) else {}
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kw)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay, **kw)


@dataclass
class History:
    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    images_per_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "fp32"  # what the training steps ran in (vpkit.device.precision)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("epoch", "loss", "train_acc", "lr", "images_per_s", "seconds",
                                                "precision")}

    @property
    def throughput(self) -> float:
        """Mean training images per second over all epochs."""
        return float(np.mean(self.images_per_s)) if self.images_per_s else float("nan")


def fit(model: nn.Module, train_loader, *, epochs: int, lr: float, weight_decay: float = 0.0,
        optimizer: str = "sgd", momentum: float = 0.9, warmup_epochs: float = 0, device: str = "auto",
        amp: bool = False, loss_fn: Callable | None = None, grad_clip: float | None = None,
        schedule: str = "cosine", progress: bool = True, desc: str = "train",
        callbacks: Iterable[Callable] = ()) -> History:
    """Train the parameters of ``model`` that require grad; linear warmup, then ``schedule`` (``cosine`` decay
    to 0, or ``constant``); gradients clipped to norm ``grad_clip`` when given.

    ``model(x)`` returns logits; ``loss_fn(model, x, y) -> (loss, logits)`` overrides cross-entropy (e.g. to
    add L2P's pull loss). Each callback is called as ``cb(epoch, history)`` after every epoch.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}; allowed: {SCHEDULES}")
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    model.to(dev)
    opt = make_optimizer(model.parameters(), optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         momentum=momentum)
    steps_per_epoch = len(train_loader)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, total=total, warmup=warmup,
                                                                        schedule=schedule))
    ce = nn.CrossEntropyLoss()
    hist = History(precision=precision(dev) if amp else "fp32")
    # fp16 autocast (CUDA) needs loss scaling: small gradients underflow in fp16; bf16 and fp32 do not
    scaler = torch.amp.GradScaler(dev.type, enabled=needs_grad_scaler(dev, amp))
    t_start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    step_cap = dryrun.MAX_STEPS if dryrun.active() else None  # a paper-shape dry run: 1-2 steps per fit
    steps_done = 0
    for epoch in range(epochs):
        if step_cap is not None and steps_done >= step_cap:
            break
        set_train_mode(model)
        tot_loss = tot_correct = tot_n = 0.0
        t0 = time.perf_counter()
        for x, y in train_loader:
            if step_cap is not None and steps_done >= step_cap:
                break
            steps_done += 1
            x, y = x.to(dev), y.to(dev)
            with autocast(dev, amp):
                if loss_fn is None:
                    logits = model(x)
                    loss = ce(logits.float(), y)
                else:
                    loss, logits = loss_fn(model, x, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
            scaler.step(opt)  # skips the step when fp16 gradients overflowed
            scaler.update()
            sched.step()
            if not torch.isfinite(loss):
                raise Diverged(f"loss became {loss.item()} at epoch {epoch}; lower lr={lr}")
            n = len(y)
            tot_loss += loss.item() * n
            tot_correct += (logits.argmax(-1) == y).sum().item()
            tot_n += n
            bar.update(1)
        dt = time.perf_counter() - t0
        hist.epoch.append(epoch)
        hist.loss.append(tot_loss / max(tot_n, 1))
        hist.train_acc.append(tot_correct / max(tot_n, 1))
        hist.lr.append(opt.param_groups[0]["lr"])
        hist.images_per_s.append(tot_n / max(dt, 1e-9))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", acc=f"{hist.train_acc[-1]:.3f}")
        for cb in callbacks:
            cb(epoch, hist)
    bar.close()
    model.eval()
    hist.seconds = time.perf_counter() - t_start
    return hist


@torch.no_grad()
def predict(model: Callable, loader, *, device: str = "auto", amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated outputs of ``model`` and the labels over a loader (model in eval mode)."""
    dev = resolve_device(device)
    if isinstance(model, nn.Module):
        model.to(dev).eval()
    outs, labels = [], []
    for i, (x, y) in enumerate(loader):
        if dryrun.active() and i >= dryrun.MAX_EVAL_BATCHES:
            break
        with autocast(dev, amp):
            outs.append(model(x.to(dev)).float().cpu())
        labels.append(y)
    return torch.cat(outs), torch.cat(labels)


def evaluate(model: Callable, loader, *, device: str = "auto", amp: bool = False) -> dict:
    """Top-1 accuracy, cross-entropy and the per-example correct flags (``"correct"``, a bool tensor in loader
    order, for the intervals of :mod:`vpkit.stats`) of ``model`` over ``loader``."""
    logits, y = predict(model, loader, device=device, amp=amp)
    correct = logits.argmax(-1) == y
    return {"acc": correct.float().mean().item(), "loss": nn.functional.cross_entropy(logits, y).item(), "n": len(y),
            "correct": correct}


def extract_features(backbone, loader, *, device: str = "auto", progress: bool = False,
                     desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pooled features (``backbone.features``) and labels for every batch of ``loader``."""
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    backbone.model.to(dev).eval()
    feats, labels = [], []
    with torch.no_grad():
        for i, (x, y) in enumerate(tqdm(loader, desc=desc, disable=not progress, leave=False)):
            if dryrun.active() and i >= dryrun.MAX_EVAL_BATCHES:
                break
            feats.append(backbone.features(x.to(dev)).float().cpu())
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)

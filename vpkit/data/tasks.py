"""A VTAB-1k-style task suite: natural-ish offline datasets plus generated **structured** tasks.

VTAB's Structured group (dSprites location/orientation, Clevr count/distance, ...) asks where things are,
how they are turned and how many there are - questions a frozen CLS feature answers poorly. The generators
here render such tasks deterministically from a seed (numpy ``Generator``, 2x supersampled, no files, no
network):

* ``dsprites_location`` - one white shape (square / ellipse / triangle, random scale and rotation); the
  label is the bin of its x position (``classes`` equal bins), like VTAB dSprites-loc.
* ``dsprites_orientation`` - one elongated triangle (an arrow) at a random place and scale; the label is
  the bin of its orientation over 360 degrees, like VTAB dSprites-ori.
* ``clevr_count`` - 1..``classes`` coloured non-overlapping shapes on a grey floor; the label is the count
  minus one, like VTAB Clevr-count.

:func:`load_task` returns ``(train pool, fixed test set)`` for every task name, including the offline
datasets of :mod:`vpkit.data` and, for the ``paper`` profile, torchvision CIFAR-100 (VTAB Natural).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import data
from . import ImageSet

STRUCTURED = ("dsprites_location", "dsprites_orientation", "clevr_count")
NATURAL = ("fashion_mnist", "mnist5k", "digits", "cifar100")
TASK_GROUPS = {**{t: "natural" for t in NATURAL}, **{t: "structured" for t in STRUCTURED}}
DEFAULT_CLASSES = {"dsprites_location": 8, "dsprites_orientation": 8, "clevr_count": 6}
_SPLIT_SEED = {"train": 0, "test": 1}
_COLOURS = np.array([[230, 60, 60], [60, 200, 80], [70, 110, 240], [240, 200, 50], [200, 80, 220],
                     [60, 210, 220], [240, 140, 40], [235, 235, 235]], dtype=np.float64)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1] of a (2*size)^2 supersampled canvas."""
    s = 2 * size
    c = (np.arange(s) + 0.5) / s
    return np.meshgrid(c, c, indexing="xy")


def _shape_mask(xx, yy, *, kind: str, cx: float, cy: float, scale: float, angle: float) -> np.ndarray:
    """Boolean mask of a shape centred at (cx, cy), half-size ``scale`` (canvas units), rotated by ``angle``."""
    u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
    v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
    if kind == "square":
        return (np.abs(u) <= 0.8 * scale) & (np.abs(v) <= 0.8 * scale)
    if kind == "ellipse":
        return (u / scale) ** 2 + (v / (0.6 * scale)) ** 2 <= 1.0
    if kind == "circle":
        return u ** 2 + v ** 2 <= (0.85 * scale) ** 2
    if kind == "triangle":  # isosceles, tip at u = +scale, base at u = -scale
        return (u >= -scale) & (u <= scale) & (np.abs(v) <= 0.35 * scale * (scale - u) / scale)
    raise ValueError(f"shape kind={kind!r}; allowed: square, ellipse, circle, triangle")


def _downsample(canvas: np.ndarray) -> np.ndarray:
    """2x2 mean pooling of an (H, W, C) float canvas -> uint8."""
    h, w, c = canvas.shape
    out = canvas.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _location(rng, xx, yy, classes: int):
    kind = ["square", "ellipse", "triangle"][rng.integers(3)]
    scale, margin = rng.uniform(0.07, 0.13), 0.13  # x bins span [margin, 1 - margin], so they are balanced
    cx, cy = rng.uniform(margin, 1 - margin), rng.uniform(margin, 1 - margin)
    m = _shape_mask(xx, yy, kind=kind, cx=cx, cy=cy, scale=scale, angle=rng.uniform(0, 2 * math.pi))
    label = min(int((cx - margin) / (1 - 2 * margin) * classes), classes - 1)
    return m[..., None] * np.array([255.0]), label


def _orientation(rng, xx, yy, classes: int):
    scale = rng.uniform(0.18, 0.28)
    cx, cy = rng.uniform(scale, 1 - scale), rng.uniform(scale, 1 - scale)
    angle = rng.uniform(0, 2 * math.pi)
    m = _shape_mask(xx, yy, kind="triangle", cx=cx, cy=cy, scale=scale, angle=angle)
    label = min(int(angle / (2 * math.pi) * classes), classes - 1)
    return m[..., None] * np.array([255.0]), label


def _count(rng, xx, yy, classes: int):
    n = int(rng.integers(1, classes + 1))
    canvas = np.full(xx.shape + (3,), 90.0)
    canvas += 30.0 * yy[..., None]  # a soft floor gradient
    placed: list[tuple[float, float, float]] = []
    while len(placed) < n:  # rejection sampling of non-overlapping objects
        scale = rng.uniform(0.06, 0.1)
        cx, cy = rng.uniform(scale, 1 - scale), rng.uniform(scale, 1 - scale)
        if all(math.hypot(cx - x, cy - y) > 1.3 * (scale + s) for x, y, s in placed):
            placed.append((cx, cy, scale))
            kind = ["square", "circle", "triangle"][rng.integers(3)]
            m = _shape_mask(xx, yy, kind=kind, cx=cx, cy=cy, scale=scale, angle=rng.uniform(0, 2 * math.pi))
            canvas[m] = _COLOURS[rng.integers(len(_COLOURS))]
    return canvas, n - 1


_RENDER = {"dsprites_location": _location, "dsprites_orientation": _orientation, "clevr_count": _count}


def render_structured(name: str, *, n: int, seed: int, size: int = 56, classes: int | None = None) -> ImageSet:
    """``n`` images of a generated structured task, identical for identical (name, n, seed, size, classes)."""
    if name not in _RENDER:
        raise ValueError(f"unknown structured task name={name!r}; known: {STRUCTURED}")
    classes = int(classes or DEFAULT_CLASSES[name])
    if classes < 2:
        raise ValueError(f"classes={classes} must be >= 2")
    rng = np.random.default_rng([seed, STRUCTURED.index(name), size, classes])
    xx, yy = _grid(size)
    images, labels = [], []
    for _ in range(n):
        canvas, label = _RENDER[name](rng, xx, yy, classes)
        images.append(_downsample(canvas))
        labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    if name == "clevr_count":
        names = [str(i + 1) for i in range(classes)]
    elif name == "dsprites_location":
        names = [f"x bin {i}" for i in range(classes)]
    else:
        names = [f"{round(360 * i / classes)} deg" for i in range(classes)]
    return ImageSet(x, torch.tensor(labels, dtype=torch.long), names, name)


def load_task(name: str, *, size: int = 56, n_pool: int = 2000, n_test: int = 1000, seed: int = 0,
              download: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train pool, fixed test set) for a task of the suite.

    Structured tasks are rendered at ``size`` px: a pool of ``n_pool`` and a test set of ``n_test`` images
    from disjoint seeds. ``cifar100`` (``paper`` profile) comes from torchvision and needs the network once.
    """
    if name in STRUCTURED:
        return (render_structured(name, n=n_pool, seed=2 * seed + _SPLIT_SEED["train"], size=size),
                render_structured(name, n=n_test, seed=2 * seed + _SPLIT_SEED["test"], size=size))
    if name in data.OFFLINE_DATASETS:
        return data.offline_dataset(name)
    if name == "cifar100":
        return (data.load_torchvision("cifar100", "train", download=download),
                data.load_torchvision("cifar100", "test", download=download))
    raise ValueError(f"unknown task name={name!r}; known: {sorted(TASK_GROUPS)}")

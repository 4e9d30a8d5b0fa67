"""The many-style emoji concept corpus (issue 15, item 1): concepts, styles, views and the class-disjoint split."""
import shutil

import pytest
import torch

from vpkit import assets
from vpkit.data import emoji

fetched = all((emoji.style_dir(s) / "emoji.json").exists() for s in emoji.STYLES)
if not fetched and shutil.which("npm") is None:
    pytest.skip("the emoji styles are not fetched and npm is absent (scripts/install.sh fetches them where npm is)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def concepts():
    for s in emoji.STYLES:
        emoji.fetch(s)
    return emoji.concepts()


def test_concepts_are_object_like_and_drawn_in_every_open_style(concepts):
    assert len(concepts) > 800
    assert {c.category for c in concepts} == set(emoji.CONCEPT_CATEGORIES)
    names = {c.name for c in concepts}
    assert "dog face" in names and not any(c.subcategory.endswith("flag") for c in concepts)  # no country flags
    assert not any(w in n.split() for n in names for w in ("man", "woman", "person"))
    assert len(names) == len(concepts)  # one readable name per concept
    assert all(set(c.styles) == set(emoji.STYLES) for c in concepts)


def test_each_style_draws_a_concept_differently(concepts):
    c = next(c for c in concepts if c.name == "dog face")
    a, b = (emoji.load_rgba(c, s) for s in emoji.STYLES)
    assert a.shape == b.shape == (emoji.IMAGE_SIZE, emoji.IMAGE_SIZE, 4)
    assert emoji.image_hash(a) != emoji.image_hash(b)


def test_views_are_deterministic_and_vary(concepts):
    rgba = emoji.load_rgba(concepts[0], "google")
    v1 = emoji.render_views(rgba, n=4, seed=3)
    assert v1.shape == (4, 3, 64, 64) and v1.dtype == torch.uint8
    assert torch.equal(v1, emoji.render_views(rgba, n=4, seed=3))
    assert not torch.equal(v1, emoji.render_views(rgba, n=4, seed=4))
    assert len({emoji.image_hash(v.numpy()) for v in v1}) == 4
    with pytest.raises(ValueError, match="n=0"):
        emoji.render_views(rgba, n=0, seed=0)


def test_the_split_is_class_disjoint_by_name_subcategory_and_image(concepts):
    train, held = emoji.class_disjoint_split(concepts, seed=0)
    assert train and held and len(train) + len(held) == len(concepts)
    assert {c.name for c in train}.isdisjoint(c.name for c in held)
    assert {(c.category, c.subcategory) for c in train}.isdisjoint((c.category, c.subcategory) for c in held)
    train_hashes = {emoji.image_hash(emoji.load_rgba(c, s)) for c in train for s in c.styles}
    assert not any(emoji.image_hash(emoji.load_rgba(c, s)) in train_hashes for c in held for s in c.styles)
    assert {c.category for c in held} == set(emoji.CONCEPT_CATEGORIES)  # every category keeps held-out concepts
    assert emoji.class_disjoint_split(concepts, seed=0) == (train, held)
    with pytest.raises(ValueError, match="held_out_fraction"):
        emoji.class_disjoint_split(concepts, held_out_fraction=1.0)


def test_unknown_styles_and_missing_caches_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not used"):
        emoji.style_dir("apple")
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    with pytest.raises(assets.AssetError, match="install.sh"):
        emoji.concepts()


# --- the unseen style (OpenMoji, SVG artwork rasterised at fetch time) ----------------------------------------------
def _svg(fill: str, box: tuple[int, int, int, int]) -> bytes:
    x, y, w, h = box
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72" width="72" height="72">'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/></svg>').encode()


def test_svg_artwork_is_cropped_to_the_drawing_and_fills_the_frame():
    pytest.importorskip("resvg_py")
    a = emoji.svg_to_rgba(_svg("#ff0000", (20, 26, 32, 20)))  # a wide red bar with a big margin
    assert a.shape == (emoji.IMAGE_SIZE, emoji.IMAGE_SIZE, 4) and a.dtype.name == "uint8"
    cols = (a[..., 3] > 128).any(0)
    assert cols.sum() >= emoji.IMAGE_SIZE - 2  # the drawing's long side spans the frame: the margin is gone
    rows = (a[..., 3] > 128).any(1)
    assert 35 <= rows.sum() <= 45  # aspect kept (20 / 32 of 64), centred on transparency
    assert a[32, 32, 0] > 200 and a[32, 32, 1] < 50 and a[0, 0, 3] == 0
    assert (emoji.svg_to_rgba(_svg("#ff0000", (20, 26, 32, 20))) == a).all()  # deterministic


def test_the_unseen_style_is_held_out_of_every_default(monkeypatch, tmp_path):
    assert set(emoji.UNSEEN_STYLES).isdisjoint(emoji.STYLES) and "openmoji" in emoji.UNSEEN_STYLES
    assert emoji.style_dir("openmoji").name == f"openmoji-{emoji.UNSEEN_STYLES['openmoji'].version}"
    with pytest.raises(ValueError, match="unseen"):
        emoji.unseen_missing("google")
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    assert "--fetch openmoji" in emoji.unseen_missing("openmoji")


def test_openmoji_draws_every_concept_in_its_own_style(concepts):
    pytest.importorskip("resvg_py")
    emoji.fetch("openmoji")
    assert emoji.unseen_missing("openmoji") is None
    every = emoji.concepts((*emoji.STYLES, "openmoji"))
    assert [c.name for c in every] == [c.name for c in concepts]  # the PNG styles' concepts, same order
    assert sum("openmoji" in c.styles for c in every) > 0.95 * len(every)
    dog = next(c for c in every if c.name == "dog face")
    om = emoji.load_rgba(dog, "openmoji")
    assert om.shape == (emoji.IMAGE_SIZE, emoji.IMAGE_SIZE, 4)
    assert emoji.image_hash(om) not in {emoji.image_hash(emoji.load_rgba(dog, s)) for s in emoji.STYLES}
    assert "CC BY-SA 4.0" in (emoji.style_dir("openmoji") / "SOURCE").read_text()

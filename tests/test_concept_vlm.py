"""The class-disjoint concept alignment (issue 15, item 2): the committed artifact's split, and the fitting code."""
import shutil

import pytest
import torch

from vpkit import alignment as A
from vpkit import vlm as V
from vpkit.data import emoji

ARTIFACT = V.ARTIFACT_DIR / V.CONCEPT_ALIGNMENT_FILE


def test_the_committed_concept_artifact_matches_its_checksum_and_builds_a_vlm():
    assert V.CONCEPT_ALIGNMENT_SHA256 is not None
    assert V.assets.sha256_file(ARTIFACT) == V.CONCEPT_ALIGNMENT_SHA256
    al, meta = V.load_alignment(ARTIFACT)
    assert meta["kind"] == "concept" and not al.cfg.use_features
    assert torch.equal(al.txt_proj.weight.float(), torch.eye(al.cfg.embed_dim))  # the text side was never trained
    assert "offline_concepts" in V.VLMS


fetched = all((emoji.style_dir(s) / "emoji.json").exists() for s in emoji.STYLES)


@pytest.mark.skipif(not fetched and shutil.which("npm") is None,
                    reason="the emoji styles are not fetched and npm is absent (scripts/install.sh fetches them)")
def test_the_concept_alignment_never_saw_a_held_out_concept():
    """No held-out concept's name, subcategory or artwork (by image hash, recomputed from the corpus) is among the
    alignment's training pairs, and no extra font pair shares a non-generic word with a held-out name."""
    for s in emoji.STYLES:
        emoji.fetch(s)
    _, meta = V.load_alignment(ARTIFACT)
    cfg = A.ConceptConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["concept_config"].items()})
    train, held, fit, val = A.concept_split(cfg)
    assert [c.name for c in held] == meta["held_out_names"] and [c.name for c in train] == meta["train_names"]
    assert len(held) > 100 and len(train) > 400
    held_names = set(meta["held_out_names"])
    assert not held_names & set(meta["train_names"]) and not held_names & set(meta["extra_names"])
    assert not {(c.category, c.subcategory) for c in held} & {(c.category, c.subcategory) for c in train}
    recomputed = [{s: emoji.image_hash(emoji.load_rgba(c, s)) for s in cfg.styles} for c in held]
    assert recomputed == meta["held_out_image_sha256"]
    train_hashes = {h for d in meta["train_image_sha256"] for h in d.values()}
    assert not {h for d in recomputed for h in d.values()} & train_hashes
    held_words = set().union(*(A._words(n) for n in held_names))
    assert not any(A._words(n) & held_words for n in meta["extra_names"])
    assert not any(A.HELD_OUT_EMOJI_PATTERN.search(n.upper().replace("'", "")) for n in meta["train_names"])
    # the choice of font extras was made on validation concepts, themselves whole training subcategories
    assert {c.name for c in fit} | {c.name for c in val} == set(meta["train_names"])
    assert not {(c.category, c.subcategory) for c in fit} & {(c.category, c.subcategory) for c in val}


def _synthetic_pairs(n_concepts=12, n_extras=4, styles=2, views=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    keep = torch.arange(0, 1000, 10)
    n = n_concepts + n_extras
    return {"names": [f"c{i}" for i in range(n)], "n_concepts": n_concepts,
            "feats": torch.randn(n_concepts, styles, views, 1280, generator=g),
            "logits": torch.randn(n_concepts, styles, views, 1000, generator=g) * 3,
            "extra_feats": torch.randn(n_extras, views, 1280, generator=g),
            "extra_logits": torch.randn(n_extras, views, 1000, generator=g) * 3,
            "text": torch.nn.functional.normalize(torch.randn(n, 384, generator=g), dim=-1),
            "keep": keep, "class_text": torch.nn.functional.normalize(torch.randn(len(keep), 384, generator=g), dim=-1)}


def test_fitting_trains_only_the_image_side_and_is_deterministic():
    pairs = _synthetic_pairs()
    cfg = A.ConceptConfig(epochs=3, batch_size=16, lr=1e-2)
    names = list(range(8)) + [12, 13]
    a, b = (A.fit_concept_alignment(pairs, names, cfg) for _ in range(2))
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k
    assert torch.equal(a.txt_proj.weight, torch.eye(384)) and torch.equal(a.txt_proj.bias, torch.zeros(384))
    assert not torch.equal(a.img_proj.weight, torch.eye(384))  # the image side moved
    assert not any(p.requires_grad for p in a.parameters())
    # zero-shot is judged per group among the group's names only; chance is 1 / group size
    r = A.concept_zero_shot(a, pairs, [[8, 9, 10, 11], [0, 1]])
    assert r["chance"] == pytest.approx((1 / 4 + 1 / 2) / 2) and r["n_images"] == 6 * 2 * 3 and 0 <= r["top1"] <= 1


def test_training_on_the_names_of_the_images_beats_chance_on_those_images():
    """A fit that can fail: on separable synthetic concepts the trained image side must retrieve the training names
    far above chance (the untrained ConSE start is near chance on random logits)."""
    pairs = _synthetic_pairs(n_concepts=10, n_extras=0)
    for i in range(10):  # each concept's images favour one ImageNet class of its own: an informative ConSE vector
        pairs["logits"][i, :, :, pairs["keep"][i * 7]] += 12.0
    al = A.fit_concept_alignment(pairs, list(range(10)), A.ConceptConfig(epochs=40, batch_size=20, lr=3e-2))
    assert A.concept_zero_shot(al, pairs, [list(range(10))])["top1"] > 0.8

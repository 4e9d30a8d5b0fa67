"""Study of notebook ``00_vlm``: the vision-language model that notebooks 02 and 04 prompt, judged on its own.

The models (open_clip CLIP and the offline stand-in) are :mod:`vpkit.vlm`; the stand-in's alignment training
is :mod:`vpkit.alignment`. This file holds the zero-shot protocol (both input polarities, chance, a linear
probe on the same embedding) and the alignment ablations (untrained / open dictionary).

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import autocast
from ..profiles import resolve
from ..vlm import (DATASET_CLASSNAMES, VLM, Alignment, OfflineVLM, _embed, _freeze, dark_background, encode_images,
                   zero_shot_predict)


PROFILES = {
    "smoke": dict(vlm="offline", img_size=64, datasets=["digits"], n_train=60, n_test=40, batch_size=64, photos=2,
                  vocab_stride=10),
    "offline": dict(vlm="offline", img_size=160, datasets=["fashion_mnist", "mnist5k", "digits"], n_train=1000,
                    n_test=1000, batch_size=64, photos=6, vocab_stride=1),
    "paper": dict(vlm="clip_vit_b16", img_size=None, datasets=["fashion_mnist", "mnist5k", "digits"],
                  n_train=1000, n_test=None, batch_size=64, photos=6, vocab_stride=1),
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 00_vlm's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="vlm")


# ----------------------------------------------------------------------------------------------------------
# Zero-shot evaluation
# ----------------------------------------------------------------------------------------------------------

ZERO_SHOT_TEMPLATES = ("a photo of a {}.", "a drawing of a {}.", "an icon of a {}.",
                       "a black and white photo of a {}.", "a picture of the {}.")

def untrained_alignment(al: Alignment) -> Alignment:
    """The alignment's starting point (plain ConSE: identity maps, T = 1, no feature residual), same dictionary."""
    return _freeze(Alignment(al.cfg, al.keep, al.class_text))


@torch.no_grad()
def open_dictionary(vlm: "OfflineVLM", al: Alignment | None = None) -> Alignment:
    """``al`` (default: the VLM's) with the held-out ImageNet classes put back into the ConSE dictionary.

    An ablation only: the trained maps are unchanged (still fitted without those concepts), but Lite0's own
    ImageNet labels for garments, footwear, bags and clocks become visible to zero-shot, as in the issue's
    first ridge attempt over all 1000 classifier rows.
    """
    from ..alignment import grouped_text_features, imagenet_dictionary_texts

    al = al if al is not None else vlm.alignment
    texts = imagenet_dictionary_texts()
    kept = set(al.keep.tolist())
    missing = [i for i in range(len(texts)) if i not in kept]
    full = torch.zeros(len(texts), al.class_text.shape[1])
    full[al.keep] = al.class_text
    if missing:
        full[missing] = grouped_text_features(vlm.text_tower, [texts[i] for i in missing])
    out = Alignment(al.cfg, torch.arange(len(texts)), full)
    state = {k: v for k, v in al.state_dict().items() if k not in ("keep", "class_text")}
    out.load_state_dict({**state, "keep": out.keep, "class_text": out.class_text})
    return _freeze(out)


def offline_variants(vlm: "OfflineVLM") -> dict[str, Alignment]:
    """The committed alignment and its ablations, for one table: trained/untrained x strict/open dictionary."""
    trained = vlm.alignment
    return {"trained": trained, "untrained (ConSE init)": untrained_alignment(trained),
            "trained, open dictionary": open_dictionary(vlm, trained),
            "untrained, open dictionary": open_dictionary(vlm, untrained_alignment(trained))}


@torch.no_grad()
def _offline_parts(vlm: "OfflineVLM", images: torch.Tensor, *, invert: bool, batch_size: int, amp: bool):
    from ..data import to_model_input

    pp = vlm.preprocess
    fs, ls = [], []
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size], size=pp.img_size, mean=pp.mean, std=pp.std, invert=invert)
        with autocast(x.device, amp):
            f, l = vlm.image_parts(x)
        fs.append(f.float())
        ls.append(l.float())
    return torch.cat(fs), torch.cat(ls)


def zero_shot_rows(vlm: VLM, name: str, *, seed: int = 0, n_train: int = 1000, n_test: int | None = None,
                   templates=ZERO_SHOT_TEMPLATES, batch_size: int = 64, amp: bool = True,
                   variants: dict[str, Alignment] | None = None) -> list[dict]:
    """Zero-shot accuracy of ``vlm`` on an offline dataset in both input polarities, with chance and a linear
    probe on the same image embedding (CLIP Sec. 3.2) trained on ``n_train`` images.

    The polarity the label-free rule :func:`dark_background` picks (from the training pool) is marked
    ``chosen``; the other is reported beside it. ``p_value_vs_chance`` is a one-sided binomial test.
    For the offline VLM, ``variants`` (name -> :class:`Alignment`, e.g. :func:`offline_variants`) are
    evaluated on the same frozen Lite0 outputs; the default is the VLM's own alignment only.
    """
    from scipy.stats import binomtest

    from ..data import offline_dataset, vtab_splits
    from ..metrics import linear_probe

    pool, test = offline_dataset(name)
    sp = vtab_splits(pool, test, seed=seed, n_train=n_train - min(200, n_train // 5), n_val=min(200, n_train // 5),
                     n_test=n_test)
    train, test = sp["train1000"], sp["test"]
    classnames = DATASET_CLASSNAMES.get(name, test.classes)
    auto = dark_background(pool.images[:2000])
    offline = isinstance(vlm, OfflineVLM)
    if offline:
        variants = variants or {"trained": vlm.alignment}
        parts = {inv: _offline_parts(vlm, test.images, invert=inv, batch_size=batch_size, amp=amp)
                 for inv in (False, True)}
        parts_tr = _offline_parts(vlm, train.images, invert=auto, batch_size=batch_size, amp=amp)
        with torch.no_grad():
            prompt_feats = torch.stack([vlm.text_tower(*_embed(vlm, [t.format(c) for t in templates])).mean(0)
                                        for c in classnames])
    else:
        variants = {"": None}
        weights = vlm.classifier_weights(classnames, templates)
        feats = {inv: encode_images(vlm, test.images, invert=inv, batch_size=batch_size, amp=amp)
                 for inv in (False, True)}
        tr = encode_images(vlm, train.images, invert=auto, batch_size=batch_size, amp=amp)
    rows = []
    for vname, al in variants.items():
        if offline:
            with torch.no_grad():
                weights = F.normalize(al.text(prompt_feats), dim=-1)
                feats = {inv: F.normalize(al.image(*parts[inv]), dim=-1) for inv in (False, True)}
                tr = F.normalize(al.image(*parts_tr), dim=-1)
        for invert in (False, True):
            te = feats[invert]
            correct = int((zero_shot_predict(te, weights) == test.labels).sum())
            rows.append({"dataset": name, "variant": vname or vlm.name, "invert": invert, "chosen": invert == auto,
                         "zero_shot": correct / len(test), "chance": 1.0 / len(classnames),
                         "p_value_vs_chance": binomtest(correct, len(test), 1.0 / len(classnames),
                                                        alternative="greater").pvalue,
                         "linear_probe": linear_probe(tr, train.labels, te, test.labels) if invert == auto else None,
                         "n_train_probe": len(train), "n_test": len(test)})
    return rows


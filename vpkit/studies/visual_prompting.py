"""Study of notebook ``02_visual_prompting`` (Bahng et al. 2022, "Exploring Visual Prompts for Adapting
Large-Scale Models"): data, one train+evaluate run, baselines, the distribution-gap measure, the template and
width ablations, the claims. The prompts themselves live in :mod:`vpkit.prompts.pixel`.

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import data as data_lib
from .. import vlm as vlm_lib
from ..device import autocast
from ..methods import build_vp_classifier, build_vp_tp
from ..metrics import linear_probe
from ..profiles import resolve
from ..prompts import pixel
from ..train import evaluate, fit, predict


# 02: visual prompting (Bahng et al. 2022). Offline: the offline VLM at 64 px, padding 8 px (~30/224), a few
# dozen training images per dataset, a few epochs of Adam; paper: CLIP ViT-B/32, SGD lr 40, 1000 epochs.
PROFILES = {
    "smoke": dict(vlm="offline", vision_backbone=None, img_size=32, datasets=["digits"], both_polarities=False,
                  n_train=10, n_test=10, epochs=1, batch_size=10, lr=0.1, optimizer="adam", warmup_epochs=0,
                  amp=True, prompt_size=4, patch_size=8, widths=[], mappings=["frequency"],
                  ablation_dataset="digits"),
    "offline": dict(vlm="offline", vision_backbone=None, img_size=64,
                    datasets=["fashion_mnist", "mnist5k", "digits"], both_polarities=True, n_train=100,
                    n_test=300, epochs=5, batch_size=20, lr=0.1, optimizer="adam", warmup_epochs=0,
                    amp=True, prompt_size=8, patch_size=16, widths=[2, 4, 16],
                    mappings=["first_n", "frequency"], ablation_dataset="fashion_mnist"),
    "paper": dict(vlm="clip_vit_b32", vision_backbone="resnet50", img_size=None,
                  datasets=["fashion_mnist", "mnist5k", "digits"], both_polarities=True, n_train=1000,
                  n_test=None, epochs=1000, batch_size=256, lr=40.0, optimizer="sgd", warmup_epochs=1,
                  amp=True, prompt_size=30, patch_size=50, widths=[1, 5, 10, 50],
                  mappings=["first_n", "frequency"], ablation_dataset="fashion_mnist", num_threads=None),
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 02_visual_prompting's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="visual_prompting")


def task_data(name: str, *, seed: int, n_train: int, n_test: int | None) -> tuple[data_lib.ImageSet, data_lib.ImageSet]:
    """``n_train`` training images drawn by ``seed`` from the pool and a fixed test subset."""
    pool, test = data_lib.offline_dataset(name)
    sp = data_lib.vtab_splits(pool, test, seed=seed, n_train=n_train, n_val=0, n_test=n_test)
    return sp["train800"], sp["test"]


def chosen_polarity(name: str) -> bool:
    """The label-free polarity rule of :func:`vpkit.vlm.dark_background` on the dataset's training pool."""
    pool, _ = data_lib.offline_dataset(name)
    return vlm_lib.dark_background(pool.images[:2000])


def loader(ds, model, *, batch_size: int, invert: bool, shuffle: bool = False, seed: int = 0) -> data_lib.Loader:
    """Batches sized/normalised for ``model``: a VLM (``.preprocess``) or a :class:`~vpkit.backbones.Backbone`."""
    pp = getattr(model, "preprocess", model)
    return data_lib.Loader(ds, batch_size=batch_size, size=pp.img_size, mean=pp.mean, std=pp.std, shuffle=shuffle,
                           seed=seed, invert=invert)


def text_classifier(vlm, name: str, classes: list[str], template: str = pixel.TP_TEMPLATE) -> torch.Tensor:
    """TP: the text features of ``template`` for each class (prompt-friendly names where the VLM module has them)."""
    return vlm.classifier_weights(vlm_lib.DATASET_CLASSNAMES.get(name, classes), (template,))


def train_and_evaluate(method, train, test, model, *, invert: bool, epochs: int, lr: float, optimizer: str,
                       batch_size: int, seed: int, amp: bool, warmup_epochs: float = 0.0,
                       momentum: float = 0.9) -> dict:
    """Accuracy of ``method.model`` before prompting (prompt switched off: the frozen baseline, TP zero-shot or
    the unprompted label-mapped classifier) and after training only its prompt (which starts from the official
    N(0, 1) frame); with the run's seconds, training throughput and trainable-parameter count."""
    torch.manual_seed(seed)
    if hasattr(method.model, "prompter"):
        method.model.prompter.reset_generator(seed)
    te = loader(test, model, batch_size=max(batch_size, 64), invert=invert)
    with method.model.prompter.disabled():
        before = evaluate(method.model, te, amp=amp)["acc"]
    t0 = time.perf_counter()
    hist = fit(method.model, loader(train, model, batch_size=batch_size, invert=invert, shuffle=True, seed=seed),
               epochs=epochs, lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=0.0,
               warmup_epochs=warmup_epochs, amp=amp, progress=False)
    after = evaluate(method.model, te, amp=amp)["acc"]
    return {"method": method.name, "before": before, "acc": after, "train_acc": hist.train_acc[-1],
            "final_loss": hist.loss[-1], "trainable": method.report.trainable,
            "train_images_per_s": hist.throughput, "precision": hist.precision, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def frozen_outputs(vlm, ds, *, invert: bool, batch_size: int = 64, amp: bool = True) -> dict[str, torch.Tensor]:
    """One frozen pass of the offline VLM's image side: Lite0 pooled features, ImageNet logits, joint embedding."""
    feats, logits, emb = [], [], []
    for x, _ in loader(ds, vlm, batch_size=batch_size, invert=invert):
        with autocast(x.device, amp):
            if hasattr(vlm, "image_parts"):
                f, lg = vlm.image_parts(x)
                z = vlm.alignment.image(f.float(), lg.float())
            else:  # open_clip: no ImageNet head; the embedding stands in for the features
                z = vlm.encode_image(x, normalize=False)
                f, lg = z, None
        feats.append(f.float())
        emb.append(torch.nn.functional.normalize(z.float(), dim=-1))
        if lg is not None:
            logits.append(lg.float())
    out = {"features": torch.cat(feats), "embedding": torch.cat(emb)}
    if logits:
        out["imagenet_logits"] = torch.cat(logits)
    return out


def gap_measure(imagenet_logits: torch.Tensor) -> float:
    """Distribution gap to the pre-training data as ``1 - mean max-softmax`` of the frozen ImageNet classifier
    (Hendrycks & Gimpel 2017: in-distribution inputs get confident predictions). Needs no reference images,
    which an FID/LPIPS against ImageNet would (we have none offline)."""
    return float(1.0 - imagenet_logits.softmax(-1).max(-1).values.mean())


@torch.no_grad()
def imagenet_logits(backbone, ds, *, invert: bool, batch_size: int = 64, amp: bool = True) -> torch.Tensor:
    """The frozen vision-only classifier's ImageNet logits (no prompt)."""
    return predict(backbone.model, loader(ds, backbone, batch_size=batch_size, invert=invert), amp=amp)[0]


def linear_probes(vlm, train, test, *, invert: bool, amp: bool = True, vision=None) -> dict:
    """Logistic-regression probes (CLIP-style) on frozen image-tower features and on the joint embedding, plus the
    gap measure on the test images (ImageNet logits of the VLM's own tower, or of ``vision`` when it has none)."""
    tr = frozen_outputs(vlm, train, invert=invert, amp=amp)
    te = frozen_outputs(vlm, test, invert=invert, amp=amp)
    if "imagenet_logits" not in te and vision is not None:
        tr["imagenet_logits"] = imagenet_logits(vision, train, invert=invert, amp=amp)
        te["imagenet_logits"] = imagenet_logits(vision, test, invert=invert, amp=amp)
    out = {"probe_features": linear_probe(tr["features"], train.labels, te["features"], test.labels),
           "probe_embedding": linear_probe(tr["embedding"], train.labels, te["embedding"], test.labels)}
    if "imagenet_logits" in te:
        out["gap"] = gap_measure(te["imagenet_logits"])
        out["train_imagenet_logits"] = tr["imagenet_logits"]
    return out


def correlation(x, y) -> dict:
    """Pearson r (and Spearman rho) with the number of points; NaN when fewer than 3 points or no spread."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"pearson_r": float("nan"), "spearman_rho": float("nan"), "n": int(len(x))}
    from scipy.stats import spearmanr

    return {"pearson_r": float(np.corrcoef(x, y)[0, 1]), "spearman_rho": float(spearmanr(x, y)[0]),
            "n": int(len(x))}


def mapping_from_logits(kind: str, train_logits: torch.Tensor | None, labels: torch.Tensor, num_classes: int):
    """``first_n`` (the paper) or ``frequency`` (from the unprompted model's training-set predictions)."""
    if kind == "first_n":
        return pixel.first_n_mapping(num_classes)
    if kind == "frequency":
        if train_logits is None:
            raise ValueError("mapping='frequency' needs the frozen model's ImageNet logits on the training set")
        return pixel.frequency_mapping(train_logits, labels, num_classes)
    raise ValueError(f"mapping={kind!r}; allowed: ('first_n', 'frequency')")


def run_datasets(vlm, vision, datasets, *, seed: int, n_train: int, n_test: int | None, prompt_size: int,
                 both_polarities: bool, mappings, train_kw: dict, amp: bool = True, progress: bool = True):
    """The main study (Bahng et al. Table 1 analogue): for each dataset (and its inverted copy), TP zero-shot vs
    VP+TP (padding prompt through the VLM) with the linear probes and the gap; on the chosen polarity, VP on the
    vision-only model with each label ``mapping``. -> (VLM rows, vision-only rows, prompters, one test image per
    point); prompters are keyed ``("padding", point)``."""
    from tqdm.auto import tqdm

    rows, vision_rows, prompters, samples = [], [], {}, {}
    for name in tqdm(list(datasets), desc="datasets", disable=not progress):
        train, test = task_data(name, seed=seed, n_train=n_train, n_test=n_test)
        chosen = chosen_polarity(name)
        tf = text_classifier(vlm, name, test.classes)
        for invert in ([chosen, not chosen] if both_polarities else [chosen]):
            tag = f"{name}{'_inv' if invert else ''}"
            probes = linear_probes(vlm, train, test, invert=invert, amp=amp, vision=vision)
            m = build_vp_tp(vlm, tf, template="padding", prompt_size=prompt_size, seed=seed)
            r = train_and_evaluate(m, train, test, vlm, invert=invert, **train_kw)
            prompters[("padding", tag)] = m.model.prompter
            samples[tag] = test.subset([0])
            rows.append({"dataset": name, "point": tag, "invert": invert, "chosen": invert == chosen,
                         "gap": probes["gap"], "tp_zero_shot": r["before"], "vp_tp": r["acc"],
                         "gain": r["acc"] - r["before"], "probe_features": probes["probe_features"],
                         "probe_embedding": probes["probe_embedding"], "chance": 1 / len(test.classes),
                         "trainable": r["trainable"], "seconds": r["seconds"],
                         "train_images_per_s": r["train_images_per_s"], "precision": r["precision"],
                         "n_train": len(train), "n_test": len(test)})
            if invert != chosen:
                continue
            for kind in mappings:
                mapping = mapping_from_logits(kind, probes["train_imagenet_logits"], train.labels, len(test.classes))
                mv = build_vp_classifier(vision, mapping, template="padding", prompt_size=prompt_size, seed=seed)
                rv = train_and_evaluate(mv, train, test, vision, invert=invert, **train_kw)
                vision_rows.append({"dataset": name, "mapping": kind,
                                    "imagenet_classes": ", ".join(str(int(i)) for i in mapping),
                                    "unprompted": rv["before"], "vp": rv["acc"], "gain": rv["acc"] - rv["before"],
                                    "trainable": rv["trainable"], "seconds": rv["seconds"]})
    return rows, vision_rows, prompters, samples


def template_ablations(vlm, base: dict, *, dataset: str, seed: int, n_train: int, n_test: int | None,
                       prompt_size: int, patch_size: int, widths, train_kw: dict):
    """Padding vs fixed vs random patch (Sec. 5.1) and padding widths on one dataset in its chosen polarity;
    ``base`` is that dataset's row of :func:`run_datasets` (the padding run is reused, not retrained).
    -> (template rows, width rows, the new prompters keyed ``(template, point)``)."""
    train, test = task_data(dataset, seed=seed, n_train=n_train, n_test=n_test)
    inv = chosen_polarity(dataset)
    tf = text_classifier(vlm, dataset, test.classes)
    tag = f"{dataset}{'_inv' if inv else ''}"
    templates = [{"template": "padding", "point": tag, "prompt_size": prompt_size, "acc": base["vp_tp"],
                  "trainable": base["trainable"], "tp_zero_shot": base["tp_zero_shot"]}]
    prompters = {}
    for t in ("fixed_patch", "random_patch"):
        m = build_vp_tp(vlm, tf, template=t, prompt_size=patch_size, seed=seed)
        r = train_and_evaluate(m, train, test, vlm, invert=inv, **train_kw)
        prompters[(t, tag)] = m.model.prompter
        templates.append({"template": t, "point": tag, "prompt_size": patch_size, "acc": r["acc"],
                          "trainable": r["trainable"], "tp_zero_shot": base["tp_zero_shot"]})
    width_rows = []
    for w in sorted(set(widths) | {prompt_size}):
        if w == prompt_size:
            acc, n = base["vp_tp"], base["trainable"]
        else:
            r = train_and_evaluate(build_vp_tp(vlm, tf, template="padding", prompt_size=w, seed=seed), train, test,
                                   vlm, invert=inv, **train_kw)
            acc, n = r["acc"], r["trainable"]
        width_rows.append({"prompt_size": w, "acc": acc, "trainable": n})
    return templates, width_rows, prompters


@torch.no_grad()
def prompt_image_rows(prompters: dict, samples: dict, vlm):
    """Rows for :func:`vpkit.plots.image_grid`: each learned prompt on mid-grey, then added to a test image of its
    point; plus the column titles ``"template\npoint"``."""
    pp = vlm.preprocess
    alone, on_image, titles = [], [], []
    for t, tag in prompters:
        p = prompters[(t, tag)]
        x = next(iter(loader(samples[tag], vlm, batch_size=1, invert=tag.endswith("_inv"))))[0][0]
        alone.append(pixel.render_prompt(p, mean=pp.mean, std=pp.std))
        on_image.append(pixel.render_prompt(p, mean=pp.mean, std=pp.std, base=x))
        titles.append(f"{t}\n{tag}")
    return [("", alone), ("", on_image)], titles


def paper_claims(main, vision, templates, corr: dict) -> list:
    """Bahng et al.'s findings on our runs (``holds`` computed, never typed in); DataFrames from the functions above."""
    from ..report import Claim

    ch = main[main.chosen]
    tmpl = templates.set_index("template").acc
    tag = templates.point.iloc[0]
    vis_gain = vision.groupby("dataset").gain.max() if len(vision) else None
    vlm_gain = ch.set_index("dataset").gain
    se = (0.25 / int(ch.n_test.iloc[0])) ** 0.5  # upper bound on the binomial standard error of one test accuracy
    freq = vision[vision.mapping == "frequency"] if len(vision) else vision
    out = [
        Claim("padding_gt_fixed_gt_random", "Padding beats the fixed patch, which beats the random patch",
              "padding best (Sec. 5.1); issue: padding > fixed > random patch",
              f"{tag}: padding {tmpl['padding']:.3f}, fixed {tmpl['fixed_patch']:.3f}, random {tmpl['random_patch']:.3f}",
              bool(tmpl["padding"] > tmpl["fixed_patch"] > tmpl["random_patch"]),
              f"one dataset, one seed; one test accuracy has a standard error of up to {se:.3f}"),
        Claim("vp_tp_beats_tp", "VP+TP beats zero-shot TP on every dataset and polarity", "VP+TP > TP on all datasets (Table 1)",
              "; ".join(f"{r.point}: {r.tp_zero_shot:.3f} -> {r.vp_tp:.3f}" for r in main.itertuples()),
              bool(((main.vp_tp - main.tp_zero_shot) > 0).all())),
        Claim("gain_rises_with_gap", "The gain of VP+TP over TP rises with the distribution gap",
              "positive correlation of gain with FID/LPIPS to ImageNet (Sec. 5.2)",
              f"Pearson r = {corr['pearson_r']:.2f}, Spearman rho = {corr['spearman_rho']:.2f} over n = {corr['n']} points",
              bool(corr["pearson_r"] > 0),
              "gap = 1 - mean max-softmax of frozen ImageNet Lite0, not FID/LPIPS; too few points for a significance test"),
    ]
    if vis_gain is not None:
        note = (f"vision-only gain = VP minus unprompted mapped accuracy, best mapping per dataset; margin "
                f"{vlm_gain.mean() - vis_gain.mean():+.3f} vs a standard error of up to {se:.3f} per accuracy")
        if len(freq):
            note += (f"; frequency mapping alone: mean gain {freq.gain.mean():+.3f}, mean accuracy {freq.vp.mean():.3f} "
                     f"vs VP+TP {ch.vp_tp.mean():.3f}")
        out.append(Claim("vp_helps_vlm_more", "VP helps the VLM more than the vision-only model (mean gain, best mapping)",
                         "VP on vision-only models helps much less than on CLIP (Sec. 5)",
                         f"mean gain VLM {vlm_gain.mean():.3f} vs vision-only {vis_gain.mean():.3f}",
                         bool(vlm_gain.mean() > vis_gain.mean()), note))
    out.append(Claim("vp_tp_below_linear_probe_on_average", "VP+TP loses to a linear probe on average",
                     "competitive on some datasets (e.g. SVHN, EuroSAT), lower on average",
                     "; ".join(f"{r.dataset}: VP+TP {r.vp_tp:.3f} vs probe {r.probe_features:.3f}" for r in ch.itertuples()),
                     bool((ch.vp_tp - ch.probe_features).mean() < 0),
                     f"probe on frozen Lite0 features with the same {int(ch.n_train.iloc[0])} training images"))
    return out


__all__ = ["task_data", "chosen_polarity", "loader", "text_classifier", "train_and_evaluate", "frozen_outputs",
           "gap_measure", "imagenet_logits", "linear_probes", "correlation", "mapping_from_logits", "predict",
           "run_datasets", "template_ablations", "prompt_image_rows", "paper_claims"]

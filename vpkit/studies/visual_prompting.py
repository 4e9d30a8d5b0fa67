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
from ..metrics import linear_probe_predict
from ..profiles import resolve
from ..prompts import pixel
from ..train import evaluate, fit, predict


# 02: visual prompting (Bahng et al. 2022). Offline: the offline VLM at 64 px, padding 8 px (~30/224), 100
# training images per dataset, 5 epochs of Adam, 3 seeds (each draws its own training images and prompt init; the
# test images are fixed, so every comparison is paired); a validation split (n_val) chooses the vision-only label
# mapping. Paper: CLIP ViT-B/32, SGD lr 40, 1000 epochs.
PROFILES = {
    "smoke": dict(vlm="offline", vision_backbone=None, img_size=32, datasets=["digits"], both_polarities=False,
                  n_train=10, n_val=10, n_test=10, n_seeds=1, epochs=1, batch_size=10, lr=0.1, optimizer="adam", warmup_epochs=0,
                  amp=True, prompt_size=4, patch_size=8, widths=[], mappings=["frequency"],
                  ablation_dataset="digits"),
    "offline": dict(vlm="offline", vision_backbone=None, img_size=64,
                    datasets=["fashion_mnist", "mnist5k", "digits"], both_polarities=True, n_train=100,
                    n_val=100, n_test=1000, n_seeds=3, epochs=5, batch_size=20, lr=0.1, optimizer="adam", warmup_epochs=0,
                    amp=True, prompt_size=8, patch_size=16, widths=[2, 4, 16],
                    mappings=["first_n", "frequency"], ablation_dataset="fashion_mnist"),
    "paper": dict(vlm="clip_vit_b32", vision_backbone="resnet50", img_size=None,
                  datasets=["fashion_mnist", "mnist5k", "digits"], both_polarities=True, n_train=1000,
                  n_val=200, n_test=None, n_seeds=3, epochs=1000, batch_size=256, lr=40.0, optimizer="sgd", warmup_epochs=1,
                  amp=True, prompt_size=30, patch_size=50, widths=[1, 5, 10, 50],
                  mappings=["first_n", "frequency"], ablation_dataset="fashion_mnist", num_threads=None),
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 02_visual_prompting's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="visual_prompting")


def task_data(name: str, *, seed: int, n_train: int, n_test: int | None,
              n_val: int = 0) -> tuple[data_lib.ImageSet, data_lib.ImageSet, data_lib.ImageSet]:
    """``n_train`` training and ``n_val`` validation images drawn by ``seed`` from the pool (disjoint), and a fixed
    (seed-independent) test subset: -> (train, val, test)."""
    pool, test = data_lib.offline_dataset(name)
    sp = data_lib.vtab_splits(pool, test, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
    return sp["train800"], sp["val200"], sp["test"]


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
                       momentum: float = 0.9, val=None) -> dict:
    """Accuracy of ``method.model`` before prompting (prompt switched off: the frozen baseline, TP zero-shot or
    the unprompted label-mapped classifier) and after training only its prompt (which starts from the official
    N(0, 1) frame), with the per-test-example correct flags of both (``before_correct``, ``correct``), the
    validation accuracy after training when ``val`` is given, the run's seconds, training throughput and
    trainable-parameter count."""
    torch.manual_seed(seed)
    if hasattr(method.model, "prompter"):
        method.model.prompter.reset_generator(seed)
    te = loader(test, model, batch_size=max(batch_size, 64), invert=invert)
    with method.model.prompter.disabled():
        ev0 = evaluate(method.model, te, amp=amp)
    t0 = time.perf_counter()
    hist = fit(method.model, loader(train, model, batch_size=batch_size, invert=invert, shuffle=True, seed=seed),
               epochs=epochs, lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=0.0,
               warmup_epochs=warmup_epochs, amp=amp, progress=False)
    ev = evaluate(method.model, te, amp=amp)
    val_acc = (evaluate(method.model, loader(val, model, batch_size=max(batch_size, 64), invert=invert), amp=amp)["acc"]
               if val is not None and len(val) else float("nan"))
    return {"method": method.name, "before": ev0["acc"], "acc": ev["acc"], "before_correct": ev0["correct"],
            "correct": ev["correct"], "val_acc": val_acc, "train_acc": hist.train_acc[-1],
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
    y = np.asarray(test.labels)
    feat_ok = linear_probe_predict(tr["features"], train.labels, te["features"]) == y
    emb_ok = linear_probe_predict(tr["embedding"], train.labels, te["embedding"]) == y
    out = {"probe_features": float(feat_ok.mean()), "probe_embedding": float(emb_ok.mean()),
           "probe_features_correct": feat_ok}
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
                 both_polarities: bool, mappings, train_kw: dict, amp: bool = True, n_val: int = 0,
                 progress: bool = True):
    """The main study (Bahng et al. Table 1 analogue) for one ``seed``: for each dataset (and its inverted copy), TP
    zero-shot vs VP+TP (padding prompt through the VLM) with the linear probes and the gap; on the chosen polarity,
    VP on the vision-only model with each label ``mapping``, the one with the higher validation accuracy after
    prompting marked ``chosen_by_val`` (ties: the first in ``mappings``). -> (VLM rows, vision-only rows,
    prompters keyed ``("padding", point)``, one test image per point, per-example outcomes keyed as in
    :func:`claims_from_results`)."""
    from tqdm.auto import tqdm

    train_kw = {**train_kw, "seed": seed}
    rows, vision_rows, prompters, samples, outcomes = [], [], {}, {}, {}
    for name in tqdm(list(datasets), desc=f"datasets (seed {seed})", disable=not progress):
        train, val, test = task_data(name, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
        chosen = chosen_polarity(name)
        tf = text_classifier(vlm, name, test.classes)
        for invert in ([chosen, not chosen] if both_polarities else [chosen]):
            tag = f"{name}{'_inv' if invert else ''}"
            probes = linear_probes(vlm, train, test, invert=invert, amp=amp, vision=vision)
            m = build_vp_tp(vlm, tf, template="padding", prompt_size=prompt_size, seed=seed)
            r = train_and_evaluate(m, train, test, vlm, invert=invert, **train_kw)
            prompters[("padding", tag)] = m.model.prompter
            samples[tag] = test.subset([0])
            outcomes[f"vlm/{tag}/tp/{seed}"] = r["before_correct"]
            outcomes[f"vlm/{tag}/vp_tp/{seed}"] = r["correct"]
            outcomes[f"probe/{tag}/{seed}"] = probes["probe_features_correct"]
            rows.append({"dataset": name, "point": tag, "seed": seed, "invert": invert, "chosen": invert == chosen,
                         "gap": probes["gap"], "tp_zero_shot": r["before"], "vp_tp": r["acc"],
                         "gain": r["acc"] - r["before"], "probe_features": probes["probe_features"],
                         "probe_embedding": probes["probe_embedding"], "chance": 1 / len(test.classes),
                         "trainable": r["trainable"], "seconds": r["seconds"],
                         "train_images_per_s": r["train_images_per_s"], "precision": r["precision"],
                         "n_train": len(train), "n_val": len(val), "n_test": len(test)})
            if invert != chosen:
                continue
            mrows = []
            for kind in mappings:
                mapping = mapping_from_logits(kind, probes["train_imagenet_logits"], train.labels, len(test.classes))
                mv = build_vp_classifier(vision, mapping, template="padding", prompt_size=prompt_size, seed=seed)
                rv = train_and_evaluate(mv, train, test, vision, invert=invert, val=val, **train_kw)
                outcomes[f"vision/{name}/{kind}/unprompted/{seed}"] = rv["before_correct"]
                outcomes[f"vision/{name}/{kind}/vp/{seed}"] = rv["correct"]
                mrows.append({"dataset": name, "seed": seed, "mapping": kind,
                              "imagenet_classes": ", ".join(str(int(i)) for i in mapping),
                              "unprompted": rv["before"], "vp": rv["acc"], "gain": rv["acc"] - rv["before"],
                              "val_acc": rv["val_acc"], "trainable": rv["trainable"], "seconds": rv["seconds"]})
            best = max(range(len(mrows)), key=lambda i: (mrows[i]["val_acc"], -i)) if mrows else None
            for i, r_ in enumerate(mrows):
                r_["chosen_by_val"] = i == best
            vision_rows += mrows
    return rows, vision_rows, prompters, samples, outcomes


def template_ablations(vlm, base: dict, *, dataset: str, seed: int, n_train: int, n_test: int | None,
                       prompt_size: int, patch_size: int, widths, train_kw: dict, n_val: int = 0):
    """Padding vs fixed vs random patch (Sec. 5.1) and padding widths on one dataset in its chosen polarity for one
    ``seed``; ``base`` is that dataset's row of :func:`run_datasets` for the same seed (the padding run is reused,
    not retrained). -> (template rows, width rows, the new prompters keyed ``(template, point)``, outcomes)."""
    train_kw = {**train_kw, "seed": seed}
    train, _, test = task_data(dataset, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
    inv = chosen_polarity(dataset)
    tf = text_classifier(vlm, dataset, test.classes)
    tag = f"{dataset}{'_inv' if inv else ''}"
    templates = [{"template": "padding", "point": tag, "seed": seed, "prompt_size": prompt_size, "acc": base["vp_tp"],
                  "trainable": base["trainable"], "tp_zero_shot": base["tp_zero_shot"]}]
    prompters, outcomes = {}, {}
    for t in ("fixed_patch", "random_patch"):
        m = build_vp_tp(vlm, tf, template=t, prompt_size=patch_size, seed=seed)
        r = train_and_evaluate(m, train, test, vlm, invert=inv, **train_kw)
        prompters[(t, tag)] = m.model.prompter
        outcomes[f"template/{t}/{seed}"] = r["correct"]
        templates.append({"template": t, "point": tag, "seed": seed, "prompt_size": patch_size, "acc": r["acc"],
                          "trainable": r["trainable"], "tp_zero_shot": base["tp_zero_shot"]})
    width_rows = []
    for w in sorted(set(widths) | {prompt_size}):
        if w == prompt_size:
            acc, n = base["vp_tp"], base["trainable"]
        else:
            r = train_and_evaluate(build_vp_tp(vlm, tf, template="padding", prompt_size=w, seed=seed), train, test,
                                   vlm, invert=inv, **train_kw)
            acc, n = r["acc"], r["trainable"]
        width_rows.append({"prompt_size": w, "seed": seed, "acc": acc, "trainable": n})
    return templates, width_rows, prompters, outcomes


def run_study(vlm, vision, cfg: dict, *, seed: int, progress: bool = True):
    """Every seed of the main runs and the template/width ablations: -> dict of DataFrames (``main``, ``vision``,
    ``templates``, ``widths``), the per-example ``outcomes``, and the first seed's prompters and sample images."""
    import pandas as pd

    train_kw = dict(epochs=cfg["epochs"], lr=cfg["lr"], optimizer=cfg["optimizer"], batch_size=cfg["batch_size"],
                    amp=cfg["amp"], warmup_epochs=cfg["warmup_epochs"])
    main, vis, tmpl, wid, outcomes, first = [], [], [], [], {}, None
    for s in range(seed, seed + cfg["n_seeds"]):
        rows, vrows, prompters, samples, out = run_datasets(
            vlm, vision, cfg["datasets"], seed=s, n_train=cfg["n_train"], n_val=cfg["n_val"], n_test=cfg["n_test"],
            prompt_size=cfg["prompt_size"], both_polarities=cfg["both_polarities"], mappings=cfg["mappings"],
            train_kw=train_kw, amp=cfg["amp"], progress=progress)
        base = next(r for r in rows if r["dataset"] == cfg["ablation_dataset"] and r["chosen"])
        t, w, more, out2 = template_ablations(vlm, base, dataset=cfg["ablation_dataset"], seed=s,
                                              n_train=cfg["n_train"], n_val=cfg["n_val"], n_test=cfg["n_test"],
                                              prompt_size=cfg["prompt_size"], patch_size=cfg["patch_size"],
                                              widths=cfg["widths"], train_kw=train_kw)
        main += rows; vis += vrows; tmpl += t; wid += w  # noqa: E702
        outcomes.update(out); outcomes.update(out2)  # noqa: E702
        if first is None:
            first = ({**prompters, **more}, samples)
    tables = {"main": pd.DataFrame(main), "vision": pd.DataFrame(vis), "templates": pd.DataFrame(tmpl),
              "widths": pd.DataFrame(wid)}
    return tables, outcomes, first[0], first[1]


def seed_summary(df, by, cols) -> "pd.DataFrame":
    """Mean and the t-interval of the mean over seeds (:func:`vpkit.plots.interval_of_mean`) of ``cols`` per ``by``:
    columns ``<col>``, ``<col>_lo``, ``<col>_hi``, and ``n_seeds``."""
    import pandas as pd

    from ..plots import interval_of_mean

    out = []
    for key, g in df.groupby(by, sort=False):
        row = dict(zip([by] if isinstance(by, str) else by, key if isinstance(key, tuple) else (key,)))
        for c in cols:
            lo, hi = interval_of_mean(g[c])
            row.update({c: g[c].mean(), f"{c}_lo": lo, f"{c}_hi": hi})
        row["n_seeds"] = g["seed"].nunique()
        out.append(row)
    return pd.DataFrame(out)


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


def _runs(outcomes: dict, key: str, seeds) -> np.ndarray:
    """(seeds, examples) correct flags of the run ``key`` (``{seed}`` is filled in per seed)."""
    return np.stack([outcomes[key.format(seed=s)] for s in seeds]).astype(float)


def _pct(x) -> str:
    return f"{100 * float(np.mean(x)):.1f}%"


def claims_from_results(results_dir) -> list:
    """Bahng et al.'s findings decided on the saved runs of ``results_dir`` (``main_vlm.csv``, ``vision_only.csv``,
    ``templates.csv`` and ``outcomes.npz``): each claim's comparison, direction and threshold are fixed here; the
    interval is the hierarchical bootstrap over seeds, then test examples (every run of a comparison saw the same
    fixed test images, so pairs are kept). Accuracy margins are in percentage points."""
    from pathlib import Path

    import pandas as pd

    from .. import stats
    from ..report import Claim, load_outcomes

    d = Path(results_dir)
    main, vision = pd.read_csv(d / "main_vlm.csv"), pd.read_csv(d / "vision_only.csv")
    templates = pd.read_csv(d / "templates.csv")
    out = load_outcomes(d)
    seeds = sorted(main.seed.unique())
    ns = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    ch = main[main.chosen].drop_duplicates("point")
    claims = []

    # 1. templates (Sec. 5.1): padding > fixed patch > random patch, on the ablation dataset
    tag = templates.point.iloc[0]
    pad = _runs(out, f"vlm/{tag}/vp_tp/{{seed}}", seeds)
    fixed, rnd = _runs(out, "template/fixed_patch/{seed}", seeds), _runs(out, "template/random_patch/{seed}", seeds)
    claims.append(Claim(
        "padding_gt_fixed_gt_random", "Padding beats the fixed patch, which beats the random patch",
        "padding is the best template (Sec. 5.1)",
        f"{tag}: padding {_pct(pad)}, fixed {_pct(fixed)}, random {_pct(rnd)} ({ns})",
        decision=stats.every({"padding - fixed": stats.compare(pad, fixed).scaled(),
                              "fixed - random": stats.compare(fixed, rnd).scaled()}, what="both orderings")))

    # 2. VP+TP > TP on every dataset and polarity
    cases = {p: stats.compare(_runs(out, f"vlm/{p}/vp_tp/{{seed}}", seeds),
                              _runs(out, f"vlm/{p}/tp/{{seed}}", seeds)).scaled()
             for p in main.point.unique()}
    claims.append(Claim(
        "vp_tp_beats_tp", "VP+TP beats zero-shot TP (the stand-in VLM with text prompts only) on every dataset and "
        "polarity", "VP+TP > TP on all datasets (Table 1)",
        "; ".join(f"{p}: {c.margin:+.1f}" for p, c in cases.items()) + " points",
        decision=stats.every(cases, what="every dataset and polarity")))

    # 3. the gain grows with the distribution gap: within each dataset, the polarity with the larger gap (measured
    #    without labels on the test images) gets the larger VP+TP gain; the pooled correlation over the points is
    #    only descriptive (its points share datasets)
    pairs = {}
    for name, g in main.groupby("dataset", sort=False):
        pts = g.groupby("point").gap.mean().sort_values()
        if len(pts) == 2:
            lo, hi = pts.index

            def gain(p):
                return _runs(out, f"vlm/{p}/vp_tp/{{seed}}", seeds) - _runs(out, f"vlm/{p}/tp/{{seed}}", seeds)
            pairs[f"{hi} - {lo}"] = stats.compare(gain(hi) - gain(lo)).scaled()
    by_point = main.groupby("point")[["gap", "gain"]].mean()
    corr = correlation(by_point.gap, by_point.gain)
    claims.append(Claim(
        "gain_rises_with_gap", "The VP+TP gain over TP rises with the distribution gap: within each dataset, the "
        "input polarity with the larger gap gets the larger gain", "positive correlation of gain with FID/LPIPS to "
        "ImageNet (Sec. 5.2)",
        (("; ".join(f"{k}: {c.margin:+.1f}" for k, c in pairs.items()) + " points; ") if pairs else "")
        + f"descriptive Pearson r over the {corr['n']} points = {corr['pearson_r']:.2f}",
        note="gap = 1 - mean max-softmax of the frozen ImageNet Lite0 on the test images, not FID/LPIPS; the two "
             "polarities of a dataset share their test images, so their gains are compared per example",
        decision=(stats.every(pairs, what="every dataset") if pairs else
                  stats.not_testable("one input polarity per dataset in this profile: no within-dataset contrast"))))

    # 4. VP helps the VLM more than the vision-only model; the vision-only label mapping is the one with the higher
    #    validation accuracy after prompting (per dataset and seed), never chosen by its test score
    if len(vision):
        pick = vision[vision.chosen_by_val]

        def concat(fmt_vlm=None, kind=None):
            rows = []
            for s in seeds:
                parts = []
                for r in ch.itertuples():
                    if kind is None:
                        parts.append(out[fmt_vlm.format(p=r.point, seed=s)])
                    else:
                        m = pick[(pick.dataset == r.dataset) & (pick.seed == s)].mapping.iloc[0]
                        parts.append(out[f"vision/{r.dataset}/{m}/{kind}/{s}"])
                rows.append(np.concatenate(parts))
            return np.stack(rows).astype(float)
        vlm_gain = concat("vlm/{p}/vp_tp/{seed}") - concat("vlm/{p}/tp/{seed}")
        vis_vp, vis_un = concat(kind="vp"), concat(kind="unprompted")
        used = ", ".join(f"{k}: {v}" for k, v in pick.mapping.value_counts().items())
        claims.append(Claim(
            "vp_helps_vlm_more", "VP helps the VLM more than the vision-only model (gain over the unprompted model, "
            "pooled over datasets; vision-only label mapping chosen on a validation split)",
            "VP on vision-only models helps much less than on CLIP (Sec. 5)",
            f"gain VLM {100 * vlm_gain.mean():+.1f} vs vision-only {100 * (vis_vp - vis_un).mean():+.1f} points",
            note=f"mappings chosen by validation accuracy ({used} of {len(pick)} dataset-seeds)",
            decision=stats.compare(vlm_gain - (vis_vp - vis_un)).scaled()))
        vlm_acc = concat("vlm/{p}/vp_tp/{seed}")
        claims.append(Claim(
            "vp_tp_beats_vision_vp", "After prompting, the VLM (VP+TP) is more accurate than the prompted vision-only "
            "model (pooled over datasets; mapping chosen on a validation split)",
            "visual prompting is particularly effective for CLIP (abstract, Sec. 5)",
            f"VP+TP {_pct(vlm_acc)} vs vision-only VP {_pct(vis_vp)}",
            decision=stats.compare(vlm_acc, vis_vp).scaled()))

    # 5. VP+TP loses to a linear probe on the same images (the paper: competitive on some datasets, lower on average)
    probe = np.stack([np.concatenate([out[f"probe/{r.point}/{s}"] for r in ch.itertuples()]) for s in seeds]).astype(float)
    vptp = np.stack([np.concatenate([out[f"vlm/{r.point}/vp_tp/{s}"] for r in ch.itertuples()]) for s in seeds]).astype(float)
    claims.append(Claim(
        "vp_tp_below_linear_probe_on_average", "VP+TP loses to a linear probe on average (pooled over datasets)",
        "competitive on some datasets (e.g. SVHN, EuroSAT), lower on average",
        f"probe {_pct(probe)} vs VP+TP {_pct(vptp)}",
        note=f"logistic-regression probe on frozen Lite0 features from the same {int(ch.n_train.iloc[0])} training "
             "images per seed",
        decision=stats.compare(probe, vptp).scaled()))
    return claims


__all__ = ["task_data", "chosen_polarity", "loader", "text_classifier", "train_and_evaluate", "frozen_outputs",
           "gap_measure", "imagenet_logits", "linear_probes", "correlation", "mapping_from_logits", "predict",
           "run_datasets", "template_ablations", "run_study", "seed_summary", "prompt_image_rows",
           "claims_from_results"]

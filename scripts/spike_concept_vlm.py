"""Spike (issue 15 item 2): how far a class-disjoint stand-in VLM gets on held-out emoji concepts.

Frozen image towers (Lite0 ImageNet pooled features + logits -> ConSE dictionary; DINOv2 ViT-S/14 CLS + mean patch
tokens), frozen MiniLM text; only linear alignment layers are learned, on TRAINING concepts of
``class_disjoint_split(seed=0)`` only. Hyper-parameters are chosen on a validation split of the training concepts
(whole training subcategories, ``class_disjoint_split(train, seed=1, held_out_fraction=0.25)``), never on held-out
results.

    PYTHONPATH=. python3 scripts/spike_concept_vlm.py extract   # features once -> /tmp/p18/feats/*.npz
    PYTHONPATH=. python3 scripts/spike_concept_vlm.py fit medium  # SGD val grid, val-best refits, held-out tables
    PYTHONPATH=. python3 scripts/spike_concept_vlm.py linear      # ridge / ESZSL val grid + held-out
    PYTHONPATH=. python3 scripts/spike_concept_vlm.py untrained   # identity-init ConSE on the held-out groups
    PYTHONPATH=. python3 scripts/spike_concept_vlm.py mnist       # Fashion-MNIST / MNIST-5k with the val-chosen config
(`fit small` ran the first 7-config probe; `bench` measures img/s.) Results: scripts/spike_concept_vlm.md.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from vpkit import alignment as A  # noqa: E402
from vpkit import vlm as V  # noqa: E402
from vpkit.data import emoji as E  # noqa: E402
from vpkit.data import to_model_input  # noqa: E402

FEATS = Path("/tmp/p18/feats")
N_VIEWS = 4  # view 0: plain on white; views 1-3: random scale/position/background/rotation
STYLES = ("google", "twitter")
LITE_SIZE = 160
DINO_SIZE = 112


def view_seed(i: int, s: int) -> int:
    return 1000 * i + s


def all_views(items):
    """uint8 (C, S, V, 3, 64, 64) and a mask (C, S) of which styles draw each concept."""
    imgs = torch.zeros(len(items), len(STYLES), N_VIEWS, 3, 64, 64, dtype=torch.uint8)
    have = torch.zeros(len(items), len(STYLES), dtype=torch.bool)
    for i, c in enumerate(items):
        for s, st in enumerate(STYLES):
            if st in c.styles:
                imgs[i, s] = E.render_views(E.load_rgba(c, st), n=N_VIEWS, seed=view_seed(i, s))
                have[i, s] = True
    return imgs, have


@torch.no_grad()
def lite0_parts(imgs, bs=64):
    from vpkit.backbones import build_backbone
    bb = build_backbone("efficientnet_lite0", img_size=LITE_SIZE)
    m = bb.model
    fs, ls = [], []
    for i in range(0, len(imgs), bs):
        x = to_model_input(imgs[i:i + bs], size=LITE_SIZE, mean=bb.mean, std=bb.std)
        f = m.forward_head(m.forward_features(x), pre_logits=True)
        fs.append(f)
        ls.append(m.classifier(f))
    return torch.cat(fs), torch.cat(ls)


@torch.no_grad()
def dino_parts(imgs, size=DINO_SIZE, bs=64):
    from vpkit.backbones import build_backbone
    bb = build_backbone("vit_s14_dinov2", img_size=size)
    m = bb.model
    out = []
    for i in range(0, len(imgs), bs):
        x = to_model_input(imgs[i:i + bs], size=size, mean=bb.mean, std=bb.std)
        t = m.forward_features(x)
        out.append(torch.cat([t[:, 0], t[:, 1:].mean(1)], -1))
    return torch.cat(out)


def bench():
    items = E.concepts()
    imgs, _ = all_views(items[:32])
    x = imgs.flatten(0, 2)[:64]
    for name, fn in [("lite0@160", lambda: lite0_parts(x)), ("dino@56", lambda: dino_parts(x, 56)),
                     ("dino@84", lambda: dino_parts(x, 84)), ("dino@112", lambda: dino_parts(x, 112))]:
        fn()
        t0 = time.time()
        fn()
        print(f"{name}: {len(x) / (time.time() - t0):.1f} img/s (1 thread, incl. build)", flush=True)


def extract():
    t0 = time.time()
    items = E.concepts()
    imgs, have = all_views(items)
    flat = imgs.flatten(0, 2)
    t_render = time.time() - t0
    print(f"rendered {tuple(imgs.shape)} in {t_render:.0f}s", flush=True)
    t1 = time.time()
    lf, ll = lite0_parts(flat)
    t_lite = time.time() - t1
    print(f"lite0 {tuple(lf.shape)} {t_lite:.0f}s", flush=True)
    tok, bert = V.load_minilm()
    text = V.MiniLMText(tok, bert, context_length=32)
    t2 = time.time()
    keep = torch.tensor([i for i in range(1000) if i not in A.HELD_OUT_IMAGENET])
    dict_texts = A.imagenet_dictionary_texts()
    class_text = A.grouped_text_features(text, [dict_texts[i] for i in keep.tolist()])
    names = [c.name for c in items]
    temb = A.grouped_text_features(text, [[t.format(n) for t in A.EMOJI_TEMPLATES] for n in names])
    t_text = time.time() - t2
    print(f"text {t_text:.0f}s", flush=True)
    shape = imgs.shape[:3]
    np.savez(FEATS / "base.npz", names=np.array(names), category=np.array([c.category for c in items]),
             subcategory=np.array([c.subcategory for c in items]), have=have.numpy(),
             lite_feat=lf.reshape(*shape, -1).numpy(), lite_logits=ll.reshape(*shape, -1).numpy(),
             keep=keep.numpy(), class_text=class_text.numpy(), text=temb.numpy(),
             seconds=np.array([t_render, t_lite, t_text]))
    t3 = time.time()
    df = dino_parts(flat)
    t_dino = time.time() - t3
    print(f"dino {tuple(df.shape)} {t_dino:.0f}s", flush=True)
    np.savez(FEATS / f"dino{DINO_SIZE}.npz", feat=df.reshape(*shape, -1).numpy(), seconds=np.array([t_dino]))



# ----------------------------------------------------------------------------------------------------------
# Benchmark groups, fixed BEFORE any fit was run: (a) all held-out concepts together, (b) held-out concepts by
# emoji category (5 groups of 25-63), (c) a fixed random partition (numpy seed 0) into 10 groups of 23-24.
# ----------------------------------------------------------------------------------------------------------

def groups_for(idx, cats, n_random=10, seed=0):
    idx = list(idx)
    by_cat = {c: [i for i in idx if cats[i] == c] for c in sorted({cats[i] for i in idx})}
    perm = np.random.default_rng(seed).permutation(len(idx))
    rand = [[idx[j] for j in part] for part in np.array_split(perm, n_random)]
    return {"all": [idx], "category": list(by_cat.values()), "random24": rand}


class Data:
    def __init__(self):
        b = np.load(FEATS / "base.npz")
        d = np.load(FEATS / f"dino{DINO_SIZE}.npz")
        self.names = list(b["names"])
        self.cats = list(b["category"])
        self.have = torch.from_numpy(b["have"])
        self.lite = torch.from_numpy(b["lite_feat"]).float()
        self.logits = torch.from_numpy(b["lite_logits"]).float()
        self.dino = torch.from_numpy(d["feat"]).float()
        self.keep = torch.from_numpy(b["keep"]).long()
        self.class_text = torch.from_numpy(b["class_text"]).float()
        self.text = torch.from_numpy(b["text"]).float()
        self.seconds = {"render": float(b["seconds"][0]), "lite0": float(b["seconds"][1]),
                        "text": float(b["seconds"][2]), "dino": float(d["seconds"][0])}
        items = E.concepts()
        assert [c.name for c in items] == self.names
        pos = {n: i for i, n in enumerate(self.names)}
        train, held = E.class_disjoint_split(items, seed=0)
        fit, val = E.class_disjoint_split(train, seed=1, held_out_fraction=0.25)
        self.train = [pos[c.name] for c in train]
        self.held = [pos[c.name] for c in held]
        self.fit = [pos[c.name] for c in fit]
        self.val = [pos[c.name] for c in val]
        assert not set(self.train) & set(self.held) and not set(self.fit) & set(self.val)

    def rows(self, concepts, styles=(0, 1), views=range(N_VIEWS)):
        return [(c, s, v) for c in concepts for s in styles for v in views if self.have[c, s]]

    def gather(self, rows):
        c, s, v = (torch.tensor(x) for x in zip(*rows))
        return self.lite[c, s, v], self.logits[c, s, v], self.dino[c, s, v], c


class Aligner(torch.nn.Module):
    """z_img = A (softmax(logits_keep / T) @ E_dict) + B std(lite) + D std(dino); z_txt = C t (A, C at identity)."""

    def __init__(self, data, use, stats, train_text):
        super().__init__()
        self.use, self.stats = use, stats
        self.register_buffer("keep", data.keep)
        self.register_buffer("class_text", data.class_text)
        d = 384
        self.A = torch.nn.Linear(d, d)
        self.C = torch.nn.Linear(d, d)
        with torch.no_grad():
            for lin in (self.A, self.C):
                lin.weight.copy_(torch.eye(d)); lin.bias.zero_()
        self.C.requires_grad_(train_text)
        init = 0.0 if "conse" in use else 0.01
        self.B = torch.nn.Linear(1280, d, bias=False) if "lite" in use else None
        self.D = torch.nn.Linear(768, d, bias=False) if "dino" in use else None
        for lin in (self.B, self.D):
            if lin is not None:
                torch.nn.init.normal_(lin.weight, std=init) if init else torch.nn.init.zeros_(lin.weight)
        self.log_temp = torch.nn.Parameter(torch.zeros(()))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def image(self, lite, logits, dino):
        z = 0
        if "conse" in self.use:
            z = self.A((logits[:, self.keep] / self.log_temp.exp()).softmax(-1) @ self.class_text)
        if self.B is not None:
            z = z + self.B((lite - self.stats["lite"][0]) / self.stats["lite"][1])
        if self.D is not None:
            z = z + self.D((dino - self.stats["dino"][0]) / self.stats["dino"][1])
        return z

    def txt(self, t):
        return self.C(t)


def feature_stats(data, rows):
    lite, _, dino, _ = data.gather(rows)
    return {"lite": (lite.mean(0), lite.std(0) + 1e-4), "dino": (dino.mean(0), dino.std(0) + 1e-4)}


def fit_sgd(data, concepts, styles, cfg, seed=0):
    torch.manual_seed(seed)
    rows = data.rows(concepts, styles)
    lite, logits, dino, c = data.gather(rows)
    classes = torch.tensor(sorted(set(concepts)))
    remap = torch.full((len(data.names),), -1, dtype=torch.long)
    remap[classes] = torch.arange(len(classes))
    y = remap[c]
    m = Aligner(data, cfg["use"], feature_stats(data, rows), cfg["train_text"])
    params = [p for p in m.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() == 2]
    other = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["wd"]}, {"params": other, "weight_decay": 0.0}],
                            lr=cfg["lr"])
    bs = 256
    steps = max(1, len(rows) // bs)
    total = cfg["epochs"] * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    g = torch.Generator().manual_seed(seed)
    tt = data.text[classes]
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(len(rows), generator=g)
        for k in range(steps):
            r = perm[k * bs:(k + 1) * bs]
            zi = F.normalize(m.image(lite[r], logits[r], dino[r]), dim=-1)
            zt = F.normalize(m.txt(tt), dim=-1)
            loss = F.cross_entropy(m.log_scale.exp().clamp(max=100) * zi @ zt.t(), y[r])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    return m.eval()


@torch.no_grad()
def evaluate(data, m, concepts, groups, styles=(0, 1), views=range(N_VIEWS)):
    """Mean over groups of zero-shot top-1 among the group's concept names (each image vs its group's names)."""
    rows = data.rows(concepts, styles, views)
    lite, logits, dino, c = data.gather(rows)
    zi = F.normalize(m.image(lite, logits, dino), dim=-1)
    zt = F.normalize(m.txt(data.text), dim=-1)
    sim = zi @ zt.t()
    accs, chance = [], []
    for gset in groups:
        gi = torch.tensor(gset)
        mask = torch.isin(c, gi)
        pred = gi[sim[mask][:, gi].argmax(-1)]
        accs.append(float((pred == c[mask]).float().mean()))
        chance.append(1 / len(gset))
    return float(np.mean(accs)), float(np.mean(chance))


SMALL_GRID = [dict(use="conse", epochs=5, lr=1e-3, wd=0.05, train_text=False),
              dict(use="conse", epochs=20, lr=3e-4, wd=0.05, train_text=False),
              dict(use="conse", epochs=20, lr=1e-3, wd=0.05, train_text=True),
              dict(use="conse+dino", epochs=20, lr=3e-4, wd=0.5, train_text=False),
              dict(use="conse+dino", epochs=5, lr=1e-3, wd=0.05, train_text=False),
              dict(use="conse+dino", epochs=20, lr=1e-3, wd=5.0, train_text=False),
              dict(use="conse+lite+dino", epochs=5, lr=1e-3, wd=0.05, train_text=False)]
MEDIUM_GRID = [dict(use=u, epochs=e, lr=lr, wd=wd, train_text=False) for u in ("conse", "conse+dino", "conse+lite+dino")
               for e in (5, 20, 60) for lr in (3e-4, 1e-3) for wd in (0.05, 0.5)]
FEATURE_SETS = ("conse", "conse+lite", "dino", "conse+dino", "conse+lite+dino")
GRID = [dict(epochs=e, lr=lr, wd=wd, train_text=tt) for e in (20, 60) for lr in (1e-3, 3e-3)
        for wd in (0.05, 0.5) for tt in (False, True)]


def fit_main():
    t0 = time.time()
    data = Data()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    log(f"concepts {len(data.names)}: train {len(data.train)} (fit {len(data.fit)} / val {len(data.val)}), "
        f"held-out {len(data.held)}; feature seconds {data.seconds}")
    val_groups = groups_for(data.val, data.cats)
    res = {"seconds": data.seconds, "n": {k: len(getattr(data, k)) for k in ("train", "held", "fit", "val")},
           "val": [], "held": {}}
    # untrained ConSE reference (identity maps, T = 1)
    m0 = Aligner(data, "conse", None, False).eval()
    res["untrained_conse_val"] = evaluate(data, m0, data.val, val_groups["all"])
    log(f"untrained ConSE val(all) {res['untrained_conse_val']}")
    best = {}
    if len(sys.argv) > 2 and sys.argv[2] == "small":  # the grid that fitted the time left (see the .md)
        todo = SMALL_GRID
    elif len(sys.argv) > 2 and sys.argv[2] == "medium":
        todo = MEDIUM_GRID
    else:
        grid = GRID if len(sys.argv) < 3 else GRID[:int(sys.argv[2])]
        todo = [{"use": u, **c} for u in FEATURE_SETS for c in grid]
    for cfg in todo:
            use = cfg["use"]
            t1 = time.time()
            m = fit_sgd(data, data.fit, (0, 1), cfg)
            va, ch = evaluate(data, m, data.val, val_groups["all"])
            vr, chr_ = evaluate(data, m, data.val, val_groups["random24"])
            res["val"].append({**cfg, "val_all": va, "val_all_chance": ch, "val_random24": vr,
                               "val_random24_chance": chr_, "s": time.time() - t1})
            log(f"{cfg} val all {va:.3f} (chance {ch:.4f}) random24 {vr:.3f} ({chr_:.3f}) {time.time() - t1:.1f}s")
            if use not in best or va > best[use][0]:
                best[use] = (va, cfg)
    json.dump(res, open(FEATS / "fit_results.json", "w"), indent=1, default=str)
    # held-out: each feature set's val-best config, refit on ALL training concepts
    held_groups = groups_for(data.held, data.cats)
    best["overall"] = max(best.values(), key=lambda b: b[0])
    if len(sys.argv) > 2 and sys.argv[2] == "small":
        best = {k: best[k] for k in ("overall", "conse+dino") if k in best}
    for use, (va, cfg) in best.items():
        out = {"cfg": cfg, "val_all": va}
        for train_styles, tag in (((0, 1), "train both"), ((0,), "train google")):
            m = fit_sgd(data, data.train, train_styles, cfg)
            for test_style, sname in ((0, "google"), (1, "twitter")):
                for gname, gs in held_groups.items():
                    for vname, views in (("all views", range(N_VIEWS)), ("plain", (0,))):
                        acc, ch = evaluate(data, m, data.held, gs, (test_style,), views)
                        out[f"{tag}|{sname}|{gname}|{vname}"] = (acc, ch)
        res["held"][use] = out
        log(f"HELD {use}: " + json.dumps(out, default=str))
        json.dump(res, open(FEATS / "fit_results.json", "w"), indent=1, default=str)
    log(f"total {time.time() - t0:.0f}s")


# ----------------------------------------------------------------------------------------------------------
# Closed-form linear alignments (seconds per fit, so the validation grid is affordable on one thread):
# ridge (DeViSE-style regression image -> name embedding, scored by cosine) and ESZSL (Romera-Paredes & Torr
# 2015: bilinear x V s, closed form). Features: the ConSE vector softmax(logits_keep) @ E_dict (384), Lite0 pooled
# (1280), DINOv2 CLS+mean-patch (768); each block standardised on the fitting rows and scaled by 1/sqrt(dim).
# ----------------------------------------------------------------------------------------------------------

def blocks(data, rows, use):
    lite, logits, dino, c = data.gather(rows)
    out = []
    if "conse" in use:
        out.append((logits[:, data.keep]).softmax(-1) @ data.class_text)
    if "lite" in use:
        out.append(lite)
    if "dino" in use:
        out.append(dino)
    return out, c


class Linear:
    def __init__(self, data, concepts, styles, cfg):
        self.cfg, self.data = cfg, data
        rows = data.rows(concepts, styles)
        bl, c = blocks(data, rows, cfg["use"])
        self.stats = [(b.mean(0), b.std(0) + 1e-4) for b in bl]
        X = self.x(bl).double()
        classes = torch.tensor(sorted(set(concepts)))
        S = data.text[classes].double()
        G = X.t() @ X + cfg["gamma"] * len(X) * torch.eye(X.shape[1], dtype=torch.double)
        if cfg["kind"] == "ridge":
            self.W = torch.linalg.solve(G, X.t() @ data.text[c].double())
        else:  # ESZSL
            remap = {int(k): i for i, k in enumerate(classes)}
            Y = -torch.ones(len(X), len(classes), dtype=torch.double)
            Y[torch.arange(len(X)), torch.tensor([remap[int(k)] for k in c])] = 1
            self.W = torch.linalg.solve(G, X.t() @ Y @ S) @ torch.linalg.inv(
                S.t() @ S + cfg["lam"] * torch.eye(S.shape[1], dtype=torch.double))

    def x(self, bl):
        xs = [(b - m) / sd / math.sqrt(b.shape[1]) for b, (m, sd) in zip(bl, self.stats)]
        return torch.cat(xs + [torch.ones(len(xs[0]), 1)], -1)

    def embed(self, rows):
        bl, c = blocks(self.data, rows, self.cfg["use"])
        return (self.x(bl).double() @ self.W).float(), c


@torch.no_grad()
def evaluate_linear(data, m, concepts, groups, styles=(0, 1), views=range(N_VIEWS)):
    z, c = m.embed(data.rows(concepts, styles, views))
    t = data.text
    if m.cfg["kind"] == "ridge":
        z = F.normalize(z, dim=-1)
    accs, chance = [], []
    for gset in groups:
        gi = torch.tensor(gset)
        tg = t[gi]
        if m.cfg.get("center"):
            tg = F.normalize(tg - tg.mean(0), dim=-1)
        mask = torch.isin(c, gi)
        pred = gi[(z[mask] @ tg.t()).argmax(-1)]
        accs.append(float((pred == c[mask]).float().mean()))
        chance.append(1 / len(gset))
    return float(np.mean(accs)), float(np.mean(chance))


LIN_GRID = ([dict(kind="ridge", gamma=g, center=ce) for g in (1e-3, 1e-2, 1e-1, 1.0) for ce in (False, True)]
            + [dict(kind="eszsl", gamma=g, lam=l, center=ce) for g in (1e-2, 1e-1, 1.0) for l in (0.1, 1.0, 10.0)
               for ce in (False, True)])


def linear_main():
    t0 = time.time()
    data = Data()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    val_groups = groups_for(data.val, data.cats)
    held_groups = groups_for(data.held, data.cats)
    res = {"val": [], "held": {}}
    best = {}
    for use in FEATURE_SETS:
        for cfg in LIN_GRID:
            cfg = {"use": use, **cfg}
            m = Linear(data, data.fit, (0, 1), cfg)
            va, ch = evaluate_linear(data, m, data.val, val_groups["all"])
            vr, _ = evaluate_linear(data, m, data.val, val_groups["random24"])
            res["val"].append({**cfg, "val_all": va, "val_random24": vr})
            if use not in best or va > best[use][0]:
                best[use] = (va, vr, cfg)
        log(f"{use}: val-best {best[use]}  ({time.time() - t0:.0f}s)")
    best["overall"] = max(best.values(), key=lambda b: b[0])
    for use, (va, vr, cfg) in best.items():
        out = {"cfg": cfg, "val_all": va, "val_random24": vr}
        for train_styles, tag in (((0, 1), "train both"), ((0,), "train google")):
            m = Linear(data, data.train, train_styles, cfg)
            for test_style, sname in ((0, "google"), (1, "twitter")):
                for gname, gs in held_groups.items():
                    for vname, views in (("all views", range(N_VIEWS)), ("plain", (0,))):
                        out[f"{tag}|{sname}|{gname}|{vname}"] = evaluate_linear(data, m, data.held, gs,
                                                                                (test_style,), views)
        res["held"][use] = out
        log(f"HELD {use} {cfg}: " + " ".join(f"{k}={v[0]:.3f}" for k, v in out.items()
                                              if isinstance(v, tuple) and k.endswith("all views")))
        json.dump(res, open(FEATS / "linear_results.json", "w"), indent=1, default=str)
    log(f"total {time.time() - t0:.0f}s")


@torch.no_grad()
def untrained_main():
    """Identity-init ConSE (no fitting at all) on the held-out groups: the prior the fits must beat."""
    data = Data()
    m = Aligner(data, "conse", None, False).eval()
    out = {}
    for test_style, sname in ((0, "google"), (1, "twitter")):
        for gname, gs in groups_for(data.held, data.cats).items():
            for vname, views in (("all views", range(N_VIEWS)), ("plain", (0,))):
                out[f"{sname}|{gname}|{vname}"] = evaluate(data, m, data.held, gs, (test_style,), views)
    print(json.dumps(out))
    json.dump(out, open(FEATS / "untrained_results.json", "w"), indent=1)


def mnist_main(n_test=1000):
    """Zero-shot Fashion-MNIST / MNIST-5k with the val-chosen config, refit on the training concepts minus those
    alignment.HELD_OUT_EMOJI_PATTERN matches (garments, footwear, bags, digits, clocks); both polarities."""
    from vpkit.studies.backbones import load_dataset
    from vpkit.studies.vlm import ZERO_SHOT_TEMPLATES
    data = Data()
    cfg = json.load(open(FEATS / "fit_results.json"))["held"]["overall"]["cfg"]
    assert "dino" not in cfg["use"] and "lite" not in cfg["use"], cfg
    clean = [i for i in data.train if not A.HELD_OUT_EMOJI_PATTERN.search(data.names[i].upper().replace("'", ""))]
    m = fit_sgd(data, clean, (0, 1), cfg)
    tok, bert = V.load_minilm()
    text = V.MiniLMText(tok, bert, context_length=32)
    out = {"cfg": cfg, "n_train_concepts": len(clean), "dropped": sorted(set(data.names[i] for i in data.train)
                                                                          - set(data.names[i] for i in clean))}
    for name in ("fashion_mnist", "mnist5k"):
        _, test = load_dataset(name)
        imgs, y = test.images[:n_test], test.labels[:n_test]
        names = V.DATASET_CLASSNAMES[name]
        with torch.no_grad():
            zt = F.normalize(m.txt(A.grouped_text_features(text, [[t.format(c) for t in ZERO_SHOT_TEMPLATES]
                                                                   for c in names])), dim=-1)
            for inv in (False, True):
                x = imgs if not inv else 255 - imgs
                lf, ll = lite0_parts(x)
                zi = F.normalize(m.image(lf, ll, None), dim=-1)
                out[f"{name}|{'inverted' if inv else 'plain'}"] = float(((zi @ zt.t()).argmax(-1) == y).float().mean())
        print(name, out, flush=True)
    json.dump(out, open(FEATS / "mnist_results.json", "w"), indent=1)


if __name__ == "__main__":
    {"bench": bench, "extract": extract, "fit": fit_main, "linear": linear_main, "untrained": untrained_main,
     "mnist": mnist_main}[sys.argv[1]]()

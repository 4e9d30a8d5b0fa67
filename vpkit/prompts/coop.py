"""CoOp and CoCoOp: learned text context for a frozen vision-language model.

* **CoOp** (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022, Sec. 3.2, Eq. 2): the
  hand-written context "a photo of a" is replaced by ``n_ctx`` learned vectors in the text encoder's
  word-embedding space, ``t_i = [v_1 ... v_M, CLASS_i]``; both towers stay frozen; cross-entropy over
  ``logit_scale * cos(image, text)``. *Unified* context (one set shared by all classes) or *class-specific*
  context (CSC, one set per class; cannot be applied to unseen classes).
* **CoCoOp** (Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022, Sec. 3.2,
  Eq. 4): a Meta-Net ``Linear(d -> d/16) - ReLU - Linear(d/16 -> ctx_dim)`` maps the (normalised) image
  feature ``x`` to a token ``pi(x)`` that is **added to every context vector**, ``v_m(x) = v_m + pi(x)``, so
  each image gets its own prompts and the text tower runs per image.

The CoCoOp text pass here is **batched** over images x classes: ``(B, C, L, width)`` prompt embeddings go
through the text tower as one ``(B * C, L, width)`` batch (:meth:`CoCoOp.forward`). The official code loops
over images in Python; :meth:`CoCoOp.forward_loop` does the same and exists only to check equality and to
time it. Both models take **precomputed image features** (the image tower is frozen and, without
augmentation, runs once per image: :func:`vpkit.vlm.encode_images`).

All modules work on any :class:`vpkit.vlm.VLM` (open_clip CLIP for ``paper``, the offline stand-in,
``test_clip`` in tests).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import batch_indices
from ..vlm import VLM, OpenClipVLM, TextTokens

PLACEHOLDER = "X"  # the token the context positions hold before their embeddings are replaced (CoOp's code)


@dataclass(frozen=True)
class CoOpConfig:
    """Defaults of both papers (CoCoOp Sec. 4: M = 4 initialised from "a photo of a")."""

    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"  # None -> random N(0, init_std^2)
    class_specific: bool = False  # CoOp's CSC option
    init_std: float = 0.02


def _trim_ok(vlm: VLM) -> bool:
    """Trailing padding can be dropped for a bidirectional masked encoder (MiniLM), not for CLIP's fixed
    causal mask (its ``attn_mask`` has the full context length)."""
    return not isinstance(vlm, OpenClipVLM)


class PromptLearner(nn.Module):
    """The learned context ``ctx`` ((n_ctx, width), or (C, n_ctx, width) class-specific) and the frozen
    embeddings around it: start token before, ``CLASS_i.`` + end token (+ padding) after (CoOp Eq. 2)."""

    def __init__(self, vlm: VLM, classnames: list[str], *, n_ctx: int | None = 4,
                 ctx_init: str | None = "a photo of a", class_specific: bool = False, init_std: float = 0.02,
                 seed: int = 0, trim_padding: bool | None = None):
        super().__init__()
        emb = vlm.token_embedding
        self.ctx_start = int(vlm.ctx_start)
        self.trim_padding = _trim_ok(vlm) if trim_padding is None else bool(trim_padding)
        if ctx_init:
            init = vlm.tokenize(ctx_init)
            n_init = int(init.eot[0]) - self.ctx_start
            if n_ctx is not None and n_ctx != n_init:
                raise ValueError(f"ctx_init={ctx_init!r} is {n_init} tokens but n_ctx={n_ctx}; pass n_ctx=None "
                                 f"or n_ctx={n_init}, or ctx_init=None for random init")
            n_ctx = n_init
            with torch.no_grad():
                vec = emb(init.ids[0, self.ctx_start:self.ctx_start + n_ctx]).float().clone()
            if class_specific:
                vec = vec.unsqueeze(0).repeat(len(classnames), 1, 1)
        else:
            if n_ctx is None or n_ctx < 1:
                raise ValueError(f"n_ctx={n_ctx} must be >= 1 for random init (ctx_init=None)")
            shape = (len(classnames), n_ctx, vlm.width) if class_specific else (n_ctx, vlm.width)
            g = torch.Generator().manual_seed(int(seed))
            vec = torch.randn(shape, generator=g) * init_std
        self.n_ctx, self.class_specific, self.ctx_init = int(n_ctx), bool(class_specific), ctx_init
        self.ctx = nn.Parameter(vec)
        self._vlm = [vlm]  # not a submodule: the frozen VLM belongs to the caller / the method module
        self.set_classnames(classnames)

    def set_classnames(self, classnames: list[str]) -> None:
        """(Re)build the frozen prefix/suffix embeddings and tokens for ``classnames`` (e.g. new classes)."""
        if self.class_specific and self.ctx.shape[0] != len(classnames):
            raise ValueError(f"class_specific context was learned for {self.ctx.shape[0]} classes; it cannot be "
                             f"applied to {len(classnames)} other classes (use class_specific=False)")
        vlm = self._vlm[0]
        texts = [" ".join([PLACEHOLDER] * self.n_ctx) + " " + name + "." for name in classnames]
        tok = vlm.tokenize(texts)
        s, e = self.ctx_start, self.ctx_start + self.n_ctx
        ph = vlm.tokenize(PLACEHOLDER).ids[0, s]
        if not bool((tok.ids[:, s:e] == ph).all()):
            raise ValueError(f"tokenizer of {vlm.name!r} does not map {PLACEHOLDER!r} to one token per context slot")
        if self.trim_padding:
            L = int(tok.eot.max()) + 1
            tok = TextTokens(tok.ids[:, :L], tok.attention_mask[:, :L], tok.eot)
        with torch.no_grad():
            full = vlm.token_embedding(tok.ids).float()
        self.classnames = list(classnames)
        self.register_buffer("token_prefix", full[:, :s].clone(), persistent=False)
        self.register_buffer("token_suffix", full[:, e:].clone(), persistent=False)
        self.register_buffer("ids", tok.ids.clone(), persistent=False)
        self.register_buffer("attention_mask", tok.attention_mask.clone(), persistent=False)
        self.register_buffer("eot", tok.eot.clone(), persistent=False)

    @property
    def tokens(self) -> TextTokens:
        return TextTokens(self.ids, self.attention_mask, self.eot)

    def embeddings(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings ``[SOT, v_1..v_M, CLASS_i, ., EOT, pad]``.

        ``ctx`` (default ``self.ctx``): ``(M, w)`` or ``(C, M, w)`` -> ``(C, L, w)``; ``(B, M, w)`` image-
        conditioned (CoCoOp) -> ``(B, C, L, w)``.
        """
        ctx = self.ctx if ctx is None else ctx
        C = self.token_prefix.shape[0]
        if ctx.dim() == 2 or (ctx.dim() == 3 and self.class_specific and ctx is self.ctx):
            ctx = ctx.unsqueeze(0).expand(C, -1, -1) if ctx.dim() == 2 else ctx
            return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        B = ctx.shape[0]  # (B, M, w): one context per image, shared over classes
        pre = self.token_prefix.unsqueeze(0).expand(B, -1, -1, -1)
        suf = self.token_suffix.unsqueeze(0).expand(B, -1, -1, -1)
        return torch.cat([pre, ctx.unsqueeze(1).expand(-1, C, -1, -1), suf], dim=2)


class _PromptModel(nn.Module):
    """Holds the frozen VLM (a submodule, so ``.to`` moves it) and the prompt learner."""

    def __init__(self, vlm: VLM, classnames, **prompt_kw):
        super().__init__()
        for p in vlm.parameters():
            p.requires_grad_(False)
        self.vlm = vlm
        self.prompt = PromptLearner(vlm, classnames, **prompt_kw)

    def set_classnames(self, classnames: list[str]) -> "_PromptModel":
        self.prompt.set_classnames(classnames)
        return self

    @property
    def classnames(self) -> list[str]:
        return self.prompt.classnames

    def trainable_parameters(self) -> dict[str, int]:
        return {n: p.numel() for n, p in self.named_parameters() if p.requires_grad}


class CoOp(_PromptModel):
    """CoOp (IJCV 2022, Eq. 2): ``model(image_features) -> logits (B, C)`` with learned context."""

    def text_features(self) -> torch.Tensor:
        return self.vlm.encode_text_embeddings(self.prompt.embeddings(), self.prompt.tokens)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(image_features.float(), dim=-1)
        return self.vlm.logit_scale * x @ self.text_features().t()


class MetaNet(nn.Sequential):
    """CoCoOp's Meta-Net (Sec. 3.2): ``Linear(d, d/16) - ReLU - Linear(d/16, ctx_dim)``."""

    def __init__(self, vis_dim: int, ctx_dim: int, reduction: int = 16):
        hidden = max(1, vis_dim // reduction)
        super().__init__(nn.Linear(vis_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ctx_dim))


class CoCoOp(_PromptModel):
    """CoCoOp (CVPR 2022, Eq. 4): context ``v_m + pi(x)`` per image; text tower batched over images x classes."""

    def __init__(self, vlm: VLM, classnames, *, reduction: int = 16, seed: int = 0, **prompt_kw):
        super().__init__(vlm, classnames, seed=seed, **prompt_kw)
        if self.prompt.class_specific:
            raise ValueError("CoCoOp uses one unified context (class_specific=False)")
        g_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))
        self.meta_net = MetaNet(vlm.embed_dim, vlm.width, reduction)
        torch.random.set_rng_state(g_state)

    def conditional_context(self, x: torch.Tensor) -> torch.Tensor:
        """``v_m(x) = v_m + pi(x)`` for normalised image features ``x`` (B, D) -> (B, M, width)."""
        return self.prompt.ctx.unsqueeze(0) + self.meta_net(x).unsqueeze(1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(image_features.float(), dim=-1)
        B, C = x.shape[0], len(self.prompt.classnames)
        emb = self.prompt.embeddings(self.conditional_context(x))  # (B, C, L, w)
        tok = self.prompt.tokens
        rep = TextTokens(tok.ids.repeat(B, 1), tok.attention_mask.repeat(B, 1), tok.eot.repeat(B))
        t = self.vlm.encode_text_embeddings(emb.flatten(0, 1), rep).view(B, C, -1)
        return self.vlm.logit_scale * torch.einsum("bd,bcd->bc", x, t)

    def forward_loop(self, image_features: torch.Tensor) -> torch.Tensor:
        """Reference: the official code's per-image Python loop (used only to check equality and to time)."""
        x = F.normalize(image_features.float(), dim=-1)
        ctx = self.conditional_context(x)
        rows = []
        for i in range(x.shape[0]):
            t = self.vlm.encode_text_embeddings(self.prompt.embeddings(ctx[i]), self.prompt.tokens)
            rows.append(self.vlm.logit_scale * t @ x[i])
        return torch.stack(rows)


def build_prompt_model(method: str, vlm: VLM, classnames: list[str], **kw) -> CoOp | CoCoOp:
    """``coop`` | ``cocoop`` on a frozen VLM (keyword arguments as :class:`PromptLearner`)."""
    table = {"coop": CoOp, "cocoop": CoCoOp}
    if method not in table:
        raise ValueError(f"unknown prompt method={method!r}; known: {sorted(table)}")
    return table[method](vlm, classnames, **kw)


# ----------------------------------------------------------------------------------------------------------
# Training and evaluation on precomputed image features
# ----------------------------------------------------------------------------------------------------------

class FeatureLoader:
    """``(features, labels)`` batches of precomputed image features; seeded shuffling per epoch."""

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


def train_prompt(method: str, vlm: VLM, classnames: list[str], features: torch.Tensor, labels: torch.Tensor, *,
                 epochs: int, batch_size: int, lr: float, optimizer: str = "sgd", weight_decay: float = 5e-4,
                 warmup_epochs: float = 1.0, seed: int = 0, progress: bool = False, **prompt_kw):
    """Train CoOp / CoCoOp on precomputed features with :func:`vpkit.train.fit` -> ``(model, History)``."""
    from ..train import fit

    torch.manual_seed(seed)
    model = build_prompt_model(method, vlm, classnames, seed=seed, **prompt_kw)
    hist = fit(model, FeatureLoader(features, labels, batch_size=batch_size, shuffle=True, seed=seed),
               epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
               progress=progress, desc=method)
    return model, hist


@torch.no_grad()
def accuracy_on(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, classnames: list[str] | None = None,
                *, batch_size: int = 64) -> float:
    """Accuracy of a prompt model on features, optionally over other ``classnames`` (new classes/datasets)."""
    old = None
    if classnames is not None and list(classnames) != model.classnames:
        old = model.classnames
        model.set_classnames(classnames)
    model.eval()
    try:
        if isinstance(model, CoOp):
            t = model.text_features()
            pred = (F.normalize(features.float(), dim=-1) @ t.t()).argmax(-1)
        else:
            pred = torch.cat([model(features[i:i + batch_size]).argmax(-1)
                              for i in range(0, len(features), batch_size)])
    finally:
        if old is not None:
            model.set_classnames(old)
    return float((pred == torch.as_tensor(labels)).float().mean())


@torch.no_grad()
def zero_shot_accuracy(vlm: VLM, features: torch.Tensor, labels: torch.Tensor, classnames: list[str],
                       template: str = "a photo of a {}.") -> float:
    """CLIP zero-shot with the hand-written template (CoCoOp's baseline)."""
    w = vlm.classifier_weights(classnames, (template,))
    return float(((F.normalize(features.float(), dim=-1) @ w.t()).argmax(-1) == torch.as_tensor(labels))
                 .float().mean())


def step_seconds(model: nn.Module, fn, features: torch.Tensor, labels: torch.Tensor, *, repeats: int = 3) -> float:
    """Fastest of ``repeats`` training steps (cross-entropy forward + backward of ``fn``) after one warm-up."""
    fn(features).sum().backward()
    model.zero_grad(set_to_none=True)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.cross_entropy(fn(features), labels).backward()
        ts.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return min(ts)


def time_cocoop_step(model: CoCoOp, features: torch.Tensor, labels: torch.Tensor, *, repeats: int = 3) -> dict:
    """Seconds per training step (forward + backward) of CoCoOp batched vs the per-image loop, same batch."""
    out = {f"{name}_s_per_step": step_seconds(model, fn, features, labels, repeats=repeats)
           for name, fn in (("batched", model.forward), ("loop", model.forward_loop))}
    out["speedup"] = out["loop_s_per_step"] / out["batched_s_per_step"]
    out["batch_size"], out["num_classes"] = int(len(labels)), len(model.classnames)
    return out


# ----------------------------------------------------------------------------------------------------------
# Base-to-new experiments on the offline datasets (CoCoOp Sec. 4.1) with frozen image features
# ----------------------------------------------------------------------------------------------------------

@dataclass
class FeatureSet:
    """Frozen, normalised image features of one dataset: a K-shot training pool and a test set, plus shifted
    copies of the test set (``shifted[name]``) as the domain-shift analogue."""

    name: str
    classnames: list[str]
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    shifted: dict
    invert: bool
    seconds: float = 0.0

    def split(self, which: str, classes: list[int], k: int | None = None, *, seed: int = 0):
        """Features and relabelled labels (0..len(classes)-1) of ``classes``; ``k`` shots for ``train``."""
        feats, labels = {"train": (self.train, self.train_labels), "test": (self.test, self.test_labels)}.get(
            which) or (self.shifted[which], self.test_labels)
        keep = torch.nonzero(torch.isin(labels, torch.tensor(classes))).flatten()
        if k is not None:
            g = torch.Generator().manual_seed(seed)
            keep = torch.cat([keep[labels[keep] == c][torch.randperm(int((labels[keep] == c).sum()), generator=g)[:k]]
                              for c in classes])
        remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        return feats[keep], remap[labels[keep]]


def dataset_features(vlm: VLM, name: str, *, max_shots: int, n_test_per_class: int | None, seed: int = 0,
                     shifts: tuple[str, ...] = (), batch_size: int = 64, amp: bool = True,
                     image_size: int | None = None) -> FeatureSet:
    """Encode ``max_shots`` training images per class and ``n_test_per_class`` test images per class once (no
    augmentation). Offline datasets are encoded in the polarity :func:`vpkit.vlm.dark_background` picks from
    the training pool; the ``paper`` datasets (:data:`vpkit.data.COOP_DATASETS`, via torchvision, resized to
    ``image_size``) as they are. ``shifts``: ``"inverted"`` (the other polarity) and/or
    ``"<corruption>:<severity>"`` from :mod:`vpkit.shift` (applied at native resolution), encoded from the same
    test images."""
    from ..data import OFFLINE_DATASETS, few_shot_indices, load_torchvision, offline_dataset
    from ..shift import corrupt
    from ..vlm import DATASET_CLASSNAMES, dark_background, encode_images

    from ..data import TORCHVISION_DATASETS

    if name not in OFFLINE_DATASETS and name not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown dataset name={name!r}; offline: {list(OFFLINE_DATASETS)}, "
                         f"paper (torchvision): {sorted(TORCHVISION_DATASETS)}")
    t0 = time.perf_counter()
    if name in OFFLINE_DATASETS:
        pool, test = offline_dataset(name)
        tr = pool.subset(few_shot_indices(pool.labels, max_shots, seed=seed, num_classes=pool.num_classes))
        te = test if n_test_per_class is None else test.subset(
            few_shot_indices(test.labels, n_test_per_class, seed=seed + 1, num_classes=test.num_classes))
        inv = dark_background(pool.images[:2000])
    else:  # the CoOp datasets: decode only the K-shot pool and the test images that are used
        size = image_size or vlm.preprocess.img_size
        tr = load_torchvision(name, "train", size=size, per_class=max_shots, seed=seed)
        te = load_torchvision(name, "test", size=size, per_class=n_test_per_class, seed=seed + 1)
        inv = False
    enc = lambda imgs, invert=inv: encode_images(vlm, imgs, invert=invert, batch_size=batch_size, amp=amp)  # noqa: E731
    shifted = {}
    for s in shifts:
        if s == "inverted":
            shifted[s] = enc(te.images, not inv)
        else:
            cname, sev = s.split(":")
            shifted[s] = enc(corrupt(te.images, cname, int(sev), seed=seed))
    return FeatureSet(name, list(DATASET_CLASSNAMES.get(name, tr.classes)), enc(tr.images), tr.labels,
                      enc(te.images), te.labels, shifted, inv, time.perf_counter() - t0)


def base_to_new(vlm: VLM, fs: FeatureSet, method: str, *, k: int, seed: int = 0, train_kw: dict,
                prompt_kw: dict | None = None) -> tuple[dict, nn.Module]:
    """CoCoOp's base-to-new protocol on one dataset: train ``method`` on ``k`` shots of the base classes
    (first ceil(n/2) labels), test on base and new classes separately; H = harmonic mean -> (row, model)."""
    from ..data import base_new_classes
    from ..metrics import harmonic_mean

    base, new = base_new_classes(len(fs.classnames))
    base_names, new_names = [fs.classnames[c] for c in base], [fs.classnames[c] for c in new]
    x, y = fs.split("train", base, k, seed=seed)
    if method == "zero_shot":
        model, hist = None, None
        acc_b = zero_shot_accuracy(vlm, *fs.split("test", base), base_names)
        acc_n = zero_shot_accuracy(vlm, *fs.split("test", new), new_names)
        n_train = 0
    else:
        model, hist = train_prompt(method, vlm, base_names, x, y, seed=seed, **train_kw, **(prompt_kw or {}))
        acc_b = accuracy_on(model, *fs.split("test", base))
        acc_n = accuracy_on(model, *fs.split("test", new), new_names)
        n_train = sum(model.trainable_parameters().values())
    row = {"dataset": fs.name, "method": method, "k": k, "seed": seed, "base": acc_b, "new": acc_n,
           "H": harmonic_mean(acc_b, acc_n), "trainable_params": n_train,
           "train_seconds": hist.seconds if hist else 0.0,
           "steps": (len(hist.loss) * math.ceil(len(y) / train_kw["batch_size"])) if hist else 0}
    return row, model


# ----------------------------------------------------------------------------------------------------------
# The protocol of notebook 04: the K x seed grid, averages, transfer, timing, ablations, the papers' claims
# ----------------------------------------------------------------------------------------------------------

METHOD_ORDER = ("zero_shot", "coop", "cocoop")
# CoCoOp Table 1, averages over 11 datasets (base, new, H) and the EuroSAT H
PAPER_BASE_TO_NEW = {"zero_shot": (69.34, 74.22, 71.70, 60.03), "coop": (82.69, 63.22, 71.66, 68.69),
                     "cocoop": (80.47, 71.69, 75.83, 71.21)}


def base_to_new_grid(vlm: VLM, fsets: dict, *, datasets, shots, seeds, train_kw: dict, prompt_kw: dict,
                     methods=("coop", "cocoop"), linear_probe: bool = True, progress: bool = True):
    """Zero-shot once per dataset, then for every K and seed: the linear probe (reference) and each prompt
    method trained on K shots of the base classes -> (rows, models keyed by (dataset, method, K, seed)).
    ``train_kw[method]``: keyword arguments of :func:`train_prompt`."""
    from tqdm.auto import tqdm

    from ..data import base_new_classes
    from ..metrics import harmonic_mean, linear_probe as lp_acc

    rows, models = [], {}
    jobs = [(d, k, s) for d in datasets for k in shots for s in seeds]
    bar = tqdm(total=len(jobs) * len(methods), desc="base-to-new", disable=not progress)
    for name in datasets:
        rows.append(base_to_new(vlm, fsets[name], "zero_shot", k=0, train_kw={})[0])
    for name, k, s in jobs:
        fs = fsets[name]
        if linear_probe:
            base, new = base_new_classes(len(fs.classnames))
            lp = {split: lp_acc(*fs.split("train", cl, k, seed=s), *fs.split("test", cl))
                  for split, cl in (("base", base), ("new", new))}
            rows.append({"dataset": name, "method": "linear_probe", "k": k, "seed": s, **lp,
                         "H": harmonic_mean(lp["base"], lp["new"])})
        for method in methods:
            r, m = base_to_new(vlm, fs, method, k=k, seed=s, train_kw=train_kw[method], prompt_kw=prompt_kw)
            rows.append(r)
            models[(name, method, k, s)] = m
            bar.update()
    bar.close()
    return rows, models


def dataset_average(b2n, *, k: int, methods=METHOD_ORDER):
    """The papers' table at K shots: base and new accuracy averaged over seeds then datasets, H of the averages
    (as CoCoOp Table 1); ``*_sd``: standard deviation over seeds of the same per-seed averages. Zero-shot
    rows (k=0) are always included. -> DataFrame indexed by method."""
    import pandas as pd

    from ..metrics import harmonic_mean

    sel = b2n[b2n.method.isin(methods) & ((b2n.k == k) | (b2n.method == "zero_shot"))]
    per_seed = sel.groupby(["method", "seed", "dataset"])[["base", "new"]].mean().groupby(["method", "seed"]).mean()
    per_seed["H"] = [harmonic_mean(b, n) for b, n in zip(per_seed.base, per_seed.new)]
    avg = sel.groupby(["method", "dataset"])[["base", "new"]].mean().groupby("method").mean()
    avg["H"] = [harmonic_mean(b, n) for b, n in zip(avg.base, avg.new)]
    sd = per_seed.groupby("method")[["base", "new", "H"]].std(ddof=0).add_suffix("_sd")
    return pd.concat([avg, sd], axis=1).reindex([m for m in methods if m in avg.index])


def summary_with_paper(avg):
    """``avg`` (fractions) in %, beside the paper's averages over 11 datasets."""
    import pandas as pd

    paper = pd.DataFrame([{"method": m, "paper_base": v[0], "paper_new": v[1], "paper_H": v[2], "paper_eurosat_H": v[3]}
                          for m, v in PAPER_BASE_TO_NEW.items()])
    return avg.mul(100).round(2).reset_index().merge(paper, on="method", how="left")


def cross_dataset_rows(vlm: VLM, fsets: dict, pairs, models: dict, *, k: int, seeds, template: str) -> list[dict]:
    """CoCoOp Sec. 4.2 analogue: prompts learned on the source's base classes applied to every class of the
    target dataset (one row per pair, method and seed; zero-shot once per pair)."""
    rows = []
    for src, dst in pairs:
        fd = fsets[dst]
        x, y = fd.split("test", list(range(len(fd.classnames))))
        rows.append({"source": src, "target": dst, "method": "zero_shot", "seed": None,
                     "acc": zero_shot_accuracy(vlm, x, y, fd.classnames, template)})
        rows += [{"source": src, "target": dst, "method": m, "seed": s,
                  "acc": accuracy_on(models[(src, m, k, s)], x, y, fd.classnames)}
                 for m in ("coop", "cocoop") for s in seeds if (src, m, k, s) in models]
    return rows


def domain_shift_rows(vlm: VLM, fs: FeatureSet, models: dict, *, k: int, seeds, template: str) -> list[dict]:
    """CoCoOp Sec. 4.3 analogue: the base-class test images, clean and in every shifted copy of ``fs``."""
    from ..data import base_new_classes

    base, _ = base_new_classes(len(fs.classnames))
    names = [fs.classnames[c] for c in base]
    rows = []
    for which in ["test", *fs.shifted]:
        x, y = fs.split(which, base)
        rows.append({"test_set": which, "method": "zero_shot", "seed": None,
                     "acc": zero_shot_accuracy(vlm, x, y, names, template)})
        rows += [{"test_set": which, "method": m, "seed": s, "acc": accuracy_on(models[(fs.name, m, k, s)], x, y)}
                 for m in ("coop", "cocoop") for s in seeds if (fs.name, m, k, s) in models]
    return rows


def step_times(vlm: VLM, fs: FeatureSet, *, k: int, seed: int, batch: int, repeats: int, prompt_kw: dict) -> dict:
    """Seconds per training step on the same base-class batch: CoCoOp batched, CoCoOp per-image loop, CoOp."""
    from ..data import base_new_classes

    base, _ = base_new_classes(len(fs.classnames))
    x, y = fs.split("train", base, k, seed=seed)
    x, y = x[:batch], y[:batch]
    names = [fs.classnames[c] for c in base]
    out = time_cocoop_step(CoCoOp(vlm, names, seed=seed, **prompt_kw), x, y, repeats=repeats)
    coop = CoOp(vlm, names, seed=seed, **prompt_kw)
    out["coop_s_per_step"] = step_seconds(coop, coop, x, y, repeats=repeats)
    out["threads"] = torch.get_num_threads()
    return out


def ablation_rows(vlm: VLM, fs: FeatureSet, b2n, models: dict, *, k: int, seeds, train_kw: dict, n_ctx: int,
                  ctx_init: str | None, init: bool, n_ctx_list, bigger: bool, progress: bool = True) -> list[dict]:
    """CoCoOp Sec. 5 on one dataset, for every seed: phrase vs random initialisation (both methods), context
    length (random init, both methods), and a "bigger CoOp" with as many context vectors as match CoCoOp's
    parameter count, capped by what the text tower's context length leaves after the longest class name."""
    from tqdm.auto import tqdm

    jobs = []
    for s in seeds:
        if init:
            jobs += [(m, s, n_ctx, m) for m in ("coop", "cocoop")]
        jobs += [(m, s, n, m) for n in n_ctx_list for m in ("coop", "cocoop")]
        if bigger and (fs.name, "cocoop", k, s) in models:
            n_fit = vlm.context_length - 1 - int(vlm.tokenize([f"{c}." for c in fs.classnames]).eot.max())
            n_big = min(n_fit, round(sum(models[(fs.name, "cocoop", k, s)].trainable_parameters().values()) / vlm.width))
            jobs.append(("coop", s, n_big, "coop_bigger"))
    rows = []
    for method in ("coop", "cocoop"):  # the phrase-initialised runs of the grid
        for s in seeds:
            hit = b2n[(b2n.dataset == fs.name) & (b2n.method == method) & (b2n.k == k) & (b2n.seed == s)]
            if len(hit):
                rows.append({**hit.iloc[0].to_dict(), "init": "phrase" if ctx_init else "random", "n_ctx": n_ctx})
    for method, s, n, label in tqdm(jobs, desc="ablations", disable=not progress):  # all random-initialised
        r, _ = base_to_new(vlm, fs, method, k=k, seed=s, train_kw=train_kw[method],
                           prompt_kw=dict(n_ctx=n, ctx_init=None))
        rows.append({**r, "method": label, "init": "random", "n_ctx": n})
    return rows


def paper_claims(avg, *, timing: dict, cross, shift, abl, n_ctx: int, ablation_note: str) -> list:
    """The papers' findings, each checked on our runs (``holds`` computed, never typed in). ``avg``: from
    :func:`dataset_average`; ``cross``/``shift``/``abl``: DataFrames of the row functions above."""
    from ..report import Claim

    A = avg

    def noise(col: str, first: str, second: str) -> str:
        """The margin against the seed standard deviations of both averages (empty without seeds)."""
        if f"{col}_sd" not in A.columns or A[f"{col}_sd"].isna().all():
            return ""
        d, sd = A.loc[first, col] - A.loc[second, col], max(A.loc[first, f"{col}_sd"], A.loc[second, f"{col}_sd"])
        return f"margin {d:+.3f}, seed sd up to {sd:.3f}" + (": within seed noise" if abs(d) <= sd else "")

    best_learned_new = max(("coop", "cocoop"), key=lambda m: A.loc[m, "new"])
    out = [
        Claim("coop_geq_cocoop_base", "CoOp >= CoCoOp on base classes", "82.69 vs 80.47",
              f"{A.loc['coop', 'base']:.3f} vs {A.loc['cocoop', 'base']:.3f}",
              bool(A.loc["coop", "base"] >= A.loc["cocoop", "base"]), noise("base", "coop", "cocoop")),
        Claim("cocoop_gt_coop_new", "CoCoOp > CoOp on new classes", "71.69 vs 63.22",
              f"{A.loc['cocoop', 'new']:.3f} vs {A.loc['coop', 'new']:.3f}",
              bool(A.loc["cocoop", "new"] > A.loc["coop", "new"]), noise("new", "cocoop", "coop")),
        Claim("cocoop_gt_coop_H", "CoCoOp > CoOp on the harmonic mean H", "75.83 vs 71.66",
              f"{A.loc['cocoop', 'H']:.3f} vs {A.loc['coop', 'H']:.3f}", bool(A.loc["cocoop", "H"] > A.loc["coop", "H"]),
              noise("H", "cocoop", "coop")),
        Claim("zero_shot_best_new", "Zero-shot CLIP is best on new classes (learned prompts overfit the base classes)",
              "74.22 vs CoCoOp 71.69 vs CoOp 63.22",
              f"zero-shot {A.loc['zero_shot', 'new']:.3f}, CoCoOp {A.loc['cocoop', 'new']:.3f}, CoOp {A.loc['coop', 'new']:.3f}",
              bool(A.loc["zero_shot", "new"] > max(A.loc["coop", "new"], A.loc["cocoop", "new"])),
              noise("new", "zero_shot", best_learned_new)),
        Claim("batched_faster_than_loop", "The batched CoCoOp text pass is faster per training step than the per-image loop",
              "official code loops over images (issue #21 there)",
              f"{timing['batched_s_per_step']:.3f} s vs {timing['loop_s_per_step']:.3f} s per step (batch {timing['batch_size']})",
              bool(timing["batched_s_per_step"] < timing["loop_s_per_step"])),
    ]
    c = cross[cross.method != "zero_shot"].groupby("method").acc.mean() if len(cross) else {}
    if {"coop", "cocoop"} <= set(getattr(c, "index", [])):
        pairs = ", ".join(sorted({f"{a} -> {b}" for a, b in zip(cross.source, cross.target)}))
        out.append(Claim("cocoop_gt_coop_cross_dataset", "CoCoOp transfers better than CoOp to another dataset",
                         "65.74 vs 63.88 (ImageNet -> 10 datasets)", f"{c['cocoop']:.3f} vs {c['coop']:.3f} ({pairs})",
                         bool(c["cocoop"] > c["coop"])))
    ab = abl.groupby(["method", "init", "n_ctx"])[["new", "H"]].mean()
    if all((m, i, n_ctx) in ab.index for m in ("coop", "cocoop") for i in ("phrase", "random")):
        d = {m: ab.loc[(m, "phrase", n_ctx), "H"] - ab.loc[(m, "random", n_ctx), "H"] for m in ("coop", "cocoop")}
        out.append(Claim("init_helps_cocoop_more", "Initialising the context from the phrase helps CoCoOp more than CoOp (H gain)",
                         "CoCoOp Sec. 5: word-embedding init matters more for CoCoOp",
                         f"H gain CoCoOp {d['cocoop']:+.3f} vs CoOp {d['coop']:+.3f} ({ablation_note})",
                         bool(d["cocoop"] > d["coop"])))
    for m in ("coop", "cocoop"):
        if m in ab.index.get_level_values(0) and "random" in ab.loc[m].index.get_level_values(0):
            ctx_new = ab.loc[(m, "random"), "new"].sort_index()
            if len(ctx_new) > 1:
                out.append(Claim(f"longer_context_helps_new_{m}",
                                 f"A longer {m} context gives higher new-class accuracy (longest vs shortest n_ctx)",
                                 "CoCoOp Sec. 5: longer context helps new classes",
                                 ", ".join(f"n_ctx {n}: {v:.3f}" for n, v in ctx_new.items()),
                                 bool(ctx_new.iloc[-1] > ctx_new.iloc[0])))
    big = abl[abl.method == "coop_bigger"]
    if len(big) and ("cocoop", "phrase", n_ctx) in ab.index:
        h_big, h_co = big.H.mean(), ab.loc[("cocoop", "phrase", n_ctx), "H"]
        out.append(Claim("bigger_coop_below_cocoop", "A bigger CoOp (as many context vectors as CoCoOp has parameters, "
                         "capped by the context length) stays below CoCoOp on H", "CoCoOp Sec. 5: a bigger CoOp does not close the gap",
                         f"bigger CoOp (n_ctx {int(big.n_ctx.iloc[0])}, {int(big.trainable_params.iloc[0])} params) H {h_big:.3f} "
                         f"vs CoCoOp {h_co:.3f}", bool(h_big < h_co)))
    sh = shift[shift.test_set != "test"].groupby("method").acc.mean() if len(shift) else {}
    if {"coop", "cocoop", "zero_shot"} <= set(getattr(sh, "index", [])):
        out.append(Claim("domain_shift_order", "Under domain shift CoCoOp >= CoOp >= zero-shot",
                         "59.91 / 59.28 / 57.18 (ImageNet -> V2/Sketch/A/R)",
                         f"CoCoOp {sh['cocoop']:.3f}, CoOp {sh['coop']:.3f}, zero-shot {sh['zero_shot']:.3f}",
                         bool(sh["cocoop"] >= sh["coop"] >= sh["zero_shot"])))
    return out

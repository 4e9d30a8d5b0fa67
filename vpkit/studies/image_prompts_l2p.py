"""Study of notebook ``05_image_prompts_l2p``: L2P (Wang et al., CVPR 2022) and the image-prompt project on it.

The prompt pool, image prompts and generators are :mod:`vpkit.prompts.l2p`; the task loop is
:mod:`vpkit.continual`. This file holds the variants of the project as one flat table, the numbers quoted
in the source, the selection analysis, the prompt images, the LwF sweep, the claims.

Settings: :data:`PROFILES` is this notebook's ``smoke`` / ``offline`` / ``paper`` table, kept here beside the
protocol that reads it (not in one shared table), so that a change of protocol and of its budget are seen in
one file; :func:`settings` validates through :func:`vpkit.profiles.resolve`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..methods import build_l2p_model
from ..profiles import resolve
from ..prompts.l2p import L2PConfig, L2PModel, select_top_k


# 05: L2P + the image-prompt project (continual learning). Offline: Split Fashion-MNIST 5x2, 40 images per
# class, 56 px, 5 epochs per task (the paper's epochs, prompt length and top-N); lr from a pilot
# (0.003 / 0.01 / 0.03 / 0.1 on L2P).
PROFILES = {
    "smoke": dict(backbone="vit_s14_dinov2", img_size=14, dataset="fashion_mnist", num_tasks=2, split_seed=None,
                  shuffle_classes=True, normalize=True, augment=False, n_train_per_class=1, n_test_per_class=1,
                  epochs=1, batch_size=8, lr=0.01, amp=False,
                  pool_size=10, length=1, top_k=2, pull_coeff=0.1, selection="per_sample", lwf_weight=1.0,
                  gen_lwf_weights=[1.0], gen_size=28, init_classes=None, variants=None),
    "offline": dict(backbone="vit_s14_dinov2", img_size=56, dataset="fashion_mnist", num_tasks=5,
                    split_seed=None, shuffle_classes=True, normalize=True, augment=False, n_train_per_class=40,
                    n_test_per_class=40, epochs=5, batch_size=8,
                    lr=0.03, amp=True, pool_size=10, length=5, top_k=5, pull_coeff=0.1,
                    selection="per_sample", lwf_weight=1.0, gen_lwf_weights=[1.0, 10.0], gen_size=28,
                    init_classes=None,
                    variants=["seq_ft", "lwf", "joint", "l2p", "l2p_image_init", "l2p_image_init_keys",
                              "l2p_patch_embed", "vae_gen", "cls_gen", "vae_gen_pool", "vae_gen_pool_lwf1",
                              "vae_gen_pool_lwf10"]),
    "paper": dict(backbone="vit_b16_in21k", img_size=224, dataset="cifar100", num_tasks=10, split_seed=42,
                  shuffle_classes=False,  # official: classes in their natural order
                  normalize=False, augment=True,  # official: [0, 1] inputs, RandomResizedCrop + flip
                  n_train_per_class=None, n_test_per_class=None, epochs=5, batch_size=16, lr=0.03 * 16 / 256,
                  amp=True, pool_size=10, length=5, top_k=5, pull_coeff=0.1, selection="batch",
                  lwf_weight=1.0, gen_lwf_weights=[0.1, 1.0, 10.0], gen_size=32,
                  init_classes=["apple", "boy", "maple tree", "mountain", "bee", "chair", "lion", "poppy",
                                "crab", "bus"], variants=None),
}


def settings(profile: str, **overrides) -> dict:
    """Notebook 05_image_prompts_l2p's settings under ``profile`` (:data:`PROFILES`), with non-None ``overrides`` checked."""
    return resolve(PROFILES, profile, overrides, notebook="image_prompts_l2p")


# ----------------------------------------------------------------------------------------------------------
# Prompt selection
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def selection_counts(model: L2PModel, queries: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     batch_size: int = 64) -> torch.Tensor:
    """(num_classes, pool_size) how often each prompt is selected for each class's images (from cached
    queries; batch-wise selection is applied per batch of ``batch_size`` in the given order)."""
    if model.pool is None:
        raise ValueError("the model has no prompt pool")
    M = model.pool.pool_size
    counts = torch.zeros(num_classes, M, dtype=torch.long)
    for i in range(0, len(queries), batch_size):
        q, y = queries[i:i + batch_size], labels[i:i + batch_size]
        idx, _ = select_top_k(q, model.pool.key.detach().cpu().float(), model.pool.top_k, model.pool.selection)
        for k in range(idx.shape[1]):
            counts.index_put_((y, idx[:, k]), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return counts


# ----------------------------------------------------------------------------------------------------------
# The variants of the image-prompt project, as one flat table of (L2PConfig, training overrides, protocol)
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    model: L2PConfig
    train: dict  # overrides of vpkit.continual.ContinualConfig
    joint: bool = False
    label: str = ""


def project_variants(*, pool_size: int = 10, length: int = 5, top_k: int = 5, pull_coeff: float = 0.1,
                     selection: str = "per_sample", gen_lwf_weights=(0.1, 1.0, 10.0), lwf_weight: float = 1.0,
                     gen_length: int | None = None, gen_size: int = 28) -> dict[str, Variant]:
    """Every run of the notebook: bounds (sequential fine-tuning / LwF / joint training of a single prompt of
    N*L tokens + head, i.e. what L2P trains without the pool), L2P, and the project's variants 1-4."""
    pool = dict(pool_size=pool_size, length=length, top_k=top_k, pull_coeff=pull_coeff, selection=selection)
    gl = gen_length or length
    gen = dict(gen_length=gl, gen_size=gen_size)
    single = L2PConfig(use_pool=False, shared_length=length * top_k)
    v = [
        Variant("seq_ft", single, dict(train_mask="seen"), label="sequential fine-tuning (lower bound)"),
        Variant("lwf", single, dict(train_mask="seen", lwf_weight=lwf_weight), label=f"LwF (weight {lwf_weight})"),
        Variant("joint", single, dict(train_mask="seen"), joint=True, label="joint training (upper bound)"),
        Variant("l2p", L2PConfig(**pool), {}, label="L2P (random init)"),
        Variant("l2p_image_init", L2PConfig(**pool, prompt_init="image"), {},
                label="image-initialised prompts, no patch embedding"),
        Variant("l2p_image_init_keys", L2PConfig(**pool, prompt_init="image", key_init="query"), {},
                label="image-initialised prompts + keys from the same images (ours)"),
        Variant("l2p_patch_embed", L2PConfig(**pool, prompt_form="image", image_tokens="pool"), {},
                label=f"image prompts through the patch embedding (pooled to L={length})"),
        Variant("vae_gen", L2PConfig(use_pool=False, generator="vae", **gen), {}, label="VAE generator prompts"),
        Variant("cls_gen", L2PConfig(use_pool=False, generator="cls", **gen), {}, label="CLS-token generator"),
        Variant("vae_gen_pool", L2PConfig(**pool, generator="vae", **gen), {}, label="VAE generator + pool"),
    ]
    for w in gen_lwf_weights:
        v.append(Variant(f"vae_gen_pool_lwf{w:g}", L2PConfig(**pool, generator="vae", **gen),
                         dict(gen_lwf_weight=float(w)), label=f"VAE generator + pool + LwF on the generator ({w:g})"))
    return {x.name: x for x in v}


def run_variant(variant: Variant, backbone, tasks, *, train_cfg, queries=None, init_images=None,
                num_classes: int | None = None, progress: bool = False):
    """Build the variant's model on ``backbone`` and run it through the task loop (or joint training).

    Returns ``(ContinualResult, Method)``; ``train_cfg`` is the base :class:`ContinualConfig`.
    """
    import dataclasses

    from .. import continual

    C = num_classes or tasks[0].train.num_classes
    method = build_l2p_model(backbone, C, variant.model, init_images=init_images)
    cfg = dataclasses.replace(train_cfg, **variant.train)
    run = continual.run_joint if variant.joint else continual.run_continual
    res = run(method.model, tasks, backbone, cfg=cfg, name=variant.name, queries=queries, num_classes=C,
              progress=progress)
    return res, method


# ----------------------------------------------------------------------------------------------------------
# Numbers quoted in the source (Split CIFAR-100, 10 tasks): average accuracy % / forgetting
# ----------------------------------------------------------------------------------------------------------

PAPER_NUMBERS = {
    # variant: (project's avg acc, project's forgetting, L2P-paper avg acc, L2P-paper forgetting, note)
    "seq_ft": (None, None, 33.61, 86.87, "L2P paper, FT-seq"),
    "lwf": (None, None, 60.69, 27.77, "L2P paper"),
    "joint": (None, None, None, None, "upper bound; no number in the source text"),
    "l2p": (83.86, 7.63, 83.83, 7.63, "L2P paper 83.83/7.63; DualPrompt's report 83.86/7.35; project cites 83.86/7.63"),
    "l2p_image_init": (84.3, 6.53, None, None, "project variant 2: better than L2P"),
    "l2p_image_init_keys": (None, None, None, None, "not in the source: our control for the selection analysis"),
    "l2p_patch_embed": (74.0, 11.91, None, None, "project variant 1: prompt count grows ~10x"),
    "vae_gen": (None, None, None, None, "project: harder to train, forgets (no number)"),
    "cls_gen": (None, None, None, None, "project: trains better, much lower accuracy (no number)"),
    "vae_gen_pool": (None, None, None, None, "project: best of the generator variants (no number)"),
}


def paper_numbers(name: str) -> tuple:
    if name.startswith("vae_gen_pool_lwf"):
        return (None, None, None, None, "project: less forgetting, lower new-task accuracy (no number)")
    return PAPER_NUMBERS.get(name, (None, None, None, None, ""))


def init_images(pool, *, count: int, size: int, mean, std, class_names=None, seed: int = 0) -> tuple:
    """One training image per class, for ``count`` classes (the named ones, else 0..count-1 cycling), as
    normalised model inputs (count, 3, size, size) plus the class ids used - the project initialised its 10
    prompts from 10 class images."""
    from ..data import to_model_input

    if class_names is not None:
        missing = [c for c in class_names if c not in pool.classes]
        if missing:
            raise ValueError(f"init class names {missing} not in the dataset's classes")
        ids = [pool.classes.index(c) for c in class_names]
    else:
        ids = [i % pool.num_classes for i in range(count)]
    if len(ids) != count:
        raise ValueError(f"{len(ids)} init classes for a pool of {count} prompts")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in ids:
        members = torch.nonzero(pool.labels == c).flatten()
        picks.append(members[torch.randint(len(members), (1,), generator=g)].item())
    imgs = pool.images[torch.tensor(picks)]
    return to_model_input(imgs, size=size, mean=mean, std=std), ids


@torch.no_grad()
def selection_summary(counts: torch.Tensor, *, top_k: int, prompt_class: list[int] | None = None,
                      min_share: float = 0.01) -> dict:
    """Collapse and class-prompt relation from a (classes, prompts) selection-count matrix.

    ``prompts_used``: prompts holding >= ``min_share`` of all selections (l2p#18: ~4 of 10 in the official
    code); ``top_k_share``: share of selections on the N most used prompts (1.0 = the same N for everything).
    With ``prompt_class`` (prompt m was initialised from class ``prompt_class[m]``): ``own_prompt_rate`` = how
    often a class's images select its own prompt, against ``other_class_rate``, the same prompt's rate for
    the other classes' images (no relation: equal rates).
    """
    c = counts.double()
    per_prompt = c.sum(0)
    share = per_prompt / per_prompt.sum().clamp_min(1)
    out = {"prompts_used": int((share >= min_share).sum()), "pool_size": int(c.shape[1]),
           "top_k_share": float(share.sort(descending=True).values[:top_k].sum()),
           "selection_entropy_bits": float(-(share[share > 0] * share[share > 0].log2()).sum())}
    if prompt_class is not None:
        n_img = c.sum(1) / top_k  # images per class (each image selects top_k prompts)
        own, other = [], []
        for m, cls in enumerate(prompt_class):
            if cls >= c.shape[0] or n_img[cls] == 0:
                continue
            own.append(c[cls, m] / n_img[cls])
            rest = [k for k in range(c.shape[0]) if k != cls and n_img[k] > 0]
            other.append(c[rest, m].sum() / n_img[rest].sum())
        out["own_prompt_rate"] = float(torch.stack(own).mean()) if own else float("nan")
        out["other_class_rate"] = float(torch.stack(other).mean()) if other else float("nan")
    return out


# ----------------------------------------------------------------------------------------------------------
# Analyses of notebook 05: selection shares, prompt images, LwF trade-off, the source's claims
# ----------------------------------------------------------------------------------------------------------

def selection_fractions(counts: torch.Tensor, top_k: int) -> torch.Tensor:
    """(classes, prompts) share of each class's images that select each prompt (rows of a top-N selection
    sum to N; 1.0 = every image of the class selects that prompt)."""
    return counts.float() / counts.sum(1, keepdim=True).clamp_min(1) * top_k


def to_image(x: torch.Tensor, mean, std):
    """A normalised (3, H, W) model input (or learned image prompt) as an H x W x 3 array in [0, 1]."""
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (x.detach().float().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()


@torch.no_grad()
def prompt_image_rows(models: dict, init_x: torch.Tensor, *, mean, std, vae_inputs: torch.Tensor | None = None):
    """Rows for :func:`vpkit.plots.image_grid`: the pool's initialisation images, the learned image prompts of
    the patch-embedding route, the image-initialised (L x d) token prompts as matrices, and the VAE
    generator's targets and outputs for ``vae_inputs``."""
    rows = [("init images", [to_image(x, mean, std) for x in init_x])]
    if "l2p_patch_embed" in models:
        rows.append(("learned image prompts", [to_image(x, mean, std) for x in models["l2p_patch_embed"].pool.prompt]))
    if "l2p_image_init" in models:
        rows.append(("image-init tokens (L x d)", [p.detach().float().numpy() for p in models["l2p_image_init"].pool.prompt]))
    if "vae_gen_pool" in models and vae_inputs is not None:
        g = models["vae_gen_pool"].generator.eval()
        rows.append(("VAE inputs", [to_image(x, mean, std) for x in g.target(vae_inputs)]))
        rows.append(("VAE generated", [to_image(x, mean, std) for x in g.deterministic(vae_inputs)]))
    return rows


def lwf_sweep(results: dict, weights, *, base: str = "vae_gen_pool") -> list[tuple[str, float]]:
    """(run name, generator-LwF weight) of the sweep present in ``results``; weight 0 is ``base`` itself."""
    sweep = [(base, 0.0)] + [(f"{base}_lwf{w:g}", float(w)) for w in weights]
    return [(n, w) for n, w in sweep if n in results]


def lwf_tradeoff_rows(results: dict, sweep: list[tuple[str, float]]) -> list[dict]:
    return [{"gen_lwf_weight": w, "forgetting": 100 * results[n].forgetting,
             "new_task_acc": 100 * results[n].new_task_accuracy, "avg_acc": 100 * results[n].average_accuracy}
            for n, w in sweep]


def project_claims(results: dict, selection: dict, *, sweep: list[tuple[str, float]], length: int, selection_mode: str,
                   top_k: int) -> list:
    """The source's conclusions (and L2P's), each checked on our runs: ``holds`` is computed, never typed in.
    ``results``: name -> ContinualResult; ``selection``: name -> :func:`selection_summary`."""
    from ..report import Claim

    have = set(results)
    pct = lambda n, attr: 100 * getattr(results[n], attr)  # noqa: E731
    acc = lambda n: pct(n, "average_accuracy")  # noqa: E731
    out = []
    if {"l2p", "l2p_image_init"} <= have:
        a, b = acc("l2p_image_init"), acc("l2p")
        out.append(Claim("image_init_ge_l2p", "image-initialised prompts (no patch embedding) >= random-initialised L2P "
                         "(avg acc)", "84.3 vs 83.86", f"{a:.1f} vs {b:.1f}", bool(a >= b)))
    if {"l2p", "l2p_patch_embed"} <= have:
        a, b = acc("l2p_patch_embed"), acc("l2p")
        out.append(Claim("patch_embed_lt_l2p", "image prompts through the patch embedding < L2P (avg acc)", "74 vs 83.86",
                         f"{a:.1f} vs {b:.1f}", bool(a < b),
                         f"prompt count kept at L={length} per prompt by pooling patch tokens"))
    if len(sweep) > 1:
        (n0, _), (nw, w) = sweep[0], sweep[-1]
        f0, fw = pct(n0, "forgetting"), pct(nw, "forgetting")
        a0, aw = pct(n0, "new_task_accuracy"), pct(nw, "new_task_accuracy")
        out.append(Claim("gen_lwf_lowers_forgetting", f"LwF on the generator (weight {w:g}) lowers forgetting",
                         "less forgetting", f"{fw:.1f} vs {f0:.1f}", bool(fw < f0)))
        out.append(Claim("gen_lwf_lowers_new_task_acc", f"LwF on the generator (weight {w:g}) lowers new-task accuracy",
                         "lower accuracy on new tasks", f"{aw:.1f} vs {a0:.1f}", bool(aw < a0)))
    if {"lwf", "seq_ft"} <= have:
        f1, f0 = pct("lwf", "forgetting"), pct("seq_ft", "forgetting")
        out.append(Claim("lwf_lowers_forgetting_vs_ft", "LwF forgets less than sequential fine-tuning", "27.77 vs 86.87",
                         f"{f1:.1f} vs {f0:.1f}", bool(f1 < f0)))
    if {"l2p", "seq_ft"} <= have:
        a, b = acc("l2p"), acc("seq_ft")
        out.append(Claim("l2p_much_better_than_ft", "L2P >> sequential fine-tuning (avg acc, by >= 20 points)",
                         "83.83 vs 33.61", f"{a:.1f} vs {b:.1f}", bool(a - b >= 20)))
    if "l2p" in selection:
        s = selection["l2p"]
        out.append(Claim("l2p_selection_collapse", "L2P prompt selection collapses: fewer prompts used than the pool holds",
                         "~4 of 10 used (l2p#18, batch-wise selection)", f"{s['prompts_used']} of {s['pool_size']} used",
                         bool(s["prompts_used"] < s["pool_size"]),
                         f"{selection_mode} selection; top-{top_k} share {s['top_k_share']:.2f}"))
    if "l2p_image_init" in selection:
        s = selection["l2p_image_init"]
        out.append(Claim("no_class_prompt_relation",
                         "classes do not preferentially select the prompt initialised from their image", "no relation found",
                         f"own {s['own_prompt_rate']:.2f} vs other classes {s['other_class_rate']:.2f}",
                         bool(s["own_prompt_rate"] < 1.5 * s["other_class_rate"] + 0.05),
                         "relation = own-class rate > 1.5x other + 0.05"))
    gens = [n for n in ("vae_gen", "cls_gen", "vae_gen_pool") if n in have]
    if gens and "l2p" in have:
        best = max(gens, key=acc)
        out.append(Claim("generators_underperform", "every generator variant is below L2P (avg acc)",
                         "generators underperformed", f"best {best} {acc(best):.1f} vs {acc('l2p'):.1f}",
                         bool(acc(best) < acc("l2p"))))
    solo = [n for n in ("vae_gen", "cls_gen") if n in have]
    if solo and "vae_gen_pool" in have:
        a, b = acc("vae_gen_pool"), max(acc(n) for n in solo)
        out.append(Claim("gen_pool_best_generator", "generator + pool beats the generator-only variants",
                         "best generator variant", f"{a:.1f} vs {b:.1f}", bool(a > b)))
    return out

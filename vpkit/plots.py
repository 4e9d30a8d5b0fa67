"""Figures the notebooks share or that would otherwise be long notebook cells: each function takes result
tables or arrays and returns a matplotlib figure (the notebook saves it with ``Results.figure``)."""
from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


# One colour per method across every figure of the project (issue 16, item 6): no two methods share a colour
# (every pair of distinct colours at least ~18 CIELAB units apart: colour_distance), and a name that is not listed gets
# a fixed colour from its hash, never one of these (nor one that depends on the order of a legend). Keys in canonical
# form (lower case, "-" and " " as "_"; see method_color): "partial-2", "Partial 2" and "partial_2" are one method
# with one colour; aliases of one method (linear / linear_probe, vpt_deep / deep, ...) share it.
METHOD_COLORS = {
    # baselines on a frozen backbone (VPT, Pro-Tuning)
    "linear": "#4c72b0", "linear_probe": "#4c72b0", "probe_features": "#4c72b0",
    "full": "#c44e52", "partial": "#80cdc1", "partial_1": "#80cdc1", "partial_2": "#01665e",
    "bias": "#937860", "bitfit": "#937860", "adapter": "#da8bc3", "side": "#ccb974",
    # prompt methods
    "vpt_shallow": "#64b5cd", "shallow": "#64b5cd", "vpt_deep": "#dd8452", "deep": "#dd8452",
    "protuning": "#55a868", "pro_tuning": "#55a868",
    # vision-language models (visual prompting, CoOp / CoCoOp)
    "zero_shot": "#7f7f7f", "tp": "#7f7f7f", "tp_zero_shot": "#7f7f7f",
    "coop": "#6a3d9a", "cocoop": "#e7298a", "vp_tp": "#e6ab02", "vp": "#e6ab02",
    # continual learning (L2P): sequential fine-tuning is not VPT's full fine-tuning, so it has its own colour
    "l2p": "#0b3d6e", "ft": "#7b2d0a", "seq_ft": "#7b2d0a", "finetune": "#7b2d0a", "lwf": "#b8a0e0",
    # representations of notebook 00_backbones (a backbone's random init: open bars hatched in its colour)
    "raw_pixels": "#4d4d4d", "vit_s14_dinov2": "#4a7a2a", "efficientnet_lite0": "#f28e8e",
    "vit_b16_in21k": "#4a7a2a", "resnet50": "#f28e8e",
}

# Readable names of the methods for legends and sentences (:func:`method_label`); same canonical keys as
# METHOD_COLORS.
METHOD_LABELS = {
    "linear": "linear probe", "linear_probe": "linear probe", "probe_features": "linear probe",
    "full": "full fine-tuning", "partial": "partial-1", "partial_1": "partial-1", "partial_2": "partial-2",
    "bias": "BitFit (bias)", "bitfit": "BitFit (bias)", "adapter": "adapter", "side": "side-tuning",
    "vpt_shallow": "VPT-shallow", "shallow": "VPT-shallow", "vpt_deep": "VPT-deep", "deep": "VPT-deep",
    "protuning": "Pro-Tuning", "pro_tuning": "Pro-Tuning",
    "zero_shot": "zero-shot", "tp": "TP", "tp_zero_shot": "TP (zero-shot)",
    "coop": "CoOp", "cocoop": "CoCoOp", "coop_bigger": "bigger CoOp", "vp_tp": "VP+TP", "vp": "VP",
    "l2p": "L2P", "ft": "sequential fine-tuning", "seq_ft": "sequential fine-tuning",
    "finetune": "sequential fine-tuning", "lwf": "LwF", "joint": "joint training",
    "raw_pixels": "raw pixels",
}


def _key(name) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def method_label(name: str) -> str:
    """The readable name of a method (``"vpt_deep"`` -> ``"VPT-deep"``; case-, hyphen- and space-insensitive);
    an unknown name is returned as it is."""
    return METHOD_LABELS.get(_key(name), str(name))


def _lab(hex_colour: str) -> np.ndarray:
    """CIELAB (D65) of ``"#rrggbb"``: distances in it approximate how different two colours look."""
    c = np.array([int(hex_colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)])
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    f = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(f > 0.008856, np.cbrt(f), 7.787 * f + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def colour_distance(a: str, b: str) -> float:
    """CIE76 distance of two ``"#rrggbb"`` colours (about 2: just noticeable; under ~15: easily confused)."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


# The colours of unknown names: a fixed list minus every colour too close to one of METHOD_COLORS.
_FALLBACK = [c for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                         "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
                         "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                         "#31a354", "#756bb1", "#636363", "#e6550d", "#fdae6b", "#a1d99b", "#9e9ac8", "#bdbdbd")
             if min(colour_distance(c, m) for m in set(METHOD_COLORS.values())) >= 12]


def method_color(name: str) -> str:
    """The project-wide colour of a method (case-, hyphen- and space-insensitive: ``"partial-2"`` and ``"partial_2"``
    are one colour; unknown names: a fixed colour from a CRC of the name, never one of :data:`METHOD_COLORS`)."""
    import zlib

    key = _key(name)
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


def method_palette(names) -> dict:
    """``{name: colour}`` for seaborn's ``palette=``, from :func:`method_color`."""
    return {n: method_color(n) for n in names}


def interval_of_mean(values, *, level: float = 0.95) -> tuple[float, float]:
    """The Student-t interval of the mean of ``values`` (e.g. one accuracy per seed) for error bars
    (:func:`vpkit.stats.seed_interval`); the mean itself when there are fewer than 2 values."""
    from .stats import seed_interval

    return seed_interval(values, level=level)[1:]


def accuracy_matrices(results: dict, *, max_cols: int = 4):
    """Lower-triangular heatmaps of continual-learning accuracy matrices (row = after task t, column = task),
    one panel per run; ``results`` maps a name to a :class:`vpkit.continual.ContinualResult`."""
    import seaborn as sns

    plt = _plt()
    n = max(len(results), 1)
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.flat, results.items()):
        a = 100 * np.asarray(r.acc_matrix, dtype=float)
        sns.heatmap(a, mask=np.triu(np.ones_like(a, dtype=bool), 1), vmin=0, vmax=100, annot=a.shape[0] <= 6,
                    fmt=".0f", cmap="viridis", cbar=False, ax=ax, annot_kws={"size": 7},
                    xticklabels=range(1, a.shape[1] + 1), yticklabels=range(1, a.shape[0] + 1))
        ax.set_title(f"{name}\navg {100 * r.average_accuracy:.0f}, fgt {100 * r.forgetting:.0f}", fontsize=8)
        ax.set_xlabel("task")
        ax.set_ylabel("after task")
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def tradeoff(trade, *, x: str, curves=("forgetting", "new_task_acc", "avg_acc"), pair=("forgetting", "new_task_acc"),
             xlabel: str | None = None):
    """Left: each of ``curves`` against the swept ``x`` (categorical axis); right: ``pair[1]`` against
    ``pair[0]`` with every point labelled by its ``x`` value (e.g. the LwF-weight trade-off)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    pos = np.arange(len(trade))
    for col in curves:
        axes[0].plot(pos, trade[col], marker="o", label=col)
    axes[0].set_xticks(pos, [f"{v:g}" for v in trade[x]])
    axes[0].set_xlabel(xlabel or x)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=7)
    axes[1].plot(trade[pair[0]], trade[pair[1]], marker="o")
    for _, r in trade.iterrows():
        axes[1].annotate(f"{r[x]:g}", (r[pair[0]], r[pair[1]]), fontsize=7)
    axes[1].set_xlabel(f"{pair[0]} %")
    axes[1].set_ylabel(f"{pair[1]} %")
    axes[1].set_title("trade-off")
    fig.tight_layout()
    return fig


def selection_heatmaps(fractions: dict, *, row_labels: list[str], col_labels: list[str], titles: dict | None = None):
    """One heatmap per pool: ``fractions[name]`` is a (classes, prompts) array of the share of a class's images
    selecting each prompt (1.0 = every image of the class selects it)."""
    import seaborn as sns

    plt = _plt()
    n = max(len(fractions), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for i, (ax, (name, frac)) in enumerate(zip(axes.flat, fractions.items())):
        sns.heatmap(np.asarray(frac), vmin=0, vmax=1, cmap="mako", ax=ax, cbar=i == n - 1,
                    xticklabels=col_labels, yticklabels=row_labels)
        ax.set_title((titles or {}).get(name, name), fontsize=8)
        ax.set_xlabel("prompt (init class)")
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def image_grid(rows: list[tuple[str, list[np.ndarray]]], *, cols: int, col_titles: list[str] | None = None,
               cell: float = 1.0):
    """A grid of small images, one titled row per entry of ``rows`` (HxWx3 images in [0, 1], or 2-D arrays
    drawn with a diverging colour map); ``col_titles`` go above the first row instead of the row titles."""
    plt = _plt()
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols, 1.1 * cell * len(rows) + 0.3 * bool(col_titles)),
                             squeeze=False)
    for i, (title, ims) in enumerate(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(ims):
                ax.imshow(ims[j], cmap="coolwarm" if np.ndim(ims[j]) == 2 else None, aspect="auto")
        if title and not col_titles:
            axes[i, 0].set_title(title, fontsize=7, loc="left")
    for j, t in enumerate(col_titles or []):
        axes[0, j].set_title(t, fontsize=7)
    fig.tight_layout()
    return fig


def _yerr(df, col):
    """Asymmetric error bars from ``<col>_lo`` / ``<col>_hi`` columns (None when absent)."""
    if f"{col}_lo" not in df:
        return None
    return np.vstack([df[col] - df[f"{col}_lo"], df[f"{col}_hi"] - df[col]])


def grouped_bars(df, *, metrics: list[str], index: str, columns: str, order: list[str] | None = None,
                 ylim=(0, 1), title_suffix: str = "", ylabel: str = "test accuracy"):
    """One bar panel per metric: ``index`` groups on the x axis, one bar per ``columns`` value (in ``order``)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.0), sharey=True, squeeze=False)
    for i, (ax, metric) in enumerate(zip(axes.flat, metrics)):
        piv = df.pivot_table(index=index, columns=columns, values=metric)
        piv.reindex(columns=order or list(piv.columns)).plot.bar(ax=ax, rot=0)
        ax.set_title(f"{metric}{title_suffix}")
        ax.set_ylim(*ylim)
        ax.set_xlabel("")
        if i < len(metrics) - 1:
            ax.get_legend().remove()
    axes[0, 0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def curves(df, *, x: str, metrics: list[str], group: str | None = None, hlines: dict | None = None,
           logx: bool = True, xlabel: str | None = None, title: str = "", err: str | None = None):
    """Line plots of ``metrics`` against ``x``: one panel per metric with one line per ``group`` value, or
    (``group=None``) all metrics in one panel. ``hlines``: ``{metric: value}`` dashed references
    (e.g. zero-shot); ``err``: suffix of standard-deviation columns (``f"{metric}{err}"``) drawn as bands."""
    plt = _plt()
    panels = metrics if group else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1, 2.8), sharey=True, squeeze=False)
    for ax, metric in zip(axes.flat, panels):
        series = ([(f"{g}", d, metric) for g, d in df.groupby(group)] if group else
                  [(m, df, m) for m in metrics])
        for label, d, m in series:
            d = d.sort_values(x)
            ax.plot(d[x], d[m], marker="o", label=label)
            if err and f"{m}{err}" in d:
                ax.fill_between(d[x], d[m] - d[f"{m}{err}"], d[m] + d[f"{m}{err}"], alpha=0.2)
        if hlines and metric in hlines:
            ax.axhline(hlines[metric], color="grey", ls="--", label="zero-shot")
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel or x)
        ax.set_title(f"{metric}{title}" if metric else title)
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_ylabel("accuracy")
    fig.tight_layout()
    return fig


def class_profiles(counts):
    """Training images per class (log scale) for each column of ``counts`` (classes x settings)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    for name in counts:
        ax.plot(range(len(counts)), counts[name], marker="o", label=f"{name} (n={counts[name].sum()})")
    ax.set(yscale="log", xlabel="class index (head to tail)", ylabel="training images", title="Training-set class profiles")
    ax.legend(fontsize=8)
    return fig


def example_grid(suite: dict, *, per_row: int = 6, split: str = "train1000"):
    """The first ``per_row`` images of each task's ``split`` with their class names, one row per task."""
    plt = _plt()
    fig, axes = plt.subplots(len(suite), per_row, figsize=(1.25 * per_row, 1.35 * len(suite)), squeeze=False)
    for r, (task, s) in enumerate(suite.items()):
        ds = s[split]
        for j in range(per_row):
            img = ds.images[j].permute(1, 2, 0)
            axes[r, j].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
            axes[r, j].set_title(str(ds.classes[ds.labels[j]])[:12], fontsize=7)
            axes[r, j].axis("off")
        axes[r, 0].text(-0.15, 0.5, task, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    return fig

"""Figures the notebooks share or that would otherwise be long notebook cells: each function takes result
tables or arrays and returns a matplotlib figure (the notebook saves it with ``Results.figure``)."""
from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


# One colour per method across every figure of the project (issue 16, item 6). Names are the methods' table names;
# any other name gets a fixed colour from its hash (never one that depends on the order of a legend).
# keys in canonical form (lower case, "-" and " " as "_"; see method_color): "partial-2", "Partial 2" and
# "partial_2" are one method with one colour
METHOD_COLORS = {
    "linear": "#4c72b0", "linear_probe": "#4c72b0", "full": "#c44e52", "partial": "#8c8c8c", "partial_1": "#8c8c8c",
    "partial_2": "#a6a6a6", "bias": "#937860", "bitfit": "#937860", "adapter": "#da8bc3", "side": "#ccb974",
    "vpt_shallow": "#64b5cd", "shallow": "#64b5cd", "vpt_deep": "#dd8452", "deep": "#dd8452",
    "protuning": "#55a868", "pro_tuning": "#55a868",
    "zero_shot": "#7f7f7f", "tp": "#7f7f7f", "tp_zero_shot": "#7f7f7f",
    "coop": "#4c72b0", "cocoop": "#dd8452", "vp_tp": "#dd8452", "vp": "#dd8452",
    "l2p": "#4c72b0", "ft": "#c44e52", "finetune": "#c44e52", "lwf": "#8172b3",
}


def method_color(name: str) -> str:
    """The project-wide colour of a method (case-, hyphen- and space-insensitive: ``"partial-2"`` and ``"partial_2"``
    are one colour; unknown names: a fixed colour from a CRC of the name)."""
    import zlib

    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    tab = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"]
    return tab[zlib.crc32(key.encode()) % len(tab)]


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


def templates_and_widths(templates, widths, *, baseline: float, point: str, image_size: int, chance: float | None = None):
    """Left: accuracy per prompt template; right: accuracy against the padding width; the dashed line is the
    unprompted (zero-shot TP) accuracy, the dotted one chance. Error bars: ``acc_lo`` / ``acc_hi`` columns when
    present (the interval of the mean over seeds)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3))
    axes[0].bar(templates.template, templates.acc, yerr=_yerr(templates, "acc"), capsize=3,
                color=["#dd8452", "#4c72b0", "#8172b3"][:len(templates)])
    axes[0].axhline(baseline, color="grey", ls="--", lw=1, label="TP zero-shot")
    if chance is not None:
        for ax in axes:
            ax.axhline(chance, color="black", ls=":", lw=1, label="chance" if ax is axes[0] else None)
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title(f"templates on {point}", fontsize=9)
    axes[1].errorbar(widths.prompt_size, widths.acc, yerr=_yerr(widths, "acc"), marker="o", color="#dd8452",
                     capsize=3)
    axes[1].axhline(baseline, color="grey", ls="--", lw=1)
    axes[1].set_xlabel(f"padding width (px, of {image_size})")
    axes[1].set_title("padding-width ablation", fontsize=9)
    fig.legend(loc="lower center", ncol=2, fontsize=7, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return fig


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


def corruption_bars(corr, *, title: str):
    """Accuracy per corruption type (mean over severities), one bar per method."""
    import seaborn as sns

    plt = _plt()
    fig, ax = plt.subplots(figsize=(12, 3.6))
    order = list(dict.fromkeys(corr["corruption"]))
    sns.barplot(data=corr, x="corruption", y="acc", hue="method", order=order, errorbar=None, ax=ax, palette="deep")
    ax.set(xlabel="", ylabel="accuracy (mean over 5 severities)", title=title)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(ncol=4, fontsize=7)
    return fig


def severity_lines(corr):
    """Accuracy (mean over corruption types) against severity, one line per method."""
    import seaborn as sns

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sns.lineplot(data=corr, x="severity", y="acc", hue="method", errorbar=None, marker="o", ax=ax, palette="deep")
    ax.set(ylabel="accuracy (mean over types)", title="Accuracy vs corruption severity")
    ax.legend(fontsize=7)
    return fig


def accuracy_vs_params(panels: list[tuple[str, dict]], params: dict, *, highlight: str | None = None, title: str = ""):
    """One scatter panel per ``(title, {method: accuracy})`` with trainable parameters (log) on x."""
    import seaborn as sns

    plt = _plt()
    methods = list(params.keys())
    pal = dict(zip(methods, sns.color_palette("deep", len(methods))))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, (name, acc) in zip(axes.flat, panels):
        for m, a in dict(acc).items():
            ax.scatter(params[m], a, color=pal[m], s=40, marker="*" if m == highlight else "o")
            ax.annotate(m, (params[m], a), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set(xscale="log", xlabel="trainable parameters", title=name)
    axes[0, 0].set_ylabel("test accuracy")
    fig.suptitle(title, y=1.03)
    return fig


def feature_prompt_maps(maps: list[dict], image, *, blend, max_stages: int = 5):
    """Pro-Tuning's per-stage feature map, prompt and blended map (channel means) for one image;
    ``maps`` from :func:`vpkit.prompts.protuning.prompt_maps`, ``blend(feature, prompt)`` the blend used."""
    plt = _plt()
    show = [d for d in maps if d["feature"].shape[-1] > 1][:max_stages] or maps[:max_stages]
    fig, axes = plt.subplots(3, len(show) + 1, figsize=(2.1 * (len(show) + 1), 6.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[1, 0].imshow(image, cmap="gray")
    axes[1, 0].set_title("input", fontsize=8)
    for j, d in enumerate(show, 1):
        f, p = d["feature"][0].mean(0), d["prompt"][0].mean(0)
        lim = float(p.abs().max()) or 1.0
        axes[0, j].imshow(f, cmap="viridis")
        axes[0, j].set_title(f"{d['module']}: $x_i$", fontsize=8)
        axes[1, j].imshow(p, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[1, j].set_title(f"$P_i(x_i)$, rel {d['relative_norm']:.2f}", fontsize=8)
        axes[2, j].imshow(blend(d["feature"][0], d["prompt"][0]).mean(0), cmap="viridis")
        axes[2, j].set_title("blended $\\tilde x_i$", fontsize=8)
    fig.suptitle("Pro-Tuning: feature map, prompt, blended (channel means)")
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


def accuracy_and_cost(runs, per_method, mean_acc: dict, *, order: list[str], title: str):
    """Left: test accuracy per task and method (bars, seed sd); right: mean accuracy (%) against the trainable
    share of the backbone (log)."""
    import seaborn as sns

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [3, 1.2]})
    sns.barplot(data=runs, x="task", y="acc_test", hue="method", hue_order=order, ax=axes[0], errorbar="sd",
                palette="deep")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_xlabel("")
    axes[0].legend(fontsize=7, ncol=4, loc="lower left")
    axes[0].tick_params(axis="x", rotation=15)
    pm = per_method.reset_index()
    ys = [100 * mean_acc[m] for m in pm["method"]]
    axes[1].scatter(pm["percent_of_backbone"], ys, c=sns.color_palette("deep", len(pm)))
    for (_, r), y in zip(pm.iterrows(), ys):
        axes[1].annotate(r["method"], (r["percent_of_backbone"], y), fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("trainable % of backbone")
    axes[1].set_ylabel("mean accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ablation_bars(ab, studies, *, references: dict, title: str):
    """One bar panel per study (``ab``: study, variant, acc) with dashed/dotted reference lines
    (``references``: method -> accuracy from the main table)."""
    import seaborn as sns

    plt = _plt()
    styles = {"vpt_deep": ("-", "C0"), "vpt_shallow": ("--", "k"), "linear": (":", "k")}
    fig, axes = plt.subplots(1, len(studies), figsize=(3.0 * len(studies), 2.8), squeeze=False)
    for ax, study in zip(axes[0], studies):
        d = ab[ab.study == study]
        if not len(d):
            ax.axis("off")
            continue
        ax.bar(d["variant"], d["acc"], color=sns.color_palette("deep")[0], alpha=0.8)
        for m, v in references.items():
            ls, c = styles.get(m, ("-.", "grey"))
            ax.axhline(v, ls=ls, c=c, lw=0.9, label=f"{m} (main table)")
        ax.set_title(study, fontsize=9)
        ax.set_ylabel("test accuracy" if study == list(studies)[0] else "")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, y=1.03)
    return fig

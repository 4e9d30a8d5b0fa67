"""Figures the notebooks share or that would otherwise be long notebook cells: each function takes result
tables or arrays and returns a matplotlib figure (the notebook saves it with ``Results.figure``)."""
from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


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


def image_grid(rows: list[tuple[str, list[np.ndarray]]], *, cols: int):
    """A grid of small images, one titled row per entry of ``rows`` (HxWx3 images in [0, 1], or 2-D arrays
    drawn with a diverging colour map)."""
    plt = _plt()
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.0 * cols, 1.1 * len(rows)), squeeze=False)
    for i, (title, ims) in enumerate(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(ims):
                ax.imshow(ims[j], cmap="coolwarm" if np.ndim(ims[j]) == 2 else None, aspect="auto")
        axes[i, 0].set_title(title, fontsize=7, loc="left")
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

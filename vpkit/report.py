"""Reporting: tables (CSV + Markdown), figures (PNG + PDF), ``metrics.json`` with claims, ``run.json``.

Every write is atomic (temporary file + ``os.replace``), so a crashed run never leaves a half-written file.
"""
from __future__ import annotations

import io
import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .assets import atomic_write_bytes
from . import stats
from .stats import Decision

OUTCOMES = "outcomes.npz"

REPO_ROOT = Path(__file__).resolve().parent.parent
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "scikit-learn", "transformers",
                      "onnx", "onnxruntime", "papermill", "seaborn", "matplotlib", "pandas")


@dataclass
class Claim:
    """One checkable statement of a paper, with the paper's value, ours, and its verdict here.

    ``decision`` (a :class:`vpkit.stats.Decision`) carries the margin, its 95% interval and one of the four verdicts;
    ``holds`` is then ``verdict == "holds"``. A claim without a decision is a bare sign test (``holds`` given by the
    caller); ``metrics.json`` and SUMMARY mark it as undecided by an interval."""

    id: str
    statement: str
    paper: float | str | None
    ours: float | str | None
    holds: bool | None = None
    note: str = ""
    decision: Decision | None = None

    def __post_init__(self):
        if self.decision is not None:
            if self.holds is not None and bool(self.holds) != self.decision.holds:
                raise ValueError(f"claim {self.id}: holds={self.holds} disagrees with the verdict "
                                 f"{self.decision.verdict!r}; pass the decision only")
            self.holds = self.decision.holds
        elif self.holds is None:
            raise ValueError(f"claim {self.id}: needs a decision (vpkit.stats) or, for a bare sign test, holds")
        else:
            self.holds = bool(self.holds)

    @property
    def verdict(self) -> str | None:
        return self.decision.verdict if self.decision is not None else None

    def as_dict(self) -> dict:
        """The ``metrics.json`` record: today's fields plus verdict, margin, ci_low, ci_high, n_examples, n_seeds,
        test, reason, unit (``verdict=None``, ``test="sign only"`` for a claim without an interval)."""
        d = {"id": self.id, "statement": self.statement, "paper": self.paper, "ours": self.ours, "holds": self.holds,
             "note": self.note}
        if self.decision is not None:
            d.update({k: v for k, v in self.decision.as_dict().items() if k != "holds"})
        else:
            d.update(verdict=None, margin=None, ci_low=None, ci_high=None, n_examples=None, n_seeds=None,
                     test="sign only (no interval)", reason="", unit="")
        return d


def _clean(obj):
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:
            return ""
    sha = run("rev-parse", "HEAD")
    dirty = bool(run("status", "--porcelain", "--", "vpkit", "notebooks")) if sha else None
    return {"sha": sha or None, "dirty": dirty}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in VERSIONED_PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


class Results:
    """Writer for ``results/<source>/``: ``Results(results_dir, profile=..., seed=...)``.

    A relative ``results_dir`` is taken relative to the repository root, not the working directory, so a notebook
    opened in Jupyter from ``notebooks/`` writes to ``results/<source>/`` like the harness does."""

    def __init__(self, results_dir: str | Path, *, profile: str, seed: int, config: dict | None = None):
        d = Path(results_dir)
        self.dir = d if d.is_absolute() else REPO_ROOT / d
        self.dir.mkdir(parents=True, exist_ok=True)
        self.profile, self.seed, self.config = profile, seed, config or {}
        self._t0 = time.time()
        self.files: list[str] = []

    def _path(self, name: str) -> Path:
        self.files.append(name)
        return self.dir / name

    def table(self, name: str, df, *, index: bool = False, floatfmt: str = ".4f") -> Path:
        """Write ``df`` as ``name.csv`` and ``name.md``."""
        atomic_write_bytes(self._path(f"{name}.csv"), df.to_csv(index=index).encode())
        md = df.to_markdown(index=index, floatfmt=floatfmt) if _has_tabulate() else _markdown(df, index, floatfmt)
        atomic_write_bytes(self._path(f"{name}.md"), (md + "\n").encode())
        return self.dir / f"{name}.csv"

    def figure(self, name: str, fig, *, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``name.png`` and ``name.pdf``."""
        for ext in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
            atomic_write_bytes(self._path(f"{name}.{ext}"), buf.getvalue())
        return self.dir / f"{name}.png"

    def json(self, name: str, obj) -> Path:
        atomic_write_bytes(self._path(name), (json.dumps(_clean(obj), indent=2) + "\n").encode())
        return self.dir / name

    def metrics(self, headline: dict, claims: list[Claim] = (), **extra) -> Path:
        """``metrics.json``: headline numbers and claims (id, statement, paper, ours, holds)."""
        claims = [c.as_dict() if isinstance(c, Claim) else dict(c) for c in claims]
        return self.json("metrics.json", {"profile": self.profile, "seed": self.seed, "headline": headline,
                                          "claims": claims, **extra})

    def outcomes(self, runs: dict) -> Path:
        """``outcomes.npz``: per-example outcomes of every evaluated run, ``{"method/dataset/seed": array}``
        (correct flags as bool, or predicted labels as ints), so every claim's interval can be recomputed from
        ``results/`` alone (:func:`load_outcomes`)."""
        import numpy as np

        arrays = {}
        for k, v in runs.items():
            a = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
            if a.dtype.kind == "f" and set(np.unique(a)) <= {0.0, 1.0}:
                a = a.astype(bool)
            elif a.dtype.kind in "iu":
                a = a.astype(np.int16 if a.size == 0 or (a.min() >= -2**15 and a.max() < 2**15) else np.int64)
            arrays[str(k)] = a
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self._path(OUTCOMES), buf.getvalue())
        return self.dir / OUTCOMES

    def run_info(self, **extra) -> Path:
        """``run.json``: profile, seed, git sha + dirty flag, versions, device, precision, threads and the CPU
        (:func:`vpkit.device.describe`), wall time, config."""
        from . import dryrun
        from .device import describe
        from .netguard import active

        runtime = describe()
        wall = round(time.time() - self._t0, 1)
        print(f"wall time {wall / 60:.1f} min ({runtime['precision']}, {runtime['torch_threads']} threads)")
        return self.json("run.json", {
            "profile": self.profile, "seed": self.seed, "git": git_state(), "versions": package_versions(),
            **runtime, "platform": platform.platform(), "network_blocked": active(), "wall_time_s": wall,
            **({"dry_run": True, "virtual_cuda": dryrun.virtual_cuda_active()} if dryrun.active() else {}),
            "config": self.config, **extra})


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


def _markdown(df, index: bool, floatfmt: str) -> str:
    """A pipe table without the optional ``tabulate`` dependency."""
    d = df.reset_index() if index else df
    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) and math.isfinite(v) else ("" if v is None else str(v))  # noqa: E731
    rows = [list(map(str, d.columns)), ["---"] * len(d.columns)]
    rows += [[fmt(v) for v in r] for r in d.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def setup_plots():
    """Consistent, lean figure style for every notebook."""
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


_INCLUDE = "<!-- include: "
_END = "<!-- end include -->"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v).replace("|", "/")


def load_outcomes(results_dir: str | Path) -> dict:
    """The per-example outcomes a notebook saved with :meth:`Results.outcomes` (``{}`` when there are none)."""
    import numpy as np

    f = Path(results_dir) / OUTCOMES
    if not f.exists():
        return {}
    with np.load(f) as z:
        return {k: z[k] for k in z.files}


def _num(v, unit: str) -> str:
    return f"{v:+.2f}" if unit == "points" else f"{v:+.3g}"


def interval_text(c: dict) -> str:
    """``+3.10 [+1.20, +5.00] points`` for a claim record, followed by the claimed relation when it is not the
    usual "> 0" (``+17.16 [+15.47, +18.91] points, claimed > 40``); ``–`` without an interval."""
    if c.get("ci_low") is None or c.get("margin") is None:
        return "–"
    u = c.get("unit") or ""
    text = f"{_num(c['margin'], u)} [{_num(c['ci_low'], u)}, {_num(c['ci_high'], u)}]{' ' + u if u else ''}"
    d, t = c.get("direction"), c.get("threshold")
    if d is not None and t is not None and not (d == ">" and float(t) == 0.0):
        text += f", claimed {stats.claimed_text(d, t)}"
    return text


def verdict_text(c: dict) -> str:
    """The verdict of a claim record; a claim without an interval says so."""
    v = c.get("verdict")
    if v is None:
        return f"sign only: {'holds' if c['holds'] else 'does not hold'} (no interval)"
    return f"**{v}**" if v != "holds" else v


def claims_markdown(metrics: dict) -> str:
    """The claims of a ``metrics.json`` as a Markdown table: statement, paper, ours, the margin with its 95%
    interval, the verdict, and the note (how the interval was computed, or why the claim is not testable)."""
    rows = ["| claim | paper | ours | margin [95% interval] (claimed > 0 unless stated) | verdict | note |", "|---|---|---|---|---|---|"]
    for c in metrics.get("claims", []):
        note = "; ".join(x for x in (c.get("reason"), c.get("note"),
                                      c.get("test") if c.get("verdict") not in (None, "not testable here") else "")
                         if x)
        rows.append(f"| {_fmt(c['statement'])} | {_fmt(c.get('paper'))} | {_fmt(c.get('ours'))} | "
                    f"{interval_text(c)} | {verdict_text(c)} | {_fmt(note)} |")
    return "\n".join(rows)


SUMMARY_VERDICTS = ("holds", "does not hold", "inconclusive", "not testable here", None)


def summary_markdown(results_root: str | Path, names: list[str]) -> str:
    """``results/SUMMARY.md``: every claim of every source (paper, ours with its interval, verdict) and the count
    of verdicts per source, from the ``metrics.json`` files alone."""
    root = Path(results_root)
    count_rows, sections = [], []
    for name in names:
        f = root / name / "metrics.json"
        if not f.exists():
            continue
        m = json.loads(f.read_text())
        claims = m.get("claims", [])
        n = {v: sum(c.get("verdict") == v for c in claims) for v in SUMMARY_VERDICTS}
        with_verdict = len(claims) - n[None]
        share = f"{n['inconclusive'] / with_verdict:.0%}" if with_verdict else "–"
        run_f = root / name / "run.json"
        sha = (json.loads(run_f.read_text()).get("git", {}).get("sha") or "?")[:7] if run_f.exists() else "?"
        count_rows.append(f"| {name} | {len(claims)} | " + " | ".join(str(n[v]) for v in SUMMARY_VERDICTS)
                          + f" | {share} | {sha} |")
        sections += [f"## {name}", "", f"`results/{name}/metrics.json` (profile `{m.get('profile')}`)", "",
                     claims_markdown(m), ""]
    head = ["# Summary of every claim", "",
            "Generated by `python3 -m vpkit summary` from `results/*/metrics.json`; do not edit by hand. A verdict is "
            "decided by the 95% interval of its margin (`vpkit/stats.py`): **holds** (the interval lies on the "
            "claimed side of the threshold), **does not hold** (on the other side), **inconclusive** (it contains "
            "the threshold), **not testable here** (with the reason). \"sign only\" marks a claim of a notebook "
            "not yet re-run with per-example outcomes: its `holds` is a bare sign test and should not be cited. "
            "Margins of accuracies are in percentage points.", "",
            "| source | claims | holds | does not hold | inconclusive | not testable here | sign only | "
            "inconclusive share (of claims with a verdict) | run at commit |", "|---|---|---|---|---|---|---|---|---|",
            *count_rows, ""]
    return "\n".join(head + sections).rstrip() + "\n"


def sync_summary(results_root: str | Path, names: list[str], *, check: bool = False) -> bool:
    """Write ``SUMMARY.md`` under ``results_root``; returns True if it was out of date (``check``: write nothing)."""
    f = Path(results_root) / "SUMMARY.md"
    new = summary_markdown(results_root, names)
    stale = not f.exists() or f.read_text() != new
    if stale and not check:
        atomic_write_bytes(f, new.encode())
    return stale


def sync_readme(readme: str | Path = REPO_ROOT / "README.md", *, check: bool = False) -> list[str]:
    """Refresh every ``<!-- include: results/... -->`` block of README from the file it names
    (a ``metrics.json`` is rendered as its claims table).

    Returns the names of blocks that were out of date; with ``check=True`` nothing is written. This keeps the
    numbers quoted in README identical to what the notebooks wrote.
    """
    readme = Path(readme)
    lines = readme.read_text().splitlines()
    out, stale, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line.startswith(_INCLUDE) and line.rstrip().endswith("-->"):
            rel = line[len(_INCLUDE):].rstrip()[:-3].strip()
            j = i + 1
            while j < len(lines) and lines[j].strip() != _END:
                j += 1
            if j == len(lines):
                raise ValueError(f"README include of {rel} has no '{_END}' line")
            src = readme.parent / rel
            if not src.exists():
                new = [f"_({rel} not generated yet)_"]
            elif src.name == "metrics.json":
                new = claims_markdown(json.loads(src.read_text())).splitlines()
            else:
                new = src.read_text().strip().splitlines()
            if new != lines[i + 1:j]:
                stale.append(rel)
            out.extend(new)
            out.append(_END)
            i = j + 1
            continue
        i += 1
    if stale and not check:
        atomic_write_bytes(readme, ("\n".join(out) + "\n").encode())
    return stale

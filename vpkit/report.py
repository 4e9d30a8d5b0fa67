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
from dataclasses import asdict, dataclass
from pathlib import Path

from .assets import atomic_write_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "scikit-learn", "transformers",
                      "onnx", "onnxruntime", "papermill", "seaborn", "matplotlib", "pandas")


@dataclass
class Claim:
    """One checkable statement of a paper, with the paper's value, ours, and whether it holds here."""

    id: str
    statement: str
    paper: float | str | None
    ours: float | str | None
    holds: bool
    note: str = ""


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
        claims = [asdict(c) if isinstance(c, Claim) else dict(c) for c in claims]
        return self.json("metrics.json", {"profile": self.profile, "seed": self.seed, "headline": headline,
                                          "claims": claims, **extra})

    def run_info(self, **extra) -> Path:
        """``run.json``: profile, seed, git sha + dirty flag, versions, device, precision, threads and the CPU
        (:func:`vpkit.device.describe`), wall time, config."""
        from .device import describe
        from .netguard import active

        runtime = describe()
        wall = round(time.time() - self._t0, 1)
        print(f"wall time {wall / 60:.1f} min ({runtime['precision']}, {runtime['torch_threads']} threads)")
        return self.json("run.json", {
            "profile": self.profile, "seed": self.seed, "git": git_state(), "versions": package_versions(),
            **runtime, "platform": platform.platform(), "network_blocked": active(), "wall_time_s": wall,
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


def claims_markdown(metrics: dict) -> str:
    """The claims of a ``metrics.json`` as a Markdown table: statement, paper, ours, holds, note (e.g. whether
    the margin is within seed noise)."""
    rows = ["| claim | paper | ours | holds here? | note |", "|---|---|---|---|---|"]
    for c in metrics.get("claims", []):
        rows.append(f"| {_fmt(c['statement'])} | {_fmt(c.get('paper'))} | {_fmt(c.get('ours'))} | "
                    f"{'yes' if c['holds'] else '**no**'} | {_fmt(c.get('note') or '')} |")
    return "\n".join(rows)


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

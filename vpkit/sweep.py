"""Parameter sweeps of a notebook: ``python3 -m vpkit sweep NAME --grid KEY=V1,V2 [--grid ...] --engine local|ray``.

Each point of the cartesian product of the grids is one papermill execution of notebook ``NAME`` with those
parameters (plus ``--set`` ones), written to ``results/sweeps/<NAME>/<run-id>/`` (the files a normal run writes;
``run-id`` spells the grid values, e.g. ``lr=0.1__seed=2``). A point whose folder holds a complete run of the same
parameters from unchanged code is skipped (``--force`` re-runs it); a point that fails keeps its partial executed
notebook as ``FAILED-<notebook>.ipynb`` and the sweep goes on, then exits non-zero listing the failures.

Engines: ``local`` runs the points one after another (``--jobs N``: N at once); ``ray`` submits each point as a
Ray task (``--address`` joins a running cluster, otherwise a local instance is started; ``--cpus-per-run`` /
``--gpus-per-run`` are the task's resources), so one command serves a workstation, a cloud cluster and a SLURM
allocation (README, "Scaling out"). ``--collect`` gathers every point's headline metrics and claim verdicts into
``results/sweeps/<NAME>/summary.csv`` / ``.md``, with the interval of the mean over seeds when the grid sweeps
``seed``, and one figure of the swept metric.
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import re
import sys
from pathlib import Path

from .harness import NOTEBOOKS, REPO_ROOT, NotebookFailed, allowed_parameters, is_current, run_notebook

ENGINES = ("local", "ray")


def parse_grid(items: list[str] | None, name: str) -> dict[str, list]:
    """``--grid KEY=V1,V2`` -> ``{KEY: [V1, V2]}``; values are Python literals (``seed=0,1,2``,
    ``"datasets=['digits'],['mnist5k']"``), bare words are strings; keys must be notebook parameters."""
    if not items:
        raise ValueError("a sweep needs at least one --grid KEY=V1,V2")
    allowed = allowed_parameters(name)
    grid = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if key not in allowed:
            raise ValueError(f"--grid {key}=...: {name} has no parameter {key!r}; allowed: {allowed}")
        if key in grid:
            raise ValueError(f"--grid {key} given twice")
        try:
            values = ast.literal_eval(f"[{raw}]")
        except (ValueError, SyntaxError):
            values = [v.strip() for v in raw.split(",")]
        if not values:
            raise ValueError(f"--grid {item!r}: no values")
        grid[key] = values
    return grid


def points(grid: dict[str, list]) -> list[dict]:
    """The cartesian product of the grid, in a stable order (keys sorted, values in the order given)."""
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def run_id(point: dict) -> str:
    """A readable folder name for a grid point (``lr=0.1__seed=2``); long or odd ones get a hash suffix."""
    def spell(v):
        return re.sub(r"[^A-Za-z0-9._-]+", "-", v if isinstance(v, str) else repr(v)).strip("-") or "x"
    rid = "__".join(f"{k}={spell(v)}" for k, v in sorted(point.items()))
    if len(rid) > 80:
        h = hashlib.sha1(json.dumps(point, sort_keys=True, default=repr).encode()).hexdigest()[:8]
        rid = rid[:70].rstrip("_-") + f"~{h}"
    return rid


def sweep_dir(name: str, results_root: str | Path | None = None) -> Path:
    return Path(results_root or REPO_ROOT / "results") / "sweeps" / name


def run_point(name: str, point: dict, *, profile: str, sets: dict, out_dir: str, force: bool = False,
              progress: bool = False) -> dict:
    """One grid point: skipped when current, else executed; -> ``{"run_id", "status", "error"}`` (never raises
    on a notebook failure, so that one failed point does not stop a sweep)."""
    params = {"profile": profile, **sets, **point}
    out = Path(out_dir)
    rid = out.name
    if not force and is_current(name, parameters=params, out_dir=out):
        return {"run_id": rid, "status": "skipped (current)", "error": ""}
    try:
        run_notebook(name, profile=profile, parameters={k: v for k, v in params.items() if k != "profile"},
                     out_dir=out, progress=progress, keep_failed=True)
    except NotebookFailed as e:
        return {"run_id": rid, "status": "failed", "error": str(e)}
    return {"run_id": rid, "status": "done", "error": ""}


def run_sweep(name: str, grid: dict[str, list], *, profile: str = "smoke", sets: dict | None = None,
              engine: str = "local", jobs: int = 1, address: str | None = None, cpus_per_run: float = 1,
              gpus_per_run: float = 0, force: bool = False, results_root: str | Path | None = None,
              progress: bool = True) -> list[dict]:
    """Run every point of ``grid`` with ``engine``; -> one status row per point (in :func:`points` order)."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; allowed: {ENGINES}")
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be >= 1")
    sets = dict(sets or {})
    clash = sorted(set(sets) & set(grid))
    if clash:
        raise ValueError(f"parameters both swept (--grid) and set (--set): {clash}")
    root = sweep_dir(name, results_root)
    todo = [(p, str(root / run_id(p))) for p in points(grid)]
    if len({d for _, d in todo}) != len(todo):
        raise ValueError("two grid points map to the same run-id; use distinct values")
    kw = dict(profile=profile, sets=sets, force=force)
    if engine == "ray":
        rows = _run_ray(name, todo, kw, address=address, cpus=cpus_per_run, gpus=gpus_per_run)
    elif jobs == 1:
        rows = []
        for i, (p, d) in enumerate(todo, 1):
            if progress:
                print(f"[{i}/{len(todo)}] {name} {Path(d).name}", flush=True)
            rows.append(run_point(name, p, out_dir=d, **kw))
    else:
        from concurrent.futures import ThreadPoolExecutor  # each point runs in its own kernel process

        with ThreadPoolExecutor(max_workers=jobs) as ex:
            rows = list(ex.map(lambda pd: run_point(name, pd[0], out_dir=pd[1], **kw), todo))
    for (p, _), r in zip(todo, rows):
        r["parameters"] = p
    return rows


def _run_ray(name, todo, kw, *, address, cpus, gpus) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise SystemExit("--engine ray needs Ray: python3 -m pip install 'ray>=2.9' (or --engine local)") from None
    started = not ray.is_initialized()
    if started:
        init = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **init)
        else:  # a local instance on loopback only (works with the network guard on)
            ray.init(_node_ip_address="127.0.0.1", **init)
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_point)
        refs = [task.remote(name, p, out_dir=d, **kw) for p, d in todo]
        rows = []
        for (p, d), ref in zip(todo, refs):
            try:
                rows.append(ray.get(ref))
            except Exception as e:  # the task itself died (not a notebook failure, which run_point reports)
                rows.append({"run_id": Path(d).name, "status": "failed", "error": f"ray task: {e}"})
        return rows
    finally:
        if started:
            ray.shutdown()


def _grid_of(executed: Path) -> dict:
    nb = json.loads(executed.read_text())
    return nb.get("metadata", {}).get("papermill", {}).get("parameters", {})


def collect(name: str, *, results_root: str | Path | None = None):
    """Every finished point of ``results/sweeps/<name>/``: -> (per-point DataFrame, per-setting DataFrame). The
    per-point table holds the swept parameters, the headline numbers and one column per claim (its verdict). When
    the sweep varies ``seed``, the per-setting table averages each headline number over seeds with its 95%
    t-interval (:func:`vpkit.stats.seed_interval`) and counts each claim's verdicts over seeds."""
    import pandas as pd

    from .stats import seed_interval

    root = sweep_dir(name, results_root)
    rows = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        m, executed = d / "metrics.json", d / NOTEBOOKS[name]
        if not (m.exists() and executed.exists()):
            continue
        metrics = json.loads(m.read_text())
        params = {k: v for k, v in _grid_of(executed).items() if k not in ("results_dir",)}
        row = {"run_id": d.name, **{f"param:{k}": (v if isinstance(v, (int, float, str)) else repr(v))
                                     for k, v in params.items()}}
        row.update({k: v for k, v in metrics.get("headline", {}).items() if isinstance(v, (int, float))})
        row.update({f"claim:{c['id']}": c.get("verdict") or ("holds" if c.get("holds") else "does not hold")
                    for c in metrics.get("claims", [])})
        rows.append(row)
    per_point = pd.DataFrame(rows)
    if per_point.empty:
        raise ValueError(f"no finished runs under {root}")
    params = [c for c in per_point if c.startswith("param:")]
    per_point[params] = per_point[params].astype(object).where(per_point[params].notna(), "(default)")
    varying = [c for c in params if per_point[c].nunique() > 1]
    setting = [c for c in varying if c != "param:seed"]
    numeric = [c for c in per_point.select_dtypes("number").columns if not c.startswith("param:")]
    out = []
    for key, g in (per_point.groupby(setting, dropna=False) if setting else [((), per_point)]):
        r = dict(zip(setting, key if isinstance(key, tuple) else (key,)))
        r["n_runs"] = len(g)
        for c in numeric:
            mean, lo, hi = seed_interval(g[c].dropna())
            r.update({c: mean, f"{c}_lo": lo, f"{c}_hi": hi})
        for c in (c for c in g if c.startswith("claim:")):
            r[c] = ", ".join(f"{v}: {n}" for v, n in g[c].value_counts().items())
        out.append(r)
    per_setting = pd.DataFrame(out)
    return per_point, per_setting


def write_collection(name: str, *, results_root: str | Path | None = None, metric: str | None = None) -> Path:
    """``summary.csv`` / ``.md`` (per setting, intervals over seeds), ``points.csv`` and ``summary.png`` (the swept
    metric against the first swept parameter) under ``results/sweeps/<name>/``."""
    from .assets import atomic_write_bytes
    from .report import Results

    per_point, per_setting = collect(name, results_root=results_root)
    root = sweep_dir(name, results_root)
    res = Results(root, profile="sweep", seed=0)
    res.table("points", per_point)
    res.table("summary", per_setting)
    numeric = [c for c in per_point.select_dtypes("number").columns if not c.startswith("param:")]
    metric = metric or next((c for c in numeric if c != "minutes"), None)
    if metric is not None and metric not in numeric:
        raise ValueError(f"--metric {metric!r}; numeric headline metrics: {numeric}")
    setting = [c for c in per_setting if c.startswith("param:")]
    if metric is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        x = per_setting[setting[0]].astype(str) if setting else ["all runs"] * len(per_setting)
        ax.errorbar(list(x), per_setting[metric], yerr=[per_setting[metric] - per_setting[f"{metric}_lo"],
                                                         per_setting[f"{metric}_hi"] - per_setting[metric]],
                    marker="o", capsize=3, ls="none")
        ax.set_xlabel(setting[0][6:] if setting else "")
        ax.set_ylabel(metric)
        ax.set_title(f"{name} sweep: {metric} (mean, 95% interval over seeds)", fontsize=9)
        res.figure("summary", fig)
        plt.close(fig)
    atomic_write_bytes(root / "README.md", (f"# Sweep of {name}\n\nCollected by `python3 -m vpkit sweep {name} "
                                            "--collect`: `summary.md` (per setting), `points.csv` (per run).\n").encode())
    return root / "summary.csv"


def parser():
    import argparse

    from .profiles import PROFILE_NAMES

    sw = argparse.ArgumentParser(prog="python3 -m vpkit sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("name", help=f"the notebook: {list(NOTEBOOKS)}")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="a swept parameter; repeatable (product)")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets", help="a fixed parameter; repeatable")
    sw.add_argument("--profile", default="smoke", choices=PROFILE_NAMES, help="default: smoke")
    sw.add_argument("--engine", default="local", choices=ENGINES)
    sw.add_argument("--jobs", type=int, default=1, help="local engine: points at once (default 1)")
    sw.add_argument("--address", default=None, help="ray engine: a running cluster (default: start a local one)")
    sw.add_argument("--cpus-per-run", type=float, default=1.0)
    sw.add_argument("--gpus-per-run", type=float, default=0.0)
    sw.add_argument("--force", action="store_true", help="re-run points whose results are current")
    sw.add_argument("--collect", action="store_true", help="gather the finished points into summary.csv/.md")
    sw.add_argument("--metric", default=None, help="--collect: the headline metric to plot")
    sw.add_argument("--results", default=str(REPO_ROOT / "results"), help="results root (sweeps go to <root>/sweeps)")
    return sw


def main(argv=None) -> int:
    """``python3 -m vpkit sweep ...`` (dispatched by ``vpkit/__main__.py``)."""
    from .harness import parse_sets

    args = parser().parse_args(argv)

    if args.name not in NOTEBOOKS:
        print(f"unknown notebook {args.name!r}; known: {list(NOTEBOOKS)}", file=sys.stderr)
        return 2
    if args.collect:
        try:
            print(write_collection(args.name, results_root=args.results, metric=args.metric))
        except ValueError as e:
            print(f"sweep --collect: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        grid = parse_grid(args.grid, args.name)
        sets = parse_sets(args.sets, args.name)
        rows = run_sweep(args.name, grid, profile=args.profile, sets=sets, engine=args.engine, jobs=args.jobs,
                         address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                         force=args.force, results_root=args.results)
    except ValueError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    width = max(len(r["run_id"]) for r in rows)
    for r in rows:
        print(f"{r['run_id']:{width}s}  {r['status']}{'  ' + r['error'] if r['error'] else ''}")
    failed = [r["run_id"] for r in rows if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} of {len(rows)} points failed: {failed} (partial notebooks: FAILED-*.ipynb in their "
              "folders)", file=sys.stderr)
        return 1
    return 0


__all__ = ["ENGINES", "parse_grid", "points", "run_id", "sweep_dir", "run_point", "run_sweep", "collect",
           "write_collection", "main"]

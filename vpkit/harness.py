"""Run the replication notebooks headlessly with papermill: ``python -m vpkit replicate [NAMES] --profile P``.

``--set KEY=VALUE`` passes notebook parameters (checked against the notebook's declared ones); a notebook whose
results are current (same parameters, unchanged code: :func:`is_current`) is skipped unless ``--force``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .profiles import PROFILE_NAMES

PRECISIONS = ("auto", "fp32", "bf16")  # = vpkit.device.PRECISIONS (not imported: keeps `list` free of torch)

REPO_ROOT = Path(__file__).resolve().parent.parent
DRY_RUNS = (None, "virtual_cuda", "device")
DRY_RUN_ROOT = Path(tempfile.gettempdir()) / "vpkit-dry-run"  # where dry runs write (never results/)
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

# source name -> notebook file; results go to results/<source>/
NOTEBOOKS = {
    "backbones": "00_backbones.ipynb",
    "vlm": "00_vlm.ipynb",
    "vpt": "01_vpt.ipynb",
    "visual_prompting": "02_visual_prompting.ipynb",
    "pro_tuning": "03_pro_tuning.ipynb",
    "cocoop": "04_cocoop.ipynb",
    "image_prompts_l2p": "05_image_prompts_l2p.ipynb",
}


def notebook_path(name: str) -> Path:
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook name={name!r}; known: {list(NOTEBOOKS)}")
    return NOTEBOOK_DIR / NOTEBOOKS[name]


class NotebookFailed(RuntimeError):
    pass


def run_notebook(name: str, *, profile: str = "offline", results_root: str | Path | None = None,
                 parameters: dict | None = None, progress: bool = True, timeout: int | None = None,
                 out_dir: str | Path | None = None, keep_failed: bool = False, dry_run: str | None = None) -> Path:
    """Execute one notebook; its outputs go to ``<results_root>/<name>/`` (or ``out_dir``) and the executed copy
    beside them.

    The executed notebook is written to a temporary file first and moved into place only on success; on failure
    it is removed, or kept as ``FAILED-<notebook>.ipynb`` with ``keep_failed`` (sweeps). Raises
    :class:`NotebookFailed` naming the failing cell and its error.

    ``dry_run``: ``"virtual_cuda"`` or ``"device"`` runs the paper profile as a paper-shape dry run
    (:mod:`vpkit.dryrun`; random weights, fake paper-shaped data, 1-2 steps, network blocked), under the CPU's
    virtual CUDA or on the real device; never into ``results/``.
    """
    import papermill as pm

    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r}; allowed: {PROFILE_NAMES}")
    if dry_run not in DRY_RUNS:
        raise ValueError(f"dry_run={dry_run!r}; allowed: {DRY_RUNS}")
    if dry_run and profile != "paper":
        raise ValueError(f"a dry run is of the paper profile; profile={profile!r}")
    src = notebook_path(name)
    out_dir = Path(out_dir) if out_dir is not None else Path(results_root or REPO_ROOT / "results") / name
    if dry_run and (REPO_ROOT / "results").resolve() in (out_dir.resolve(), *out_dir.resolve().parents):
        raise ValueError(f"a dry run writes to a scratch folder, never under results/ (got {out_dir})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"FAILED-{src.name}").unlink(missing_ok=True)
    params = {"profile": profile, "results_dir": str(out_dir.resolve()), **(parameters or {})}
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=out_dir, prefix=".running-")
    os.close(fd)
    env = {"VPKIT_DRY_RUN": "1" if dry_run == "virtual_cuda" else "device", "VPKIT_NO_NETWORK": "1"} if dry_run \
        else {"VPKIT_DRY_RUN": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel papermill starts inherits them
    try:
        pm.execute_notebook(str(src), tmp, parameters=params, cwd=str(REPO_ROOT), progress_bar=progress,
                            kernel_name="python3", execution_timeout=timeout, log_output=False)
    except pm.PapermillExecutionError as e:
        if keep_failed and Path(tmp).exists():
            shutil.move(tmp, out_dir / f"FAILED-{src.name}")
        Path(tmp).unlink(missing_ok=True)
        raise NotebookFailed(f"{src.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    final = out_dir / src.name
    shutil.move(tmp, final)
    return final


def _summary_row(name: str, out_dir: Path, seconds: float) -> dict:
    import json

    run = json.loads((out_dir / "run.json").read_text()) if (out_dir / "run.json").exists() else {}
    return {"notebook": name, "minutes": seconds / 60, "precision": run.get("precision", "?"),
            "threads": run.get("torch_threads", "?"), "cpu": f"{run.get('cpu_model', '?')} ({run.get('cpu_capability', '?')})"}


def summary_table(rows: list[dict]) -> str:
    """The closing table of ``replicate``: notebook, minutes, precision, threads, CPU, and the total."""
    lines = [f"{'notebook':20s} {'minutes':>8s}  {'precision':9s} {'threads':>7s}  cpu"]
    lines += [f"{r['notebook']:20s} {r['minutes']:8.1f}  {r['precision']:9s} {str(r['threads']):>7s}  {r['cpu']}"
              for r in rows]
    lines.append(f"{'total':20s} {sum(r['minutes'] for r in rows):8.1f}")
    return "\n".join(lines)


def allowed_parameters(name: str) -> list[str]:
    """The parameters notebook ``name`` declares (its ``parameters`` cell), ``results_dir`` aside."""
    import papermill as pm

    return sorted(set(pm.inspect_notebook(str(notebook_path(name)))) - {"results_dir"})


def parse_sets(items: list[str] | None, name: str) -> dict:
    """``--set KEY=VALUE`` pairs -> parameters of notebook ``name``; values are Python literals (strings
    otherwise); keys must be parameters the notebook declares (else the allowed keys are listed)."""
    import ast

    if not items:
        return {}
    allowed = allowed_parameters(name)
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        if key not in allowed:
            raise ValueError(f"--set {key}=...: {name} has no parameter {key!r}; allowed: {allowed}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def is_current(name: str, *, parameters: dict, results_root: str | Path | None = None,
               out_dir: str | Path | None = None) -> bool:
    """True if ``results/<name>/`` (or ``out_dir``) holds a complete run of the same parameters (from the executed
    notebook's papermill metadata, ``results_dir`` aside) and the same code: its ``run.json`` names a clean commit
    and neither ``vpkit/`` nor the notebook changed since (committed or not)."""
    import json
    import subprocess

    out_dir = Path(out_dir) if out_dir is not None else Path(results_root or REPO_ROOT / "results") / name
    run_json, executed = out_dir / "run.json", out_dir / NOTEBOOKS[name]
    if not (run_json.exists() and executed.exists()):
        return False
    try:
        run = json.loads(run_json.read_text())
        done = json.loads(executed.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
    except (OSError, ValueError):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k != "results_dir"}  # noqa: E731
    if strip(done) != strip(json.loads(json.dumps(parameters))):
        return False
    sha, dirty = run.get("git", {}).get("sha"), run.get("git", {}).get("dirty")
    if not sha or dirty:
        return False
    paths = ["vpkit", f"notebooks/{NOTEBOOKS[name]}"]
    diff = subprocess.run(["git", "diff", "--quiet", sha, "--", *paths], cwd=REPO_ROOT, capture_output=True)
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", *paths], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
    return diff.returncode == 0 and not untracked


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpkit", description=__doc__,
                                 epilog="parameter sweeps (local or Ray): python3 -m vpkit sweep --help",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replicate", help="execute notebooks with papermill, writing results/<source>/")
    rp.add_argument("names", nargs="*", help=f"notebooks to run (default: all): {list(NOTEBOOKS)}")
    rp.add_argument("--profile", default="offline", choices=PROFILE_NAMES)
    rp.add_argument("--results", default=None, help="results root (default: results/)")
    rp.add_argument("--precision", choices=PRECISIONS, default=None,
                    help="numeric precision of mixed-precision loops (default: each profile's 'auto', measured)")
    rp.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                    help="a notebook parameter (Python literal), e.g. --set seed=1 --set epochs=2; repeatable")
    rp.add_argument("--force", action="store_true",
                    help="re-run notebooks whose results are current (same parameters, unchanged code)")
    rp.add_argument("--dry-run", action="store_true",
                    help="paper-shape dry run of --profile paper: random weights, fake paper-shaped data, 1-2 "
                         f"steps per run, under a CPU 'virtual CUDA'; writes to --results (default {DRY_RUN_ROOT})")
    rp.add_argument("--real-device", action="store_true",
                    help="with --dry-run: run on the real device (a CUDA GPU when present) instead of virtual CUDA")
    sub.add_parser("list", help="list the notebooks")
    rd = sub.add_parser("readme", help="refresh README's quoted results from results/ (or --check them)")
    rd.add_argument("--check", action="store_true")
    sm = sub.add_parser("summary", help="write results/SUMMARY.md (every claim with its interval and verdict)")
    sm.add_argument("--check", action="store_true")
    sm.add_argument("--results", default=str(REPO_ROOT / "results"))
    sub.add_parser("assets", help="convert the offline backbones into the cache and print their checksums")
    co = sub.add_parser("cost", help="write results/benchmarks/paper_cost.md (the paper profiles' cost table)")
    co.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "assets":
        from . import assets

        for name, fn in (("vit_s14_dinov2", assets.vit_s14_state_dict), ("efficientnet_lite0", assets.lite0_state_dict)):
            try:
                fn()
            except assets.AssetError as e:
                print(f"{name}: {e}", file=sys.stderr)
                return 1
        for f in sorted(assets.cache_dir().glob("*.sha256")):
            print(f"{f.stem:32s} sha256 {f.read_text().strip()}  ({assets.cache_dir()})")
        return 0
    if args.cmd == "cost":
        from .assets import atomic_write_bytes
        from .studies import COST_FILE, paper_cost_markdown, paper_costs

        new, f = paper_cost_markdown(paper_costs()), REPO_ROOT / COST_FILE
        stale = not f.exists() or f.read_text() != new
        if stale and not args.check:
            f.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(f, new.encode())
        print(f"{COST_FILE}: {'out of date' if stale and args.check else 'refreshed' if stale else 'current'}")
        return 1 if (stale and args.check) else 0
    if args.cmd == "readme":
        from .report import sync_readme

        stale = sync_readme(check=args.check)
        for rel in stale:
            print(f"{'out of date' if args.check else 'refreshed'}: {rel}")
        return 1 if (stale and args.check) else 0
    if args.cmd == "summary":
        from .report import sync_summary

        stale = sync_summary(args.results, list(NOTEBOOKS), check=args.check)
        print(f"{Path(args.results) / 'SUMMARY.md'}: {'out of date' if stale and args.check else 'refreshed' if stale else 'current'}")
        return 1 if (stale and args.check) else 0
    if args.cmd == "list":
        for n, f in NOTEBOOKS.items():
            print(f"{n:20s} notebooks/{f}")
        return 0
    names = args.names or list(NOTEBOOKS)
    for n in names:
        if n not in NOTEBOOKS:
            ap.error(f"unknown notebook {n!r}; known: {list(NOTEBOOKS)}")
    if args.real_device and not args.dry_run:
        ap.error("--real-device needs --dry-run")
    if args.dry_run and args.profile != "paper":
        ap.error(f"--dry-run is a dry run of the paper profile; got --profile {args.profile}")
    mode = ("device" if args.real_device else "virtual_cuda") if args.dry_run else None
    args.results = args.results or str(DRY_RUN_ROOT if args.dry_run else REPO_ROOT / "results")
    summary = []
    for i, n in enumerate(names, 1):
        t0 = time.time()
        try:
            params = {**({"precision": args.precision} if args.precision else {}), **parse_sets(args.sets, n)}
        except ValueError as e:
            ap.error(str(e))
        if not args.dry_run and not args.force and is_current(n, parameters={"profile": args.profile, **params},
                                                              results_root=args.results):
            print(f"[{i}/{len(names)}] {n}: results are current (same parameters, code unchanged); "
                  f"--force to re-run", flush=True)
            continue
        what = f"paper-shape dry run ({mode})" if mode else f"({NOTEBOOKS[n]}) profile={args.profile}"
        print(f"[{i}/{len(names)}] {n} {what}", flush=True)
        try:
            out = run_notebook(n, profile=args.profile, results_root=args.results, parameters=params or None,
                               dry_run=mode)
        except ValueError as e:
            ap.error(str(e))
        except NotebookFailed as e:
            print(f"FAILED: {e}", file=sys.stderr)
            print(summary_table(summary))
            return 1
        summary.append(_summary_row(n, out.parent, time.time() - t0))
        print(f"[{i}/{len(names)}] {n} done in {time.time() - t0:.0f}s -> {out.parent}", flush=True)
    if args.dry_run:
        print(summary_table(summary))
        return 0
    print(summary_table(summary))
    from .report import sync_summary

    if sync_summary(args.results, list(NOTEBOOKS)):
        print(f"refreshed {Path(args.results) / 'SUMMARY.md'}")
    if args.profile == "offline" and Path(args.results).resolve() == (REPO_ROOT / "results").resolve():
        from .report import sync_readme

        for rel in sync_readme():
            print(f"README: refreshed {rel}")
    return 0

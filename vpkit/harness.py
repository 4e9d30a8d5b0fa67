"""Run the replication notebooks headlessly with papermill: ``python -m vpkit replicate [NAMES] --profile P``.

``--set KEY=VALUE`` passes notebook parameters (checked against the notebook's declared ones); a notebook whose
results are current (same parameters, unchanged code: :func:`is_current`) is skipped unless ``--force``; ``--jobs``
runs several notebooks at once, each with its share of the cores (default: two for the offline profile on a
CPU-only machine, see :func:`auto_jobs`).
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


def summary_table(rows: list[dict], *, wall_minutes: float | None = None, jobs: int = 1) -> str:
    """The closing table of ``replicate``: notebook, minutes, precision, threads, CPU, and the total (with
    ``jobs`` > 1, the sum of the notebooks' minutes and, as ``wall_minutes``, the elapsed time of the whole run)."""
    lines = [f"{'notebook':22s} {'minutes':>8s}  {'precision':9s} {'threads':>7s}  cpu"]
    lines += [f"{r['notebook']:22s} {r['minutes']:8.1f}  {r['precision']:9s} {str(r['threads']):>7s}  {r['cpu']}"
              for r in rows]
    lines.append(f"{'total' if jobs == 1 else 'sum of notebooks':22s} {sum(r['minutes'] for r in rows):8.1f}")
    if wall_minutes is not None and jobs > 1:
        lines.append(f"{f'wall clock ({jobs} at once)':22s} {wall_minutes:8.1f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# Notebooks at once (replicate --jobs)
# ----------------------------------------------------------------------------------------------------------
# Measured on the 2-core project machine (AMD EPYC, AVX512-BF16; 2026-12-07), images/s of one process at 2 threads
# against two 1-thread processes at once (their sum):
#   L2P-shaped prompt step (ViT-S/14, 56 px, batch 8, bf16)    111 -> 166  (1.50x)
#   Pro-Tuning step on EfficientNet-Lite0 (64 px, fp32)         145 -> 224  (1.55x)
#   ViT-S/14 feature extraction (112 px, batch 64, bf16)        102 -> 111  (1.09x)
#   VPT-deep step (ViT-S/14, bf16)                              110 -> 112  (1.03x)
# Small kernels (batch 8 at 56 px, depthwise convolutions) leave the second thread idle much of the time; two
# notebooks at one thread each fill it, and large GEMMs lose nothing. So on a CPU-only machine the offline
# profile runs two notebooks at once, each with half the cores; a GPU (one device, shared memory), the paper
# profile (GPU-bound) and dry runs keep one at a time. Thread counts change float reductions, so a notebook's
# numbers at --jobs 2 differ in the last bits from the same notebook at --jobs 1 (both are deterministic).
AUTO_JOBS_OFFLINE = 2


def auto_jobs(profile: str, *, dry_run: bool = False, cores: int | None = None, cuda: bool | None = None) -> int:
    """``--jobs auto``: :data:`AUTO_JOBS_OFFLINE` notebooks at once for the offline profile on a CPU-only machine
    with at least that many cores, else 1 (see the measurements above)."""
    if profile != "offline" or dry_run:
        return 1
    if cores is None:
        from .device import available_cores

        cores = available_cores()
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return AUTO_JOBS_OFFLINE if cores >= AUTO_JOBS_OFFLINE and not cuda else 1


def parse_jobs(value: str) -> int | str:
    """``--jobs`` value: ``auto`` or an int >= 1."""
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--jobs {value!r}; allowed: 'auto' or an int >= 1")
    return int(value)


def longest_first(names: list[str], results_root: str | Path, *, fallback_root: str | Path | None = None) -> list[str]:
    """``names`` ordered by the wall time of their last run (``run.json``'s ``wall_time_s`` under
    ``results_root``, else under ``fallback_root``: default the committed ``results/``, so a run into an empty
    folder is still ordered), longest first; a notebook without either goes first (it may be long), ties keep their
    order. Handing the longest notebooks out first keeps the last one running alone short (LPT list scheduling)."""
    import json

    roots = [Path(results_root), Path(fallback_root) if fallback_root is not None else REPO_ROOT / "results"]

    def last(n):
        for root in roots:
            try:
                return float(json.loads((root / n / "run.json").read_text())["wall_time_s"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return float("inf")

    return sorted(names, key=lambda n: -last(n))


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


def _replicate_parallel(todo: list[tuple[int, str, dict]], *, jobs: int, total: int, profile: str,
                        results_root: str, dry_run: str | None) -> tuple[list[dict], list[str]]:
    """Run ``todo`` (``(i, name, parameters)``) ``jobs`` at once, longest first (:func:`longest_first`), each
    kernel pinned to ``cores // jobs`` threads (:data:`vpkit.device.THREADS_ENV`, also the BLAS/OpenMP thread
    variables, so that scikit-learn's probes do not oversubscribe the cores) unless the caller pinned them.
    -> (summary rows in completion order, failure messages). A failure lets the running notebooks finish and
    starts no further one."""
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from .device import THREADS_ENV, available_cores

    threads = str(max(1, available_cores() // jobs))
    env = {"VPKIT_DRY_RUN": os.environ.get("VPKIT_DRY_RUN", "0")}  # run_notebook's own save/restore then agrees
    if not os.environ.get(THREADS_ENV, "").strip():
        env[THREADS_ENV] = threads
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if k not in os.environ:
            env[k] = os.environ.get(THREADS_ENV, "").strip() or threads
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # every kernel papermill starts inherits them
    by_name = {n: (i, p) for i, n, p in todo}
    queue = longest_first([n for _, n, _ in todo], results_root)
    lock, summary, failed = threading.Lock(), [], []
    print(f"{len(todo)} notebooks, {jobs} at once, {os.environ[THREADS_ENV]} thread(s) each; longest first: "
          f"{', '.join(queue)}", flush=True)

    def one(n):
        i, params = by_name[n]
        t0 = time.time()
        with lock:
            print(f"[{i}/{total}] {n} ({NOTEBOOKS[n]}) profile={profile}: started", flush=True)
        out = run_notebook(n, profile=profile, results_root=results_root, parameters=params or None,
                           dry_run=dry_run, progress=False)
        row = _summary_row(n, out.parent, time.time() - t0)
        with lock:
            print(f"[{i}/{total}] {n} done in {time.time() - t0:.0f}s -> {out.parent}", flush=True)
        return row

    try:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            running = set()
            while queue or running:
                while queue and len(running) < jobs and not failed:
                    running.add(ex.submit(one, queue.pop(0)))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        summary.append(f.result())
                    except NotebookFailed as e:
                        failed.append(str(e))
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return summary, failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpkit", description=__doc__,
                                 epilog="parameter sweeps (local or Ray): python3 -m vpkit sweep --help\n"
                                        "two replications compared: python3 -m vpkit compare --help",
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
    rp.add_argument("--jobs", type=parse_jobs, default="auto",
                    help="notebooks at once, each with its share of the cores (default 'auto': 2 for the offline "
                         "profile on a CPU-only machine with >= 2 cores, else 1)")
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
    todo = []  # (i, name, parameters) of the notebooks to run
    for i, n in enumerate(names, 1):
        try:
            params = {**({"precision": args.precision} if args.precision else {}), **parse_sets(args.sets, n)}
        except ValueError as e:
            ap.error(str(e))
        if not args.dry_run and not args.force and is_current(n, parameters={"profile": args.profile, **params},
                                                              results_root=args.results):
            print(f"[{i}/{len(names)}] {n}: results are current (same parameters, code unchanged); "
                  f"--force to re-run", flush=True)
            continue
        todo.append((i, n, params))
    jobs = auto_jobs(args.profile, dry_run=bool(mode)) if args.jobs == "auto" else args.jobs
    jobs = max(1, min(jobs, len(todo)))
    t_start = time.time()
    if jobs == 1:
        summary = []
        for i, n, params in todo:
            t0 = time.time()
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
    else:
        summary, failed = _replicate_parallel(todo, jobs=jobs, total=len(names), profile=args.profile,
                                              results_root=args.results, dry_run=mode)
        if failed:
            for e in failed:
                print(f"FAILED: {e}", file=sys.stderr)
            print(summary_table(summary, wall_minutes=(time.time() - t_start) / 60, jobs=jobs))
            return 1
    wall = (time.time() - t_start) / 60
    if args.dry_run:
        print(summary_table(summary, wall_minutes=wall, jobs=jobs))
        return 0
    print(summary_table(summary, wall_minutes=wall, jobs=jobs))
    from .report import sync_summary

    if sync_summary(args.results, list(NOTEBOOKS)):
        print(f"refreshed {Path(args.results) / 'SUMMARY.md'}")
    if args.profile == "offline" and Path(args.results).resolve() == (REPO_ROOT / "results").resolve():
        from .report import sync_readme

        for rel in sync_readme():
            print(f"README: refreshed {rel}")
    return 0

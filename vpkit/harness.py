"""Run the replication notebooks headlessly with papermill: ``python -m vpkit replicate [NAMES] --profile P``."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .profiles import PROFILE_NAMES

REPO_ROOT = Path(__file__).resolve().parent.parent
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
                 parameters: dict | None = None, progress: bool = True, timeout: int | None = None) -> Path:
    """Execute one notebook; its outputs go to ``<results_root>/<name>/`` and the executed copy beside them.

    The executed notebook is written to a temporary file first and moved into place only on success.
    Raises :class:`NotebookFailed` naming the failing cell and its error.
    """
    import papermill as pm

    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r}; allowed: {PROFILE_NAMES}")
    src = notebook_path(name)
    out_dir = Path(results_root or REPO_ROOT / "results") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "results_dir": str(out_dir.resolve()), **(parameters or {})}
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=out_dir, prefix=".running-")
    os.close(fd)
    try:
        pm.execute_notebook(str(src), tmp, parameters=params, cwd=str(REPO_ROOT), progress_bar=progress,
                            kernel_name="python3", execution_timeout=timeout, log_output=False)
    except pm.PapermillExecutionError as e:
        Path(tmp).unlink(missing_ok=True)
        raise NotebookFailed(f"{src.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    final = out_dir / src.name
    shutil.move(tmp, final)
    return final


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpkit", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replicate", help="execute notebooks with papermill, writing results/<source>/")
    rp.add_argument("names", nargs="*", help=f"notebooks to run (default: all): {list(NOTEBOOKS)}")
    rp.add_argument("--profile", default="offline", choices=PROFILE_NAMES)
    rp.add_argument("--results", default=str(REPO_ROOT / "results"), help="results root (default: results/)")
    sub.add_parser("list", help="list the notebooks")
    rd = sub.add_parser("readme", help="refresh README's quoted results from results/ (or --check them)")
    rd.add_argument("--check", action="store_true")
    sub.add_parser("assets", help="convert the offline backbones into the cache and print their checksums")
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
    if args.cmd == "readme":
        from .report import sync_readme

        stale = sync_readme(check=args.check)
        for rel in stale:
            print(f"{'out of date' if args.check else 'refreshed'}: {rel}")
        return 1 if (stale and args.check) else 0
    if args.cmd == "list":
        for n, f in NOTEBOOKS.items():
            print(f"{n:20s} notebooks/{f}")
        return 0
    names = args.names or list(NOTEBOOKS)
    for n in names:
        if n not in NOTEBOOKS:
            ap.error(f"unknown notebook {n!r}; known: {list(NOTEBOOKS)}")
    for i, n in enumerate(names, 1):
        t0 = time.time()
        print(f"[{i}/{len(names)}] {n} ({NOTEBOOKS[n]}) profile={args.profile}", flush=True)
        try:
            out = run_notebook(n, profile=args.profile, results_root=args.results)
        except NotebookFailed as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
        print(f"[{i}/{len(names)}] {n} done in {time.time() - t0:.0f}s -> {out.parent}", flush=True)
    if args.profile == "offline" and Path(args.results).resolve() == (REPO_ROOT / "results").resolve():
        from .report import sync_readme

        for rel in sync_readme():
            print(f"README: refreshed {rel}")
    return 0

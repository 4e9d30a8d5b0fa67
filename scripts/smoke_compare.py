"""Run every notebook's ``smoke`` profile into a folder, or compare two such folders.

Used to prove that a refactor changes no behaviour: take a snapshot before the change, another after it,
and compare them. Every ``metrics.json`` (headline and claims) and every CSV must be identical, except
columns and keys that measure wall time (their names are listed in ``TIMING``), which no two runs share.

    python3 scripts/smoke_compare.py run  /tmp/before            # snapshot (about 2 minutes)
    python3 scripts/smoke_compare.py run  /tmp/after
    python3 scripts/smoke_compare.py diff /tmp/before /tmp/after # exit 1 and a list when anything differs
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

# names (metrics keys, claim fields, CSV columns) whose values are wall-clock measurements
TIMING = re.compile(r"(seconds|per_s\b|_s$|^s_|per_step|speedup|wall|minutes|time)", re.I)


def run(root: Path, names: list[str]) -> None:
    os.environ.setdefault("VPKIT_NO_NETWORK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vpkit import harness

    for name in names or list(harness.NOTEBOOKS):
        print(f"smoke: {name}", flush=True)
        harness.run_notebook(name, profile="smoke", results_root=root, progress=False, timeout=900)


def _strip(obj, key=""):
    if isinstance(obj, dict):
        return {k: _strip(v, k) for k, v in obj.items() if not TIMING.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v, key) for v in obj]
    if isinstance(obj, str) and re.search(r"\d s per step|s vs [\d.]+ s per", obj):
        return re.sub(r"[\d.]+ s", "<t> s", obj)  # a claim's 'ours' that quotes two step times
    return obj


def _metrics(path: Path):
    m = json.loads(path.read_text())
    return _strip({k: m.get(k) for k in ("headline", "claims")})


def _csv(path: Path):
    import pandas as pd

    df = pd.read_csv(path)
    return df[[c for c in df.columns if not TIMING.search(str(c))]]


def diff(a: Path, b: Path) -> list[str]:
    import pandas as pd

    problems = []
    for fa in sorted(a.rglob("metrics.json")) + sorted(a.rglob("*.csv")):
        rel = fa.relative_to(a)
        fb = b / rel
        if not fb.exists():
            problems.append(f"missing in {b}: {rel}")
            continue
        if fa.suffix == ".json":
            if _metrics(fa) != _metrics(fb):
                problems.append(f"differs: {rel}")
        else:
            da, db = _csv(fa), _csv(fb)
            try:
                pd.testing.assert_frame_equal(da, db, check_exact=True)
            except AssertionError as e:
                problems.append(f"differs: {rel}: {str(e).splitlines()[0:3]}")
    for fb in sorted(b.rglob("metrics.json")) + sorted(b.rglob("*.csv")):
        if not (a / fb.relative_to(b)).exists():
            problems.append(f"new in {b}: {fb.relative_to(b)}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("root", type=Path)
    r.add_argument("names", nargs="*")
    d = sub.add_parser("diff")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.root, args.names)
        return 0
    problems = diff(args.a, args.b)
    for p in problems:
        print(p)
    n = len(list(args.a.rglob("*.csv"))) + len(list(args.a.rglob("metrics.json")))
    print(f"{n} files compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

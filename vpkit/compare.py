"""Compare two replications of the notebooks: wall time, precision, per-example outcomes and verdicts.

Two results roots (each ``<root>/<source>/`` with the ``run.json``, ``metrics.json`` and ``outcomes.npz`` a notebook
wrote) from two runs of the same code that differ in one condition (precision, CPU, thread count). The report says,
per notebook, how long each run took and in which precision, what share of the per-example test outcomes came out
identical, and, per claim, both verdicts with their intervals, so a reader sees which verdicts are decided by the
data and which move with the arithmetic alone::

    python3 -m vpkit compare results /tmp/fp32 --out results/precision \\
        --label-a "bf16, native" --label-b "fp32, AVX2 emulated"
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .assets import atomic_write_bytes
from .report import interval_text, load_outcomes

REPORT = "comparison.md"
NOTEBOOK_TABLE = "comparison_notebooks.csv"
CLAIM_TABLE = "comparison_claims.csv"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _run_row(run: dict | None) -> dict:
    run = run or {}
    sec = run.get("wall_time_s")
    return {"sha": (run.get("git", {}).get("sha") or "")[:7], "dirty": bool(run.get("git", {}).get("dirty")),
            "precision": run.get("precision"), "cpu_capability": run.get("cpu_capability"),
            "threads": run.get("torch_threads"), "minutes": None if sec is None else sec / 60,
            "isa_limits": run.get("isa_limits") or {}}


def compare_outcomes(a: dict, b: dict) -> dict:
    """Per-example outcomes of the runs both sides saved (same key, same shape): how many runs and examples are
    identical, and the mean absolute difference of their accuracies (runs whose outcomes are booleans)."""
    keys = sorted(set(a) & set(b))
    same_runs = n_examples = n_same = 0
    acc_diffs, shape_mismatch = [], []
    for k in keys:
        x, y = a[k], b[k]
        if x.shape != y.shape:
            shape_mismatch.append(k)
            continue
        eq = int((x == y).sum())
        n_examples += x.size
        n_same += eq
        same_runs += eq == x.size
        if x.dtype == bool and x.size:
            acc_diffs.append(abs(float(x.mean()) - float(y.mean())) * 100)
    return {"runs_compared": len(keys) - len(shape_mismatch), "runs_identical": same_runs,
            "only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a)), "shape_mismatch": shape_mismatch,
            "examples": n_examples, "examples_identical": n_same,
            "mean_abs_accuracy_diff": sum(acc_diffs) / len(acc_diffs) if acc_diffs else None}


def compare_claims(ma: dict, mb: dict, source: str) -> list[dict]:
    """One row per claim in either ``metrics.json``: both verdicts, margins and intervals, whether it moved (a claim
    of both runs whose verdicts differ) and, for a claim of one run only, which (``only_in``)."""
    ca = {c["id"]: c for c in ma.get("claims", [])}
    cb = {c["id"]: c for c in mb.get("claims", [])}
    rows = []
    for cid in list(ca) + [k for k in cb if k not in ca]:
        x, y = ca.get(cid, {}), cb.get(cid, {})
        va, vb = x.get("verdict"), y.get("verdict")
        rows.append({"source": source, "claim": cid, "verdict_a": va, "verdict_b": vb,
                     "margin_a": x.get("margin"), "margin_b": y.get("margin"),
                     "interval_a": interval_text(x) if x else "–", "interval_b": interval_text(y) if y else "–",
                     "unit": x.get("unit") or y.get("unit"), "moved": bool(x and y and va != vb),
                     "only_in": "" if (x and y) else ("A" if x else "B")})
    return rows


def compare_runs(root_a: str | Path, root_b: str | Path, names: list[str]) -> dict:
    """Compare the notebooks ``names`` of two results roots. A notebook missing from either root is listed with
    what is missing; a root that does not exist is an error."""
    root_a, root_b = Path(root_a), Path(root_b)
    for label, r in (("root_a", root_a), ("root_b", root_b)):
        if not r.is_dir():
            raise FileNotFoundError(f"{label}: results root {str(r)!r} is not a folder")
    notebooks, claims = [], []
    for name in names:
        da, db = root_a / name, root_b / name
        ma, mb = _json(da / "metrics.json"), _json(db / "metrics.json")
        row = {"source": name, "a": _run_row(_json(da / "run.json")), "b": _run_row(_json(db / "run.json")),
               "missing": [f"{lab}/{name}/metrics.json" for lab, m in (("a", ma), ("b", mb)) if m is None]}
        if ma is not None and mb is not None:
            row["outcomes"] = compare_outcomes(load_outcomes(da), load_outcomes(db))
            row["claims"] = compare_claims(ma, mb, name)
            claims += row["claims"]
        notebooks.append(row)
    return {"root_a": str(root_a), "root_b": str(root_b), "notebooks": notebooks, "claims": claims}


def _f(v, fmt="{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def _cond(r: dict) -> str:
    limits = ", ".join(f"{k}={v}" for k, v in sorted(r["isa_limits"].items()))
    return (f"{r['precision'] or '?'}, {r['cpu_capability'] or '?'}, {r['threads'] or '?'} thread(s)"
            + (f" [{limits}]" if limits else "") + f" @ {r['sha'] or '?'}{' (dirty)' if r['dirty'] else ''}")


def _moved_text(c: dict) -> str:
    return "**yes**" if c["moved"] else f"only in {c['only_in']}" if c["only_in"] else ""


def compare_markdown(cmp: dict, *, label_a: str = "A", label_b: str = "B") -> str:
    """The comparison as Markdown: the two runs' conditions, a per-notebook table and every claim."""
    nbs = cmp["notebooks"]
    lines = [f"# Two replications compared: {label_a} vs {label_b}", "",
             f"Generated by `python3 -m vpkit compare` from `{cmp['root_a']}` (A: {label_a}) and `{cmp['root_b']}` "
             f"(B: {label_b}); do not edit by hand. A per-example outcome is one test image's result in one run "
             "(correct or not, or a prediction); \"identical\" counts those equal in both replications.", "",
             "| notebook | A: precision, CPU, threads @ commit | B: precision, CPU, threads @ commit | minutes A | "
             "minutes B | B / A | runs identical | per-example outcomes identical | mean abs. accuracy "
             "difference per run (points) | verdicts moved |", "|---|---|---|---|---|---|---|---|---|---|"]
    tot_a = tot_b = 0.0
    for r in nbs:
        a, b = r["a"], r["b"]
        if r["missing"]:
            lines.append(f"| {r['source']} | {_cond(a)} | {_cond(b)} | {_f(a['minutes'])} | {_f(b['minutes'])} | – | "
                         f"– | – | – | missing: {', '.join(r['missing'])} |")
            continue
        o, moved = r["outcomes"], sum(c["moved"] for c in r["claims"])
        n_both = sum(not c["only_in"] for c in r["claims"])
        extra = [f"{sum(c['only_in'] == w for c in r['claims'])} only in {w}" for w in "AB"
                 if any(c["only_in"] == w for c in r["claims"])]
        tot_a += a["minutes"] or 0.0
        tot_b += b["minutes"] or 0.0
        ratio = b["minutes"] / a["minutes"] if a["minutes"] and b["minutes"] else None
        share = o["examples_identical"] / o["examples"] if o["examples"] else None
        lines.append(f"| {r['source']} | {_cond(a)} | {_cond(b)} | {_f(a['minutes'])} | {_f(b['minutes'])} | "
                     f"{_f(ratio, '{:.2f}x')} | {o['runs_identical']} of {o['runs_compared']} | "
                     f"{_f(share, '{:.1%}')} of {o['examples']} | {_f(o['mean_abs_accuracy_diff'], '{:.2f}')} | "
                     f"{moved} of {n_both}{' (' + ', '.join(extra) + ')' if extra else ''} |")
    claims = cmp["claims"]
    moved = [c for c in claims if c["moved"]]
    both = [c for c in claims if not c["only_in"]]
    lines += [f"| all (sum) | | | {tot_a:.1f} | {tot_b:.1f} | {_f(tot_b / tot_a if tot_a else None, '{:.2f}x')} "
              f"| | | | {len(moved)} of {len(both)} |", "",
              "Minutes are each notebook's own wall time (`run.json`); with two notebooks at once the whole run's "
              "wall clock is shorter than the sum.", "", "## Every claim", "",
              "| notebook | claim | verdict A | margin [95% interval] A | verdict B | margin [95% interval] B "
              "| moved |",
              "|---|---|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['source']} | `{c['claim']}` | {c['verdict_a'] or '–'} | {c['interval_a']} | "
                     f"{c['verdict_b'] or '–'} | {c['interval_b']} | {_moved_text(c)} |")
    return "\n".join(lines) + "\n"


def write_comparison(cmp: dict, out_dir: str | Path, *, label_a: str = "A", label_b: str = "B") -> list[Path]:
    """Write the Markdown report and its two CSV tables (notebooks, claims) under ``out_dir``, each atomically."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nb_rows = []
    for r in cmp["notebooks"]:
        row = {"source": r["source"], **{f"{k}_a": v for k, v in r["a"].items() if k != "isa_limits"},
               **{f"{k}_b": v for k, v in r["b"].items() if k != "isa_limits"}, "missing": "; ".join(r["missing"])}
        o = r.get("outcomes") or {}
        row.update({k: o.get(k) for k in ("runs_compared", "runs_identical", "examples", "examples_identical",
                                          "mean_abs_accuracy_diff")})
        row["verdicts_moved"] = sum(c["moved"] for c in r.get("claims", []))
        nb_rows.append(row)
    files = {REPORT: compare_markdown(cmp, label_a=label_a, label_b=label_b).encode(),
             NOTEBOOK_TABLE: pd.DataFrame(nb_rows).to_csv(index=False).encode(),
             CLAIM_TABLE: pd.DataFrame(cmp["claims"]).to_csv(index=False).encode()}
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    return [out / n for n in files]


def main(argv=None, *, names: list[str] | None = None) -> int:
    from .harness import NOTEBOOKS

    ap = argparse.ArgumentParser(prog="python -m vpkit compare", description=__doc__.split("\n")[0])
    ap.add_argument("root_a", help="results root of run A (e.g. results)")
    ap.add_argument("root_b", help="results root of run B")
    ap.add_argument("names", nargs="*", help=f"notebooks (default: all): {list(NOTEBOOKS)}")
    ap.add_argument("--out", required=True, help=f"folder for {REPORT} and its CSV tables")
    ap.add_argument("--label-a", default="A", help="what distinguishes run A (e.g. 'bf16, native')")
    ap.add_argument("--label-b", default="B")
    args = ap.parse_intermixed_args(argv)  # notebook names before or after the options
    known = list(names or NOTEBOOKS)
    for n in args.names:
        if n not in known:
            ap.error(f"unknown notebook {n!r}; known: {known}")
    try:
        cmp = compare_runs(args.root_a, args.root_b, args.names or known)
    except FileNotFoundError as e:
        ap.error(str(e))
    for f in write_comparison(cmp, args.out, label_a=args.label_a, label_b=args.label_b):
        print(f)
    moved = [c for c in cmp["claims"] if c["moved"]]
    only = [c for c in cmp["claims"] if c["only_in"]]
    print(f"{len(moved)} of {len(cmp['claims']) - len(only)} verdicts differ between the two runs"
          + (f"; {len(only)} claims are in one run only" if only else ""))
    return 0


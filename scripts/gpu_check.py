"""The body of ``scripts/gpu_check.sh``: dry runs of every notebook on the real device, then throughput; one report.

    python3 scripts/gpu_check.py --report results/benchmarks/gpu_check.json [--per-notebook-timeout 70]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpkit.harness import NOTEBOOKS  # noqa: E402


def _tail(text: str, n: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", default=str(ROOT / "results" / "benchmarks" / "gpu_check.json"))
    ap.add_argument("--per-notebook-timeout", type=int, default=70, help="seconds per notebook dry run")
    ap.add_argument("--throughput-steps", type=int, default=10)
    ap.add_argument("--notebooks", default=",".join(NOTEBOOKS))
    args = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="vpkit-gpu-check-"))
    t_all = time.time()
    dry = []
    for name in [n for n in args.notebooks.split(",") if n]:
        t0 = time.time()
        cmd = [sys.executable, "-m", "vpkit", "replicate", name, "--profile", "paper", "--dry-run", "--real-device",
               "--results", str(scratch)]
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.per_notebook_timeout)
            rc, log = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            rc, log = "timeout", str(e.stdout or "") + str(e.stderr or "")
        run = scratch / name / "run.json"
        info = json.loads(run.read_text()) if run.exists() else {}
        row = {"notebook": name, "ok": rc == 0, "rc": rc, "seconds": round(time.time() - t0, 1),
               "device": info.get("device"), "precision": info.get("precision"),
               **({} if rc == 0 else {"log_tail": _tail(log)})}
        print(json.dumps(row), flush=True)
        dry.append(row)
    tp_json = scratch / "throughput.json"
    t0 = time.time()
    p = subprocess.run([sys.executable, "scripts/throughput.py", "--steps", str(args.throughput_steps), "--out",
                        str(tp_json)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    throughput = json.loads(tp_json.read_text()) if tp_json.exists() else {"error": _tail(p.stdout + p.stderr)}
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "dry_runs": dry,
              "throughput": throughput, "throughput_seconds": round(time.time() - t0, 1),
              "total_seconds": round(time.time() - t_all, 1)}
    out = Path(args.report)
    out.parent.mkdir(parents=True, exist_ok=True)
    from vpkit.assets import write_json_atomic

    write_json_atomic(out, report)
    lines = [f"# GPU check ({throughput.get('gpu') or throughput.get('device', '?')}, {report['created']})", "",
             "| notebook | paper dry run | seconds | precision |", "|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {'ok' if r['ok'] else 'FAILED (' + str(r['rc']) + ')'} | {r['seconds']} | "
              f"{r.get('precision')} |" for r in dry]
    lines += ["", "| step kind | batch | images/s | peak GiB | precision |", "|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r.get('batch')} | {r.get('images_per_s', r.get('error'))} | "
              f"{r.get('peak_memory_gib', '')} | {r.get('precision', '')} |" for r in throughput.get("rows", [])]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')} in {report['total_seconds']:.0f} s")
    return 0 if all(r["ok"] for r in dry) else 1


if __name__ == "__main__":
    raise SystemExit(main())

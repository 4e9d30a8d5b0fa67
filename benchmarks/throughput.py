"""Throughput of the offline backbones: forward and forward+backward-to-input img/s, fp32 vs bf16 autocast.

Writes results/benchmarks/throughput.{csv,md} and run.json. Run on an otherwise idle machine:

    python3 benchmarks/throughput.py [--batch 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from vpkit import backbones, report
from vpkit.device import autocast, resolve_device

CASES = [("vit_s14_dinov2", 56), ("vit_s14_dinov2", 112), ("vit_s14_dinov2", 224),
         ("efficientnet_lite0", 96), ("efficientnet_lite0", 160), ("efficientnet_lite0", 224)]


def bench(b, size: int, batch: int, repeats: int, amp: bool, backward: bool) -> float:
    dev = resolve_device("auto")
    b.model.to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    times = []
    for r in range(repeats + 1):
        xi = x.clone().requires_grad_(backward)
        t0 = time.perf_counter()
        with autocast(dev, amp), torch.set_grad_enabled(backward):
            out = b.features(xi)
        if backward:
            out.float().sum().backward()
        if r:  # the first pass warms up
            times.append(time.perf_counter() - t0)
    return batch / min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    res = report.Results(args.out, profile="benchmark", seed=0, config=vars(args))
    rows = []
    for name, size in CASES:
        b = backbones.build_backbone(name, img_size=size)
        for amp in (False, True):
            for backward in (False, True):
                rows.append({"backbone": name, "img_size": size, "precision": "bf16" if amp else "fp32",
                             "pass": "forward+backward" if backward else "forward",
                             "images_per_s": round(bench(b, size, args.batch, args.repeats, amp, backward), 1)})
                print(rows[-1], flush=True)
    res.table("throughput", pd.DataFrame(rows))
    res.run_info(batch=args.batch, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()

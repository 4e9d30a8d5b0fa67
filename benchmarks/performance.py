"""The performance report of vpkit: GEMM peak, frozen-backbone bounds, and every method's training throughput.

Writes to ``results/benchmarks/`` (never asserted in tests; run it on an otherwise idle machine):

* ``gemm``: the machine's fp32 and bf16-autocast matmul GFLOP/s (square sizes, best of ``--repeats``);
* ``backbones``: each offline backbone's frozen forward and forward+backward-to-input images/s at the offline
  image sizes, its FLOPs per image (``torch.utils.flop_counter``) and the share of the GEMM peak it reaches;
* ``methods``: per method (linear, full, partial-1, bias, adapter, VPT-shallow/deep, L2P on ViT-S/14 56 px;
  the same baselines, Pro-Tuning and side tuning on Lite0 64 px; VP+TP on the offline VLM at 64 px; CoOp and
  CoCoOp batched vs per-image loop on precomputed features) the training images/s (forward, backward,
  optimiser step), the peak memory of the training steps, and the throughput as a fraction of the frozen
  backbone's forward+backward bound at the same shape and precision.

Each (method, precision) runs in a fresh subprocess, so its peak resident memory is its own: the kernel's
high-water mark is reset (``/proc/self/clear_refs``) after the model and the batches are built, and the peak
during the training steps minus the resident size before them is reported (``peak_mb``: activations, gradients,
optimiser state and allocator slack). Precision is forced per row (fp32 and bf16), not
chosen by ``auto``: the point is to see both on this machine.

    python3 benchmarks/performance.py [--steps 5] [--repeats 3] [--only vit_vpt_deep]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"vit_s14_dinov2": 56, "efficientnet_lite0": 64}  # the offline image sizes (VPT / L2P, Pro-Tuning)
BATCH = {"vit_s14_dinov2": 16, "efficientnet_lite0": 8, "vlm": 20, "prompt": 8}  # the offline batch sizes

# case name -> (what is trained, backbone, method name or prompt kind)
CASES = {
    **{f"vit_{m}": ("vit_s14_dinov2", m) for m in
       ("linear", "full", "partial_1", "bias", "adapter", "vpt_shallow", "vpt_deep", "l2p")},
    **{f"lite0_{m}": ("efficientnet_lite0", m) for m in
       ("linear", "full", "partial_1", "bias", "adapter", "protuning", "side")},
    "vlm_vp_tp": ("vlm", "vp_tp"),
    "vlm_coop": ("prompt", "coop"),
    "vlm_cocoop_batched": ("prompt", "cocoop"),
    "vlm_cocoop_loop": ("prompt", "cocoop_loop"),
}


# ----------------------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset this process's resident high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------------
# One case, in its own process
# ----------------------------------------------------------------------------------------------------------

def _build(case: str):
    """-> (model, make_batch() -> (inputs, labels), step(inputs, labels) -> loss, bound key)."""
    from vpkit import backbones, methods
    from vpkit import vlm as V
    from vpkit.prompts import coop

    kind, what = CASES[case]
    g = torch.Generator().manual_seed(0)
    if kind in ("vit_s14_dinov2", "efficientnet_lite0"):
        b = backbones.build_backbone(kind, img_size=SIZES[kind])
        m = methods.build_method(what, b, 10).model
        shape, n = (BATCH[kind], 3, SIZES[kind], SIZES[kind]), BATCH[kind]
        return m, lambda: (torch.randn(*shape, generator=g), torch.randint(0, 10, (n,), generator=g)), kind
    vlm = V.build_vlm("offline", img_size=64)
    names = V.DATASET_CLASSNAMES["fashion_mnist"][:5]
    if kind == "vlm":
        tf = vlm.encode_text([f"This is a photo of a {c}" for c in names])
        m = methods.build_vp_tp(vlm, tf, prompt_size=8).model
        n = BATCH["vlm"]
        return m, lambda: (torch.randn(n, 3, 64, 64, generator=g), torch.randint(0, 5, (n,), generator=g)), "vlm"
    n = BATCH["prompt"]
    # amp=True: the model's text tower follows the row's precision (it runs its own autocast; logits stay fp32)
    model = (coop.CoOp if what == "coop" else coop.CoCoOp)(vlm, names, n_ctx=4, ctx_init="a photo of a", amp=True)
    if what == "cocoop_loop":
        model.forward = model.forward_loop
    feats = lambda: F.normalize(torch.randn(n, vlm.embed_dim, generator=g), dim=-1)  # noqa: E731
    return model, lambda: (feats(), torch.randint(0, 5, (n,), generator=g)), None


def run_case(case: str, precision: str, steps: int) -> dict:
    """Train ``case`` for ``steps`` timed steps (after two warm-up steps) in ``precision``."""
    from vpkit import device
    from vpkit.train import make_optimizer, set_train_mode

    device.configure(precision=precision, threads="auto")
    torch.manual_seed(0)
    model, make_batch, bound = _build(case)
    params = [p for p in model.parameters() if p.requires_grad]
    # the notebooks' optimizer (vpkit.train.make_optimizer: fused kernels where they apply); AdamW's torch defaults
    opt = make_optimizer(params, optimizer="adamw", lr=1e-4, weight_decay=0.01)
    set_train_mode(model)
    batches = [make_batch() for _ in range(steps + 2)]
    cpu = torch.device("cpu")

    def step(x, y):
        with device.autocast(cpu, amp=True):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rss0 = _status_kb("VmRSS")  # model, data and frozen weights in place; nothing trained yet
    exact = reset_peak()
    for x, y in batches[:2]:
        step(x, y)
    t0 = time.perf_counter()
    for x, y in batches[2:]:
        step(x, y)
    sec = (time.perf_counter() - t0) / steps
    peak = _status_kb("VmHWM") if exact else None
    n = len(batches[0][1])
    return {"case": case, "backbone": CASES[case][0], "method": CASES[case][1], "precision": precision,
            "batch": n, "images_per_s": n / sec, "s_per_step": sec,
            "peak_mb": (peak - rss0) / 1024 if (peak and rss0) else float("nan"),
            "trainable_params": sum(p.numel() for p in params), "threads": torch.get_num_threads(), "bound": bound}


def run_isolated(case: str, precision: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", case, precision, "--steps", str(steps)],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"})
    if out.returncode:
        raise RuntimeError(f"{case}/{precision} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------
# Machine and backbone bounds
# ----------------------------------------------------------------------------------------------------------

def gemm_rows(repeats: int) -> list[dict]:
    from vpkit import device

    rows = []
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        for prec in ("fp32", "bf16"):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                s = device.best_time(lambda: a @ b, repeats)
            rows.append({"size": n, "precision": prec, "gflops": 2 * n ** 3 / s / 1e9,
                         "threads": torch.get_num_threads()})
    return rows


def backbone_rows(repeats: int, peak: dict) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    from vpkit import backbones, device
    from vpkit import vlm as V

    cases = [("vit_s14_dinov2", SIZES["vit_s14_dinov2"], BATCH["vit_s14_dinov2"]),
             ("efficientnet_lite0", SIZES["efficientnet_lite0"], BATCH["efficientnet_lite0"]),
             ("vlm", 64, BATCH["vlm"]), ("vit_s14_dinov2", 224, 16), ("efficientnet_lite0", 224, 16)]
    rows = []
    for name, size, batch in cases:
        if name == "vlm":
            vlm = V.build_vlm("offline", img_size=size)
            fwd = lambda x: vlm.encode_image(x)  # noqa: E731
        else:
            b = backbones.build_backbone(name, img_size=size)
            b.model.eval()
            fwd = b.features
        x = torch.randn(batch, 3, size, size)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            fwd(x[:1])
        flops = fc.get_total_flops()
        for prec in ("fp32", "bf16"):
            device.configure(precision=prec, threads=None)
            cpu = torch.device("cpu")

            def forward():
                with torch.no_grad(), device.autocast(cpu, amp=True):
                    fwd(x)

            def forward_backward():
                xi = x.clone().requires_grad_(True)
                with device.autocast(cpu, amp=True):
                    out = fwd(xi)
                out.float().sum().backward()

            for kind, fn in (("forward", forward), ("forward+backward", forward_backward)):
                ips = batch / device.best_time(fn, repeats)
                row = {"backbone": name, "img_size": size, "batch": batch, "precision": prec, "pass": kind,
                       "images_per_s": ips, "gflop_per_image": flops / 1e9}
                if kind == "forward":
                    row["achieved_gflops"] = flops * ips / 1e9
                    row["share_of_gemm_peak"] = row["achieved_gflops"] / peak[prec]
                rows.append(row)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per method (after 2 warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each bound measurement (best is kept)")
    ap.add_argument("--only", nargs="*", help=f"cases to run (default all): {list(CASES)}")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    ap.add_argument("--one", nargs=2, metavar=("CASE", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(*args.one, steps=args.steps)))
        return 0
    for c in args.only or ():
        if c not in CASES:
            ap.error(f"unknown case {c!r}; known: {list(CASES)}")
    from vpkit import device, report

    runtime = device.configure(precision="auto", threads="auto", verbose=True)
    res = report.Results(args.out, profile="benchmark", seed=0, config=vars(args))
    gemm = pd.DataFrame(gemm_rows(args.repeats))
    peak = gemm.groupby("precision").gflops.max().to_dict()
    device.configure(precision="auto", threads=runtime["torch_threads"])
    bb = pd.DataFrame(backbone_rows(args.repeats, peak))
    bound = bb[bb["pass"] == "forward+backward"].set_index(["backbone", "img_size", "precision"]).images_per_s
    rows = []
    for case in args.only or list(CASES):
        for prec in ("fp32", "bf16"):
            r = run_isolated(case, prec, args.steps)
            key = (r["bound"], 64 if r["bound"] == "vlm" else SIZES.get(r["bound"]), prec)
            r["bound_fwd_bwd_images_per_s"] = bound.get(key, float("nan")) if r["bound"] else float("nan")
            r["fraction_of_bound"] = r["images_per_s"] / r["bound_fwd_bwd_images_per_s"]
            rows.append(r)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    meth = pd.DataFrame(rows).drop(columns=["bound"])
    res.table("gemm", gemm.round(1))
    res.table("backbones", bb.round(3))
    res.table("methods", meth.round(3))
    device.configure(precision="auto", threads=runtime["torch_threads"])
    res.run_info(peak_gemm_gflops=peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())

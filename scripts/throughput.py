"""Training-step throughput at the papers' shapes: images/s and peak memory per step kind (random weights).

    python3 scripts/throughput.py [--out report.json] [--steps 10] [--kinds vpt_deep,full,...]

Each kind is one training step of a paper-profile run - forward, backward, optimiser step - at the paper's
architecture, image size, class count and batch size, under the mixed precision the loops use (bf16 autocast on
GPUs with bf16, fp16 + GradScaler otherwise; on a CPU :func:`vpkit.device.precision`). Weights are random (the
speed of a step does not depend on them), so it runs without internet. On a CPU the batch is cut to
``--cpu-batch`` (default 2) so that the script finishes; the CPU numbers are a smoke check, not a GPU estimate.
``scripts/gpu_check.sh`` runs it on a CUDA GPU; the README's cost table turns its images/s into GPU-hours.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpkit import backbones, device, dryrun, methods, vlm  # noqa: E402
from vpkit.prompts import coop  # noqa: E402

# kind -> (what it is, the paper batch size)
KINDS = {
    "vit_b16_224_vpt_deep_train": ("VPT-deep, ViT-B/16 224 px, 10 tokens x 12 layers, 100 classes (VPT Sec. 4)", 128),
    "vit_b16_224_full_train": ("full fine-tuning, ViT-B/16 224 px, 100 classes (VPT's FULL baseline)", 128),
    "resnet50_224_protuning_train": ("Pro-Tuning, ResNet-50 224 px, prompt blocks after 4 stages, 100 classes", 128),
    "clip_vitb16_cocoop_train": ("CoCoOp on cached image features, CLIP ViT-B/16 text tower, 4 context tokens, "
                                 "50 base classes, batch 1 (the official setting)", 1),
    "clip_vitb16_image_encode": ("CLIP ViT-B/16 224 px image features (no grad; the feature cache of CoOp/CoCoOp)",
                                 256),
}


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _amp(dev):
    """bf16 autocast where the GPU supports it (no scaler needed), else the loops' own choice."""
    if dev.type == "cuda":
        dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dt), {torch.bfloat16: "bf16", torch.float16: "fp16"}[dt]
    return device.autocast(dev, True), device.precision(dev)


def _build(kind: str, batch: int, dev):
    """(step function, images per step) for ``kind`` at batch ``batch`` on ``dev``."""
    with dryrun.dry_run(virtual_cuda=False):  # random weights: no download
        if kind.startswith("vit_b16"):
            bb = backbones.build_backbone("vit_b16_in21k")
        elif kind.startswith("resnet50"):
            bb = backbones.build_backbone("resnet50")
        else:
            clip = vlm.build_vlm("clip_vit_b16")
    if kind == "vit_b16_224_vpt_deep_train":
        model = methods.METHODS["vpt_deep"](bb, 100, num_tokens=10).model
    elif kind == "vit_b16_224_full_train":
        model = methods.METHODS["full"](bb, 100).model
    elif kind == "resnet50_224_protuning_train":
        model = methods.METHODS["protuning"](bb, 100).model
    elif kind == "clip_vitb16_cocoop_train":
        model = coop.build_prompt_model("cocoop", clip, [f"class {i}" for i in range(50)], n_ctx=4)
    elif kind == "clip_vitb16_image_encode":
        model = clip
    else:
        raise ValueError(f"unknown kind={kind!r}; known: {sorted(KINDS)}")
    model.to(dev)
    if kind == "clip_vitb16_image_encode":
        x = torch.randn(batch, 3, 224, 224, device=dev)

        def step():
            with torch.no_grad(), _amp(dev)[0]:
                clip.encode_image(x)
        return step
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if kind == "clip_vitb16_cocoop_train":
        x = torch.randn(batch, clip.embed_dim, device=dev)
        y = torch.randint(0, 50, (batch,), device=dev)
    else:
        x = torch.randn(batch, 3, 224, 224, device=dev)
        y = torch.randint(0, 100, (batch,), device=dev)
    ctx, prec = _amp(dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")

    def step():
        with _amp(dev)[0]:
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return step


def measure(kind: str, *, batch: int, steps: int, dev) -> dict:
    step = _build(kind, batch, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up (cuDNN autotune, allocator)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    s = (time.perf_counter() - t0) / steps
    out = {"kind": kind, "what": KINDS[kind][0], "batch": batch, "step_s": round(s, 5),
           "images_per_s": round(batch / s, 2), "precision": _amp(dev)[1]}
    if dev.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {list(KINDS)}")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per kind (after one warm-up step)")
    ap.add_argument("--cpu-batch", type=int, default=2, help="batch size on a CPU (the paper batch on a GPU)")
    ap.add_argument("--out", default=None, help="write the report (JSON) here")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown --kinds {unknown}; known: {list(KINDS)}")
    if args.steps < 1:
        ap.error(f"--steps={args.steps} must be >= 1")
    dev = device.resolve_device("auto")
    rows = []
    for k in kinds:
        batch = KINDS[k][1] if dev.type == "cuda" else min(KINDS[k][1], args.cpu_batch)
        try:
            r = measure(k, batch=batch, steps=args.steps, dev=dev)
        except torch.cuda.OutOfMemoryError as e:  # noqa: PERF203 - report and go on
            r = {"kind": k, "batch": batch, "error": f"out of memory: {str(e)[:120]}"}
            torch.cuda.empty_cache()
        print(json.dumps(r), flush=True)
        rows.append(r)
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else None
    report = {"device": str(dev), "gpu": gpu, "cpu": device.cpu_model(), "torch": torch.__version__,
              "platform": platform.platform(), "steps": args.steps, "rows": rows,
              "note": None if gpu else "CPU run with cut batches: a smoke check of the script, not a GPU estimate"}
    if args.out:
        from vpkit.assets import write_json_atomic

        write_json_atomic(args.out, report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training-step throughput at the papers' shapes: images/s and peak memory per step kind (random weights).

    python3 scripts/throughput.py [--out report.json] [--steps 10] [--kinds vpt_deep,full,...]

Each kind is one training step of a paper-profile run - forward, backward, optimiser step - at the paper's
architecture, image size, class count and batch size, under the mixed precision the loops use (bf16 autocast on
GPUs with bf16, fp16 + GradScaler otherwise; on a CPU :func:`vpkit.device.precision`). Weights are random (the
speed of a step does not depend on them), so it runs without internet. On a CPU the batch is cut to
``--cpu-batch`` (default 2) so that the script finishes; the CPU numbers are a smoke check, not a GPU estimate.
``scripts/gpu_check.sh`` runs it on a CUDA GPU; the README's cost table turns its images/s into GPU-hours.
``VPKIT_DRY_RUN=1 python3 scripts/throughput.py --steps 1`` runs it under the CPU virtual CUDA (placement check).
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
# The names are the ``step_kind`` of each study's ``paper_cost`` (the README's cost table looks them up).
KINDS = {
    "vit_b16_224_vpt_deep_train": ("VPT-deep, ViT-B/16 224 px, 10 tokens x 12 layers, 100 classes (VPT Sec. 4)", 128),
    "vit_b16_224_full_train": ("full fine-tuning, ViT-B/16 224 px, 100 classes (VPT's FULL baseline)", 128),
    "resnet101_224_protuning_train": ("Pro-Tuning, ResNet-101 224 px, prompt blocks after 4 stages, 100 classes",
                                      128),
    "resnet50_224_protuning_train": ("Pro-Tuning, ResNet-50 224 px, prompt blocks after 4 stages, 10 classes", 128),
    "clip_vitb16_cocoop_train": ("CoCoOp on cached image features, CLIP ViT-B/16 text tower, 4 context tokens, "
                                 "50 base classes, batch 1 (the official setting)", 1),
    "clip_vitb32_224_vp_padding_train": ("visual prompting: a 30 px padding prompt through frozen CLIP ViT-B/32, "
                                         "100 classes, batch 256 (Bahng et al.)", 256),
    "vit_b16_224_l2p_train": ("L2P: frozen ViT-B/16 query pass + prompted pass (pool 10, length 5, top 5), "
                              "100 classes, batch 16 (l2p-pytorch)", 16),
    "clip_vitb16_224_image_encode": ("CLIP ViT-B/16 224 px image features (no grad; CoOp/CoCoOp's feature cache, "
                                     "00_vlm)", 256),
    "vit_b16_224_resnet50_224_frozen_inference": ("00_backbones: ViT-B/16 224 px forward (no grad; the slower of its "
                                                  "two backbones, so a lower bound on its images/s)", 256),
}


def _real_cuda(dev) -> bool:
    """A CUDA device torch can drive (not the CPU virtual CUDA of a dry run, which checks placement only)."""
    return dev.type == "cuda" and torch.cuda.is_available()


def _sync(dev):
    if _real_cuda(dev):
        torch.cuda.synchronize()


def _amp(dev):
    """The loops' autocast (:func:`vpkit.device.autocast`) and its precision; :func:`main` forces bf16 on a GPU that
    has it (no scaler needed), so models that run autocast themselves (CoCoOp's text tower) agree with it."""
    return device.autocast(dev, True), device.precision(dev)


def _build(kind: str, batch: int, dev):
    """(step function, images per step) for ``kind`` at batch ``batch`` on ``dev``."""
    with dryrun.dry_run(virtual_cuda=False):  # random weights: no download
        if kind.startswith("vit_b16"):
            bb = backbones.build_backbone("vit_b16_in21k")
        elif kind.startswith("resnet101"):
            bb = backbones.build_backbone("resnet101")
        elif kind.startswith("resnet50"):
            bb = backbones.build_backbone("resnet50")
        else:
            clip = vlm.build_vlm("clip_vit_b32" if "vitb32" in kind else "clip_vit_b16")
    if kind == "vit_b16_224_vpt_deep_train":
        model = methods.METHODS["vpt_deep"](bb, 100, num_tokens=10).model
    elif kind == "vit_b16_224_full_train":
        model = methods.METHODS["full"](bb, 100).model
    elif kind == "resnet101_224_protuning_train":
        model = methods.METHODS["protuning"](bb, 100).model
    elif kind == "resnet50_224_protuning_train":
        model = methods.METHODS["protuning"](bb, 10).model
    elif kind == "clip_vitb32_224_vp_padding_train":
        text = torch.nn.functional.normalize(torch.randn(100, clip.embed_dim), dim=-1)
        model = methods.build_vp_tp(clip, text, template="padding", prompt_size=30).model
    elif kind == "vit_b16_224_l2p_train":
        model = methods.build_l2p_model(bb, 100).model
    elif kind == "vit_b16_224_resnet50_224_frozen_inference":
        model = bb.model
    elif kind == "clip_vitb16_cocoop_train":
        model = coop.build_prompt_model("cocoop", clip, [f"class {i}" for i in range(50)], n_ctx=4, amp=True)
    elif kind == "clip_vitb16_224_image_encode":
        model = clip
    else:
        raise ValueError(f"unknown kind={kind!r}; known: {sorted(KINDS)}")
    model.to(dev)
    if kind in ("clip_vitb16_224_image_encode", "vit_b16_224_resnet50_224_frozen_inference"):
        x = torch.randn(batch, 3, 224, 224, device=dev)
        encode = clip.encode_image if kind.startswith("clip") else model

        def step():
            with torch.no_grad(), _amp(dev)[0]:
                encode(x)
        return step
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if kind == "clip_vitb16_cocoop_train":
        x = torch.randn(batch, clip.embed_dim, device=dev)
        y = torch.randint(0, 50, (batch,), device=dev)
    else:
        x = torch.randn(batch, 3, 224, 224, device=dev)
        y = torch.randint(0, 10 if kind == "resnet50_224_protuning_train" else 100, (batch,), device=dev)
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
    if _real_cuda(dev):
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
    if _real_cuda(dev):
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
    if _real_cuda(dev) and torch.cuda.is_bf16_supported():
        device.configure(precision="bf16", threads=None)
    rows = []
    for k in kinds:
        batch = KINDS[k][1] if _real_cuda(dev) else min(KINDS[k][1], args.cpu_batch)
        try:
            r = measure(k, batch=batch, steps=args.steps, dev=dev)
        except torch.cuda.OutOfMemoryError as e:  # noqa: PERF203 - report and go on
            r = {"kind": k, "batch": batch, "error": f"out of memory: {str(e)[:120]}"}
            torch.cuda.empty_cache()
        print(json.dumps(r), flush=True)
        rows.append(r)
    gpu = torch.cuda.get_device_name(0) if _real_cuda(dev) else None
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

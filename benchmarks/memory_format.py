"""How the frozen backbones' weights are laid out on this CPU: the measurement behind channels_last CNNs and the
frozen-Linear bf16 copy (:func:`vpkit.device.cache_frozen_bf16`).

    python3 benchmarks/memory_format.py [--out results/benchmarks/memory_format.md] [--repeats 5]

Times the steps the offline notebooks repeat, on the offline pretrained weights:

* EfficientNet-Lite0 (Pro-Tuning, visual prompting, the VLM's image tower, the backbones probes) with its weights
  contiguous (NCHW) and ``channels_last`` (NHWC): fp32 training at 64 px, batch 8 (full fine-tuning, and gradients
  to the input only, as a prompt step), bf16 inference at 64 px batch 128 and at 224 px batch 32;
* ViT-S/14 (VPT, L2P, Pro-Tuning-ViT) with plain ``nn.Linear`` layers and with :class:`vpkit.device.FrozenBf16Linear`
  (the frozen weight cast to bf16 once, not on every call): under bf16 autocast, a prompt step (forward + backward to
  the input) at 56 px batch 8, a forward at 56 px batch 16 and at 112 px batch 32.

It also checks that both pairs compute the same function (max abs difference of the outputs: Lite0 fp32, ViT bf16,
where the copy must be bit-identical). bf16 rows are skipped, and the report says so, where
:func:`vpkit.device.cpu_precision` picks fp32. The report (markdown, one row per step: images/s of each layout and
their ratio) is written atomically; the rest of the machine should be idle while it runs.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpkit import device  # noqa: E402
from _report import parse_args, write_report  # noqa: E402


def _step(model, x, *, train: str, amp: bool):
    """A callable running one step: ``train`` is ``"full"`` (every parameter), ``"input"`` (gradients to the input
    only) or ``"none"`` (no-grad forward)."""
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            if train == "none":
                with torch.no_grad():
                    return model(x)
            xx = x.clone().requires_grad_(train == "input")
            y = model(xx)
        y.float().square().mean().backward()
    return run


def _timed(model, x, train: str, amp: bool, repeats: int) -> float:
    """Images per second of the best of ``repeats`` steps."""
    grads = train == "full"
    for p in model.parameters():
        p.requires_grad_(grads)
        p.grad = None
    try:
        return x.shape[0] / device.best_time(_step(model, x, train=train, amp=amp), repeats)
    finally:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None


def main(argv=None) -> int:
    args = parse_args(argv, doc=__doc__, out="results/benchmarks/memory_format.md", repeats=5)
    from vpkit import backbones as bb

    info = device.configure(precision="auto", threads="auto")
    bf16 = device.cpu_precision() == "bf16"
    g = torch.Generator().manual_seed(0)
    rows, diffs = [], {}

    # EfficientNet-Lite0: contiguous vs channels_last (build_backbone keeps CNNs channels_last)
    lite = bb.build_backbone("efficientnet_lite0", img_size=64).model
    layouts = {"contiguous": copy.deepcopy(lite).to(memory_format=torch.contiguous_format),
               "channels_last": lite.to(memory_format=torch.channels_last)}
    x64, x64b, x224 = (torch.randn(n, 3, s, s, generator=g) for n, s in ((8, 64), (128, 64), (32, 224)))
    cases = [("Lite0 full fine-tuning step, 64 px, batch 8", "fp32", x64, "full"),
             ("Lite0 step with gradients to the input only, 64 px, batch 8", "fp32", x64, "input"),
             ("Lite0 forward, 64 px, batch 128", "bf16", x64b, "none"),
             ("Lite0 forward, 224 px, batch 32", "bf16", x224, "none")]
    for name, prec, x, train in cases:
        if prec == "bf16" and not bf16:
            continue
        ips = {k: _timed(m, x, train, prec == "bf16", args.repeats) for k, m in layouts.items()}
        rows.append((name, prec, "contiguous / channels_last", ips["contiguous"], ips["channels_last"]))
        print(f"{name} [{prec}]: {ips['contiguous']:.1f} / {ips['channels_last']:.1f} img/s", flush=True)
    with torch.no_grad():
        outs = [m(x64) for m in layouts.values()]
    diffs["Lite0 fp32, contiguous vs channels_last"] = float((outs[0] - outs[1]).abs().max())

    # ViT-S/14: plain nn.Linear vs the frozen-Linear bf16 copy (build_backbone uses the copy)
    vits = {}
    for size in (56, 112):
        cached = bb.build_backbone("vit_s14_dinov2", img_size=size).model
        plain = copy.deepcopy(cached)
        for m in plain.modules():
            if type(m) is device.FrozenBf16Linear:
                m.__class__ = torch.nn.Linear
        vits[size] = {"plain": plain, "cached": cached}
    cases = [("ViT-S/14 prompt step (gradients to the input), 56 px, batch 8", 56, 8, "input"),
             ("ViT-S/14 forward, 56 px, batch 16", 56, 16, "none"),
             ("ViT-S/14 forward, 112 px, batch 32", 112, 32, "none")]
    if bf16:
        for name, size, n, train in cases:
            x = torch.randn(n, 3, size, size, generator=g)
            ips = {k: _timed(m, x, train, True, args.repeats) for k, m in vits[size].items()}
            rows.append((name, "bf16", "per-call cast / bf16 copy", ips["plain"], ips["cached"]))
            print(f"{name} [bf16]: {ips['plain']:.1f} / {ips['cached']:.1f} img/s", flush=True)
        x = torch.randn(4, 3, 56, 56, generator=g)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs = [m(x) for m in vits[56].values()]
        diffs["ViT-S/14 bf16, per-call cast vs bf16 copy"] = float((outs[0].float() - outs[1].float()).abs().max())

    write_report(args.out, title="Weight layout of the frozen backbones on the CPU", script="memory_format.py",
                 info=info, repeats=args.repeats,
                 basis=f"offline pretrained weights; best of {args.repeats} steps. `vpkit.backbones.build_backbone` "
                       "keeps CNNs `channels_last` and gives frozen `nn.Linear` layers a bf16 copy of their weight "
                       "(`vpkit.device.cache_frozen_bf16`) because of these numbers.",
                 header=["step", "precision", "layouts (a / b)", "a img/s", "b img/s", "b / a"],
                 rows=[[n, p, lay, f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}x"] for n, p, lay, a, b in rows],
                 bf16_skipped=not bf16, same="max |a - b| of the outputs", diffs=diffs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

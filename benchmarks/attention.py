"""Fused vs plain-matmul attention on this CPU: the measurement behind :func:`vpkit.device.fused_attention`.

    python3 benchmarks/attention.py [--out results/benchmarks/attention.md] [--repeats 10]

Times the steps the offline notebooks repeat most, each with the fused ``scaled_dot_product_attention`` kernel
(timm ``fused_attn=True``, transformers ``"sdpa"``) and with plain matmuls + softmax (``fused_attn=False``,
``"eager"``), in fp32 and under bf16 autocast (bf16 only where this CPU runs it natively; it is skipped, and says
so, where :func:`vpkit.device.cpu_precision` picks fp32):

* a prompt-tuning step of the frozen ViT-S/14 (VPT / L2P / Pro-Tuning-ViT): forward + backward to the input tokens
  at 42 tokens (56 px: 16 patches + CLS + 25 prompt tokens), batch 8, and at 197 tokens;
* its forward alone (evaluation), batch 16;
* a CoOp / CoCoOp text step through frozen MiniLM: forward + backward to the prompt embeddings, 10 and 40 prompts of
  14 tokens with 3 padded, and a no-grad batch of 100.

Weights are random (speed does not depend on them) except MiniLM's, which ship with the offline package. It also
checks that the two kernels compute the same function (fp32 outputs, max abs difference). The report (markdown, one
row per step: ms per step fused / unfused and the ratio) is written atomically; the rest of the machine should be
idle while it runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpkit import device  # noqa: E402
from _report import parse_args, write_report  # noqa: E402


def _vit_step(vit, batch: int, tokens: int, train: bool, amp: bool):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, tokens, vit.embed_dim, generator=g)

    def step():
        x = x0.clone().requires_grad_(train)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), torch.set_grad_enabled(train):
            y = vit.norm(vit.blocks(x))[:, 0].float().sum()
        if train:
            y.backward()
    return step


def _bert_step(bert, n: int, length: int, train: bool, amp: bool):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, length, bert.config.hidden_size, generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[:, length - 3:] = 0

    def step():
        x = x0.clone().requires_grad_(train)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), torch.set_grad_enabled(train):
            y = bert(inputs_embeds=x, attention_mask=mask).last_hidden_state.float().sum()
        if train:
            y.backward()
    return step


def main(argv=None) -> int:
    args = parse_args(argv, doc=__doc__, out="results/benchmarks/attention.md", repeats=10)
    import timm

    from vpkit import vlm

    info = device.configure(precision="auto", threads="auto")
    precisions = ["fp32"] + (["bf16"] if device.cpu_precision() == "bf16" else [])
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, num_classes=0).eval()
    for p in vit.parameters():
        p.requires_grad_(False)
    _, bert = vlm.load_minilm()
    cases = [("ViT-S/14 prompt step, 42 tokens, batch 8", vit, lambda m, a: _vit_step(m, 8, 42, True, a)),
             ("ViT-S/14 prompt step, 197 tokens, batch 8", vit, lambda m, a: _vit_step(m, 8, 197, True, a)),
             ("ViT-S/14 forward, 42 tokens, batch 16", vit, lambda m, a: _vit_step(m, 16, 42, False, a)),
             ("MiniLM CoOp step, 10 prompts x 14 tokens", bert, lambda m, a: _bert_step(m, 10, 14, True, a)),
             ("MiniLM CoCoOp step, 40 prompts x 14 tokens", bert, lambda m, a: _bert_step(m, 40, 14, True, a)),
             ("MiniLM forward, 100 texts x 14 tokens", bert, lambda m, a: _bert_step(m, 100, 14, False, a))]
    rows = []
    for name, model, make in cases:
        for prec in precisions:
            ms = {}
            for fused in (True, False):
                device.apply_attention(model, fused)
                ms[fused] = 1000 * device.best_time(make(model, prec == "bf16"), args.repeats)
            rows.append((name, prec, ms[True], ms[False]))
            print(f"{name} [{prec}]: fused {ms[True]:.1f} ms, unfused {ms[False]:.1f} ms, "
                  f"{ms[True] / ms[False]:.2f}x", flush=True)
    # the same function: fp32 outputs of both kernels on the same tokens
    diffs = {}
    for label, model, fn in [("ViT-S/14", vit, lambda m, x: m.norm(m.blocks(x))),
                             ("MiniLM", bert, lambda m, x: m(inputs_embeds=x).last_hidden_state)]:
        x = torch.randn(4, 20, 384, generator=torch.Generator().manual_seed(1))
        outs = []
        for fused in (True, False):
            device.apply_attention(model, fused)
            with torch.no_grad():
                outs.append(fn(model, x))
        diffs[label] = float((outs[0] - outs[1]).abs().max())
    write_report(args.out, title="Fused vs plain-matmul attention on the CPU", script="attention.py", info=info,
                 repeats=args.repeats,
                 basis=f"best of {args.repeats} steps. `vpkit.device.fused_attention` uses the unfused path on the CPU "
                       "because of these numbers.",
                 header=["step", "precision", "fused ms", "unfused ms", "fused / unfused"],
                 rows=[[n, p, f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x"] for n, p, a, b in rows],
                 bf16_skipped="bf16" not in precisions, same="max |fused - unfused| of fp32 outputs", diffs=diffs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

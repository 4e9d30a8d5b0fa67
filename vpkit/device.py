"""Where tensors run and in which precision: the one place a device is chosen.

``device="auto"`` means CUDA when present, else the CPU. :func:`autocast` is the mixed-precision context every
loop uses: bf16 on CPU, fp16 on CUDA when ``amp=True``.
"""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, amp: bool):
    """The autocast context of a loop on ``device``: disabled unless ``amp``; bf16 on CPU, fp16 on CUDA."""
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16)

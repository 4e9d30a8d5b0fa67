"""Token-level access to an unforked timm ``VisionTransformer``: embed, run blocks, pool.

Prompt methods that insert tokens (VPT, L2P) use these instead of forking timm: ``embed_tokens`` gives the
sequence ``[CLS, patches]`` with position embeddings added (timm's ``_pos_embed``), prompts are inserted
after the prefix tokens, the blocks run unchanged, and ``final_norm`` applies the last LayerNorm.
"""
from __future__ import annotations

import torch
from torch import nn


def check_vit(vit: nn.Module) -> None:
    for attr in ("patch_embed", "blocks", "norm", "num_prefix_tokens"):
        if not hasattr(vit, attr):
            raise TypeError(f"expected a timm VisionTransformer (missing .{attr}), got {type(vit).__name__}")


def embed_tokens(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Images -> (B, prefix + N, D) tokens: patch embedding, CLS (and register) tokens, position embedding."""
    check_vit(vit)
    t = vit.patch_embed(x)
    t = vit._pos_embed(t)
    t = vit.patch_drop(t)
    return vit.norm_pre(t)


def insert_prompts(tokens: torch.Tensor, prompts: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """[prefix, prompts, patches]: prompts (B, P, D) go right after the CLS/prefix tokens (VPT Eq. 4)."""
    return torch.cat([tokens[:, :num_prefix], prompts, tokens[:, num_prefix:]], dim=1)


def final_norm(vit: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return vit.norm(tokens)

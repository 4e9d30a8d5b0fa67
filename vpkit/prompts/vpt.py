"""Visual Prompt Tuning (Jia et al., ECCV 2022): learnable tokens in the input of a frozen timm ViT.

* **VPT-shallow** (Sec. 3.2, Eq. 4): ``num_tokens`` prompts are inserted after the CLS token, before the
  first block; the blocks then carry them along like any other token.
* **VPT-deep** (Eq. 6): a fresh set of prompts enters every one of the first ``prompt_depth`` blocks; the
  previous block's outputs at the prompt positions are discarded (replaced).

``prompt_depth`` is the number of first blocks that receive fresh prompts: 1 is shallow, ``len(blocks)``
is deep, anything between is the depth ablation (Fig. 7). Only the prompts and the linear head train.

Ablation knobs (Sec. 4.3): ``location`` "prepend" (default) or "add" (Fig. 5: one prompt per token, added
element-wise to the CLS/prefix and patch embeddings as the official ablation code does, sequence length
unchanged); ``output`` read by the head (Fig. 8):
"cls" (default), "image_mean" (mean of the image-patch tokens) or "prompt_mean" (mean of the prompt tokens).
Initialisation follows the official code: uniform in ``[-b, b]`` with ``b = sqrt(6 / (3 * patch**2 + d))``
(xavier-uniform of a patch-embedding-shaped fan-in/fan-out); prompt dropout is applied to the prompts
after they are expanded to the batch, so each image gets its own mask (0.1 for deep in the official demo).
The head is initialised as the official ``MLP`` head with ``special_bias``: kaiming-normal weights (fan-out)
and every bias at ``-log((1 - 0.01) / 0.01)`` (:func:`init_head`; ``head_init="torch"`` keeps PyTorch's).

The backbone is an unforked timm ``VisionTransformer``: :mod:`vpkit.prompts.vit` gives token-level access.
Builder: :func:`vpkit.methods.build_vpt`; the VTAB-1k protocol, the paper's numbers and claims:
:mod:`vpkit.studies.vpt`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .vit import check_vit, embed_tokens, final_norm

LOCATIONS = ("prepend", "add")
OUTPUTS = ("cls", "image_mean", "prompt_mean")


@dataclass
class VPTConfig:
    """VPT hyper-parameters, with the paper's names. ``prompt_depth=None`` means every block (VPT-deep)."""

    num_tokens: int = 10
    prompt_depth: int | None = None
    dropout: float = 0.0
    location: str = "prepend"
    output: str = "cls"

    def validate(self, num_blocks: int) -> "VPTConfig":
        depth = num_blocks if self.prompt_depth is None else self.prompt_depth
        if not isinstance(depth, int) or not 1 <= depth <= num_blocks:
            raise ValueError(f"prompt_depth={self.prompt_depth!r} must be an int in 1..{num_blocks} "
                             f"(1 = VPT-shallow, {num_blocks} = VPT-deep)")
        if self.location not in LOCATIONS:
            raise ValueError(f"location={self.location!r}; allowed: {LOCATIONS}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output={self.output!r}; allowed: {OUTPUTS}")
        if self.location == "add" and self.output == "prompt_mean":
            raise ValueError("output='prompt_mean' needs location='prepend' (added prompts have no own tokens)")
        if self.location == "prepend" and (not isinstance(self.num_tokens, int) or self.num_tokens < 1):
            raise ValueError(f"num_tokens={self.num_tokens!r} must be an int >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        return VPTConfig(self.num_tokens, depth, self.dropout, self.location, self.output)


HEAD_INITS = ("official", "torch")
HEAD_PRIOR = 0.01  # the official head's prior probability: bias = -log((1 - p) / p)


def init_head(head: nn.Linear, how: str = "official") -> nn.Linear:
    """The official VPT head init (``src/models/mlp.py``): kaiming-normal weights (``a=0``, fan-out) and the
    constant bias ``-log((1 - p) / p)`` with ``p = 0.01``; ``"torch"`` leaves ``nn.Linear``'s default."""
    if how not in HEAD_INITS:
        raise ValueError(f"head_init={how!r}; allowed: {HEAD_INITS}")
    if how == "official":
        nn.init.kaiming_normal_(head.weight, a=0, mode="fan_out")
        nn.init.constant_(head.bias, -math.log((1 - HEAD_PRIOR) / HEAD_PRIOR))
    return head


def init_bound(patch_size: int, embed_dim: int) -> float:
    """The official VPT init bound ``sqrt(6 / (3 * patch**2 + embed_dim))`` (xavier-uniform, Sec. 3.2 code)."""
    return math.sqrt(6.0 / float(3 * patch_size * patch_size + embed_dim))


class VPT(nn.Module):
    """A frozen timm ViT with visual prompts and a linear head: ``images -> logits``.

    Parameters: ``prompt_embeddings`` of shape ``(prompt_depth, P, D)`` (``P = num_tokens`` for "prepend",
    ``P = prefix + patch tokens`` for "add") and ``head``. Everything under ``vit`` stays frozen.
    """

    def __init__(self, vit: nn.Module, num_classes: int, *, num_tokens: int = 10, prompt_depth: int | None = None,
                 dropout: float = 0.0, location: str = "prepend", output: str = "cls",
                 head_init: str = "official"):
        super().__init__()
        check_vit(vit)
        self.vit = vit
        cfg = VPTConfig(num_tokens, prompt_depth, dropout, location, output).validate(len(vit.blocks))
        self.num_tokens, self.prompt_depth = cfg.num_tokens, cfg.prompt_depth
        self.location, self.output = cfg.location, cfg.output
        self.num_prefix = int(vit.num_prefix_tokens)
        self.num_patches = int(vit.patch_embed.num_patches)
        d = int(vit.embed_dim)
        n_prompt = self.num_tokens if self.location == "prepend" else self.num_prefix + self.num_patches
        if self.location == "add":
            self.num_tokens = n_prompt
        patch = vit.patch_embed.patch_size[0]
        self.prompt_embeddings = nn.Parameter(torch.empty(self.prompt_depth, n_prompt, d))
        nn.init.uniform_(self.prompt_embeddings, -init_bound(patch, d), init_bound(patch, d))
        self.prompt_dropout = nn.Dropout(cfg.dropout)
        self.head = init_head(nn.Linear(d, num_classes), head_init)

    @property
    def num_inserted(self) -> int:
        """Number of extra tokens in the sequence (0 for "add")."""
        return self.num_tokens if self.location == "prepend" else 0

    def _prompts(self, layer: int, batch: int) -> torch.Tensor:
        # expand first, then drop: one dropout mask per image (the official code's order)
        return self.prompt_dropout(self.prompt_embeddings[layer].unsqueeze(0).expand(batch, -1, -1))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised final tokens ``[prefix, prompts, patches]`` (Eq. 4 / Eq. 6)."""
        t = embed_tokens(self.vit, x)
        b, p, k = t.shape[0], self.num_inserted, self.num_prefix
        if t.shape[1] != k + self.num_patches:
            raise ValueError(f"input gives {t.shape[1] - k} patches, the prompts were built for {self.num_patches}")
        for i, blk in enumerate(self.vit.blocks):
            if i < self.prompt_depth:
                prompts = self._prompts(i, b).to(t.dtype)
                if self.location == "add":
                    t = t + prompts  # CLS/prefix and every patch
                elif i == 0:
                    t = torch.cat([t[:, :k], prompts, t[:, k:]], dim=1)
                else:  # VPT-deep: replace the previous block's outputs at the prompt positions
                    t = torch.cat([t[:, :k], prompts, t[:, k + p:]], dim=1)
            t = blk(t)
        return final_norm(self.vit, t)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        k, p = self.num_prefix, self.num_inserted
        if self.output == "cls":
            return tokens[:, 0]
        if self.output == "image_mean":
            return tokens[:, k + p:].mean(1)
        return tokens[:, k:k + p].mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.forward_tokens(x)))

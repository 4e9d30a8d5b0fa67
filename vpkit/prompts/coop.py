"""CoOp and CoCoOp: learned text context for a frozen vision-language model.

* **CoOp** (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022, Sec. 3.2, Eq. 2): the
  hand-written context "a photo of a" is replaced by ``n_ctx`` learned vectors in the text encoder's
  word-embedding space, ``t_i = [v_1 ... v_M, CLASS_i]``; both towers stay frozen; cross-entropy over
  ``logit_scale * cos(image, text)``. *Unified* context (one set shared by all classes) or *class-specific*
  context (CSC, one set per class; cannot be applied to unseen classes).
* **CoCoOp** (Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022, Sec. 3.2,
  Eq. 4): a Meta-Net ``Linear(d -> d/16) - ReLU - Linear(d/16 -> ctx_dim)`` maps the (normalised) image
  feature ``x`` to a token ``pi(x)`` that is **added to every context vector**, ``v_m(x) = v_m + pi(x)``, so
  each image gets its own prompts and the text tower runs per image.

The CoCoOp text pass here is **batched** over images x classes: ``(B, C, L, width)`` prompt embeddings go
through the text tower as one ``(B * C, L, width)`` batch (:meth:`CoCoOp.forward`). The official code loops
over images in Python; :meth:`CoCoOp.forward_loop` does the same and exists only to check equality and to
time it. Both models take **precomputed image features** (the image tower is frozen and, without
augmentation, runs once per image: :func:`vpkit.vlm.encode_images`).

**Precision.** ``amp=True`` runs the text tower (the whole cost of a prompt step) under
:func:`vpkit.device.autocast`: bf16 on a CPU where it was measured faster, fp16 on CUDA, fp32 otherwise. Everything
else stays fp32 whatever the surrounding context: the Meta-Net, the prompt assembly, the normalisation of the text
features and the ``logit_scale * cos`` product (bf16 logits near 30 are 0.125 apart, so argmax would tie). The
official code trains CLIP in fp16 throughout (``PREC: fp16``), logits included; ``amp=False`` (the default) is fp32.

All modules work on any :class:`vpkit.vlm.VLM` (open_clip CLIP for ``paper``, the offline stand-in,
``test_clip`` in tests). Training on precomputed features, the base-to-new protocol, the paper's numbers and
the claims: :mod:`vpkit.studies.cocoop`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..device import autocast
from ..vlm import VLM, OpenClipVLM, TextTokens

PLACEHOLDER = "X"  # the token the context positions hold before their embeddings are replaced (CoOp's code)


@dataclass(frozen=True)
class CoOpConfig:
    """Defaults of both papers (CoCoOp Sec. 4: M = 4 initialised from "a photo of a")."""

    n_ctx: int = 4
    ctx_init: str | None = "a photo of a"  # None -> random N(0, init_std^2)
    class_specific: bool = False  # CoOp's CSC option
    init_std: float = 0.02


def _trim_ok(vlm: VLM) -> bool:
    """Trailing padding can be dropped for a bidirectional masked encoder (MiniLM), not for CLIP's fixed
    causal mask (its ``attn_mask`` has the full context length)."""
    return not isinstance(vlm, OpenClipVLM)


def length_groups(tokens: TextTokens, *, min_rows: int = 2):
    """Rows of ``tokens`` grouped by used length (``eot + 1``; the attention mask of a MiniLM batch is a prefix)
    -> ``(order, inverse, spans)``: ``order`` sorts the rows by length (stable), ``spans`` are ``(start, end,
    length)`` of each group in that order, ``inverse`` puts the groups' outputs back in row order. None when one
    group would do (a single length, or fewer than ``min_rows`` rows)."""
    lengths = tokens.eot.long() + 1
    if len(lengths) < min_rows or bool((lengths == lengths[0]).all()):
        return None
    order = torch.argsort(lengths, stable=True)
    values, counts = torch.unique_consecutive(lengths[order], return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    spans = [(e - c, e, int(v)) for v, c, e in zip(values.tolist(), counts.tolist(), ends)]
    return order, torch.argsort(order), spans


class PromptLearner(nn.Module):
    """The learned context ``ctx`` ((n_ctx, width), or (C, n_ctx, width) class-specific) and the frozen
    embeddings around it: start token before, ``CLASS_i.`` + end token (+ padding) after (CoOp Eq. 2)."""

    def __init__(self, vlm: VLM, classnames: list[str], *, n_ctx: int | None = 4,
                 ctx_init: str | None = "a photo of a", class_specific: bool = False, init_std: float = 0.02,
                 seed: int = 0, trim_padding: bool | None = None):
        super().__init__()
        emb = vlm.token_embedding
        self.ctx_start = int(vlm.ctx_start)
        self.trim_padding = _trim_ok(vlm) if trim_padding is None else bool(trim_padding)
        if ctx_init and class_specific:
            raise ValueError("class_specific=True with ctx_init: CoOp's official code silently falls back to one "
                             "unified context in this case; pass ctx_init=None (random class-specific context, "
                             "the official CSC) or class_specific=False")
        if ctx_init:
            init = vlm.tokenize(ctx_init)
            n_init = int(init.eot[0]) - self.ctx_start
            if n_ctx is not None and n_ctx != n_init:
                raise ValueError(f"ctx_init={ctx_init!r} is {n_init} tokens but n_ctx={n_ctx}; pass n_ctx=None "
                                 f"or n_ctx={n_init}, or ctx_init=None for random init")
            n_ctx = n_init
            with torch.no_grad():
                vec = emb(init.ids[0, self.ctx_start:self.ctx_start + n_ctx]).float().clone()
        else:
            if n_ctx is None or n_ctx < 1:
                raise ValueError(f"n_ctx={n_ctx} must be >= 1 for random init (ctx_init=None)")
            shape = (len(classnames), n_ctx, vlm.width) if class_specific else (n_ctx, vlm.width)
            g = torch.Generator().manual_seed(int(seed))
            vec = torch.randn(shape, generator=g) * init_std
        self.n_ctx, self.class_specific, self.ctx_init = int(n_ctx), bool(class_specific), ctx_init
        self.ctx = nn.Parameter(vec)
        self._vlm = [vlm]  # not a submodule: the frozen VLM belongs to the caller / the method module
        self.set_classnames(classnames)

    def set_classnames(self, classnames: list[str]) -> None:
        """(Re)build the frozen prefix/suffix embeddings and tokens for ``classnames`` (e.g. new classes)."""
        if self.class_specific and self.ctx.shape[0] != len(classnames):
            raise ValueError(f"class_specific context was learned for {self.ctx.shape[0]} classes; it cannot be "
                             f"applied to {len(classnames)} other classes (use class_specific=False)")
        vlm = self._vlm[0]
        texts = [" ".join([PLACEHOLDER] * self.n_ctx) + " " + name + "." for name in classnames]
        tok = vlm.tokenize(texts)
        s, e = self.ctx_start, self.ctx_start + self.n_ctx
        ph = vlm.tokenize(PLACEHOLDER).ids[0, s]
        if not bool((tok.ids[:, s:e] == ph).all()):
            raise ValueError(f"tokenizer of {vlm.name!r} does not map {PLACEHOLDER!r} to one token per context slot")
        if self.trim_padding:
            L = int(tok.eot.max()) + 1
            tok = TextTokens(tok.ids[:, :L], tok.attention_mask[:, :L], tok.eot)
        with torch.no_grad():
            full = vlm.token_embedding(tok.ids).float()
        self.classnames = list(classnames)
        self.register_buffer("token_prefix", full[:, :s].clone(), persistent=False)
        self.register_buffer("token_suffix", full[:, e:].clone(), persistent=False)
        self.register_buffer("ids", tok.ids.clone(), persistent=False)
        self.register_buffer("attention_mask", tok.attention_mask.clone(), persistent=False)
        self.register_buffer("eot", tok.eot.clone(), persistent=False)

    @property
    def tokens(self) -> TextTokens:
        return TextTokens(self.ids, self.attention_mask, self.eot)

    def embeddings(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings ``[SOT, v_1..v_M, CLASS_i, ., EOT, pad]``.

        ``ctx`` (default ``self.ctx``): ``(M, w)`` or ``(C, M, w)`` -> ``(C, L, w)``; ``(B, M, w)`` image-
        conditioned (CoCoOp) -> ``(B, C, L, w)``.
        """
        ctx = self.ctx if ctx is None else ctx
        C = self.token_prefix.shape[0]
        if ctx.dim() == 2 or (ctx.dim() == 3 and self.class_specific and ctx is self.ctx):
            ctx = ctx.unsqueeze(0).expand(C, -1, -1) if ctx.dim() == 2 else ctx
            return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        B = ctx.shape[0]  # (B, M, w): one context per image, shared over classes
        pre = self.token_prefix.unsqueeze(0).expand(B, -1, -1, -1)
        suf = self.token_suffix.unsqueeze(0).expand(B, -1, -1, -1)
        return torch.cat([pre, ctx.unsqueeze(1).expand(-1, C, -1, -1), suf], dim=2)


class _PromptModel(nn.Module):
    """Holds the frozen VLM (a submodule, so ``.to`` moves it) and the prompt learner."""

    def __init__(self, vlm: VLM, classnames, *, amp: bool = False, **prompt_kw):
        super().__init__()
        if not isinstance(amp, bool):
            raise ValueError(f"amp={amp!r}; allowed: True (text tower under the measured autocast) or False (fp32)")
        for p in vlm.parameters():
            p.requires_grad_(False)
        self.vlm = vlm
        self.amp = amp
        self.prompt = PromptLearner(vlm, classnames, **prompt_kw)
        self.to(vlm.device)  # the learned context (built on the CPU) follows the frozen VLM's device

    def _device(self) -> torch.device:
        return self.prompt.ctx.device

    def _fp32(self):
        """The context of everything but the text tower: autocast off, whatever encloses the call."""
        return torch.autocast(self._device().type, enabled=False)

    def _text(self, embeddings: torch.Tensor, tokens: TextTokens) -> torch.Tensor:
        """Normalised fp32 text features; the text tower under :func:`vpkit.device.autocast` when ``amp``.

        With ``trim_padding`` (a bidirectional masked encoder, MiniLM) the rows are run in groups of equal length,
        each cut to its own length (:func:`length_groups`): padding takes no attention weight and no part in the
        mean, so the features are those of one padded batch (to float rounding), while the padded positions' work
        is skipped - on the concept world's class names (8-10 tokens used of 12-14) ~30% of the text tower."""
        groups = length_groups(tokens) if self.prompt.trim_padding else None
        with autocast(self._device(), self.amp):
            if groups is None:
                t = self.vlm.encode_text_embeddings(embeddings, tokens, normalize=False)
            else:
                order, inverse, spans = groups
                t = torch.cat([self.vlm.encode_text_embeddings(embeddings[idx, :n], tokens[idx].trimmed(n),
                                                               normalize=False)
                               for idx, n in ((order[a:b], n) for a, b, n in spans)])[inverse]
        with self._fp32():
            return F.normalize(t.float(), dim=-1)

    def set_classnames(self, classnames: list[str]) -> "_PromptModel":
        self.prompt.set_classnames(classnames)
        return self

    @property
    def classnames(self) -> list[str]:
        return self.prompt.classnames

    def trainable_parameters(self) -> dict[str, int]:
        return {n: p.numel() for n, p in self.named_parameters() if p.requires_grad}


class CoOp(_PromptModel):
    """CoOp (IJCV 2022, Eq. 2): ``model(image_features) -> logits (B, C)`` with learned context."""

    def text_features(self) -> torch.Tensor:
        with self._fp32():
            emb = self.prompt.embeddings()
        return self._text(emb, self.prompt.tokens)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        t = self.text_features()
        with self._fp32():
            x = F.normalize(image_features.float(), dim=-1)
            return self.vlm.logit_scale * x @ t.t()


class MetaNet(nn.Sequential):
    """CoCoOp's Meta-Net (Sec. 3.2): ``Linear(d, d/16) - ReLU - Linear(d/16, ctx_dim)``."""

    def __init__(self, vis_dim: int, ctx_dim: int, reduction: int = 16):
        hidden = max(1, vis_dim // reduction)
        super().__init__(nn.Linear(vis_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ctx_dim))


class CoCoOp(_PromptModel):
    """CoCoOp (CVPR 2022, Eq. 4): context ``v_m + pi(x)`` per image; text tower batched over images x classes."""

    def __init__(self, vlm: VLM, classnames, *, reduction: int = 16, seed: int = 0, **prompt_kw):
        super().__init__(vlm, classnames, seed=seed, **prompt_kw)
        if self.prompt.class_specific:
            raise ValueError("CoCoOp uses one unified context (class_specific=False)")
        g_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))
        self.meta_net = MetaNet(vlm.embed_dim, vlm.width, reduction)
        torch.random.set_rng_state(g_state)
        self.meta_net.to(vlm.device)  # built on the CPU: follows the frozen VLM's device

    def conditional_context(self, x: torch.Tensor) -> torch.Tensor:
        """``v_m(x) = v_m + pi(x)`` for normalised image features ``x`` (B, D) -> (B, M, width)."""
        return self.prompt.ctx.unsqueeze(0) + self.meta_net(x).unsqueeze(1)

    def forward(self, image_features: torch.Tensor, text_chunk: int | None = None) -> torch.Tensor:
        """``(B, D)`` image features -> ``(B, C)`` logits; ``text_chunk``: at most that many of the ``B * C`` text
        passes go through the text tower at once (bounds memory when evaluating many classes; None: all at once)."""
        with self._fp32():
            x = F.normalize(image_features.float(), dim=-1)
            B, C = x.shape[0], len(self.prompt.classnames)
            emb = self.prompt.embeddings(self.conditional_context(x)).flatten(0, 1)  # (B * C, L, w)
        tok = self.prompt.tokens
        rep = TextTokens(tok.ids.repeat(B, 1), tok.attention_mask.repeat(B, 1), tok.eot.repeat(B))
        n = len(emb) if not text_chunk else max(1, int(text_chunk))
        t = torch.cat([self._text(emb[i:i + n], rep[i:i + n]) for i in range(0, len(emb), n)]).view(B, C, -1)
        with self._fp32():
            return self.vlm.logit_scale * torch.einsum("bd,bcd->bc", x, t)

    def forward_loop(self, image_features: torch.Tensor) -> torch.Tensor:
        """Reference: the official code's per-image Python loop (used only to check equality and to time)."""
        with self._fp32():
            x = F.normalize(image_features.float(), dim=-1)
            ctx = self.conditional_context(x)
        rows = []
        for i in range(x.shape[0]):
            with self._fp32():
                emb = self.prompt.embeddings(ctx[i])
            t = self._text(emb, self.prompt.tokens)
            with self._fp32():
                rows.append(self.vlm.logit_scale * t @ x[i])
        return torch.stack(rows)


def build_prompt_model(method: str, vlm: VLM, classnames: list[str], **kw) -> CoOp | CoCoOp:
    """``coop`` | ``cocoop`` on a frozen VLM (keyword arguments as :class:`PromptLearner`)."""
    table = {"coop": CoOp, "cocoop": CoCoOp}
    if method not in table:
        raise ValueError(f"unknown prompt method={method!r}; known: {sorted(table)}")
    return table[method](vlm, classnames, **kw)

"""A flat table of tuning methods: ``METHODS[name](backbone, num_classes, **kwargs) -> Method``.

Every builder deep-copies the backbone (so one loaded backbone serves many methods), attaches what the
method trains, freezes everything else with :func:`vpkit.train.freeze_except`, and returns a :class:`Method`
whose ``report`` names the trainable parameters and their count. Unknown names fail with the known list.

Baselines here: ``linear`` (head only), ``full`` (everything), ``partial_k`` (last k stages + final norm +
head), ``bias`` (BitFit: every bias + head), ``adapter`` (bottleneck MLP with a residual after each ViT
block's MLP, or a 1x1-conv bottleneck after each CNN stage; zero-initialised up-projection so training starts
from the frozen model). Prompt methods register their builders in the same table.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .backbones import Backbone
from .train import TrainableReport, count_parameters, freeze_except


@dataclass
class Method:
    name: str
    model: nn.Module  # images -> logits
    report: TrainableReport


class Classifier(nn.Module):
    """``head(pooled features of body)``; ``body`` is the (copied) timm model without its classifier."""

    def __init__(self, body: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body.forward_head(self.body.forward_features(x), pre_logits=True))


def copy_body(backbone: Backbone) -> nn.Module:
    """A deep copy of the backbone's timm model with its pretrained classifier removed."""
    body = copy.deepcopy(backbone.model)
    if getattr(body, "num_classes", 0):
        body.reset_classifier(0)
    return body


def copy_backbone(backbone: Backbone) -> Backbone:
    return dataclasses.replace(backbone, model=copy_body(backbone))


def finish(name: str, model: nn.Module, trainable, body: nn.Module) -> Method:
    """Freeze all but ``trainable`` (prefixes or predicate) and package the method with its report."""
    report = freeze_except(model, trainable, backbone=body)
    return Method(name=name, model=model, report=report)


def _stage_prefixes(backbone: Backbone, k: int) -> list[str]:
    if not 1 <= k <= len(backbone.stages):
        raise ValueError(f"k={k} must be in 1..{len(backbone.stages)} for {backbone.name}")
    return [f"body.{s}." for s in backbone.stages[-k:]]


def _final_layers(backbone: Backbone) -> list[str]:
    """Layers after the last stage that partial-k also tunes (ViT final norm; CNN head conv + BN)."""
    if backbone.kind == "vit":
        return ["body.norm."]
    return [p for p in ("body.conv_head.", "body.bn2.") if any(
        n.startswith(p[5:]) for n, _ in backbone.model.named_parameters())]


def build_linear(backbone: Backbone, num_classes: int) -> Method:
    body = copy_body(backbone)
    return finish("linear", Classifier(body, backbone.embed_dim, num_classes), ["head."], body)


def build_full(backbone: Backbone, num_classes: int) -> Method:
    body = copy_body(backbone)
    return finish("full", Classifier(body, backbone.embed_dim, num_classes), lambda n: True, body)


def build_partial(backbone: Backbone, num_classes: int, k: int = 1) -> Method:
    body = copy_body(backbone)
    prefixes = ["head."] + _stage_prefixes(backbone, k) + _final_layers(backbone)
    return finish(f"partial_{k}", Classifier(body, backbone.embed_dim, num_classes), prefixes, body)


def build_bias(backbone: Backbone, num_classes: int) -> Method:
    body = copy_body(backbone)
    model = Classifier(body, backbone.embed_dim, num_classes)
    return finish("bias", model, lambda n: n.startswith("head.") or n.endswith(".bias"), body)


class MLPAdapter(nn.Module):
    """``y = f(x); y + up(act(down(y)))`` around a ViT block's MLP ``f`` (Houlsby-style, after the MLP)."""

    def __init__(self, mlp: nn.Module, dim: int, bottleneck: int):
        super().__init__()
        self.mlp = mlp
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        y = self.mlp(x)
        return y + self.up(self.act(self.down(y)))


class ConvAdapter(nn.Module):
    """``y = stage(x); y + up(relu(down(y)))`` with 1x1 convs, after a CNN stage."""

    def __init__(self, stage: nn.Module, channels: int, bottleneck: int):
        super().__init__()
        self.stage = stage
        self.down = nn.Conv2d(channels, bottleneck, 1)
        self.act = nn.ReLU()
        self.up = nn.Conv2d(bottleneck, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        y = self.stage(x)
        return y + self.up(self.act(self.down(y)))


@torch.no_grad()
def stage_shapes(backbone: Backbone, body: nn.Module | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of every stage, from one dummy forward pass at the backbone's size."""
    body = body or backbone.model
    shapes, hooks = {}, []
    mods = dict(body.named_modules())
    for s in backbone.stages:
        hooks.append(mods[s].register_forward_hook(lambda m, i, o, s=s: shapes.__setitem__(s, tuple(o.shape[1:]))))
    was_training = body.training
    body.eval()
    try:
        body.forward_features(torch.zeros(1, 3, backbone.img_size, backbone.img_size))
    finally:
        for h in hooks:
            h.remove()
        body.train(was_training)
    return shapes


def build_adapter(backbone: Backbone, num_classes: int, reduction: int = 8) -> Method:
    body = copy_body(backbone)
    if backbone.kind == "vit":
        for blk in body.blocks:
            blk.mlp = MLPAdapter(blk.mlp, backbone.model.embed_dim, max(1, backbone.model.embed_dim // reduction))
    else:
        shapes = stage_shapes(backbone, body)
        for s in backbone.stages:
            parent_name, _, child = s.rpartition(".")
            parent = body.get_submodule(parent_name) if parent_name else body
            c = shapes[s][0]
            setattr(parent, child, ConvAdapter(getattr(parent, child), c, max(1, c // reduction)))
    model = Classifier(body, backbone.embed_dim, num_classes)
    return finish("adapter", model, lambda n: n.startswith("head.") or ".down." in n or ".up." in n, body)


def build_vpt(backbone: Backbone, num_classes: int, **kwargs) -> Method:
    """VPT on a copy of a ViT backbone: prompts + linear head train (kwargs: :class:`vpkit.prompts.vpt.VPT`)."""
    from .prompts.vpt import VPT

    if backbone.kind != "vit":
        raise ValueError(f"VPT needs a ViT backbone; {backbone.name} is kind={backbone.kind!r}")
    body = copy_body(backbone)
    model = VPT(body, num_classes, **kwargs)
    name = "vpt_shallow" if model.prompt_depth == 1 else "vpt_deep" if model.prompt_depth == len(body.blocks) else "vpt"
    return finish(name, model, ["prompt_embeddings", "head."], body)


def build_l2p(backbone: Backbone, num_classes: int, **kwargs) -> Method:
    """L2P prompt pool + head on a copy of a ViT backbone (:func:`vpkit.prompts.l2p.build_l2p_model`)."""
    from .prompts.l2p import build_l2p_model

    return build_l2p_model(backbone, num_classes, **kwargs)


def _protuning():
    from .prompts import protuning

    return protuning


def _pixel():
    from .prompts import pixel

    return pixel


METHODS: dict[str, Callable[..., Method]] = {
    "linear": build_linear,
    "full": build_full,
    "partial_1": lambda b, n, **kw: build_partial(b, n, k=1, **kw),
    "partial_2": lambda b, n, **kw: build_partial(b, n, k=2, **kw),
    "bias": build_bias,
    "adapter": build_adapter,
    # Pro-Tuning (Nie et al. 2024) and side tuning (Zhang et al. 2020): vpkit.prompts.protuning;
    # protuning kwargs: reduction, kernel_size, blend, act, zero_init, num_stages; side kwargs: width, alpha_init
    "protuning": lambda b, n, **kw: _protuning().build_protuning(b, n, **kw),
    "side": lambda b, n, **kw: _protuning().build_side(b, n, **kw),
    # VPT (Jia et al. 2022): vpkit.prompts.vpt; kwargs num_tokens, prompt_depth, dropout, location, output
    "vpt_shallow": lambda b, n, **kw: build_vpt(b, n, **{"prompt_depth": 1, **kw}),
    "vpt_deep": lambda b, n, **kw: build_vpt(b, n, **{"dropout": 0.1, **kw}),
    "vpt": lambda b, n, **kw: build_vpt(b, n, **kw),
    # L2P (Wang et al. 2022) and the image-prompt variants: vpkit.prompts.l2p; kwargs cfg (L2PConfig), init_images
    "l2p": lambda b, n, **kw: build_l2p(b, n, **kw),
    # Visual prompting (Bahng et al. 2022) on a vision-only classifier with label mapping: vpkit.prompts.pixel;
    # kwargs mapping (default: first N ImageNet classes), template, prompt_size, seed. VP+TP on a VLM:
    # vpkit.prompts.pixel.build_vp_tp (needs a VLM, not a Backbone). The frozen model is shared, not copied.
    "vp": lambda b, n, mapping=None, **kw: _pixel().build_vp_classifier(
        b, _pixel().first_n_mapping(n) if mapping is None else mapping, **kw),
}


def build_method(name: str, backbone: Backbone, num_classes: int, **kwargs) -> Method:
    """Build method ``name`` on a copy of ``backbone``; kwargs go to the method's builder."""
    if name not in METHODS:
        raise ValueError(f"unknown method name={name!r}; known: {sorted(METHODS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} must be >= 2")
    method = METHODS[name](backbone, num_classes, **kwargs)
    method.report.backbone = count_parameters(backbone.model) - _classifier_params(backbone)
    return method


def _classifier_params(backbone: Backbone) -> int:
    if not backbone.num_classes:
        return 0
    clf = backbone.model.get_classifier()
    return sum(p.numel() for p in clf.parameters())

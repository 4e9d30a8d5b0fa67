"""A flat table of tuning methods: ``METHODS[name](backbone, num_classes, **kwargs) -> Method``.

Every builder deep-copies the backbone (so one loaded backbone serves many methods), attaches what the
method trains, freezes everything else with :func:`vpkit.train.freeze_except`, and returns a :class:`Method`
whose ``report`` names the trainable parameters and their count. Unknown names fail with the known list.

Baselines here: ``linear`` (head only), ``full`` (everything), ``partial_k`` (last k stages + final norm +
head), ``bias`` (BitFit: every bias + head), ``adapter`` (bottleneck MLP with a residual after each ViT
block's MLP, or a 1x1-conv bottleneck after each CNN stage; zero-initialised up-projection so training starts
from the frozen model). The prompt methods' builders are here too (VPT, Pro-Tuning, side tuning, pixel prompts,
L2P); their modules live in :mod:`vpkit.prompts`, which never imports this file.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .backbones import Backbone
from .prompts import l2p, pixel, protuning, vpt
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
        # on the body's device (a copy of a backbone that an earlier run moved to the GPU lives there)
        dev = next((p.device for p in body.parameters()), torch.device("cpu"))
        body.forward_features(torch.zeros(1, 3, backbone.img_size, backbone.img_size, device=dev))
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
    if backbone.kind != "vit":
        raise ValueError(f"VPT needs a ViT backbone; {backbone.name} is kind={backbone.kind!r}")
    body = copy_body(backbone)
    model = vpt.VPT(body, num_classes, **kwargs)
    name = "vpt_shallow" if model.prompt_depth == 1 else "vpt_deep" if model.prompt_depth == len(body.blocks) else "vpt"
    return finish(name, model, ["prompt_embeddings", "head."], body)


def build_protuning(backbone: Backbone, num_classes: int, **kwargs) -> Method:
    """``METHODS["protuning"]``: prompt blocks after every stage + a linear head train; kwargs go to
    :class:`vpkit.prompts.protuning.ProTuningConfig` (reduction, kernel_size, blend, act, zero_init, num_stages)."""
    body = copy_body(backbone)
    model = protuning.ProTuningModel(body, kind=backbone.kind, embed_dim=backbone.embed_dim, num_classes=num_classes,
                                     img_size=backbone.img_size, config=protuning.ProTuningConfig(**kwargs))
    return finish("protuning", model, ["prompts.", "head."], body)


def build_side(backbone: Backbone, num_classes: int, width: int = 16, alpha_init: float = 2.0) -> Method:
    """``METHODS["side"]``: side tuning; the side network, the blend ``alpha`` and the head train."""
    body = copy_body(backbone)
    model = protuning.SideTuningModel(body, embed_dim=backbone.embed_dim, num_classes=num_classes, width=width,
                                      alpha_init=alpha_init)
    return finish("side", model, ["side.", "alpha", "head."], body)


def build_vp_tp(vlm: nn.Module, text_features: torch.Tensor, *, template: str = "padding", prompt_size: int = 30,
                seed: int = 0) -> Method:
    """VP+TP on a frozen VLM (Bahng et al. Sec. 4.1); the prompter is sized to ``vlm.preprocess.img_size``."""
    prompter = pixel.PixelPrompter(pixel.PixelPromptConfig(template=template, prompt_size=prompt_size,
                                                           image_size=vlm.preprocess.img_size, seed=seed))
    return finish(f"vp_tp_{template}", pixel.PromptedVLM(prompter, vlm, text_features), ["prompter."], vlm)


def build_vp_classifier(backbone: Backbone, mapping: torch.Tensor, *, template: str = "padding",
                        prompt_size: int = 30, seed: int = 0) -> Method:
    """VP on a frozen ImageNet classifier (``backbone.model``, uncopied: it stays frozen) with a label mapping."""
    if not backbone.num_classes:
        raise ValueError(f"VP with label mapping needs a backbone with an ImageNet classifier; "
                         f"{backbone.name} has num_classes=0")
    prompter = pixel.PixelPrompter(pixel.PixelPromptConfig(template=template, prompt_size=prompt_size,
                                                           image_size=backbone.img_size, seed=seed))
    return finish(f"vp_{template}", pixel.PromptedClassifier(prompter, backbone.model, mapping), ["prompter."],
                  backbone.model)


def build_l2p_model(backbone: Backbone, num_classes: int, cfg: l2p.L2PConfig | None = None, *,
                    init_images: torch.Tensor | None = None) -> Method:
    """An :class:`vpkit.prompts.l2p.L2PModel` on a copy of ``backbone`` (a timm ViT) with everything but the
    prompts / keys / generator / shared prompt / head frozen."""
    if backbone.kind != "vit":
        raise ValueError(f"L2P needs a ViT backbone, got kind={backbone.kind!r} ({backbone.name})")
    cfg = cfg or l2p.L2PConfig()
    body = copy_body(backbone)
    model = l2p.L2PModel(body, num_classes, cfg, img_size=backbone.img_size, init_images=init_images)
    return finish("l2p", model, model.trainable_names, body)


METHODS: dict[str, Callable[..., Method]] = {
    "linear": build_linear,
    "full": build_full,
    "partial_1": lambda b, n, **kw: build_partial(b, n, k=1, **kw),
    "partial_2": lambda b, n, **kw: build_partial(b, n, k=2, **kw),
    "bias": build_bias,
    "adapter": build_adapter,
    # Pro-Tuning (Nie et al. 2024) and side tuning (Zhang et al. 2020): vpkit.prompts.protuning;
    # protuning kwargs: reduction, kernel_size, blend, act, zero_init, num_stages; side kwargs: width, alpha_init
    "protuning": build_protuning,
    "side": build_side,
    # VPT (Jia et al. 2022): vpkit.prompts.vpt; kwargs num_tokens, prompt_depth, dropout, location, output
    "vpt_shallow": lambda b, n, **kw: build_vpt(b, n, **{"prompt_depth": 1, **kw}),
    "vpt_deep": lambda b, n, **kw: build_vpt(b, n, **{"dropout": 0.1, **kw}),
    "vpt": lambda b, n, **kw: build_vpt(b, n, **kw),
    # L2P (Wang et al. 2022) and the image-prompt variants: vpkit.prompts.l2p; kwargs cfg (L2PConfig), init_images
    "l2p": build_l2p_model,
    # Visual prompting (Bahng et al. 2022) on a vision-only classifier with label mapping: vpkit.prompts.pixel;
    # kwargs mapping (default: first N ImageNet classes), template, prompt_size, seed. VP+TP on a VLM:
    # build_vp_tp below (needs a VLM, not a Backbone). The frozen model is shared, not copied.
    "vp": lambda b, n, mapping=None, **kw: build_vp_classifier(
        b, pixel.first_n_mapping(n) if mapping is None else mapping, **kw),
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

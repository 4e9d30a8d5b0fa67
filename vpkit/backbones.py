"""Frozen backbones behind one small interface.

``build_backbone(name, pretrained=True, img_size=...)`` returns a :class:`Backbone`: the timm model plus what
prompt methods need (kind, embed dim, patch size, stage names, preprocessing constants). Offline backbones
load converted package-shipped weights (:mod:`vpkit.assets`); ``paper`` backbones use timm
``pretrained=True`` and fail with one actionable line when the weights cannot be downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import assets
from .device import apply_attention, cache_frozen_bf16

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A timm model and what prompts need to attach to it."""

    name: str
    model: nn.Module
    kind: str  # "vit" or "cnn"
    embed_dim: int  # dimension of the pooled feature (``features``)
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stages: list[str] = field(default_factory=list)  # module names of stages (CNN block groups / ViT blocks)
    patch_size: int | None = None
    num_classes: int = 0  # size of the pretrained classifier (1000 for ImageNet heads), 0 if none
    source: str = ""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit features of normalised images (CLS token for ViTs, global pool for CNNs)."""
        m = self.model
        return m.forward_head(m.forward_features(x), pre_logits=True)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pretrained classifier's logits (only for backbones with ``num_classes > 0``)."""
        if self.num_classes == 0:
            raise ValueError(f"backbone '{self.name}' has no pretrained classifier")
        return self.model(x)


def _vit_s14(pretrained: bool, img_size: int) -> nn.Module:
    import timm
    from timm.layers import resample_abs_pos_embed

    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=img_size, num_classes=0)
    if pretrained:
        sd = dict(assets.vit_s14_state_dict())
        grid = img_size // 14
        if sd["pos_embed"].shape[1] != 1 + grid * grid:
            # The export resizes bicubic without antialias; doing the same keeps parity with it.
            sd["pos_embed"] = resample_abs_pos_embed(
                sd["pos_embed"], new_size=(grid, grid), num_prefix_tokens=1, interpolation="bicubic",
                antialias=False)
        model.load_state_dict(sd, strict=True)
    return model


def _lite0(pretrained: bool, img_size: int) -> nn.Module:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        model.load_state_dict(assets.lite0_state_dict(), strict=True)
    return model


def _timm_paper(arch: str, **kwargs):
    def build(pretrained: bool, img_size: int) -> nn.Module:
        import timm

        from .dryrun import active as dry_run

        try:
            return timm.create_model(arch, pretrained=pretrained and not dry_run(), **kwargs)
        except Exception as e:  # network or hub errors: one actionable line
            raise assets.AssetError(
                f"cannot load timm '{arch}' pretrained weights ({type(e).__name__}); this needs internet "
                f"access to the Hugging Face hub, or a local HF cache (HF_HOME) holding it - use profile "
                f"'offline' on machines without network") from None
    return build


def _timm_random(arch: str, **kwargs):
    def build(pretrained: bool, img_size: int) -> nn.Module:
        import timm

        return timm.create_model(arch, pretrained=False, **kwargs)
    return build


# name -> (builder, kind, default img size, mean, std, has ImageNet classifier)
BACKBONES = {
    # offline: real pretrained weights shipped inside packages
    "vit_s14_dinov2": (_vit_s14, "vit", 112, IMAGENET_MEAN, IMAGENET_STD, False),
    "efficientnet_lite0": (_lite0, "cnn", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True),
    # paper: the papers' checkpoints via timm (needs internet)
    # VPT's official code: the original imagenet21k_ViT-B_16.npz (timm's orig_in21k) with ImageNet mean/std
    "vit_b16_in21k": (_timm_paper("vit_base_patch16_224.orig_in21k", num_classes=0), "vit", 224,
                      IMAGENET_MEAN, IMAGENET_STD, False),
    "resnet50": (_timm_paper("resnet50.a1_in1k"), "cnn", 224, IMAGENET_MEAN, IMAGENET_STD, True),
    # Pro-Tuning's ResNets and DeiT-B: ImageNet-1k supervised checkpoints (torchvision's ResNet weights via timm);
    # resnet50_tv is also visual prompting's official vision-only model (torchvision models.resnet50(pretrained=True))
    "resnet101": (_timm_paper("resnet101.tv_in1k"), "cnn", 224, IMAGENET_MEAN, IMAGENET_STD, True),
    "resnet50_tv": (_timm_paper("resnet50.tv_in1k"), "cnn", 224, IMAGENET_MEAN, IMAGENET_STD, True),
    "deit_b16": (_timm_paper("deit_base_patch16_224.fb_in1k", num_classes=0), "vit", 224, IMAGENET_MEAN,
                 IMAGENET_STD, False),
    # tests: tiny random models, no download
    "test_vit": (_timm_random("test_vit", num_classes=0), "vit", 160, IMAGENET_MEAN, IMAGENET_STD, False),
    "test_cnn": (_timm_random("test_efficientnet"), "cnn", 64, IMAGENET_MEAN, IMAGENET_STD, True),
}


def cnn_stages(model: nn.Module) -> list[str]:
    """Stage module names of a timm CNN: EfficientNet-style ``blocks.i`` groups or ResNet-style ``layer1..4``."""
    if hasattr(model, "blocks"):
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    layers = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]
    if not layers:
        raise TypeError(f"cannot find the stages of {type(model).__name__} (no .blocks or .layer1..4)")
    return layers


def build_backbone(name: str, *, pretrained: bool = True, img_size: int | None = None,
                   freeze: bool = True) -> Backbone:
    """Build a backbone by name; ``pretrained=False`` gives the same architecture randomly initialised.

    The returned model is in eval mode and, with ``freeze=True``, has no trainable parameters.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone name={name!r}; known: {sorted(BACKBONES)}")
    builder, kind, default_size, mean, std, has_cls = BACKBONES[name]
    img_size = int(img_size or default_size)
    if kind == "vit" and name == "vit_s14_dinov2" and img_size % 14:
        raise ValueError(f"img_size={img_size} must be a multiple of the patch size 14 for {name}")
    model = builder(pretrained, img_size)
    model.eval()
    apply_attention(model)  # plain-matmul attention on the CPU (vpkit.device: its fused backward is slow in bf16)
    cache_frozen_bf16(model)  # frozen Linear weights cast to bf16 once, not per call, under CPU autocast
    if kind == "cnn":  # oneDNN convolutions are faster in NHWC (vpkit.device, benchmarks/memory_format.py)
        model.to(memory_format=torch.channels_last)
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    if kind == "vit":
        stages = [f"blocks.{i}" for i in range(len(model.blocks))]
        patch = model.patch_embed.patch_size[0]
        embed_dim = model.embed_dim
        if name != "vit_s14_dinov2":
            img_size = model.patch_embed.img_size[0]
    else:
        stages = cnn_stages(model)
        patch = None
        embed_dim = model.num_features
    return Backbone(
        name=name, model=model, kind=kind, embed_dim=embed_dim, img_size=img_size, mean=mean, std=std,
        stages=stages, patch_size=patch, num_classes=model.num_classes if has_cls else 0,
        source="random init" if not pretrained else name)

"""Pro-Tuning (Nie et al., "Pro-tuning: Unified Prompt Tuning for Vision Tasks", TCSVT 2024) and side tuning.

A frozen backbone ``G = S_n o ... o S_1`` gets, after each stage ``S_i``, a lightweight **prompt block**
``P_i`` (1x1 conv -> 5x5 depthwise conv -> 1x1 conv) that reads the stage's feature map ``x_i`` and produces a
task-specific prompt; the prompt is **blended** with ``x_i`` into ``x~_i``, which feeds the next stage (Sec. 3
of the paper: stage-wise prompt blocks). Only the prompt blocks and the task head train, with cross-entropy.

No official code exists, so every choice the paper's text leaves open is a parameter, documented here:

* **Attachment.** Blocks are attached to an *unforked* timm model through forward hooks on the stage modules
  (a hook that returns a value replaces the stage's output), so :meth:`ProTuningModel.detach` removes them
  and the backbone computes exactly what it computed before (principle "easy to attach and detach").
* **Stages.** CNNs: the backbone's block groups (EfficientNet ``blocks.i``, ResNet ``layer1..4``). ViTs:
  ``num_stages`` equal groups of transformer blocks (default 4, the stage count of the hierarchical models
  the paper prompts); the patch tokens are reshaped to a ``D x h x w`` map, prompted, and reshaped back;
  the CLS (prefix) tokens pass untouched.
* **Blending** (``blend``): the paper says the prompt is *blended* with the feature map without an official
  formula we can check. We default to **addition**, ``x~ = x + P(x)``: it keeps the frozen path as an identity
  when the prompt is zero (with ``zero_init`` the model starts exactly as the frozen backbone, and detaching
  equals a zero prompt), it adds no parameters, and it is the form a 1x1 -> dw -> 1x1 residual branch takes in
  every CNN the paper prompts. ``"mul"`` gives the multiplicative alternative ``x~ = x * (1 + P(x))`` (also the
  identity at zero prompt), for ablations.
* **Width** (``reduction``): hidden channels ``ceil(C / reduction)``. ``reduction=3`` is inferred from the
  paper's parameter counts quoted in the issue: with blocks after ResNet's four stages it gives 3.96M
  trainable parameters on ResNet-101/CIFAR-100 (paper: 3.86M) and 6.2x fewer than fine-tuning on
  ResNet-50/CIFAR-10 (paper: 6.2x).
* **Nonlinearity** (``act``): the paper names only the three convolutions; we put one GELU after the
  depthwise conv (``act=None`` gives the purely linear block).

Side tuning (Zhang et al., ECCV 2020), a baseline of the paper: ``r(x) = a B(x) + (1 - a) S(x)`` with the
frozen base ``B``, a light side network ``S`` and a learnable blend ``a = sigmoid(alpha)``.

Builders: :func:`vpkit.methods.build_protuning`, :func:`vpkit.methods.build_side`. The paper's parameter
counts, the protocol and the claims of notebook 03: :mod:`vpkit.studies.pro_tuning`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

BLENDS = ("add", "mul")
ACTS = {"gelu": nn.GELU, "relu": nn.ReLU, None: nn.Identity}


@dataclass
class ProTuningConfig:
    """Pro-Tuning's knobs (see the module docstring for why each default was chosen)."""

    reduction: int = 3  # hidden width of a prompt block = ceil(C / reduction)
    kernel_size: int = 5  # the depthwise conv (paper: 5x5)
    blend: str = "add"  # how the prompt meets the feature map: "add" or "mul"
    act: str | None = "gelu"  # nonlinearity after the depthwise conv
    zero_init: bool = True  # last 1x1 conv starts at zero: training starts from the frozen model
    num_stages: int | None = None  # ViT: number of block groups (default 4); CNN: must be None (all groups)

    def __post_init__(self):
        if self.blend not in BLENDS:
            raise ValueError(f"blend={self.blend!r}; allowed: {BLENDS}")
        if self.act not in ACTS:
            raise ValueError(f"act={self.act!r}; allowed: {list(ACTS)}")
        if self.reduction < 1:
            raise ValueError(f"reduction={self.reduction} must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd and >= 1")


class PromptBlock(nn.Module):
    """``P(x) = conv1x1(act(dwconv5x5(conv1x1(x))))``: C -> C/r -> C/r (depthwise) -> C (Pro-Tuning Sec. 3)."""

    def __init__(self, channels: int, *, reduction: int = 3, kernel_size: int = 5, act: str | None = "gelu",
                 zero_init: bool = True):
        super().__init__()
        hidden = max(1, math.ceil(channels / reduction))
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.act = ACTS[act]()
        self.conv2 = nn.Conv2d(hidden, channels, 1)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.dwconv(self.conv1(x))))


def blend(x: torch.Tensor, prompt: torch.Tensor, mode: str = "add") -> torch.Tensor:
    """``x~ = x + P`` (``add``) or ``x * (1 + P)`` (``mul``); both are the identity for a zero prompt."""
    if mode == "add":
        return x + prompt
    if mode == "mul":
        return x * (1 + prompt)
    raise ValueError(f"blend mode={mode!r}; allowed: {BLENDS}")


def tokens_to_map(tokens: torch.Tensor, num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, prefix + h*w, D) tokens -> (prefix tokens (B, prefix, D), patch map (B, D, h, w)); square grids."""
    prefix, patches = tokens[:, :num_prefix], tokens[:, num_prefix:]
    b, n, d = patches.shape
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    return prefix, patches.transpose(1, 2).reshape(b, d, side, side)


def map_to_tokens(prefix: torch.Tensor, fmap: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tokens_to_map`."""
    return torch.cat([prefix, fmap.flatten(2).transpose(1, 2)], dim=1)


def vit_group_ends(num_blocks: int, num_stages: int) -> list[int]:
    """Index of the last block of each of ``num_stages`` near-equal groups of ``num_blocks`` ViT blocks."""
    if not 1 <= num_stages <= num_blocks:
        raise ValueError(f"num_stages={num_stages} must be in 1..{num_blocks} (the number of ViT blocks)")
    return [round((j + 1) * num_blocks / num_stages) - 1 for j in range(num_stages)]


def prompt_stages(model: nn.Module, kind: str, num_stages: int | None = None) -> list[str]:
    """Module names after which prompt blocks go: ResNet ``layer1..4``, EfficientNet ``blocks.i``, or the last
    block of each of ``num_stages`` (default 4) equal groups of ViT blocks."""
    if kind == "vit":
        k = 4 if num_stages is None else int(num_stages)
        return [f"blocks.{i}" for i in vit_group_ends(len(model.blocks), k)]
    if kind != "cnn":
        raise ValueError(f"kind={kind!r}; allowed: 'vit', 'cnn'")
    if num_stages is not None:
        raise ValueError(f"num_stages={num_stages} is for ViTs; CNNs are prompted after every block group (None)")
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):  # timm ResNet / RegNet-style naming
        return [f"layer{i}" for i in range(1, 5)]
    if hasattr(model, "blocks"):
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    raise TypeError(f"cannot find the stages of {type(model).__name__} (expected layer1..4 or blocks)")


def _device_of(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters live (the CPU for a module without any)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def stage_channels(model: nn.Module, kind: str, names: list[str], img_size: int) -> list[int]:
    """Channel count of each named stage's output (ViT: the embedding dim), from one dummy forward pass on the
    model's device."""
    if kind == "vit":
        return [int(model.embed_dim)] * len(names)
    mods = dict(model.named_modules())
    out, hooks = {}, []
    for s in names:
        hooks.append(mods[s].register_forward_hook(lambda m, i, o, s=s: out.__setitem__(s, o.shape[1])))
    was_training = model.training
    model.eval()
    try:
        model.forward_features(torch.zeros(1, 3, img_size, img_size, device=_device_of(model)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [int(out[s]) for s in names]


class ProTuningModel(nn.Module):
    """A frozen timm ``body`` with one :class:`PromptBlock` per stage (forward hooks) and a linear head.

    ``detach()`` removes the hooks (the body is then the untouched backbone); ``attach()`` puts them back.
    ``record=True`` keeps each stage's last feature map and prompt in ``self.recorded`` (for pictures).
    """

    def __init__(self, body: nn.Module, *, kind: str, embed_dim: int, num_classes: int, img_size: int,
                 config: ProTuningConfig | None = None):
        super().__init__()
        cfg = config or ProTuningConfig()
        self.body, self.kind, self.config = body, kind, cfg
        self.stage_names = prompt_stages(body, kind, cfg.num_stages)
        channels = stage_channels(body, kind, self.stage_names, img_size)
        self.prompts = nn.ModuleList(
            PromptBlock(c, reduction=cfg.reduction, kernel_size=cfg.kernel_size, act=cfg.act,
                        zero_init=cfg.zero_init) for c in channels)
        self.head = nn.Linear(embed_dim, num_classes)
        self.num_prefix = int(getattr(body, "num_prefix_tokens", 1)) if kind == "vit" else 0
        self.record = False
        self.recorded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list = []
        self.attach()

    # -- attaching ------------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        if self.attached:
            return
        mods = dict(self.body.named_modules())
        self._handles = [mods[s].register_forward_hook(partial(self._prompt_hook, i))
                         for i, s in enumerate(self.stage_names)]

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _prompt_hook(self, i: int, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if self.kind == "vit":
            prefix, fmap = tokens_to_map(output, self.num_prefix)
        else:
            fmap = output
        prompt = self.prompts[i](fmap)
        if self.record:
            self.recorded[i] = (fmap.detach().float().cpu(), prompt.detach().float().cpu())
        mixed = blend(fmap, prompt, self.config.blend)
        return map_to_tokens(prefix, mixed) if self.kind == "vit" else mixed

    def __deepcopy__(self, memo):  # hooks hold bound methods: rebuild them on the copy
        import copy

        self_handles, self._handles = self._handles, []
        try:
            cls = self.__class__
            new = cls.__new__(cls)
            memo[id(self)] = new
            for k, v in self.__dict__.items():
                new.__dict__[k] = copy.deepcopy(v, memo)
        finally:
            self._handles = self_handles
        # the copied body carries copies of our hooks; drop them and attach fresh ones bound to the copy
        for m in new.body.modules():
            m._forward_hooks.clear()
        if self_handles:
            new.attach()
        return new

    # -- forward --------------------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_head(self.body.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SideNetwork(nn.Module):
    """A light CNN side network: four stride-2 3x3 conv + BN + ReLU layers, global pool, linear to ``out_dim``."""

    def __init__(self, out_dim: int, width: int = 16):
        super().__init__()
        layers, c = [], 3
        for k in range(4):
            layers += [nn.Conv2d(c, width * 2 ** k, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width * 2 ** k), nn.ReLU()]
            c = width * 2 ** k
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.proj = nn.Linear(c, out_dim)

    def forward(self, x):
        return self.proj(self.features(x))


class SideTuningModel(nn.Module):
    """Side tuning: ``head(a * B(x) + (1 - a) * S(x))``, ``a = sigmoid(alpha)``; ``B`` frozen, ``S`` and the
    head train (Zhang et al., ECCV 2020, used as a baseline by Pro-Tuning). ``alpha_init=2`` starts at
    ``a ~ 0.88``, i.e. mostly the frozen representation."""

    def __init__(self, body: nn.Module, *, embed_dim: int, num_classes: int, width: int = 16,
                 alpha_init: float = 2.0):
        super().__init__()
        self.body = body
        self.side = SideNetwork(embed_dim, width)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.body.forward_head(self.body.forward_features(x), pre_logits=True)
        a = torch.sigmoid(self.alpha)
        return self.head(a * base + (1 - a) * self.side(x))


# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def prompt_maps(model: ProTuningModel, x: torch.Tensor) -> list[dict]:
    """For each stage: the feature map ``x_i``, the prompt ``P_i(x_i)`` and their relative size
    ``||P_i|| / ||x_i||`` on images ``x`` (what a prompt block adds to the frozen features). ``x`` is moved to the
    model's device; the recorded maps come back on the CPU."""
    model.eval()
    model.record, model.recorded = True, {}
    try:
        model(x.to(_device_of(model)))
    finally:
        model.record = False
    out = []
    for i, name in enumerate(model.stage_names):
        fmap, prompt = model.recorded[i]
        out.append({"stage": i, "module": name, "feature": fmap, "prompt": prompt,
                    "relative_norm": (prompt.norm() / fmap.norm().clamp_min(1e-12)).item()})
    model.recorded = {}
    return out

"""Pixel-space visual prompts (Bahng et al. 2022, "Exploring Visual Prompts for Adapting Large-Scale Models").

One learned perturbation ``v`` in (normalised) pixel space, shared by all images of a task, is added to every
input of a frozen model: ``x' = x + v`` (Sec. 3, Eq. 1). Three templates (Sec. 4.1, Fig. 3):

* ``padding``: a learned frame of width ``prompt_size`` around the image (30 px on 224 px = 69,840 parameters);
* ``fixed_patch``: a learned ``prompt_size x prompt_size`` patch at the top-left corner;
* ``random_patch``: the same patch at a random location, one location per batch (every image of a forward
  call shares it) with corners in ``[0, S - p - 1]``, as the official ``RandomPatchPrompter``
  (``np.random.choice(S - p)``); drawn from a seeded ``torch.Generator`` (reproducible by ``seed``; no numpy
  randomness in ``forward``).

Initialisation (``init``): ``"randn"``, N(0, 1) in normalised pixel space as the official prompters
(``torch.randn``), drawn from a generator seeded by ``seed``, so an untrained prompt is a noisy frame; ``"zeros"``
starts at the frozen model. Baselines "before prompting" switch the prompt off (:meth:`PixelPrompter.disabled`).

Two ways to read a class out of the frozen model:

* **VP+TP** on a vision-language model (:class:`PromptedVLM`): logits are ``logit_scale * cos(image, text)``
  with the text-prompt classifier ("This is a photo of a {}"), logit scale clamped at 100 (Sec. 4.1);
* **VP** on a vision-only ImageNet classifier (:class:`PromptedClassifier`): the task's classes are mapped onto
  ImageNet logits, the first N as the paper (:func:`first_n_mapping`) or by frequency on the training set
  (:func:`frequency_mapping`, as later label-mapping work does).

Only the prompter trains; the builders :func:`vpkit.methods.build_vp_tp` and
:func:`vpkit.methods.build_vp_classifier` return a :class:`vpkit.methods.Method` with the trainable report.
The study (datasets, baselines, ablations, claims) is :mod:`vpkit.studies.visual_prompting`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

TEMPLATES = ("padding", "fixed_patch", "random_patch")
INITS = ("randn", "zeros")
TP_TEMPLATE = "This is a photo of a {}"  # the paper's text prompt (Sec. 4.1)


@dataclass(frozen=True)
class PixelPromptConfig:
    """A pixel prompt: template, ``prompt_size`` (frame width or patch side, px), image size, channels, seed."""

    template: str = "padding"
    prompt_size: int = 30
    image_size: int = 224
    channels: int = 3
    seed: int = 0  # the initial values and the random_patch locations
    init: str = "randn"  # official: torch.randn; "zeros": start at the frozen model

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ValueError(f"template={self.template!r}; allowed: {TEMPLATES}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r}; allowed: {INITS}")
        if self.image_size < 1 or self.channels < 1:
            raise ValueError(f"image_size={self.image_size} and channels={self.channels} must be >= 1")
        limit = {"padding": (self.image_size - 1) // 2, "fixed_patch": self.image_size,
                 "random_patch": self.image_size - 1}[self.template]  # random: corners in [0, S - p - 1]
        if not 1 <= self.prompt_size <= limit:
            raise ValueError(f"prompt_size={self.prompt_size} must be in 1..{limit} for template="
                             f"{self.template!r} on image_size={self.image_size}")


class PixelPrompter(nn.Module):
    """Adds a learned pixel prompt to ``(B, C, S, S)`` images (Bahng et al. Eq. 1); parameters start N(0, 1).

    ``padding`` stores the frame as four tensors (top/bottom ``C x p x S``, left/right ``C x (S-2p) x p``),
    so its count is ``2Cp S + 2Cp (S - 2p)``; the patch templates store one ``C x p x p`` patch.
    """

    def __init__(self, cfg: PixelPromptConfig | None = None, **kwargs):
        super().__init__()
        cfg = PixelPromptConfig(**{**(cfg.__dict__ if cfg is not None else {}), **kwargs})
        self.cfg = cfg
        c, p, s = cfg.channels, cfg.prompt_size, cfg.image_size
        g = torch.Generator().manual_seed(int(cfg.seed))
        new = (lambda *shape: torch.randn(*shape, generator=g)) if cfg.init == "randn" else torch.zeros
        if cfg.template == "padding":  # the official order: up, down, left, right
            self.pad_up = nn.Parameter(new(c, p, s))
            self.pad_down = nn.Parameter(new(c, p, s))
            self.pad_left = nn.Parameter(new(c, s - 2 * p, p))
            self.pad_right = nn.Parameter(new(c, s - 2 * p, p))
        else:
            self.patch = nn.Parameter(new(c, p, p))
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.enabled = True

    @property
    def template(self) -> str:
        return self.cfg.template

    def reset_generator(self, seed: int | None = None) -> None:
        """Restart the random-patch location stream (``seed`` defaults to the config's)."""
        self.generator.manual_seed(int(self.cfg.seed if seed is None else seed))

    def prompt(self) -> torch.Tensor:
        """The full-size prompt ``(C, S, S)`` (fixed location for the patch templates)."""
        c, p, s = self.cfg.channels, self.cfg.prompt_size, self.cfg.image_size
        if self.cfg.template == "padding":
            ref = self.pad_up
            mid = torch.cat([self.pad_left, torch.zeros(c, s - 2 * p, s - 2 * p, dtype=ref.dtype,
                                                        device=ref.device), self.pad_right], dim=2)
            return torch.cat([self.pad_up, mid, self.pad_down], dim=1)
        out = torch.zeros(c, s, s, dtype=self.patch.dtype, device=self.patch.device)
        out[:, :p, :p] = self.patch
        return out

    def location(self) -> tuple[int, int]:
        """One top-left corner (row, col) in ``[0, S - p - 1]`` for ``random_patch``, from the module's generator
        (official: ``np.random.choice(S - p)`` for each coordinate, once per forward call)."""
        r, q = torch.randint(0, self.cfg.image_size - self.cfg.prompt_size, (2,), generator=self.generator).tolist()
        return r, q

    @contextlib.contextmanager
    def disabled(self):
        """Inside this context the prompter returns its input unchanged (the unprompted frozen baseline)."""
        before, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cfg.channels, self.cfg.image_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[-2:] != (s, s):
            raise ValueError(f"expected images (B, {c}, {s}, {s}) for this prompter, got {tuple(x.shape)}")
        if not self.enabled:
            return x
        if self.cfg.template != "random_patch":
            return x + self.prompt().to(x.dtype).unsqueeze(0)
        p = self.cfg.prompt_size
        r, q = self.location()
        canvas = torch.zeros(c, s, s, dtype=self.patch.dtype, device=self.patch.device)
        canvas[:, r:r + p, q:q + p] = self.patch  # differentiable w.r.t. the patch
        return x + canvas.to(x.dtype).unsqueeze(0)


def num_prompt_parameters(template: str, prompt_size: int, image_size: int, channels: int = 3) -> int:
    """Closed-form parameter count of a template (padding: ``2Cp S + 2Cp (S - 2p)``; patches: ``C p^2``)."""
    PixelPromptConfig(template=template, prompt_size=prompt_size, image_size=image_size, channels=channels)
    p, s = prompt_size, image_size
    return channels * (2 * p * s + 2 * p * (s - 2 * p)) if template == "padding" else channels * p * p


def render_prompt(prompter: PixelPrompter, *, mean, std, base: torch.Tensor | None = None) -> np.ndarray:
    """The learned prompt as an RGB image ``(S, S, 3)`` in [0, 1], drawn on ``base`` (a normalised
    ``(C, S, S)`` image) or on mid-grey; the patch templates are shown at their fixed (top-left) location."""
    with torch.no_grad():
        v = prompter.prompt().float().cpu()
        m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        sd = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        if base is None:
            base = (0.5 - m) / sd * torch.ones_like(v)
        img = ((base.float().cpu() + v) * sd + m).clamp(0, 1)
    return img.permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------------------------------------
# Frozen models with a prompt in front
# ----------------------------------------------------------------------------------------------------------

class PromptedVLM(nn.Module):
    """VP+TP: ``logits = vlm(prompter(x), text_features)`` (the VLM's logit scale is clamped at 100)."""

    def __init__(self, prompter: PixelPrompter, vlm: nn.Module, text_features: torch.Tensor):
        super().__init__()
        self.prompter = prompter
        self.vlm = vlm
        self.register_buffer("text_features", text_features.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = self.vlm.encode_image(self.prompter(x), normalize=True).float()
        return self.vlm.logit_scale.clamp(max=100.0) * img @ self.text_features.t()


class PromptedClassifier(nn.Module):
    """VP on a vision-only classifier: ImageNet logits of the prompted image, read at ``mapping`` (Sec. 4.1)."""

    def __init__(self, prompter: PixelPrompter, model: nn.Module, mapping: torch.Tensor):
        super().__init__()
        self.prompter = prompter
        self.model = model
        self.register_buffer("mapping", torch.as_tensor(mapping, dtype=torch.long).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prompter(x))[:, self.mapping]


def first_n_mapping(num_classes: int) -> torch.Tensor:
    """The paper's label mapping: task class ``i`` -> ImageNet logit ``i``."""
    return torch.arange(int(num_classes))


def frequency_mapping(source_logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Frequency label mapping: count how often each task class is predicted as each ImageNet class by the
    unprompted model on the training set, then assign greedily (largest count first, one source class per task
    class, no reuse). Ties and empty rows fall back to the highest mean logit."""
    pred = source_logits.argmax(-1)
    n_src = source_logits.shape[1]
    counts = torch.zeros(num_classes, n_src)
    counts.index_put_((labels.long(), pred.long()), torch.ones(len(labels)), accumulate=True)
    # tie-breaker: mean softmax probability per (task class, source class), always < 1
    probs = source_logits.float().softmax(-1)
    mean_p = torch.stack([probs[labels == c].mean(0) if (labels == c).any() else torch.zeros(n_src)
                          for c in range(num_classes)])
    score = counts + mean_p
    mapping = torch.full((num_classes,), -1, dtype=torch.long)
    for _ in range(num_classes):
        flat = int(score.argmax())
        c, s = divmod(flat, n_src)
        mapping[c] = s
        score[c, :] = -1.0
        score[:, s] = -1.0
    return mapping

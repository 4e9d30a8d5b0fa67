"""L2P (Learning to Prompt for Continual Learning, Wang et al., CVPR 2022) and the image-prompt variants.

L2P (Sec. 3.2-3.4): a frozen pretrained ViT; a pool of ``pool_size`` (M) prompts, each ``length`` (L) tokens,
each with a learnable key. The query ``q(x)`` is the frozen model's CLS feature (a forward pass without
prompts); the ``top_k`` (N) prompts by cosine(q, key) are prepended after CLS (as VPT-shallow); the
classifier reads the mean of the prompt tokens' outputs (``head_type="prompt"``, the official default).
Eq. 5 adds the surrogate ``-pull_coeff * sum_k cos(q, key_{s_k})`` that pulls selected keys to the query.
``selection="batch"`` is the official code's batch-wise selection (the N most frequent ids in the batch are
used for every sample); ``"per_sample"`` is Eq. 3 as written.

The undergraduate image-prompt project's variants are parameters of the same model (:class:`L2PConfig`):

* ``prompt_init="image"``: pool prompts initialised from training images reshaped to (L x d) (flatten,
  linear interpolation to L*d values, standardised to the std of the uniform(-1, 1) init, so only the content
  differs from random init) - no patch embedding.
* ``prompt_form="image"``: the pool holds learnable images (initialised from training images) passed through
  the frozen patch embedding; ``image_tokens="pool"`` keeps the prompt count in check by average-pooling each
  image's patch tokens down to L tokens, ``"all"`` keeps every patch token (the count the project found grew
  ~10x and hurt training).
* ``generator="vae"``: a small convolutional VAE reconstructs the input image; its output image goes through
  the frozen patch embedding, pooled to ``gen_length`` tokens (an input-conditioned image prompt); its ELBO is
  trained alongside (weight ``gen_beta``).
* ``generator="cls"``: a small MLP VAE on the frozen CLS query decodes ``gen_length`` prompt tokens directly
  (lower-dimensional than images); its ELBO reconstructs the query from the mean generated token.
* ``key_init="query"`` (our addition, not in the project): key m starts at the query of the image prompt m
  was initialised from. L2P trains keys only through the pull term, which never sees the prompts, so
  without this the key that selects a prompt knows nothing about the image the prompt came from.
* ``use_pool`` with a generator = generator + pool (the generator tokens precede the pool prompts). LwF on the
  generator is a training option (:class:`vpkit.continual.ContinualConfig` ``gen_lwf_weight``).
* ``use_pool=False, shared_length=P``: one prompt always used - what L2P trains without the pool, for the
  sequential fine-tuning / LwF / joint bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..continual import Batch, images_of
from .vit import check_vit, embed_tokens, final_norm, insert_prompts

SELECTIONS = ("per_sample", "batch")
PROMPT_FORMS = ("tokens", "image")
PROMPT_INITS = ("uniform", "image")
KEY_INITS = ("uniform", "query")
IMAGE_TOKENS = ("pool", "all")
GENERATORS = (None, "vae", "cls")
HEAD_TYPES = ("prompt", "cls")


@dataclass
class L2PConfig:
    """L2P settings (defaults: the PyTorch port on Split CIFAR-100) and the project's variants."""

    pool_size: int = 10
    length: int = 5
    top_k: int = 5
    pull_coeff: float = 0.1
    selection: str = "per_sample"
    use_pool: bool = True
    prompt_form: str = "tokens"
    prompt_init: str = "uniform"
    key_init: str = "uniform"
    image_tokens: str = "pool"
    shared_length: int = 0
    generator: str | None = None
    gen_length: int = 5
    gen_latent: int = 16
    gen_size: int = 28
    gen_width: int = 16
    gen_beta: float = 0.1
    head_type: str = "prompt"

    def __post_init__(self):
        for k, allowed in (("selection", SELECTIONS), ("prompt_form", PROMPT_FORMS), ("prompt_init", PROMPT_INITS), ("key_init", KEY_INITS),
                           ("image_tokens", IMAGE_TOKENS), ("generator", GENERATORS), ("head_type", HEAD_TYPES)):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k}={getattr(self, k)!r}; allowed: {allowed}")
        if self.use_pool:
            if not 1 <= self.top_k <= self.pool_size:
                raise ValueError(f"top_k={self.top_k} must be in 1..pool_size={self.pool_size}")
            if self.length < 1:
                raise ValueError(f"length={self.length} must be >= 1")
        if self.shared_length < 0 or self.gen_length < 1 or self.gen_size % 4:
            raise ValueError("shared_length must be >= 0, gen_length >= 1, gen_size a multiple of 4")
        if not self.use_pool and self.shared_length == 0 and self.generator is None:
            raise ValueError("no prompts: set use_pool=True, shared_length > 0 or a generator")
        if self.pull_coeff < 0 or self.gen_beta < 0:
            raise ValueError("pull_coeff and gen_beta must be >= 0")


# ----------------------------------------------------------------------------------------------------------
# Selection (Eq. 3) and the pull surrogate (Eq. 5)
# ----------------------------------------------------------------------------------------------------------

def cosine_similarity_matrix(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(B, d) x (M, d) -> (B, M) cosine similarities gamma(q, k_m)."""
    return F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).t()


def select_top_k(query: torch.Tensor, keys: torch.Tensor, top_k: int, selection: str = "per_sample"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, N) of the N keys most similar to each query, and the (B, M) similarity matrix.

    ``selection="batch"``: every sample uses the N ids chosen most often in the batch (ties: lower id).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r}; allowed: {SELECTIONS}")
    sim = cosine_similarity_matrix(query, keys)
    idx = sim.topk(top_k, dim=1).indices
    if selection == "batch":
        M = keys.shape[0]
        counts = torch.bincount(idx.flatten(), minlength=M).float()
        score = counts - torch.arange(M, device=counts.device) / (2 * M)  # ties broken towards lower ids
        major = score.topk(top_k).indices.sort().values
        idx = major.unsqueeze(0).expand(len(query), -1)
    return idx, sim


def pull_term(sim: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """L2P's surrogate: (1/B) sum_b sum_k gamma(q_b, k_{s_bk}); the loss subtracts ``pull_coeff`` times it."""
    return sim.gather(1, idx).sum() / sim.shape[0]


def patch_tokens(patch_embed: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Frozen patch embedding of images as (B, n, d) tokens (no position embedding; flattens NHWC output)."""
    t = patch_embed(images)
    return t.flatten(1, 2) if t.ndim == 4 else t


def pool_tokens(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """(B, n, d) patch tokens -> (B, length, d) by adaptive average pooling over the sequence."""
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), length).transpose(1, 2)


def image_to_tokens_init(images: torch.Tensor, length: int, embed_dim: int, scale: float) -> torch.Tensor:
    """Images (M, C, H, W) reshaped to prompts (M, L, d) without a patch embedding (the project's variant 2):
    flatten, resample linearly to L*d values, standardise, multiply by ``scale``."""
    flat = images.flatten(1)[:, None]
    v = F.interpolate(flat, size=length * embed_dim, mode="linear", align_corners=False)[:, 0]
    v = (v - v.mean(1, keepdim=True)) / v.std(1, keepdim=True).clamp_min(1e-6)
    return (scale * v).view(len(images), length, embed_dim)


# ----------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------

class PromptPool(nn.Module):
    """M keys (M, d) and M prompts: token prompts (M, L, d), or learnable images (M, 3, S, S) that the frozen
    patch embedding turns into tokens (``prompt_form="image"``)."""

    def __init__(self, *, pool_size: int, length: int, embed_dim: int, top_k: int, selection: str,
                 prompt_form: str = "tokens", img_size: int | None = None, image_tokens: str = "pool"):
        super().__init__()
        self.pool_size, self.length, self.top_k, self.selection = pool_size, length, top_k, selection
        self.prompt_form, self.image_tokens = prompt_form, image_tokens
        self.key = nn.Parameter(torch.empty(pool_size, embed_dim).uniform_(-1, 1))
        if prompt_form == "tokens":
            self.prompt = nn.Parameter(torch.empty(pool_size, length, embed_dim).uniform_(-1, 1))
        else:
            if img_size is None:
                raise ValueError("prompt_form='image' needs img_size")
            self.prompt = nn.Parameter(torch.randn(pool_size, 3, img_size, img_size))

    def prompt_tokens(self, patch_embed: nn.Module | None = None) -> torch.Tensor:
        """All M prompts as tokens (M, L', d)."""
        if self.prompt_form == "tokens":
            return self.prompt
        t = patch_tokens(patch_embed, self.prompt)
        return pool_tokens(t, self.length) if self.image_tokens == "pool" else t

    def forward(self, query: torch.Tensor, patch_embed: nn.Module | None = None):
        """(prompts (B, N*L', d), selected ids (B, N), pull term)."""
        idx, sim = select_top_k(query, self.key, self.top_k, self.selection)
        toks = self.prompt_tokens(patch_embed)
        B = len(query)
        prompts = toks[idx].reshape(B, -1, toks.shape[-1])
        return prompts, idx, pull_term(sim, idx)


class VAEGenerator(nn.Module):
    """A small conv VAE on the (downsampled) input image; its reconstruction is the prompt image."""

    def __init__(self, *, size: int = 28, latent: int = 16, width: int = 16):
        super().__init__()
        self.size = size
        s = size // 4
        self.enc = nn.Sequential(nn.Conv2d(3, width, 4, 2, 1), nn.GELU(), nn.Conv2d(width, 2 * width, 4, 2, 1),
                                 nn.GELU(), nn.Flatten())
        self.mu = nn.Linear(2 * width * s * s, latent)
        self.logvar = nn.Linear(2 * width * s * s, latent)
        self.dec = nn.Sequential(nn.Linear(latent, 2 * width * s * s), nn.GELU(), nn.Unflatten(1, (2 * width, s, s)),
                                 nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.GELU(),
                                 nn.ConvTranspose2d(width, 3, 4, 2, 1))

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="area")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(generated image (B, 3, size, size), ELBO loss = reconstruction MSE + KL / pixels)."""
        tgt = self.target(x)
        h = self.enc(tgt)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-8, 8)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        out = self.dec(z)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean() / tgt[0].numel()
        return out, F.mse_loss(out, tgt) + kl

    def deterministic(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.mu(self.enc(self.target(x))))


class CLSGenerator(nn.Module):
    """A small MLP VAE on the frozen CLS query: z -> ``length`` prompt tokens; the ELBO reconstructs the query
    from the mean generated token."""

    def __init__(self, *, embed_dim: int, length: int = 5, latent: int = 16, hidden: int = 64):
        super().__init__()
        self.length, self.embed_dim = length, embed_dim
        self.enc = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, hidden), nn.GELU())
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, length * embed_dim))

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(q)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-8, 8)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        out = self.dec(z).view(len(q), self.length, self.embed_dim)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean() / self.embed_dim
        return out, F.mse_loss(out.mean(1), F.layer_norm(q, q.shape[-1:])) + kl

    def deterministic(self, q: torch.Tensor) -> torch.Tensor:
        return self.dec(self.mu(self.enc(q))).view(len(q), self.length, self.embed_dim)


@dataclass
class L2POutput:
    logits: torch.Tensor
    aux_loss: torch.Tensor | float  # -pull_coeff * pull + gen_beta * generator ELBO
    idx: torch.Tensor | None = None  # selected prompt ids (B, N)
    pull: torch.Tensor | None = None
    gen_out: torch.Tensor | None = None  # deterministic generator output (for LwF on the generator)


class L2PModel(nn.Module):
    """Frozen timm ViT + prompt pool / shared prompt / generator + linear head over all classes.

    ``forward(x)`` takes images or a :class:`vpkit.continual.Batch` (whose cached ``query`` skips the extra
    frozen forward pass) and returns logits; ``forward_parts`` also returns the auxiliary loss and selections.
    """

    def __init__(self, vit: nn.Module, num_classes: int, cfg: L2PConfig, *, img_size: int,
                 init_images: torch.Tensor | None = None):
        super().__init__()
        check_vit(vit)
        self.body, self.cfg = vit, cfg
        d = vit.embed_dim
        self.pool = None
        if cfg.use_pool:
            self.pool = PromptPool(pool_size=cfg.pool_size, length=cfg.length, embed_dim=d, top_k=cfg.top_k,
                                   selection=cfg.selection, prompt_form=cfg.prompt_form, img_size=img_size,
                                   image_tokens=cfg.image_tokens)
            if cfg.prompt_init == "image" or cfg.prompt_form == "image":
                if init_images is None or len(init_images) != cfg.pool_size:
                    raise ValueError(f"prompt_init='image' / prompt_form='image' need init_images with "
                                     f"pool_size={cfg.pool_size} normalised images")
                with torch.no_grad():
                    if cfg.prompt_form == "image":
                        self.pool.prompt.copy_(init_images)
                    else:
                        # the std of L2P's uniform(-1, 1) init, so only the content differs from random init
                        self.pool.prompt.copy_(image_to_tokens_init(init_images, cfg.length, d, 3 ** -0.5))
            if cfg.key_init == "query":
                if init_images is None or len(init_images) != cfg.pool_size:
                    raise ValueError("key_init='query' needs init_images (one per prompt)")
                with torch.no_grad():
                    self.pool.key.copy_(self.query(init_images))
        self.shared = nn.Parameter(torch.empty(cfg.shared_length, d).uniform_(-1, 1)) if cfg.shared_length else None
        self.generator = None
        if cfg.generator == "vae":
            self.generator = VAEGenerator(size=cfg.gen_size, latent=cfg.gen_latent, width=cfg.gen_width)
        elif cfg.generator == "cls":
            self.generator = CLSGenerator(embed_dim=d, length=cfg.gen_length, latent=cfg.gen_latent)
        self.head = nn.Linear(d, num_classes)

    def trainable_names(self, name: str) -> bool:
        return not name.startswith("body.")

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """q(x): the frozen model's CLS feature without prompts."""
        was = self.body.training
        self.body.eval()
        q = self.body.forward_head(self.body.forward_features(images), pre_logits=True)
        self.body.train(was)
        return q

    def _query_of(self, x) -> torch.Tensor:
        if isinstance(x, Batch) and x.query is not None:
            return x.query
        return self.query(images_of(x))

    def generator_input(self, x) -> torch.Tensor:
        return images_of(x) if self.cfg.generator == "vae" else self._query_of(x)

    def _generated_tokens(self, x):
        if self.cfg.generator == "vae":
            img = images_of(x)
            out, loss = self.generator(img)
            gen_img = F.interpolate(out, size=img.shape[-2:], mode="bilinear", align_corners=False)
            toks = pool_tokens(patch_tokens(self.body.patch_embed, gen_img), self.cfg.gen_length)
            det = self.generator.deterministic(img) if self.training else out
        else:
            q = self._query_of(x)
            toks, loss = self.generator(q)
            det = self.generator.deterministic(q) if self.training else toks
        return toks, loss, det

    def forward_parts(self, x) -> L2POutput:
        img = images_of(x)
        B = len(img)
        parts, aux = [], 0.0
        idx = pull = gen_out = None
        if self.generator is not None:
            toks, gloss, gen_out = self._generated_tokens(x)
            parts.append(toks)
            aux = aux + self.cfg.gen_beta * gloss
        if self.shared is not None:
            parts.append(self.shared.unsqueeze(0).expand(B, -1, -1))
        if self.pool is not None:
            prompts, idx, pull = self.pool(self._query_of(x), self.body.patch_embed)
            parts.append(prompts)
            aux = aux - self.cfg.pull_coeff * pull
        prompts = torch.cat(parts, dim=1)
        npf = self.body.num_prefix_tokens
        tokens = insert_prompts(embed_tokens(self.body, img), prompts.to(img.dtype), npf)
        tokens = final_norm(self.body, self.body.blocks(tokens))
        if self.cfg.head_type == "prompt":
            feat = tokens[:, npf:npf + prompts.shape[1]].mean(1)
        else:
            feat = tokens[:, 0]
        return L2POutput(self.head(feat), aux, idx, pull, gen_out)

    def forward(self, x) -> torch.Tensor:
        return self.forward_parts(x).logits

    def num_prompt_tokens(self) -> int:
        n = self.cfg.shared_length + (self.cfg.gen_length if self.generator is not None else 0)
        if self.pool is not None:
            per = self.cfg.length
            if self.cfg.prompt_form == "image" and self.cfg.image_tokens == "all":
                per = self.body.patch_embed.num_patches
            n += self.cfg.top_k * per
        return n


@torch.no_grad()
def selection_counts(model: L2PModel, queries: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     batch_size: int = 64) -> torch.Tensor:
    """(num_classes, pool_size) how often each prompt is selected for each class's images (from cached
    queries; batch-wise selection is applied per batch of ``batch_size`` in the given order)."""
    if model.pool is None:
        raise ValueError("the model has no prompt pool")
    M = model.pool.pool_size
    counts = torch.zeros(num_classes, M, dtype=torch.long)
    for i in range(0, len(queries), batch_size):
        q, y = queries[i:i + batch_size], labels[i:i + batch_size]
        idx, _ = select_top_k(q, model.pool.key.detach().cpu().float(), model.pool.top_k, model.pool.selection)
        for k in range(idx.shape[1]):
            counts.index_put_((y, idx[:, k]), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return counts


def build_l2p_model(backbone, num_classes: int, cfg: L2PConfig | None = None, *,
                    init_images: torch.Tensor | None = None):
    """An :class:`L2PModel` on a copy of ``backbone`` (a timm ViT) with everything but the prompts / keys /
    generator / shared prompt / head frozen; returns ``vpkit.methods.Method``."""
    from ..methods import copy_body, finish

    if backbone.kind != "vit":
        raise ValueError(f"L2P needs a ViT backbone, got kind={backbone.kind!r} ({backbone.name})")
    cfg = cfg or L2PConfig()
    body = copy_body(backbone)
    model = L2PModel(body, num_classes, cfg, img_size=backbone.img_size, init_images=init_images)
    return finish("l2p", model, model.trainable_names, body)


# ----------------------------------------------------------------------------------------------------------
# The variants of the image-prompt project, as one flat table of (L2PConfig, training overrides, protocol)
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    model: L2PConfig
    train: dict  # overrides of vpkit.continual.ContinualConfig
    joint: bool = False
    label: str = ""


def project_variants(*, pool_size: int = 10, length: int = 5, top_k: int = 5, pull_coeff: float = 0.1,
                     selection: str = "per_sample", gen_lwf_weights=(0.1, 1.0, 10.0), lwf_weight: float = 1.0,
                     gen_length: int | None = None, gen_size: int = 28) -> dict[str, Variant]:
    """Every run of the notebook: bounds (sequential fine-tuning / LwF / joint training of a single prompt of
    N*L tokens + head, i.e. what L2P trains without the pool), L2P, and the project's variants 1-4."""
    pool = dict(pool_size=pool_size, length=length, top_k=top_k, pull_coeff=pull_coeff, selection=selection)
    gl = gen_length or length
    gen = dict(gen_length=gl, gen_size=gen_size)
    single = L2PConfig(use_pool=False, shared_length=length * top_k)
    v = [
        Variant("seq_ft", single, dict(train_mask="seen"), label="sequential fine-tuning (lower bound)"),
        Variant("lwf", single, dict(train_mask="seen", lwf_weight=lwf_weight), label=f"LwF (weight {lwf_weight})"),
        Variant("joint", single, dict(train_mask="seen"), joint=True, label="joint training (upper bound)"),
        Variant("l2p", L2PConfig(**pool), {}, label="L2P (random init)"),
        Variant("l2p_image_init", L2PConfig(**pool, prompt_init="image"), {},
                label="image-initialised prompts, no patch embedding"),
        Variant("l2p_image_init_keys", L2PConfig(**pool, prompt_init="image", key_init="query"), {},
                label="image-initialised prompts + keys from the same images (ours)"),
        Variant("l2p_patch_embed", L2PConfig(**pool, prompt_form="image", image_tokens="pool"), {},
                label=f"image prompts through the patch embedding (pooled to L={length})"),
        Variant("vae_gen", L2PConfig(use_pool=False, generator="vae", **gen), {}, label="VAE generator prompts"),
        Variant("cls_gen", L2PConfig(use_pool=False, generator="cls", **gen), {}, label="CLS-token generator"),
        Variant("vae_gen_pool", L2PConfig(**pool, generator="vae", **gen), {}, label="VAE generator + pool"),
    ]
    for w in gen_lwf_weights:
        v.append(Variant(f"vae_gen_pool_lwf{w:g}", L2PConfig(**pool, generator="vae", **gen),
                         dict(gen_lwf_weight=float(w)), label=f"VAE generator + pool + LwF on the generator ({w:g})"))
    return {x.name: x for x in v}


def run_variant(variant: Variant, backbone, tasks, *, train_cfg, queries=None, init_images=None,
                num_classes: int | None = None, progress: bool = False):
    """Build the variant's model on ``backbone`` and run it through the task loop (or joint training).

    Returns ``(ContinualResult, Method)``; ``train_cfg`` is the base :class:`ContinualConfig`.
    """
    import dataclasses

    from .. import continual

    C = num_classes or tasks[0].train.num_classes
    method = build_l2p_model(backbone, C, variant.model, init_images=init_images)
    cfg = dataclasses.replace(train_cfg, **variant.train)
    run = continual.run_joint if variant.joint else continual.run_continual
    res = run(method.model, tasks, backbone, cfg=cfg, name=variant.name, queries=queries, num_classes=C,
              progress=progress)
    return res, method


# ----------------------------------------------------------------------------------------------------------
# Numbers quoted in the source (Split CIFAR-100, 10 tasks): average accuracy % / forgetting
# ----------------------------------------------------------------------------------------------------------

PAPER_NUMBERS = {
    # variant: (project's avg acc, project's forgetting, L2P-paper avg acc, L2P-paper forgetting, note)
    "seq_ft": (None, None, 33.61, 86.87, "L2P paper, FT-seq"),
    "lwf": (None, None, 60.69, 27.77, "L2P paper"),
    "joint": (None, None, None, None, "upper bound; no number in the source text"),
    "l2p": (83.86, 7.63, 83.83, 7.63, "L2P paper 83.83/7.63; DualPrompt's report 83.86/7.35; project cites 83.86/7.63"),
    "l2p_image_init": (84.3, 6.53, None, None, "project variant 2: better than L2P"),
    "l2p_image_init_keys": (None, None, None, None, "not in the source: our control for the selection analysis"),
    "l2p_patch_embed": (74.0, 11.91, None, None, "project variant 1: prompt count grows ~10x"),
    "vae_gen": (None, None, None, None, "project: harder to train, forgets (no number)"),
    "cls_gen": (None, None, None, None, "project: trains better, much lower accuracy (no number)"),
    "vae_gen_pool": (None, None, None, None, "project: best of the generator variants (no number)"),
}


def paper_numbers(name: str) -> tuple:
    if name.startswith("vae_gen_pool_lwf"):
        return (None, None, None, None, "project: less forgetting, lower new-task accuracy (no number)")
    return PAPER_NUMBERS.get(name, (None, None, None, None, ""))


def init_images(pool, *, count: int, size: int, mean, std, class_names=None, seed: int = 0) -> tuple:
    """One training image per class, for ``count`` classes (the named ones, else 0..count-1 cycling), as
    normalised model inputs (count, 3, size, size) plus the class ids used - the project initialised its 10
    prompts from 10 class images."""
    from ..data import to_model_input

    if class_names is not None:
        missing = [c for c in class_names if c not in pool.classes]
        if missing:
            raise ValueError(f"init class names {missing} not in the dataset's classes")
        ids = [pool.classes.index(c) for c in class_names]
    else:
        ids = [i % pool.num_classes for i in range(count)]
    if len(ids) != count:
        raise ValueError(f"{len(ids)} init classes for a pool of {count} prompts")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in ids:
        members = torch.nonzero(pool.labels == c).flatten()
        picks.append(members[torch.randint(len(members), (1,), generator=g)].item())
    imgs = pool.images[torch.tensor(picks)]
    return to_model_input(imgs, size=size, mean=mean, std=std), ids


@torch.no_grad()
def selection_summary(counts: torch.Tensor, *, top_k: int, prompt_class: list[int] | None = None,
                      min_share: float = 0.01) -> dict:
    """Collapse and class-prompt relation from a (classes, prompts) selection-count matrix.

    ``prompts_used``: prompts holding >= ``min_share`` of all selections (l2p#18: ~4 of 10 in the official
    code); ``top_k_share``: share of selections on the N most used prompts (1.0 = the same N for everything).
    With ``prompt_class`` (prompt m was initialised from class ``prompt_class[m]``): ``own_prompt_rate`` = how
    often a class's images select its own prompt, against ``other_class_rate``, the same prompt's rate for
    the other classes' images (no relation: equal rates).
    """
    c = counts.double()
    per_prompt = c.sum(0)
    share = per_prompt / per_prompt.sum().clamp_min(1)
    out = {"prompts_used": int((share >= min_share).sum()), "pool_size": int(c.shape[1]),
           "top_k_share": float(share.sort(descending=True).values[:top_k].sum()),
           "selection_entropy_bits": float(-(share[share > 0] * share[share > 0].log2()).sum())}
    if prompt_class is not None:
        n_img = c.sum(1) / top_k  # images per class (each image selects top_k prompts)
        own, other = [], []
        for m, cls in enumerate(prompt_class):
            if cls >= c.shape[0] or n_img[cls] == 0:
                continue
            own.append(c[cls, m] / n_img[cls])
            rest = [k for k in range(c.shape[0]) if k != cls and n_img[k] > 0]
            other.append(c[rest, m].sum() / n_img[rest].sum())
        out["own_prompt_rate"] = float(torch.stack(own).mean()) if own else float("nan")
        out["other_class_rate"] = float(torch.stack(other).mean()) if other else float("nan")
    return out


# ----------------------------------------------------------------------------------------------------------
# Analyses of notebook 05: selection shares, prompt images, LwF trade-off, the source's claims
# ----------------------------------------------------------------------------------------------------------

def selection_fractions(counts: torch.Tensor, top_k: int) -> torch.Tensor:
    """(classes, prompts) share of each class's images that select each prompt (rows of a top-N selection
    sum to N; 1.0 = every image of the class selects that prompt)."""
    return counts.float() / counts.sum(1, keepdim=True).clamp_min(1) * top_k


def to_image(x: torch.Tensor, mean, std):
    """A normalised (3, H, W) model input (or learned image prompt) as an H x W x 3 array in [0, 1]."""
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (x.detach().float().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()


@torch.no_grad()
def prompt_image_rows(models: dict, init_x: torch.Tensor, *, mean, std, vae_inputs: torch.Tensor | None = None):
    """Rows for :func:`vpkit.plots.image_grid`: the pool's initialisation images, the learned image prompts of
    the patch-embedding route, the image-initialised (L x d) token prompts as matrices, and the VAE
    generator's targets and outputs for ``vae_inputs``."""
    rows = [("init images", [to_image(x, mean, std) for x in init_x])]
    if "l2p_patch_embed" in models:
        rows.append(("learned image prompts", [to_image(x, mean, std) for x in models["l2p_patch_embed"].pool.prompt]))
    if "l2p_image_init" in models:
        rows.append(("image-init tokens (L x d)", [p.detach().float().numpy() for p in models["l2p_image_init"].pool.prompt]))
    if "vae_gen_pool" in models and vae_inputs is not None:
        g = models["vae_gen_pool"].generator.eval()
        rows.append(("VAE inputs", [to_image(x, mean, std) for x in g.target(vae_inputs)]))
        rows.append(("VAE generated", [to_image(x, mean, std) for x in g.deterministic(vae_inputs)]))
    return rows


def lwf_sweep(results: dict, weights, *, base: str = "vae_gen_pool") -> list[tuple[str, float]]:
    """(run name, generator-LwF weight) of the sweep present in ``results``; weight 0 is ``base`` itself."""
    sweep = [(base, 0.0)] + [(f"{base}_lwf{w:g}", float(w)) for w in weights]
    return [(n, w) for n, w in sweep if n in results]


def lwf_tradeoff_rows(results: dict, sweep: list[tuple[str, float]]) -> list[dict]:
    return [{"gen_lwf_weight": w, "forgetting": 100 * results[n].forgetting,
             "new_task_acc": 100 * results[n].new_task_accuracy, "avg_acc": 100 * results[n].average_accuracy}
            for n, w in sweep]


def project_claims(results: dict, selection: dict, *, sweep: list[tuple[str, float]], length: int, selection_mode: str,
                   top_k: int) -> list:
    """The source's conclusions (and L2P's), each checked on our runs: ``holds`` is computed, never typed in.
    ``results``: name -> ContinualResult; ``selection``: name -> :func:`selection_summary`."""
    from ..report import Claim

    have = set(results)
    pct = lambda n, attr: 100 * getattr(results[n], attr)  # noqa: E731
    acc = lambda n: pct(n, "average_accuracy")  # noqa: E731
    out = []
    if {"l2p", "l2p_image_init"} <= have:
        a, b = acc("l2p_image_init"), acc("l2p")
        out.append(Claim("image_init_ge_l2p", "image-initialised prompts (no patch embedding) >= random-initialised L2P "
                         "(avg acc)", "84.3 vs 83.86", f"{a:.1f} vs {b:.1f}", bool(a >= b)))
    if {"l2p", "l2p_patch_embed"} <= have:
        a, b = acc("l2p_patch_embed"), acc("l2p")
        out.append(Claim("patch_embed_lt_l2p", "image prompts through the patch embedding < L2P (avg acc)", "74 vs 83.86",
                         f"{a:.1f} vs {b:.1f}", bool(a < b),
                         f"prompt count kept at L={length} per prompt by pooling patch tokens"))
    if len(sweep) > 1:
        (n0, _), (nw, w) = sweep[0], sweep[-1]
        f0, fw = pct(n0, "forgetting"), pct(nw, "forgetting")
        a0, aw = pct(n0, "new_task_accuracy"), pct(nw, "new_task_accuracy")
        out.append(Claim("gen_lwf_lowers_forgetting", f"LwF on the generator (weight {w:g}) lowers forgetting",
                         "less forgetting", f"{fw:.1f} vs {f0:.1f}", bool(fw < f0)))
        out.append(Claim("gen_lwf_lowers_new_task_acc", f"LwF on the generator (weight {w:g}) lowers new-task accuracy",
                         "lower accuracy on new tasks", f"{aw:.1f} vs {a0:.1f}", bool(aw < a0)))
    if {"lwf", "seq_ft"} <= have:
        f1, f0 = pct("lwf", "forgetting"), pct("seq_ft", "forgetting")
        out.append(Claim("lwf_lowers_forgetting_vs_ft", "LwF forgets less than sequential fine-tuning", "27.77 vs 86.87",
                         f"{f1:.1f} vs {f0:.1f}", bool(f1 < f0)))
    if {"l2p", "seq_ft"} <= have:
        a, b = acc("l2p"), acc("seq_ft")
        out.append(Claim("l2p_much_better_than_ft", "L2P >> sequential fine-tuning (avg acc, by >= 20 points)",
                         "83.83 vs 33.61", f"{a:.1f} vs {b:.1f}", bool(a - b >= 20)))
    if "l2p" in selection:
        s = selection["l2p"]
        out.append(Claim("l2p_selection_collapse", "L2P prompt selection collapses: fewer prompts used than the pool holds",
                         "~4 of 10 used (l2p#18, batch-wise selection)", f"{s['prompts_used']} of {s['pool_size']} used",
                         bool(s["prompts_used"] < s["pool_size"]),
                         f"{selection_mode} selection; top-{top_k} share {s['top_k_share']:.2f}"))
    if "l2p_image_init" in selection:
        s = selection["l2p_image_init"]
        out.append(Claim("no_class_prompt_relation",
                         "classes do not preferentially select the prompt initialised from their image", "no relation found",
                         f"own {s['own_prompt_rate']:.2f} vs other classes {s['other_class_rate']:.2f}",
                         bool(s["own_prompt_rate"] < 1.5 * s["other_class_rate"] + 0.05),
                         "relation = own-class rate > 1.5x other + 0.05"))
    gens = [n for n in ("vae_gen", "cls_gen", "vae_gen_pool") if n in have]
    if gens and "l2p" in have:
        best = max(gens, key=acc)
        out.append(Claim("generators_underperform", "every generator variant is below L2P (avg acc)",
                         "generators underperformed", f"best {best} {acc(best):.1f} vs {acc('l2p'):.1f}",
                         bool(acc(best) < acc("l2p"))))
    solo = [n for n in ("vae_gen", "cls_gen") if n in have]
    if solo and "vae_gen_pool" in have:
        a, b = acc("vae_gen_pool"), max(acc(n) for n in solo)
        out.append(Claim("gen_pool_best_generator", "generator + pool beats the generator-only variants",
                         "best generator variant", f"{a:.1f} vs {b:.1f}", bool(a > b)))
    return out

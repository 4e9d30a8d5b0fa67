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

Builder: :func:`vpkit.methods.build_l2p_model`. The project's variants, the selection analysis, the numbers
quoted in the source and the claims: :mod:`vpkit.studies.image_prompts_l2p`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.continual import Batch, images_of
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


def gather_prompts(toks: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The selected prompts (M, L, d)[idx (B, N)] -> (B, N*L, d), through ``F.embedding`` rather than advanced
    indexing: the two give the same values, but the backward of ``toks[idx]`` (``index_put_`` with accumulate) adds
    the gradients of repeated ids with atomic float adds on a multi-threaded CPU once the gradient has >= 32768
    elements (B*N*L*d: 8*5*5*384 offline), in whatever order the threads run, so two runs of one seed trained
    different prompts; embedding's backward sums in a fixed order (CPU and CUDA)."""
    M, L, d = toks.shape
    return F.embedding(idx, toks.reshape(M, L * d)).reshape(len(idx), -1, d)


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
        return gather_prompts(toks, idx), idx, pull_term(sim, idx)


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

    ``forward(x)`` takes images or a :class:`vpkit.data.continual.Batch` (whose cached ``query`` skips the extra
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
                with torch.no_grad():  # the body may already sit on a GPU (a shared backbone moved by a cache)
                    dev = next(self.body.parameters()).device
                    self.pool.key.copy_(self.query(init_images.to(dev)))
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

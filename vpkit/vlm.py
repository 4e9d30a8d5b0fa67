"""Frozen vision-language models behind one small interface (CLIP for ``paper``, an offline stand-in).

Visual prompting (Bahng et al. 2022) needs gradients through a frozen image encoder; CoOp/CoCoOp (Zhou et
al. 2022) need a frozen text encoder whose *token embeddings* can be replaced by learned context vectors.
Both see the same interface, :class:`VLM`:

* ``vlm.preprocess`` -> ``Preprocess(img_size, mean, std)``; images go in normalised, ``(B, 3, S, S)``.
* ``vlm.encode_image(images, normalize=True)`` -> ``(B, D)``; differentiable w.r.t. ``images``.
* ``vlm.tokenize(texts)`` -> :class:`TextTokens` ``(ids (N, L), attention_mask (N, L), eot (N,))``.
* ``vlm.encode_text(texts or TextTokens, normalize=True)`` -> ``(N, D)``.
* ``vlm.token_embedding`` -> the frozen ``nn.Embedding`` (vocab x width); ``vlm.ctx_start`` = 1 is the
  first position after the start token, where CoOp's ``n_ctx`` context vectors go.
* ``vlm.encode_text_embeddings(embeddings, tokens)`` -> ``(N, D)``: the text tower from token embeddings
  ``(N, L, width)`` on (CoOp's Eq. 2 path); ``tokens`` supplies the attention mask / EOT positions.
* ``vlm.logit_scale`` -> scalar tensor (already exponentiated); ``vlm(images, text_features)`` -> logits.

Implementations (:func:`build_vlm`): open_clip CLIP (``clip_vit_b16`` / ``clip_vit_b32`` with ``openai``
weights, needs internet; ``test_clip`` is a tiny random open_clip model for tests) and ``offline``:
EfficientNet-Lite0 (ImageNet-1k) and all-MiniLM-L6-v2, both frozen, joined by small alignment layers
trained contrastively (LiT, Zhai et al. 2022) and loaded from a checksummed artifact in
``vpkit/artifacts/`` (see :mod:`vpkit.alignment` for how it is trained and regenerated). The zero-shot
protocol of notebook ``00_vlm`` is :mod:`vpkit.studies.vlm`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import assets
from .device import apply_attention, autocast, cache_frozen_bf16


@dataclass(frozen=True)
class Preprocess:
    """What images must look like before ``encode_image``: size and per-channel normalisation."""

    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class TextTokens:
    """Tokenised texts: ids and attention mask ``(N, L)`` and the index of the end token per text ``(N,)``."""

    ids: torch.Tensor
    attention_mask: torch.Tensor
    eot: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device) -> "TextTokens":
        return TextTokens(self.ids.to(device), self.attention_mask.to(device), self.eot.to(device))

    def __getitem__(self, idx) -> "TextTokens":
        return TextTokens(self.ids[idx], self.attention_mask[idx], self.eot[idx])

    def trimmed(self, length: int) -> "TextTokens":
        """The first ``length`` positions of every row (the end token stays where it is)."""
        return TextTokens(self.ids[:, :length], self.attention_mask[:, :length], self.eot)


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class VLM(nn.Module):
    """The interface both implementations provide (see the module docstring)."""

    name: str = ""
    embed_dim: int = 0  # D, the joint embedding size
    width: int = 0  # token embedding size
    context_length: int = 0
    ctx_start: int = 1  # first position after the start token (CLIP SOT / BERT [CLS])
    preprocess: Preprocess

    def train(self, mode: bool = True):  # both towers stay in eval mode whatever the caller does
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Where the towers live (tokens and images are moved here by :meth:`tokenize` / :func:`encode_images`)."""
        return next(self.parameters()).device

    @property
    def token_embedding(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        raise NotImplementedError

    def tokenize(self, texts: list[str] | str) -> TextTokens:
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: TextTokens | None = None, *,
                               attention_mask: torch.Tensor | None = None, eot: torch.Tensor | None = None,
                               normalize: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def encode_text(self, texts, normalize: bool = True) -> torch.Tensor:
        """Text features of strings or :class:`TextTokens` (token ids -> embeddings -> text tower)."""
        tokens = texts if isinstance(texts, TextTokens) else self.tokenize(texts)
        return self.encode_text_embeddings(self.token_embedding(tokens.ids), tokens, normalize=normalize)

    def forward(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """CLIP logits ``logit_scale * cos(image, text)``: (B, D) x (C, D) -> (B, C)."""
        img = self.encode_image(images, normalize=True)
        return self.logit_scale * img @ text_features.t()

    @torch.no_grad()
    def classifier_weights(self, classnames: list[str], templates=("a photo of a {}.",),
                           batch_size: int = 256) -> torch.Tensor:
        """Zero-shot classifier (CLIP Sec. 3.1.4): mean of normalised prompt features per class, renormalised."""
        rows = []
        for name in classnames:
            texts = [t.format(name) for t in templates]
            feats = torch.cat([self.encode_text(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)])
            rows.append(F.normalize(feats.mean(0), dim=-1))
        return torch.stack(rows)

    @staticmethod
    def _mask_eot(tokens, attention_mask, eot):
        if tokens is not None:
            attention_mask = tokens.attention_mask if attention_mask is None else attention_mask
            eot = tokens.eot if eot is None else eot
        return attention_mask, eot


# ----------------------------------------------------------------------------------------------------------
# open_clip CLIP (paper profile; tiny random config for tests)
# ----------------------------------------------------------------------------------------------------------

class OpenClipVLM(VLM):
    """An open_clip ``CLIP`` model, frozen; the text path mirrors ``CLIP.encode_text`` from embeddings on."""

    def __init__(self, model: nn.Module, tokenizer, *, name: str, img_size: int, mean, std):
        super().__init__()
        self.model = _freeze(model)
        self._tokenizer = tokenizer
        self.name = name
        self.preprocess = Preprocess(int(img_size), tuple(mean), tuple(std))
        self.width = model.token_embedding.weight.shape[1]
        self.context_length = int(model.context_length)
        proj = model.text_projection
        self.embed_dim = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.token_embedding

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().exp().clamp(max=100.0)

    def tokenize(self, texts) -> TextTokens:
        if isinstance(texts, str):
            texts = [texts]
        ids = self._tokenizer(list(texts), context_length=self.context_length)
        # CLIP's end-of-text token has the largest id in its vocabulary (open_clip pool_type 'argmax').
        return TextTokens(ids, (ids != 0).long(), ids.argmax(dim=-1)).to(self.device)

    def encode_image(self, images, normalize=True):
        return self.model.encode_image(images, normalize=normalize)

    def encode_text_embeddings(self, embeddings, tokens=None, *, attention_mask=None, eot=None, normalize=True):
        _, eot = self._mask_eot(tokens, attention_mask, eot)
        if eot is None:
            raise ValueError("encode_text_embeddings needs `tokens` or `eot` (end-of-text positions) for CLIP")
        m = self.model
        cast = m.transformer.get_cast_dtype()
        x = embeddings.to(cast) + m.positional_embedding.to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)]
        proj = m.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1) if normalize else x


OPENCLIP_ARCHS = {"clip_vit_b16": "ViT-B-16", "clip_vit_b32": "ViT-B-32"}


def create_openai_clip(arch: str, pretrained: str | None = "openai"):
    """open_clip's ``arch`` for OpenAI's CLIP weights, with **QuickGELU** (``force_quick_gelu=True``): those weights
    were trained with it, and open_clip builds ``ViT-B-16`` / ``ViT-B-32`` with ``nn.GELU`` unless told (it only
    warns), which shifts every CLIP number. ``pretrained=None`` builds the same architecture with random weights."""
    import open_clip

    return open_clip.create_model(arch, pretrained=pretrained, force_quick_gelu=True)


def _open_clip_paper(name: str) -> OpenClipVLM:
    import open_clip

    from .dryrun import active as dry_run

    arch = OPENCLIP_ARCHS[name]
    try:
        model = create_openai_clip(arch, pretrained=None if dry_run() else "openai")
    except Exception as e:  # no network / no cache: one actionable line
        raise assets.AssetError(
            f"cannot load open_clip '{arch}' pretrained='openai' weights ({type(e).__name__}); this needs "
            f"internet access (or a local HF/open_clip cache) - use build_vlm('offline') without network") from None
    return OpenClipVLM(model, open_clip.get_tokenizer(arch), name=name, img_size=model.visual.image_size[0],
                       mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)


def _open_clip_test(name: str = "test_clip") -> OpenClipVLM:
    """A tiny random open_clip CLIP (1 layer per tower, 32 px images) with the real CLIP tokenizer."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=32,
                 vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=24, vocab_size=49408, width=32, heads=2, layers=1))
    return OpenClipVLM(model, open_clip.get_tokenizer("ViT-B-32"), name=name, img_size=32,
                       mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)


# ----------------------------------------------------------------------------------------------------------
# The offline VLM: Lite0 + MiniLM + trained alignment
# ----------------------------------------------------------------------------------------------------------

def load_minilm():
    """(tokenizer, model) of all-MiniLM-L6-v2 from the offline package, frozen, eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = assets.minilm_path()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    # "eager" attention on the CPU (vpkit.device.fused_attention); frozen Linear weights cast to bf16 once
    return tok, _freeze(cache_frozen_bf16(apply_attention(model)))


class MiniLMText(nn.Module):
    """Frozen all-MiniLM-L6-v2 as sentence-transformers uses it: mean pooling over the mask, then L2 norm."""

    def __init__(self, tokenizer, model, context_length: int = 32):
        super().__init__()
        self.tokenizer, self.bert, self.context_length = tokenizer, _freeze(model), int(context_length)

    @property
    def width(self) -> int:
        return self.bert.config.hidden_size

    def tokenize(self, texts, context_length: int | None = None) -> TextTokens:
        if isinstance(texts, str):
            texts = [texts]
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=int(context_length or self.context_length), return_tensors="pt")
        mask = enc["attention_mask"].long()
        return TextTokens(enc["input_ids"], mask, mask.sum(1) - 1)  # eot = the [SEP] position

    def forward(self, embeddings, attention_mask):
        # Padding columns that no sequence of the batch uses are dropped first, as sentence-transformers pads each
        # batch only to its longest text: masked positions take no attention weight and no part in the mean, so the
        # features are the same (to float rounding, ~1e-7). What it speeds up is a batch tokenised to the full
        # context length (32) that uses ~10 tokens, as encode_text's class-name prompts (measured: 1000 such texts,
        # 10.9 s -> 3.8 s, 2 threads); CoOp / CoCoOp prompt batches were already cut to their used length by
        # vpkit.prompts.coop.trim_padding, so their training did not get faster.
        used = attention_mask.ne(0).any(0).nonzero()
        n = int(used.max()) + 1 if len(used) else 1
        if n < attention_mask.shape[1]:
            embeddings, attention_mask = embeddings[:, :n], attention_mask[:, :n]
        out = self.bert(inputs_embeds=embeddings, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.to(out.dtype).unsqueeze(-1)
        return F.normalize((out * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


@dataclass(frozen=True)
class AlignmentConfig:
    """Shape of the offline alignment layers (stored inside the artifact)."""

    embed_dim: int = 384  # D, joint space (= MiniLM width so the maps can start at identity)
    text_dim: int = 384
    feat_dim: int = 1280  # Lite0 pooled features
    use_features: bool = True  # a zero-initialised residual map from Lite0 features
    img_size: int = 224
    context_length: int = 32


class Alignment(nn.Module):
    """The trained part of the offline VLM.

    Image side (ConSE, Norouzi et al. 2014, made trainable): ImageNet-class probabilities of the frozen
    Lite0 classifier over the *kept* classes, ``p = softmax(logits_keep / T)``, mix the frozen MiniLM
    embeddings of those class names, ``s = p @ E``; then ``z_img = norm(A s + B f)`` with Lite0's pooled
    features ``f``. Text side: ``z_txt = norm(C t)`` of the MiniLM sentence embedding ``t``. ``A, C`` start
    at identity, ``B`` at zero; ``T``, ``A``, ``B``, ``C`` and the logit scale are trained (LiT Sec. 3).
    """

    def __init__(self, cfg: AlignmentConfig, keep: torch.Tensor, class_text: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("keep", keep.long().clone())
        self.register_buffer("class_text", class_text.float().clone())
        d, t = cfg.embed_dim, cfg.text_dim
        self.img_proj = nn.Linear(t, d)
        self.txt_proj = nn.Linear(t, d)
        self.feat_proj = nn.Linear(cfg.feat_dim, d, bias=False) if cfg.use_features else None
        self.log_temp = nn.Parameter(torch.zeros(()))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        with torch.no_grad():
            for lin in (self.img_proj, self.txt_proj):
                lin.weight.copy_(torch.eye(d, t))
                lin.bias.zero_()
            if self.feat_proj is not None:
                self.feat_proj.weight.zero_()

    def image(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        p = (logits[:, self.keep] / self.log_temp.exp()).softmax(-1)
        z = self.img_proj(p @ self.class_text)
        if self.feat_proj is not None:
            z = z + self.feat_proj(feats)
        return z

    def text(self, t: torch.Tensor) -> torch.Tensor:
        return self.txt_proj(t)


class OfflineVLM(VLM):
    """EfficientNet-Lite0 + all-MiniLM-L6-v2, frozen, joined by a trained :class:`Alignment`."""

    def __init__(self, image_backbone, text: MiniLMText, alignment: Alignment, *, name: str = "offline",
                 img_size: int | None = None):
        super().__init__()
        self.backbone = image_backbone
        self.image_tower = _freeze(image_backbone.model)
        self.text_tower = text
        self.alignment = _freeze(alignment)
        self.name = name
        size = int(img_size or alignment.cfg.img_size)
        self.preprocess = Preprocess(size, tuple(image_backbone.mean), tuple(image_backbone.std))
        self.embed_dim = alignment.cfg.embed_dim
        self.width = text.width
        self.context_length = text.context_length

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.text_tower.bert.embeddings.word_embeddings

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.alignment.log_scale.detach().exp().clamp(max=100.0)

    def tokenize(self, texts) -> TextTokens:
        return self.text_tower.tokenize(texts).to(self.device)

    def image_parts(self, images):
        """Lite0's pooled features and ImageNet logits (frozen towers, differentiable w.r.t. images)."""
        m = self.image_tower
        f = m.forward_head(m.forward_features(images), pre_logits=True)
        return f, m.classifier(f)

    def encode_image(self, images, normalize=True):
        f, logits = self.image_parts(images)
        z = self.alignment.image(f.float(), logits.float())
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text_embeddings(self, embeddings, tokens=None, *, attention_mask=None, eot=None, normalize=True):
        attention_mask, _ = self._mask_eot(tokens, attention_mask, eot)
        if attention_mask is None:
            raise ValueError("encode_text_embeddings needs `tokens` or `attention_mask` for the MiniLM text tower")
        z = self.alignment.text(self.text_tower(embeddings, attention_mask))
        return F.normalize(z, dim=-1) if normalize else z


ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
ALIGNMENT_FILE = "offline_vlm_alignment.pt"
# SHA-256 of the committed artifact; regenerate it (bit-identical) with `python -m vpkit.alignment --seed 0`.
ALIGNMENT_SHA256 = "0b30c7b9c57900473cec0fe60665eaffa9feec0b1ea88be43d502192d9d249cf"
# The class-disjoint concept alignment (issue 15; vpkit.alignment.train_concept_alignment): the same towers, trained on
# emoji concepts whose subcategories are disjoint from the held-out (judged) ones; regenerate it (bit-identical) with
# `python -m vpkit.alignment --concepts --seed 0`.
CONCEPT_ALIGNMENT_FILE = "concept_vlm_alignment.pt"
CONCEPT_ALIGNMENT_SHA256 = "c952db9c7fb2e943383802fde71ca1f6d944e2ed517513330fdc23ee5f4d1183"
CHECKSUMS = {ALIGNMENT_FILE: ALIGNMENT_SHA256, CONCEPT_ALIGNMENT_FILE: CONCEPT_ALIGNMENT_SHA256}


def save_alignment(alignment: Alignment, path: str | Path, meta: dict | None = None) -> str:
    """Write the alignment (fp16 tensors + config + metadata) atomically; returns its SHA-256."""
    import dataclasses
    import hashlib
    import io

    state = {k: (v.half() if v.is_floating_point() and k != "log_temp" and k != "log_scale" else v)
             for k, v in alignment.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"config": dataclasses.asdict(alignment.cfg), "state": state, "meta": meta or {}}, buf)
    data = buf.getvalue()
    assets.atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_alignment(path: str | Path | None = None, *, sha256: str | None = None) -> tuple[Alignment, dict]:
    """Load an alignment artifact, verifying its SHA-256 (default: the committed artifact and checksum)."""
    path = Path(path) if path is not None else ARTIFACT_DIR / ALIGNMENT_FILE
    expected = sha256 if sha256 is not None else (CHECKSUMS.get(path.name) if path.parent == ARTIFACT_DIR
                                                  else None)
    if not path.exists():
        raise assets.AssetError(f"alignment artifact {path} is missing; regenerate it: python -m vpkit.alignment")
    if expected is not None:
        got = assets.sha256_file(path)
        if got != expected:
            raise assets.AssetError(f"alignment artifact {path} has SHA-256 {got}, expected {expected}; "
                                    f"restore it from git or regenerate: python -m vpkit.alignment")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = AlignmentConfig(**blob["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state"].items()}
    al = Alignment(cfg, state["keep"], state["class_text"])
    al.load_state_dict(state, strict=True)
    return al, blob.get("meta", {})


def build_offline_vlm(alignment: Alignment | str | Path | None = None, *, img_size: int | None = None,
                      image_pretrained: bool = True) -> OfflineVLM:
    """The offline VLM with a given :class:`Alignment` (default: the committed, checksummed artifact)."""
    from .backbones import build_backbone

    if not isinstance(alignment, Alignment):
        alignment, _ = load_alignment(alignment)
    size = int(img_size or alignment.cfg.img_size)
    bb = build_backbone("efficientnet_lite0", pretrained=image_pretrained, img_size=size)
    tok, bert = load_minilm()
    return OfflineVLM(bb, MiniLMText(tok, bert, alignment.cfg.context_length), alignment, img_size=size)


def build_vlm(name: str, *, img_size: int | None = None) -> VLM:
    """A frozen VLM by name: ``offline`` (the stand-in judged on Fashion-MNIST and digits), ``offline_concepts`` (the
    same towers aligned class-disjointly on the emoji concepts), ``clip_vit_b16`` / ``clip_vit_b32`` (paper),
    ``test_clip`` (tests)."""
    if name == "offline":
        return build_offline_vlm(img_size=img_size)
    if name == "offline_concepts":
        vlm = build_offline_vlm(ARTIFACT_DIR / CONCEPT_ALIGNMENT_FILE, img_size=img_size)
        vlm.name = name
        return vlm
    if name in OPENCLIP_ARCHS:
        return _open_clip_paper(name)
    if name == "test_clip":
        return _open_clip_test()
    raise ValueError(f"unknown VLM name={name!r}; known: {VLMS}")


VLMS = ("offline", "offline_concepts", *OPENCLIP_ARCHS, "test_clip")


# ----------------------------------------------------------------------------------------------------------
# Image features and retrieval
# ----------------------------------------------------------------------------------------------------------


def dark_background(images: torch.Tensor) -> bool:
    """Label-free polarity rule: images whose mean intensity is below half are light-on-dark."""
    return bool(images.float().mean().item() / 255.0 < 0.5)


@torch.no_grad()
def encode_images(vlm: VLM, images: torch.Tensor, *, invert: bool = False, batch_size: int = 64,
                  amp: bool = True) -> torch.Tensor:
    """Normalised image features of uint8 images ``(N, C, H, W)`` (resized/normalised per ``vlm.preprocess``), on
    the VLM's device."""
    from .data import to_model_input

    pp = vlm.preprocess
    dev = vlm.device
    out = []
    for i in range(0, len(images), batch_size):  # resized on the model's device
        x = to_model_input(images[i:i + batch_size].to(dev), size=pp.img_size, mean=pp.mean, std=pp.std,
                           invert=invert)
        with autocast(dev, amp):
            out.append(vlm.encode_image(x).float())
    return F.normalize(torch.cat(out), dim=-1)


def zero_shot_predict(image_features: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    return (image_features @ class_weights.t()).argmax(-1)


DATASET_CLASSNAMES = {
    # prompt-friendly names (CLIP's practice, Radford et al. 2021 Sec. 3.1.4); same order as the labels
    "fashion_mnist": ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"],
    "mnist5k": ["the number 0", "the number 1", "the number 2", "the number 3", "the number 4", "the number 5",
                "the number 6", "the number 7", "the number 8", "the number 9"],
}
DATASET_CLASSNAMES["digits"] = DATASET_CLASSNAMES["mnist5k"]



def _embed(vlm: VLM, texts: list[str]):
    tok = vlm.tokenize(texts)
    return vlm.token_embedding(tok.ids), tok.attention_mask


@torch.no_grad()
def retrieve(vlm: VLM, images: torch.Tensor, texts: list[str], *, k: int = 3, invert: bool = False,
             template: str = "a photo of a {}.") -> list[list[tuple[str, float]]]:
    """Image -> text retrieval: the top-k of ``texts`` (each put in ``template``) per image, with softmax scores."""
    img = encode_images(vlm, images, invert=invert, amp=False)
    txt = torch.cat([vlm.encode_text([template.format(t) for t in texts[i:i + 256]])
                     for i in range(0, len(texts), 256)])
    p = (vlm.logit_scale * img @ txt.t()).softmax(-1)
    top = p.topk(k, dim=-1)
    return [[(texts[j], float(v)) for v, j in zip(vals.tolist(), idx.tolist())]
            for vals, idx in zip(top.values, top.indices)]

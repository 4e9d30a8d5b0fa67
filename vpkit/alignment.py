"""Train the offline VLM's alignment layers (LiT-style, both towers frozen) and write the artifact.

Regenerate the committed artifact (deterministic by seed, a few minutes on 2 CPU cores)::

    python -m vpkit.alignment --seed 0

Training pairs (all offline): emoji rendered from Debian ``fonts-noto-color-emoji`` (single-code-point
pictographs with their Unicode names, in colour and in greyscale), paired with template sentences of their
names. The image side is Lite0's ImageNet-class distribution mixed over MiniLM embeddings of timm's
ImageNet lemmas and definitions (the ConSE dictionary) plus Lite0's pooled features.

**Held-out concepts.** Zero-shot is judged on Fashion-MNIST (clothing, footwear, bags) and on digits. Every
ImageNet class in :data:`HELD_OUT_IMAGENET` (garments, footwear, bags, clocks and numeric displays) is
dropped from the dictionary *and* the training, and every emoji whose name matches
:data:`HELD_OUT_EMOJI_PATTERN` (garments, footwear, bags, digits, numbers, clock faces) is dropped from the
training pairs. The judging classes therefore never appear in anything the alignment was fitted to.
"""
from __future__ import annotations

import argparse
import math
import re
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import vlm as V

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_INSTALL = "apt-get install -y fonts-noto-color-emoji"

# ImageNet-1k indices held out because they overlap Fashion-MNIST's or the digit datasets' concepts.
HELD_OUT_IMAGENET = {
    # garments
    399: "abaya", 400: "academic gown", 411: "apron", 443: "bib", 445: "bikini", 451: "bolo tie", 457: "bow tie",
    459: "brassiere", 465: "bulletproof vest", 474: "cardigan", 501: "cloak", 529: "diaper", 552: "feather boa",
    568: "fur coat", 578: "gown", 601: "hoopskirt", 608: "jean", 610: "jersey, T-shirt", 614: "kimono",
    617: "lab coat", 638: "maillot", 639: "maillot, tank suit", 652: "military uniform", 655: "miniskirt",
    658: "mitten", 689: "overskirt", 697: "pajama", 735: "poncho", 775: "sarong", 824: "stole", 834: "suit",
    841: "sweatshirt", 842: "swimming trunks", 869: "trench coat", 887: "vestment", 906: "Windsor tie",
    # footwear
    496: "Christmas stocking", 502: "clog", 514: "cowboy boot", 630: "Loafer", 770: "running shoe",
    774: "sandal", 788: "shoe shop", 806: "sock",
    # bags
    414: "backpack", 636: "mailbag", 728: "plastic bag", 747: "punching bag", 748: "purse", 790: "shopping basket",
    797: "sleeping bag", 893: "wallet",
    # numerals, digits, numeric displays
    398: "abacus", 409: "analog clock", 507: "combination lock", 530: "digital clock", 531: "digital watch",
    685: "odometer", 704: "parking meter", 781: "scoreboard", 798: "slide rule", 826: "stopwatch",
    892: "wall clock",
}

HELD_OUT_EMOJI_PATTERN = re.compile(
    r"\b(SHIRT|T-SHIRT|JEANS|DRESS|COAT|JACKET|SANDAL|SHOE|SHOES|BOOT|BOOTS|SNEAKER|BAG|POUCH|PURSE|HANDBAG|"
    r"BACKPACK|LUGGAGE|SOCKS|GLOVES|SCARF|KIMONO|BIKINI|BRIEFS|SHORTS|SARI|CLOTHES|CLOTHING|NECKTIE|"
    r"SWIMSUIT|VEST|HIGH-HEELED|HEEL|THONG|BALLET|MILITARY|TROUSERS|PANTS|SKIRT|"
    r"DIGIT|KEYCAP|NUMBER|NUMBERS|NUMERAL|ZERO|ONE|TWO|THREE|FOUR|FIVE|SIX|SEVEN|EIGHT|NINE|TEN|ELEVEN|"
    r"TWELVE|HUNDRED|THIRTY|OCLOCK|CLOCK|WATCH|STOPWATCH|TIMER|ABACUS|INPUT)\b")

DICTIONARY_TEMPLATES = ("a photo of a {}.", "a {}.", "an icon of a {}.")
EMOJI_TEMPLATES = ("an emoji of a {}.", "a {}.", "an icon of a {}.", "a drawing of a {}.")


@dataclass(frozen=True)
class TrainConfig:
    """LiT-style alignment training (both towers frozen; features are computed once)."""

    seed: int = 0
    epochs: int = 60
    lr: float = 1e-4
    weight_decay: float = 0.05
    batch_size: int = 256
    val_fraction: float = 0.15
    emoji_size: int = 96  # rendered emoji, px (then resized to img_size for Lite0)
    img_size: int = 160
    use_features: bool = True
    max_emoji: int | None = None  # for smoke tests


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

def imagenet_dictionary_texts() -> list[list[str]]:
    """Per ImageNet class: template sentences of its first two lemmas plus '{lemma}: {definition}'."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    out = []
    for i in range(info.num_classes()):
        desc = info.index_to_description(i, detailed=True) if "detailed" in \
            info.index_to_description.__code__.co_varnames else info.index_to_description(i)
        names, _, definition = desc.partition(": ")
        lemmas = [n.strip() for n in names.split(",") if n.strip()][:2]
        texts = [t.format(l) for l in lemmas for t in DICTIONARY_TEMPLATES]
        if definition:
            texts.append(f"{lemmas[0]}: {definition.strip()}")
        out.append(texts)
    return out


def emoji_names(font_path: Path = EMOJI_FONT, *, held_out: bool = False) -> list[tuple[int, str]]:
    """(code point, Unicode name) of single-code-point pictographs in the emoji font, held-out ones removed
    (``held_out=True``: only the held-out ones, those :data:`HELD_OUT_EMOJI_PATTERN` matches, which neither the
    training nor the choice of its hyperparameters ever saw)."""
    from fontTools.ttLib import TTFont

    if not Path(font_path).exists():
        raise V.assets.AssetError(f"emoji font {font_path} not found; install it: {EMOJI_INSTALL}")
    cmap = TTFont(str(font_path)).getBestCmap()
    out = []
    for cp in sorted(cmap):
        pictographic = 0x2600 <= cp <= 0x27BF or 0x1F000 <= cp <= 0x1FAFF
        if not pictographic or 0x1F1E6 <= cp <= 0x1F1FF or 0x1F3FB <= cp <= 0x1F3FF:
            continue  # regional indicator letters and skin-tone modifiers are not objects
        try:
            name = unicodedata.name(chr(cp))
        except ValueError:
            continue
        if bool(HELD_OUT_EMOJI_PATTERN.search(name.replace("'", ""))) != held_out:
            continue
        out.append((cp, name))
    return out


def render_emoji(codepoints: list[int], *, size: int = 96, font_path: Path = EMOJI_FONT) -> torch.Tensor:
    """Render emoji on white, tightly cropped and padded to a square: uint8 ``(N, 3, size, size)``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), 109)  # the only size of Noto's bitmap strikes
    out = []
    for cp in codepoints:
        canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((10, 10), chr(cp), font=font, embedded_color=True)
        bbox = canvas.getbbox() or (0, 0, 160, 160)
        glyph = canvas.crop(bbox)
        side = int(max(glyph.size) * 1.15) + 2
        sq = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        sq.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
        img = sq.convert("RGB").resize((size, size), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(out)


def emoji_text(name: str) -> str:
    return name.lower()


def with_grey(imgs: torch.Tensor) -> torch.Tensor:
    """``imgs`` (N, 3, H, W) uint8 followed by their greyscale copies (ITU-R 601 luma, 3 channels): (2N, 3, H, W)."""
    grey = imgs.float().mul(torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    grey = grey.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return torch.cat([imgs, grey])


# ----------------------------------------------------------------------------------------------------------
# Features and training
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def text_features(text_tower: V.MiniLMText, texts: list[str], *, batch_size: int = 256,
                  context_length: int = 64) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings (L2-normalised, on the CPU); texts sorted by length, padded per batch and
    run on the text tower's device."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), text_tower.width)
    emb = text_tower.bert.embeddings.word_embeddings
    dev = emb.weight.device
    for i in range(0, len(texts), batch_size):
        idx = order[i:i + batch_size]
        enc = text_tower.tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                                   max_length=context_length, return_tensors="pt")
        out[idx] = text_tower(emb(enc["input_ids"].to(dev)), enc["attention_mask"].to(dev)).cpu()
    return out


def grouped_text_features(text_tower: V.MiniLMText, groups: list[list[str]]) -> torch.Tensor:
    """One embedding per group of texts: the renormalised mean of their embeddings (a prompt ensemble)."""
    flat = [t for g in groups for t in g]
    feats = text_features(text_tower, flat)
    out, i = [], 0
    for g in groups:
        out.append(F.normalize(feats[i:i + len(g)].mean(0), dim=-1))
        i += len(g)
    return torch.stack(out)


@torch.no_grad()
def image_parts(backbone, images: torch.Tensor, *, img_size: int, batch_size: int = 64):
    """Lite0 pooled features and ImageNet logits of uint8 images (fp32, frozen; run on the model's device, returned
    on the CPU)."""
    from .data import to_model_input

    feats, logits = [], []
    m = backbone.model
    dev = next(m.parameters()).device
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size].to(dev), size=img_size, mean=backbone.mean, std=backbone.std)
        f = m.forward_head(m.forward_features(x), pre_logits=True)
        feats.append(f.cpu())
        logits.append(m.classifier(f).cpu())
    return torch.cat(feats), torch.cat(logits)


def _clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP Fig. 3); ``targets[i]`` is the text row of image i (texts may be shared)."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    loss_i = F.cross_entropy(logits, targets)
    # text -> image: each text row against the images whose target it is (first one)
    first = torch.full((txt.shape[0],), -1, dtype=torch.long)
    for i, t in enumerate(targets.tolist()):
        if first[t] < 0:
            first[t] = i
    used = first >= 0
    loss_t = F.cross_entropy(logits.t()[used], first[used])
    return (loss_i + loss_t) / 2


def retrieval_accuracy(al: V.Alignment, feats, logits, text_emb, targets) -> float:
    """Image -> text top-1 among the given texts."""
    with torch.no_grad():
        z = F.normalize(al.image(feats, logits), dim=-1) @ F.normalize(al.text(text_emb), dim=-1).t()
    return float((z.argmax(-1) == targets).float().mean())


def frozen_towers(img_size: int):
    """The frozen parts every alignment is trained on: Lite0 at ``img_size``, the MiniLM text tower, the kept ImageNet
    classes (:data:`HELD_OUT_IMAGENET` dropped) and their ConSE dictionary embeddings -> (backbone, text, keep,
    class_text)."""
    from .backbones import build_backbone

    bb = build_backbone("efficientnet_lite0", img_size=img_size)
    tok, bert = V.load_minilm()
    text = V.MiniLMText(tok, bert, context_length=32)
    keep = torch.tensor([i for i in range(1000) if i not in HELD_OUT_IMAGENET])
    dict_texts = imagenet_dictionary_texts()
    return bb, text, keep, grouped_text_features(text, [dict_texts[i] for i in keep.tolist()])


def prepare_pairs(cfg: TrainConfig = TrainConfig(), *, progress: bool = True) -> dict:
    """Everything training needs, computed once with the frozen towers: the ConSE dictionary (MiniLM
    embeddings of the kept ImageNet classes), emoji images with Lite0 features/logits, and name embeddings."""
    t0 = time.time()
    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    bb, text, keep, class_text = frozen_towers(cfg.img_size)
    log(f"dictionary: {len(keep)} ImageNet classes kept ({len(HELD_OUT_IMAGENET)} held out), {time.time() - t0:.0f}s")

    emo = emoji_names()
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(emo), generator=g).tolist()
    if cfg.max_emoji:
        order = order[:cfg.max_emoji]
    emo = [emo[i] for i in order]
    imgs = render_emoji([cp for cp, _ in emo], size=cfg.emoji_size)
    feats, logits = image_parts(bb, with_grey(imgs), img_size=cfg.img_size)
    log(f"emoji: {len(emo)} rendered (colour + grey), Lite0 features {tuple(feats.shape)}, {time.time() - t0:.0f}s")
    names = [emoji_text(n) for _, n in emo]
    temb = grouped_text_features(text, [[t.format(n) for t in EMOJI_TEMPLATES] for n in names])
    log(f"emoji name embeddings done, {time.time() - t0:.0f}s")
    return {"keep": keep, "class_text": class_text, "emoji": emo, "images": imgs, "feats": feats,
            "logits": logits, "text": temb, "seconds": time.time() - t0}


def fit_alignment(pairs: dict, cfg: TrainConfig = TrainConfig(), *, progress: bool = True
                  ) -> tuple[V.Alignment, dict]:
    """Fit the alignment layers with symmetric InfoNCE on the emoji pairs (val: held-out emoji).

    Rows ``i`` (colour) and ``n + i`` (grey) of the image features both pair with name ``i``; the first
    ``val_fraction`` of the (seed-shuffled) emoji are validation only.
    """
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster and bit-reproducible
    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    feats, logits, temb, keep = pairs["feats"], pairs["logits"], pairs["text"], pairs["keep"]
    n = len(temb)
    n_val = max(1, int(round(cfg.val_fraction * n)))
    idx = torch.arange(n)
    tr_items, va_items = idx[n_val:], idx[:n_val]
    tr_rows = torch.cat([tr_items, tr_items + n])
    va_rows = torch.cat([va_items, va_items + n])
    va_targets = torch.cat([torch.arange(n_val), torch.arange(n_val)])

    acfg = V.AlignmentConfig(use_features=cfg.use_features, img_size=cfg.img_size, context_length=32)
    al = V.Alignment(acfg, keep, pairs["class_text"])

    def val_acc():
        return retrieval_accuracy(al, feats[va_rows], logits[va_rows], temb[va_items], va_targets)

    before = val_acc()
    g = torch.Generator().manual_seed(cfg.seed)
    params = [p for p in al.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(tr_rows) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    history = []
    for ep in range(cfg.epochs):
        perm = tr_rows[torch.randperm(len(tr_rows), generator=g)]
        for s in range(steps_per_epoch):
            rows = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            items = torch.unique(rows % n)
            remap = torch.full((n,), -1, dtype=torch.long)
            remap[items] = torch.arange(len(items))
            loss = _clip_loss(al.image(feats[rows], logits[rows]), al.text(temb[items]),
                              al.log_scale.exp().clamp(max=100.0), remap[rows % n])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if ep % max(1, cfg.epochs // 10) == 0 or ep == cfg.epochs - 1:
            history.append({"epoch": ep, "loss": float(loss.detach()), "val_retrieval": val_acc()})
            log(f"epoch {ep}: loss {float(loss.detach()):.3f} val image->text top-1 {history[-1]['val_retrieval']:.3f}")
    after = val_acc()
    meta = {
        "train_config": asdict(cfg),
        "regenerate": f"python -m vpkit.alignment --seed {cfg.seed}",
        "n_emoji_train": int(len(tr_items)), "n_emoji_val": int(len(va_items)),
        "val_emoji": [name for _, name in pairs["emoji"][:n_val]],
        "n_imagenet_kept": int(len(keep)), "held_out_imagenet": {str(k): v for k, v in HELD_OUT_IMAGENET.items()},
        "held_out_emoji_pattern": HELD_OUT_EMOJI_PATTERN.pattern,
        "val_emoji_retrieval_top1_untrained": before, "val_emoji_retrieval_top1_trained": after,
        "val_chance": 1.0 / len(va_items), "history": history,
        "emoji_font": str(EMOJI_FONT),
    }
    log(f"fitted in {time.time() - t0:.0f}s (features prepared in {pairs.get('seconds', 0.0):.0f}s)")
    for p in al.parameters():
        p.requires_grad_(False)
    torch.set_num_threads(threads)
    return al.eval(), meta


def train_alignment(cfg: TrainConfig = TrainConfig(), *, progress: bool = True) -> tuple[V.Alignment, dict]:
    """Prepare the frozen-tower features once and fit the alignment (deterministic by ``cfg.seed``)."""
    from .train import seed_everything

    seed_everything(cfg.seed)
    return fit_alignment(prepare_pairs(cfg, progress=progress), cfg, progress=progress)


# ----------------------------------------------------------------------------------------------------------
# The class-disjoint concept alignment (issue 15): trained on emoji concepts of the many-style corpus
# (vpkit.data.emoji) whose whole subcategories are disjoint from the judged (held-out) concepts
# ----------------------------------------------------------------------------------------------------------

# Words too generic to tie a font emoji to a held-out concept (an extra pair sharing any other word with a held-out
# concept name is dropped). Fixed before any fit.
GENERIC_WORDS = frozenset({"a", "an", "and", "the", "of", "with", "in", "on", "for", "to", "at", "face", "sign",
                           "symbol", "black", "white", "large", "small", "medium", "heavy", "light", "left",
                           "right", "up", "down", "upwards", "downwards", "pointing", "open", "closed", "mark",
                           "button", "squared", "circled", "old", "new", "red", "blue", "green", "yellow",
                           "orange", "purple", "brown"})


@dataclass(frozen=True)
class ConceptConfig:
    """The class-disjoint concept alignment: split, pairs and training (the spike's validation-chosen setup,
    ``scripts/spike_concept_vlm.md``: ConSE image side, frozen text side, 20 epochs at lr 3e-4)."""

    seed: int = 0
    split_seed: int = 0  # vpkit.data.emoji.class_disjoint_split: which subcategories are held out (judged)
    held_out_fraction: float = 0.3
    val_seed: int = 1  # validation: whole subcategories of the training concepts (choices are made there only)
    val_fraction: float = 0.25
    styles: tuple[str, ...] = ("google", "twitter")
    views: int = 4  # per concept and style: view 0 plain on white, the others augmented (render_views)
    img_size: int = 160
    epochs: int = 20
    lr: float = 3e-4
    weight_decay: float = 0.05
    batch_size: int = 256
    font_extras: bool | None = None  # + non-concept Noto emoji as extra pairs; None: chosen on validation
    max_concepts: int | None = None  # tests: about N concepts, evenly spaced through the corpus (every category)


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in GENERIC_WORDS}


def concept_view_seed(concept, style: str) -> int:
    """The seed of a concept's views in ``style``: stable across corpus versions (from its code points)."""
    import zlib

    return zlib.crc32(f"{concept.unified}/{style}".encode())


def concept_split(cfg: ConceptConfig = ConceptConfig()):
    """``(train, held_out, fit, val)`` concept lists. ``held_out``: whole subcategories (``split_seed``), the judged
    concepts; ``train``: the rest minus those :data:`HELD_OUT_EMOJI_PATTERN` matches (Fashion-MNIST's and the digit
    sets' concepts stay out too, so the same artifact can be judged there); ``fit``/``val``: ``train`` split again by
    whole subcategories (``val_seed``), where every choice is made."""
    from .data import emoji as E

    items = E.concepts(cfg.styles)
    if cfg.max_concepts:
        items = items[::max(1, len(items) // cfg.max_concepts)]
    train, held = E.class_disjoint_split(items, held_out_fraction=cfg.held_out_fraction, seed=cfg.split_seed)
    train = [c for c in train if not HELD_OUT_EMOJI_PATTERN.search(c.name.upper().replace("'", ""))]
    fit, val = E.class_disjoint_split(train, held_out_fraction=cfg.val_fraction, seed=cfg.val_seed)
    return train, held, fit, val


def artifact_concept_split():
    """``(config, held-out concepts, alignment, meta)`` of the committed concept alignment (``offline_concepts``): its
    split recomputed from the corpus and checked against the artifact's record (a changed corpus fails loudly)."""
    al, meta = V.load_alignment(V.ARTIFACT_DIR / V.CONCEPT_ALIGNMENT_FILE)
    ccfg = ConceptConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["concept_config"].items()})
    _, held, _, _ = concept_split(ccfg)
    if [c.name for c in held] != meta["held_out_names"]:
        raise RuntimeError("the emoji corpus' held-out concepts differ from the concept alignment's; regenerate it: "
                           f"{meta['regenerate']}")
    return ccfg, held, al, meta


def font_extras(held_out_names, concepts_all) -> list[tuple[int, str]]:
    """Non-concept emoji of the Noto font (smileys, people, hands, symbols: :func:`emoji_names`, which already drops
    :data:`HELD_OUT_EMOJI_PATTERN`) as extra training pairs: none that is a corpus concept, none that shares a
    non-generic word with a held-out concept name."""
    concept_cps = {c.unified.upper().replace("-FE0F", "") for c in concepts_all}
    held_words = set().union(*(_words(n) for n in held_out_names)) if held_out_names else set()
    return [(cp, n) for cp, n in emoji_names() if f"{cp:04X}" not in concept_cps and not (_words(n) & held_words)]


def render_font_rgba(codepoints: list[int], *, size: int = 64, font_path: Path = EMOJI_FONT) -> list[np.ndarray]:
    """Noto emoji as tightly cropped, square, transparent RGBA (``size`` px), the corpus' image format."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), 109)
    out = []
    for cp in codepoints:
        canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((10, 10), chr(cp), font=font, embedded_color=True)
        glyph = canvas.crop(canvas.getbbox() or (0, 0, 160, 160))
        side = max(glyph.size)
        sq = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        sq.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
        out.append(np.asarray(sq.resize((size, size), Image.BICUBIC)).copy())
    return out


def prepare_concept_pairs(cfg: ConceptConfig = ConceptConfig(), *, progress: bool = True) -> dict:
    """Frozen-tower features for the concept alignment, computed once: Lite0 parts of every concept's views in
    every style ``(C, S, V, ...)`` (train and held-out alike: the held-out ones are only ever evaluated), of the
    font extras' views, MiniLM embeddings of every name, the ConSE dictionary, the split and the image hashes."""
    from .data import emoji as E

    t0 = time.time()
    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    train, held, fit, val = concept_split(cfg)
    items = train + held
    bb, text, keep, class_text = frozen_towers(cfg.img_size)
    imgs, hashes = [], []
    for c in items:
        per_style, h = [], {}
        for s in cfg.styles:
            rgba = E.load_rgba(c, s)
            h[s] = E.image_hash(rgba)
            per_style.append(E.render_views(rgba, n=cfg.views, seed=concept_view_seed(c, s)))
        imgs.append(torch.stack(per_style))
        hashes.append(h)
    imgs = torch.stack(imgs)  # (C, S, V, 3, 64, 64)
    feats, logits = image_parts(bb, imgs.flatten(0, 2), img_size=cfg.img_size)
    shape = imgs.shape[:3]
    log(f"concepts: {len(items)} x {len(cfg.styles)} styles x {cfg.views} views, Lite0 {time.time() - t0:.0f}s")
    extras = font_extras([c.name for c in held], E.concepts(cfg.styles))
    if cfg.max_concepts:
        extras = extras[:cfg.max_concepts]
    ex_rgba = render_font_rgba([cp for cp, _ in extras]) if extras else []
    ex_imgs = (torch.stack([E.render_views(r, n=cfg.views, seed=cp) for r, (cp, _) in zip(ex_rgba, extras)])
               if extras else torch.zeros(0, cfg.views, 3, E.IMAGE_SIZE, E.IMAGE_SIZE, dtype=torch.uint8))
    ex_feats, ex_logits = (image_parts(bb, ex_imgs.flatten(0, 1), img_size=cfg.img_size) if extras
                           else (torch.zeros(0, feats.shape[1]), torch.zeros(0, logits.shape[1])))
    log(f"font extras: {len(extras)} x {cfg.views} views, {time.time() - t0:.0f}s")
    names = [c.name for c in items] + [emoji_text(n) for _, n in extras]
    temb = grouped_text_features(text, [[t.format(n) for t in EMOJI_TEMPLATES] for n in names])
    n_tr, n_c = len(train), len(items)
    pos = {c.name: i for i, c in enumerate(items)}
    return {"config": asdict(cfg), "concepts": items, "names": names, "n_concepts": n_c,
            "train": list(range(n_tr)), "held": list(range(n_tr, n_c)),
            "fit": [pos[c.name] for c in fit], "val": [pos[c.name] for c in val],
            "extras": list(range(n_c, len(names))), "extra_codepoints": [cp for cp, _ in extras],
            "hashes": hashes, "feats": feats.reshape(*shape, -1), "logits": logits.reshape(*shape, -1),
            "extra_feats": ex_feats.reshape(len(extras), cfg.views, -1),
            "extra_logits": ex_logits.reshape(len(extras), cfg.views, -1),
            "text": temb, "keep": keep, "class_text": class_text, "seconds": time.time() - t0}


def _concept_rows(pairs: dict, idx, *, styles=None, views=None):
    """Lite0 parts and name indices of the views of concepts ``idx`` (extras' rows when ``idx`` holds extras)."""
    n_c = pairs["n_concepts"]
    s_idx = list(range(pairs["feats"].shape[1])) if styles is None else list(styles)
    v_idx = list(range(pairs["feats"].shape[2])) if views is None else list(views)
    f, l, y = [], [], []
    for i in idx:
        if i < n_c:
            ff, ll = pairs["feats"][i][s_idx][:, v_idx].flatten(0, 1), pairs["logits"][i][s_idx][:, v_idx].flatten(0, 1)
        else:
            ff, ll = pairs["extra_feats"][i - n_c][v_idx], pairs["extra_logits"][i - n_c][v_idx]
        f.append(ff)
        l.append(ll)
        y.append(torch.full((len(ff),), i, dtype=torch.long))
    return torch.cat(f), torch.cat(l), torch.cat(y)


def fit_concept_alignment(pairs: dict, names_idx: list[int], cfg: ConceptConfig = ConceptConfig()) -> V.Alignment:
    """Train the image side of :class:`vpkit.vlm.Alignment` (ConSE, no Lite0 residual; the text projection stays at
    identity) with cross-entropy of every view against all the training names ``names_idx`` (AdamW, weight decay on
    the matrices only, cosine schedule); deterministic by ``cfg.seed`` on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fast and bit-reproducible
    try:
        torch.manual_seed(cfg.seed)
        feats, logits, y_names = _concept_rows(pairs, names_idx)
        classes = torch.tensor(sorted(names_idx))
        remap = torch.full((len(pairs["names"]),), -1, dtype=torch.long)
        remap[classes] = torch.arange(len(classes))
        y = remap[y_names]
        al = V.Alignment(V.AlignmentConfig(use_features=False, img_size=cfg.img_size, context_length=32),
                         pairs["keep"], pairs["class_text"])
        al.txt_proj.requires_grad_(False)
        params = [p for p in al.parameters() if p.requires_grad]
        opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() == 2], "weight_decay": cfg.weight_decay},
                                 {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=cfg.lr)
        steps = max(1, len(y) // cfg.batch_size)
        total = cfg.epochs * steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
        g = torch.Generator().manual_seed(cfg.seed)
        t = pairs["text"][classes]
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(y), generator=g)
            for k in range(steps):
                r = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
                zi = F.normalize(al.image(feats[r], logits[r]), dim=-1)
                zt = F.normalize(al.text(t), dim=-1)
                loss = F.cross_entropy(al.log_scale.exp().clamp(max=100.0) * zi @ zt.t(), y[r])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    for p in al.parameters():
        p.requires_grad_(False)
    return al.eval()


@torch.no_grad()
def concept_zero_shot(al: V.Alignment, pairs: dict, groups: list[list[int]], *, styles=None, views=None) -> dict:
    """Zero-shot top-1 of the views of each group's concepts among that group's names (mean over groups), with the
    mean chance ``1 / len(group)`` and the number of images."""
    accs, chance, n = [], [], 0
    zt_all = F.normalize(al.text(pairs["text"]), dim=-1)
    for grp in groups:
        gi = torch.tensor(grp)
        f, l, y = _concept_rows(pairs, grp, styles=styles, views=views)
        zi = F.normalize(al.image(f, l), dim=-1)
        pred = gi[(zi @ zt_all[gi].t()).argmax(-1)]
        accs.append(float((pred == y).float().mean()))
        chance.append(1.0 / len(grp))
        n += len(y)
    return {"top1": float(np.mean(accs)), "chance": float(np.mean(chance)), "n_images": n, "n_groups": len(groups)}


def category_groups(pairs: dict, idx: list[int]) -> list[list[int]]:
    """``idx`` grouped by emoji category (the benchmark's "datasets"), in category order."""
    cats = {}
    for i in idx:
        cats.setdefault(pairs["concepts"][i].category, []).append(i)
    return [cats[c] for c in sorted(cats)]


def train_concept_alignment(cfg: ConceptConfig = ConceptConfig(), *, pairs: dict | None = None,
                            progress: bool = True) -> tuple[V.Alignment, dict]:
    """Choose ``font_extras`` on validation (fit on ``fit`` concepts, top-1 over all ``val`` concepts' names) unless
    it is given, refit on every training concept and judge the held-out ones once. -> (alignment, meta): the meta
    holds the split (training and held-out names, subcategories, image hashes), the validation table and the
    held-out zero-shot per style, by category and over all held-out concepts."""
    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    pairs = pairs if pairs is not None else prepare_concept_pairs(cfg, progress=progress)
    t0 = time.time()
    val_rows = []
    choice = cfg.font_extras
    if choice is None:
        for extras in (False, True):
            al = fit_concept_alignment(pairs, pairs["fit"] + (pairs["extras"] if extras else []), cfg)
            r = concept_zero_shot(al, pairs, [pairs["val"]])
            val_rows.append({"font_extras": extras, "val_top1": r["top1"], "val_chance": r["chance"]})
            log(f"validation: font extras {extras}: top-1 {r['top1']:.3f} (chance {r['chance']:.4f})")
        choice = max(val_rows, key=lambda r: r["val_top1"])["font_extras"]
    names_idx = pairs["train"] + (pairs["extras"] if choice else [])
    al = fit_concept_alignment(pairs, names_idx, cfg)
    held = {}
    for si, s in enumerate(cfg.styles):
        for views, vname in ((None, "all views"), ([0], "plain")):
            for gname, groups in (("by category", category_groups(pairs, pairs["held"])), ("all", [pairs["held"]])):
                held[f"{s}|{gname}|{vname}"] = concept_zero_shot(al, pairs, groups, styles=[si], views=views)
    for k, v in held.items():
        log(f"held-out {k}: top-1 {v['top1']:.3f} (chance {v['chance']:.4f})")
    items = pairs["concepts"]
    meta = {
        "kind": "concept", "concept_config": {**asdict(cfg), "font_extras": choice},
        "regenerate": f"python -m vpkit.alignment --concepts --seed {cfg.seed}",
        "validation": val_rows, "font_extras_chosen": choice,
        "train_names": [items[i].name for i in pairs["train"]],
        "train_image_sha256": [pairs["hashes"][i] for i in pairs["train"]],
        "extra_names": [pairs["names"][i] for i in pairs["extras"]] if choice else [],
        "extra_codepoints": pairs["extra_codepoints"] if choice else [],
        "held_out_names": [items[i].name for i in pairs["held"]],
        "held_out_image_sha256": [pairs["hashes"][i] for i in pairs["held"]],
        "held_out_subcategories": sorted({f"{items[i].category}/{items[i].subcategory}" for i in pairs["held"]}),
        "n_imagenet_kept": int(len(pairs["keep"])),
        "held_out_imagenet": {str(k): v for k, v in HELD_OUT_IMAGENET.items()},
        "held_out_emoji_pattern": HELD_OUT_EMOJI_PATTERN.pattern,
        "held_out_zero_shot": held,  # no timings: the artifact must regenerate bit-identically
    }
    import json  # a JSON round trip: fresh objects, so the pickled meta's bytes do not depend on object identity

    meta = json.loads(json.dumps(meta))
    log(f"fitted in {time.time() - t0:.0f}s (features prepared in {pairs.get('seconds', 0.0):.0f}s)")
    return al, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpkit.alignment", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--no-features", action="store_true", help="no residual map from Lite0 pooled features")
    ap.add_argument("--out", default=str(V.ARTIFACT_DIR / V.ALIGNMENT_FILE))
    ap.add_argument("--pairs", default=None, help="reuse prepare_pairs() output saved with torch.save (optional)")
    ap.add_argument("--concepts", action="store_true",
                    help=f"the class-disjoint concept alignment (issue 15), written to {V.CONCEPT_ALIGNMENT_FILE}")
    args = ap.parse_args(argv)
    if args.concepts:
        ccfg = ConceptConfig(seed=args.seed)
        out = args.out if args.out != str(V.ARTIFACT_DIR / V.ALIGNMENT_FILE) else str(V.ARTIFACT_DIR / V.CONCEPT_ALIGNMENT_FILE)
        pairs = torch.load(args.pairs, weights_only=False) if args.pairs and Path(args.pairs).exists() else None
        if pairs is None:
            pairs = prepare_concept_pairs(ccfg)
            if args.pairs:
                torch.save(pairs, args.pairs)
        al, meta = train_concept_alignment(ccfg, pairs=pairs)
        sha = save_alignment_with_meta(al, out, meta)
        print(f"wrote {out} sha256 {sha}")
        return 0
    cfg = TrainConfig(seed=args.seed, epochs=args.epochs, use_features=not args.no_features)
    if args.pairs and Path(args.pairs).exists():
        al, meta = fit_alignment(torch.load(args.pairs, weights_only=False), cfg)
    else:
        pairs = prepare_pairs(cfg)
        if args.pairs:
            torch.save(pairs, args.pairs)
        al, meta = fit_alignment(pairs, cfg)
    sha = save_alignment_with_meta(al, args.out, meta)
    print(f"wrote {args.out} sha256 {sha}")
    return 0


def save_alignment_with_meta(al: V.Alignment, path, meta: dict) -> str:
    sha = V.save_alignment(al, path, meta)
    V.assets.write_json_atomic(Path(path).with_suffix(".json"), {"sha256": sha, **meta})
    return sha


if __name__ == "__main__":
    raise SystemExit(main())

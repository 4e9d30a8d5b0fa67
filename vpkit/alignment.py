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


def prepare_pairs(cfg: TrainConfig = TrainConfig(), *, progress: bool = True) -> dict:
    """Everything training needs, computed once with the frozen towers: the ConSE dictionary (MiniLM
    embeddings of the kept ImageNet classes), emoji images with Lite0 features/logits, and name embeddings."""
    from .backbones import build_backbone

    t0 = time.time()
    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    bb = build_backbone("efficientnet_lite0", img_size=cfg.img_size)
    tok, bert = V.load_minilm()
    text = V.MiniLMText(tok, bert, context_length=32)

    keep = torch.tensor([i for i in range(1000) if i not in HELD_OUT_IMAGENET])
    dict_texts = imagenet_dictionary_texts()
    class_text = grouped_text_features(text, [dict_texts[i] for i in keep.tolist()])
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpkit.alignment", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--no-features", action="store_true", help="no residual map from Lite0 pooled features")
    ap.add_argument("--out", default=str(V.ARTIFACT_DIR / V.ALIGNMENT_FILE))
    ap.add_argument("--pairs", default=None, help="reuse prepare_pairs() output saved with torch.save (optional)")
    args = ap.parse_args(argv)
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

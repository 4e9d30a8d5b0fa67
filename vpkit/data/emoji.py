"""A many-style concept corpus from emoji artwork on npm: the same object drawn by different artists (issue 15).

Each *concept* is an object-like emoji (animals, plants, food, places, vehicles, activities, objects - not
flags, symbols, people, smileys, skin-tone or gender variants, keycaps or letters) with its readable name,
category and subcategory (Unicode's emoji groups, from the package's ``emoji.json``), and one 64 px image per
*style* that draws it. The styles come from openly licensed packages (``STYLES``); ``NOT_USED`` says why the
others are not (yet) used.

* :func:`fetch` (run by ``scripts/install.sh``: ``python3 -m vpkit.data.emoji --fetch``) brings one style into the
  cache with ``npm pack NAME@VERSION``, checks the tarball's SHA-256, and keeps only ``emoji.json``, the licence
  and the concept images (no sheets, no flags); nothing of it is committed.
* :func:`concepts` lists the concepts; :func:`load` returns their RGBA images per style;
  :func:`render_views` composites them deterministically (scale, position, background colour, small rotation)
  into uint8 RGB views when a protocol needs several images per style.
* :func:`class_disjoint_split` holds out whole subcategories, so that held-out concepts share neither a name nor an
  image with the training ones (the split a zero-shot test needs).
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import assets


@dataclass(frozen=True)
class StyleSource:
    package: str
    version: str
    sha256: str  # of the npm tarball
    images: str  # folder of the 64 px PNGs inside the package
    flag: str  # emoji.json field that says the style draws an emoji
    licence: str


STYLES = {
    "google": StyleSource("emoji-datasource-google", "16.0.0",
                          "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438", "img/google/64",
                          "has_img_google", "Noto Emoji artwork (Google), Apache-2.0; package code MIT"),
    "twitter": StyleSource("emoji-datasource-twitter", "16.0.0",
                           "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", "img/twitter/64",
                           "has_img_twitter", "Twemoji artwork (Twitter, Inc. and contributors), CC-BY-4.0; "
                                              "package code MIT"),
}


@dataclass(frozen=True)
class SvgStyleSource:
    """A style that ships SVG artwork only, rasterised once at fetch time (``resvg-py``) into the same 64 px RGBA PNGs,
    named as the PNG styles name them (:attr:`Concept.image`)."""

    package: str
    version: str
    sha256: str  # of the npm tarball
    svgs: str  # folder of the SVGs inside the package, one per code point sequence (upper-case hex, no FE0F)
    licence_file: str
    licence: str


# Styles that no alignment, prompt or choice of this project is trained on: test sets of a style shift that the whole
# model never saw (issue 15: "styles can be held out too"). Its concepts are those of the PNG styles.
UNSEEN_STYLES = {
    "openmoji": SvgStyleSource("openmoji", "17.0.0", "55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68",
                               "color/svg", "LICENSE.txt",
                               "OpenMoji artwork (HfG Schwaebisch Gmuend and contributors), CC BY-SA 4.0"),
}
RASTERISER = "resvg-py"  # PyPI: SVG -> PNG, a Rust wheel without system libraries
NOT_USED = {
    "apple": "emoji-datasource-apple: Apple's artwork has no open licence",
    "facebook": "emoji-datasource-facebook: Meta's artwork has no open licence",
    "fluentui": "fluentui-emoji 1.3.0 (MIT) ships SVG only and is not wired yet (openmoji is the unseen style)",
}
CONCEPT_CATEGORIES = ("Animals & Nature", "Food & Drink", "Travel & Places", "Activities", "Objects")
IMAGE_SIZE = 64


@dataclass(frozen=True)
class Concept:
    name: str  # readable, lower case: "dog face"
    unified: str  # code points, e.g. "1F436"
    image: str  # file name in every style folder
    category: str
    subcategory: str
    styles: tuple[str, ...]  # the styles (of STYLES) that draw it


def emoji_dir() -> Path:
    return assets.cache_dir() / "emoji"


def _source(style: str):
    src = STYLES.get(style) or UNSEEN_STYLES.get(style)
    if src is None:
        raise ValueError(f"unknown emoji style={style!r}; known: {sorted(STYLES)}, unseen: {sorted(UNSEEN_STYLES)} "
                         f"(not used: {NOT_USED})")
    return src


def style_dir(style: str) -> Path:
    return emoji_dir() / f"{style}-{_source(style).version}"


def is_concept(e: dict) -> bool:
    """Object-like emoji only: the concept categories, one code point sequence without skin tone / gender / ZWJ."""
    name = (e.get("name") or "").lower()
    return (e.get("category") in CONCEPT_CATEGORIES and "200d" not in e["unified"].lower()
            and not any(w in name.split() for w in ("man", "woman", "person", "men", "women", "people"))
            and "keycap" not in name)


def fetch(style: str, *, npm: str = "npm") -> Path:
    """Bring ``style`` into the cache (once): ``npm pack``, SHA-256 check, keep ``emoji.json``, the licence and the
    concept images. Returns the style folder."""
    out = style_dir(style)
    if (out / "emoji.json").exists():
        return out
    src = _source(style)
    spec = f"{src.package}@{src.version}"
    if isinstance(src, SvgStyleSource):
        try:
            import resvg_py  # noqa: F401
        except ImportError:
            raise assets.AssetError(f"emoji style {style!r} is SVG artwork: install the rasteriser ('pip install "
                                    f"{RASTERISER}', done by scripts/install.sh), then run "
                                    f"'python3 -m vpkit.data.emoji --fetch {style}'") from None
    if shutil.which(npm) is None:
        raise assets.AssetError(f"npm not found: install it (Debian: apt-get install npm), then run "
                                f"'python3 -m vpkit.data.emoji --fetch {style}' (fetches {spec})")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", spec, "--pack-destination", tmp, "--silent"], check=True,
                           capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise assets.AssetError(f"'npm pack {spec}' failed ({type(e).__name__}); the npm registry must be "
                                    f"reachable - then run 'python3 -m vpkit.data.emoji --fetch {style}'") from None
        tgz = next(Path(tmp).glob("*.tgz"))
        digest = assets.sha256_file(tgz)
        if digest != src.sha256:
            raise assets.AssetError(f"{tgz.name}: sha256 {digest} != expected {src.sha256}")
        emoji_dir().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=emoji_dir(), prefix=".staging-"))
        try:
            if isinstance(src, SvgStyleSource):
                _unpack_svg_style(tgz, src, staging, f"{spec} sha256 {digest}")
                staging.rename(out)
                return out
            with tarfile.open(tgz) as tar:
                meta = json.load(tar.extractfile("package/emoji.json"))
                keep = {e["image"] for e in meta if is_concept(e) and e.get(src.flag)}
                (staging / "emoji.json").write_text(json.dumps(meta))
                lic = tar.extractfile("package/LICENSE")
                (staging / "LICENSE").write_bytes(lic.read() if lic else b"")
                (staging / "SOURCE").write_text(f"{spec} sha256 {digest}\nartwork licence: {src.licence}\n")
                (staging / "img").mkdir()
                prefix = f"package/{src.images}/"
                for m in tar.getmembers():
                    if m.isfile() and m.name.startswith(prefix) and m.name[len(prefix):] in keep:
                        (staging / "img" / m.name[len(prefix):]).write_bytes(tar.extractfile(m).read())
            staging.rename(out)  # atomic: a half-fetched style is never seen
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def svg_to_rgba(svg: bytes, *, size: int = IMAGE_SIZE, render: int = 256) -> np.ndarray:
    """An SVG drawing as ``size`` px RGBA (uint8): rasterised at ``render`` px, cropped to its opaque part, centred on
    a transparent square and resized (bicubic), so it fills the frame as the PNG styles' artwork does."""
    import io

    import resvg_py
    from PIL import Image

    png = resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=render, height=render)
    with Image.open(io.BytesIO(bytes(png))) as im:
        im = im.convert("RGBA")
        box = im.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox() or (0, 0, render, render)
        glyph = im.crop(box)
    side = max(glyph.size)
    sq = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    sq.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    return np.asarray(sq.resize((size, size), Image.BICUBIC)).copy()


def _unpack_svg_style(tgz: Path, src: SvgStyleSource, staging: Path, source_line: str) -> None:
    """Rasterise the SVG of every concept of the PNG styles (:func:`concepts` of the fetched ones) into ``staging/img``
    (same file names), with an ``emoji.json`` listing them, the licence and the source line."""
    from PIL import Image

    fetched = tuple(s for s in STYLES if (style_dir(s) / "emoji.json").exists())
    if not fetched:
        raise assets.AssetError(f"the SVG styles take their concepts from the PNG styles: fetch those first "
                                f"('python3 -m vpkit.data.emoji --fetch {' '.join(STYLES)}')")
    items = concepts(fetched)
    (staging / "img").mkdir()
    rendered = []
    with tarfile.open(tgz) as tar:
        names = set(tar.getnames())
        for c in items:
            member = f"package/{src.svgs}/{c.unified.upper().replace('-FE0F', '')}.svg"
            if member not in names:
                continue
            Image.fromarray(svg_to_rgba(tar.extractfile(member).read()), "RGBA").save(staging / "img" / c.image)
            rendered.append({"unified": c.unified, "image": c.image, "name": c.name})
        lic = tar.extractfile(f"package/{src.licence_file}")
        (staging / "LICENSE").write_bytes(lic.read() if lic else b"")
    (staging / "emoji.json").write_text(json.dumps(rendered))
    (staging / "SOURCE").write_text(f"{source_line}\nartwork licence: {src.licence}\nrasterised with {RASTERISER} "
                                    f"(svg_to_rgba: cropped to the drawing, {IMAGE_SIZE} px)\n")


def _require(style: str) -> Path:
    d = style_dir(style)
    if not (d / "emoji.json").exists():
        raise assets.AssetError(f"emoji style {style!r} is not in the cache ({d}); run 'bash scripts/install.sh' or "
                                f"'python3 -m vpkit.data.emoji --fetch {style}'")
    return d


def not_fetched() -> str | None:
    """Why the corpus cannot be used here (a style is not in the cache: one line naming the command), or None."""
    missing = [s for s in STYLES if not (style_dir(s) / "emoji.json").exists()]
    return (f"the emoji corpus is not fetched ({', '.join(missing)}): run 'bash scripts/install.sh' or "
            f"'python3 -m vpkit.data.emoji --fetch'") if missing else None


def unseen_missing(style: str = "openmoji") -> str | None:
    """Why the unseen style ``style`` cannot be used here (not fetched: one line naming the command), or None."""
    if style not in UNSEEN_STYLES:
        raise ValueError(f"unknown unseen emoji style={style!r}; known: {sorted(UNSEEN_STYLES)}")
    if (style_dir(style) / "emoji.json").exists():
        return None
    return (f"the unseen emoji style {style!r} is not fetched: run 'bash scripts/install.sh' or 'pip install "
            f"{RASTERISER} && python3 -m vpkit.data.emoji --fetch {style}'")


def concepts(styles: tuple[str, ...] = tuple(STYLES)) -> list[Concept]:
    """Every concept drawn by at least one of ``styles`` (which must be fetched), in the package's sort order."""
    for s in styles:
        _require(s)
    base = next((s for s in styles if s in STYLES), next(iter(STYLES)))  # SVG styles list no categories
    first = json.loads((_require(base) / "emoji.json").read_text())
    out = []
    for e in sorted(first, key=lambda e: e.get("sort_order", 0)):
        if not is_concept(e):
            continue
        have = tuple(s for s in styles if (s not in STYLES or e.get(STYLES[s].flag))
                     and (style_dir(s) / "img" / e["image"]).exists())
        if have:
            out.append(Concept(" ".join(e["name"].lower().replace("_", " ").split()), e["unified"], e["image"],
                               e["category"], e["subcategory"], have))
    return out


def load_rgba(concept: Concept, style: str) -> np.ndarray:
    """The 64 px RGBA image (uint8, H x W x 4) of ``concept`` in ``style``."""
    from PIL import Image

    with Image.open(_require(style) / "img" / concept.image) as im:
        return np.asarray(im.convert("RGBA").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)).copy()


def image_hash(rgba: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgba).tobytes()).hexdigest()


def render_views(rgba: np.ndarray, *, n: int, seed: int, size: int = IMAGE_SIZE,
                 scale: tuple[float, float] = (0.6, 1.0), max_rotation: float = 15.0, plain_first: bool = True):
    """``n`` uint8 RGB views ``(n, 3, size, size)`` of one RGBA image: random scale, position, background colour and
    rotation (within ``max_rotation`` degrees) from ``seed``; with ``plain_first`` view 0 is the image itself on
    white. Deterministic: the same (image, seed) gives the same views."""
    from PIL import Image

    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    g = np.random.default_rng(seed)
    src = Image.fromarray(rgba, "RGBA")
    views = []
    for i in range(n):
        if i == 0 and plain_first:
            s, angle, bg, dx, dy = 1.0, 0.0, (255, 255, 255), 0.0, 0.0
        else:
            s = g.uniform(*scale)
            angle = g.uniform(-max_rotation, max_rotation)
            bg = tuple(int(v) for v in g.integers(0, 256, 3))
            dx, dy = g.uniform(-1, 1, 2)
        side = max(1, int(round(size * s)))
        im = src.resize((side, side), Image.BICUBIC).rotate(angle, resample=Image.BICUBIC, expand=False)
        canvas = Image.new("RGBA", (size, size), bg + (255,))
        room = size - side
        x, y = int(round(room / 2 * (1 + dx))), int(round(room / 2 * (1 + dy)))
        canvas.alpha_composite(im, (x, y))
        views.append(np.asarray(canvas.convert("RGB")).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(views).copy())


def class_disjoint_split(items: list[Concept], *, held_out_fraction: float = 0.3, seed: int = 0):
    """``(train, held_out)`` concept lists holding out whole subcategories (drawn by ``seed`` within each category,
    about ``held_out_fraction`` of each category's subcategories, at least one where a category has two or more),
    so no held-out concept shares a subcategory, a name or an image with a training one."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction={held_out_fraction} must be in (0, 1)")
    g = np.random.default_rng(seed)
    held = set()
    for cat in sorted({c.category for c in items}):
        subs = sorted({c.subcategory for c in items if c.category == cat})
        if len(subs) < 2:
            continue
        k = max(1, int(math.floor(held_out_fraction * len(subs) + 0.5)))
        held.update((cat, s) for s in g.choice(subs, size=min(k, len(subs) - 1), replace=False))
    train = [c for c in items if (c.category, c.subcategory) not in held]
    test = [c for c in items if (c.category, c.subcategory) in held]
    return train, test


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m vpkit.data.emoji", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetch", nargs="*", metavar="STYLE",
                    help=f"styles to fetch (default: all of {list(STYLES) + list(UNSEEN_STYLES)})")
    args = ap.parse_args(argv)
    for s in (args.fetch or list(STYLES) + list(UNSEEN_STYLES)) if args.fetch is not None else []:
        try:
            d = fetch(s)
        except (assets.AssetError, ValueError) as e:
            print(f"emoji {s}: {e}")
            return 1
        print(f"emoji {s}: {len(list((d / 'img').glob('*.png')))} concept images in {d}")
    if args.fetch is None:
        for s in (*STYLES, *UNSEEN_STYLES):
            d = style_dir(s)
            print(f"{s:10s} {'fetched' if (d / 'emoji.json').exists() else 'missing'}  {_source(s).licence}"
                  + ("  (unseen: no training uses it)" if s in UNSEEN_STYLES else ""))
        for s, why in NOT_USED.items():
            print(f"{s:10s} not used: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

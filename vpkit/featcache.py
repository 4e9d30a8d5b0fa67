"""An on-disk cache of frozen features: computed once per machine, reused by every later run that asks for the same.

A frozen backbone's features of a fixed image set depend only on what went into them, so a second run of a
notebook (or a fresh clone on the same machine) need not recompute them. :func:`cached` keys an entry by a digest of
*everything* that decides the numbers - the model's parameters and buffers, the images and labels, the image size,
the attention kernel, the memory format of the convolution weights, the precision and device the features are
computed in, the batch size, the CPU capability and thread count (bf16 kernels differ between CPUs), the versions
of torch and timm, and the source of the code that computes them - so an entry can only be reused where
recomputing would give the same tensors. Anything else changed means a new entry.

Entries live in ``$VPKIT_CACHE/features/<digest>.pt`` (the cache directory of :func:`vpkit.assets.cache_dir`,
never in git), written atomically; an unreadable entry is recomputed. Each entry keeps the seconds its computation
took, so tables of extraction speed report the measured computation, not the load. ``VPKIT_FEATURE_CACHE=0`` turns
the cache off for a process; profiles turn it on or off with ``feature_cache`` (``smoke`` and the tests: off). The
cache keeps at most ``$VPKIT_FEATURE_CACHE_MAX_MB`` MiB (default 2048): after each write the least recently used
entries are deleted (:func:`prune`); deleting the folder empties it.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ENV = "VPKIT_FEATURE_CACHE"
MAX_MB_ENV = "VPKIT_FEATURE_CACHE_MAX_MB"  # the cache's size cap in MiB (default DEFAULT_MAX_MB)
DEFAULT_MAX_MB = 2048  # ~60 full offline backbones runs' worth (each adds ~35 MB when its inputs changed)


def enabled(setting: bool = True) -> bool:
    """Whether to use the cache: the profile's ``setting``, unless ``$VPKIT_FEATURE_CACHE`` is ``0``/``false``."""
    return bool(setting) and os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def max_bytes() -> int:
    """The size cap of the cache: ``$VPKIT_FEATURE_CACHE_MAX_MB`` MiB (a number >= 0), else :data:`DEFAULT_MAX_MB`."""
    raw = os.environ.get(MAX_MB_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if mb < 0:
        raise ValueError(f"{MAX_MB_ENV}={raw!r}; allowed: a number of MiB >= 0 (or unset: {DEFAULT_MAX_MB})")
    return int(mb * (1 << 20))


def prune(keep: Path | None = None, *, limit: int | None = None) -> list[Path]:
    """Delete the least recently used entries (by modification time: a hit touches its entry) until the cache is
    at most ``limit`` bytes (:func:`max_bytes`); ``keep`` (the entry just written) is never deleted. Returns what
    was deleted. Stale temporary files of killed writers older than an hour go too."""
    root = cache_root()
    if not root.exists():
        return []
    limit = max_bytes() if limit is None else int(limit)
    now, gone = time.time(), []
    for tmp in root.glob("*.tmp"):
        try:
            if now - tmp.stat().st_mtime > 3600:
                tmp.unlink()
                gone.append(tmp)
        except OSError:
            pass
    entries = []
    for f in root.glob("*.pt"):
        try:
            st = f.stat()
            entries.append((st.st_mtime, st.st_size, f))
        except OSError:  # deleted by a concurrent prune
            pass
    total = sum(size for _, size, _ in entries)
    for _, size, f in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if keep is not None and f == keep:
            continue
        try:
            f.unlink()
            gone.append(f)
            total -= size
        except OSError:
            pass
    return gone


def cache_root() -> Path:
    from .assets import cache_dir

    return cache_dir() / "features"


def _update(h, part) -> None:
    """Feed one key part into the hash: tensors by dtype, shape and bytes; modules by every parameter and buffer
    (names included); callables / classes by their source; anything else by its JSON (sorted keys)."""
    if isinstance(part, torch.Tensor):
        t = part.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor:{part.dtype}:{tuple(part.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(part, torch.nn.Module):
        h.update(f"module:{type(part).__module__}.{type(part).__qualname__}:".encode())
        for name, t in list(part.state_dict(keep_vars=False).items()):
            h.update(name.encode())
            _update(h, t)
        from .device import attention_setting  # the attention kernel changes bf16 features' bits, not the weights

        h.update(json.dumps(attention_setting(part), sort_keys=True).encode())
        # channels_last vs contiguous convolutions: other kernels, other bits; the bytes above cannot tell them apart
        h.update(json.dumps([list(p.stride()) for p in part.parameters() if p.dim() == 4]).encode())
    elif callable(part) or inspect.isclass(part):
        h.update(f"code:{getattr(part, '__qualname__', repr(part))}:".encode())
        h.update(inspect.getsource(part).encode())
    else:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    h.update(b"|")


def digest(*parts) -> str:
    """SHA-256 (hex) of the key parts, as :func:`_update` reads them."""
    h = hashlib.sha256()
    for p in parts:
        _update(h, p)
    return h.hexdigest()


def environment() -> dict:
    """What besides the inputs decides a feature's bits on this machine."""
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def cached(parts: tuple, compute: Callable[[], dict], *, use: bool = True) -> tuple[dict, dict]:
    """``compute()`` (a dict of tensors) once per key; later calls with the same key load it from disk.

    ``parts``: everything that decides the result (tensors, modules, code, JSON-able settings); the
    :func:`environment` is added. Returns ``(value, info)``, ``info = {"hit": bool, "seconds": the computation's
    own seconds (measured now, or stored when it was computed), "key": digest}``. ``use=False`` (or
    ``$VPKIT_FEATURE_CACHE=0``, :func:`enabled`): always computes, never reads or writes (smoke runs, tests)."""
    if not enabled(use):
        t0 = time.perf_counter()
        value = compute()
        return value, {"hit": False, "seconds": time.perf_counter() - t0, "key": None}
    key = digest(*parts, environment())
    path = cache_root() / f"{key}.pt"
    if path.exists():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("key") == key:
                try:
                    os.utime(path)  # most recently used: the last to be pruned
                except OSError:
                    pass
                return entry["value"], {"hit": True, "seconds": float(entry["seconds"]), "key": key}
        except Exception:  # an unreadable entry (a run killed mid-write by an older version, a full disk): recompute
            pass
    t0 = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"key": key, "value": value, "seconds": seconds}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    prune(keep=path)
    return value, {"hit": False, "seconds": seconds, "key": key}

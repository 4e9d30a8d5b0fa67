"""Where tensors run, in which precision and on how many threads: chosen here, by measurement, and nowhere else.

* **Device.** ``device="auto"`` means CUDA when present (or the virtual CUDA of a dry run, :mod:`vpkit.dryrun`),
  else the CPU (:func:`resolve_device`). This is the only place a device is chosen.
* **Precision.** ``precision="auto"`` (every profile's default) times a 512x512 matmul and one ViT-S-block-shaped
  MLP forward (272 tokens x 384 -> 1536 -> 384) in fp32 and under bf16 autocast, once per process (a few
  milliseconds each, best of 3), and uses bf16 only where it is clearly faster (both at least
  :data:`BF16_MIN_SPEEDUP` x): on CPUs with native bf16 (AVX512-BF16 / AMX) it is about 2x faster; on AVX2-only
  CPUs bf16 is emulated and 7-50x *slower*, so ``auto`` picks fp32 there. ``"fp32"`` / ``"bf16"`` force one.
  On CUDA, ``auto`` keeps fp16 autocast. A loop asks for mixed precision with ``amp=True``;
  :func:`autocast` turns that into bf16/fp16 autocast only when the chosen precision is not fp32.
* **Attention kernel.** :func:`apply_attention` (called where backbones and MiniLM are built) picks the kernel by
  measurement (``benchmarks/attention.py``, report in ``results/benchmarks/attention.md``): on the 2-core
  AMD EPYC, torch 2.14, the fused ``scaled_dot_product_attention`` CPU kernel's *backward* under bf16 autocast takes
  ~7x its forward, so a ViT-S/14 prompt-tuning step (gradients through the frozen blocks to the prompts) ran 1.5x
  faster with plain matmuls + softmax at 42 tokens and 1.2x at 197, and a CoOp / CoCoOp step through MiniLM
  1.6-2.0x; in fp32 the fused kernel was the faster for the ViT step (1.25x), while for MiniLM it ran at only
  0.78-0.93 of the plain-matmul speed.
  So on the CPU timm ViTs use plain matmuls exactly while CPU bf16 autocast is on (:class:`CpuBf16Unfused`, decided
  per call) and MiniLM always (transformers' ``"eager"``); on CUDA (the ``paper`` profile) the fused kernels stay.
  Both compute the same function (fp32 outputs agree to ~1e-6); under bf16 the plain path rounds the attention
  scores to bf16 before the softmax, as any autocast model without a fused kernel does.
* **Threads.** ``threads="auto"`` times the same MLP forward with 1 thread and with every core this process may
  use, and keeps the faster (more threads unless one thread is clearly faster). Measured on the 2-core
  project machine (AMD EPYC with AVX512-BF16, idle): two threads gave 1.7-2.0x the throughput of one for
  matmuls and ViT-S/14 forwards, 1.5x for a batched CoCoOp step and the same for a per-image loop; the old
  profiles' ``num_threads=1`` ("one thread ~10x faster") was measured on a heavily loaded machine, where
  oversubscribed threads spin - the measurement sees that case too and then picks one thread.

* **Frozen weights in bf16.** Under CPU autocast every ``nn.Linear`` call casts its fp32 weight to bf16 again
  (autocast caches casts only of leaf tensors that require grad), which at the offline shapes costs as much as a
  good part of the matmul. :func:`cache_frozen_bf16` (called where backbones and MiniLM are built) makes frozen
  ``nn.Linear`` layers keep that bf16 copy (:class:`FrozenBf16Linear`): the same rounding, so outputs are
  bit-identical; the copy is remade when the weight changes in place and is never used for a weight that trains
  or outside CPU bf16 autocast. Measured on the 2-core AMD EPYC (AVX512-BF16), ViT-S/14 at 56 px: a prompt step
  (batch 8, forward + backward) 1.08x, a forward at batch 16 1.08x; at 112 px batch 32 1.01x
  (``results/benchmarks/memory_format.md``).
* **Memory format.** CNN backbones are kept in ``channels_last`` (:func:`vpkit.backbones.build_backbone`), where
  oneDNN's convolutions are faster: EfficientNet-Lite0 on the same machine, fp32 training at 64 px batch 8
  1.43x (full fine-tuning) and 1.25x (gradients to the input only), bf16 inference 1.29x at 64 px and 1.50x at
  224 px (``benchmarks/memory_format.py``, report ``results/benchmarks/memory_format.md``).

:func:`configure` applies both once per notebook (the settings cell calls it) and :func:`describe` is what every
``run.json`` records: the precision and threads used, the CPU's capability and model, and the measured ratios.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import torch

PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_SPEEDUP = 1.2  # bf16 must be at least this much faster than fp32 on both probes to be chosen
THREADS_MIN_SPEEDUP = 1.2  # one thread must be this much faster than all of them to be chosen
# an int here replaces threads="auto" (tests: one thread count for every run; `replicate --jobs N`: each kernel's
# share of the cores)
THREADS_ENV = "VPKIT_THREADS"

_STATE: dict = {"precision": "auto", "measured": {}}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        from .dryrun import virtual_cuda_active

        return torch.device("cuda" if torch.cuda.is_available() or virtual_cuda_active() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------------

def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` after one warm-up call (seconds)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _probes(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
    mlp = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
    x = torch.randn(16 * 17, 384, generator=g)  # ViT-S/14 at 56 px: batch 16 x (16 patches + CLS)
    return {"matmul": (lambda: a @ b, 2 * 512 ** 3), "forward": (lambda: mlp(x), 2 * 2 * 272 * 384 * 1536)}


def measure_precision(*, timer: Callable[[Callable], float] = best_time) -> dict:
    """Seconds of each probe in fp32 and under CPU bf16 autocast, GFLOP/s, and the fp32/bf16 time ratios.

    ``timer(fn) -> seconds`` is injectable (tests pass a fake one that reads the autocast state)."""
    out = {}
    with torch.no_grad():
        for name, (fn, flops) in _probes().items():
            for prec in ("fp32", "bf16"):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    s = timer(fn)
                out[f"{name}_{prec}_s"] = s
                out[f"{name}_{prec}_gflops"] = flops / s / 1e9 if s > 0 else float("inf")
            out[f"{name}_bf16_speedup"] = out[f"{name}_fp32_s"] / out[f"{name}_bf16_s"]
    return out


def choose_precision(measured: dict, *, min_speedup: float = BF16_MIN_SPEEDUP) -> str:
    """``"bf16"`` if bf16 autocast was at least ``min_speedup`` x faster on every probe, else ``"fp32"``."""
    ratios = [v for k, v in measured.items() if k.endswith("_bf16_speedup")]
    if not ratios:
        raise ValueError("measured has no '*_bf16_speedup' entries; pass measure_precision()'s result")
    return "bf16" if min(ratios) >= min_speedup else "fp32"


def available_cores() -> int:
    """Cores this process may run on (affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def measure_threads(*, candidates: tuple[int, ...] | None = None,
                    timer: Callable[[Callable], float] = best_time) -> dict:
    """Seconds of the MLP probe at each thread count in ``candidates`` (default: 1 and every core)."""
    candidates = candidates or tuple(sorted({1, available_cores()}))
    fn, _ = _probes()["forward"]
    before = torch.get_num_threads()
    out = {}
    try:
        with torch.no_grad():
            for n in candidates:
                torch.set_num_threads(n)
                out[n] = timer(fn)
    finally:
        torch.set_num_threads(before)
    return out


def choose_threads(seconds: dict[int, float], *, min_speedup: float = THREADS_MIN_SPEEDUP) -> int:
    """The largest thread count, unless a smaller one is at least ``min_speedup`` x faster than it."""
    if not seconds:
        raise ValueError("seconds is empty; pass measure_threads()'s result")
    most = max(seconds)
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[most] >= min_speedup * seconds[fastest] else most


# ----------------------------------------------------------------------------------------------------------
# The process-wide choice
# ----------------------------------------------------------------------------------------------------------

def configure(*, precision: str = "auto", threads: int | str | None = "auto", verbose: bool = False,
              timer: Callable[[Callable], float] = best_time) -> dict:
    """Set this process's precision and torch thread count; returns :func:`describe` (printed as one line
    with ``verbose``).

    ``precision``: ``"auto"`` (measure), ``"fp32"`` or ``"bf16"``. ``threads``: ``"auto"`` (measure), an int,
    or ``None`` (leave torch's default). The environment variable :data:`THREADS_ENV` (an int), when set, replaces
    ``"auto"``: the tests set it so that two runs of one seed use one thread count whatever the machine's load
    (a measured count can differ between runs on a busy machine, and so can float reductions)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed: {PRECISIONS}")
    if not (threads is None or threads == "auto" or (isinstance(threads, int) and threads >= 1)):
        raise ValueError(f"threads={threads!r}; allowed: 'auto', None or an int >= 1")
    _STATE["precision"], _STATE["measured"] = precision, {}
    pinned = os.environ.get(THREADS_ENV, "").strip()
    if threads == "auto" and pinned:
        if not pinned.isdigit() or int(pinned) < 1:
            raise ValueError(f"{THREADS_ENV}={pinned!r}; allowed: an int >= 1 (or unset: measure)")
        threads = int(pinned)
    if threads == "auto":
        secs = measure_threads(timer=timer)
        _STATE["measured"]["thread_seconds"] = {str(k): v for k, v in secs.items()}
        threads = choose_threads(secs)
    if threads is not None:
        torch.set_num_threads(int(threads))
    if precision == "auto" and resolve_device("auto").type == "cpu":
        _STATE["measured"].update(measure_precision(timer=timer))
    info = describe()
    if verbose:
        ratio = f", bf16/fp32 speed {info['forward_bf16_speedup']:.2f}x" if "forward_bf16_speedup" in info else ""
        print(f"{info['device']}: {info['precision']} for mixed-precision loops (setting {precision!r}{ratio}), "
              f"{info['torch_threads']} of {info['available_cores']} cores; {info['cpu_model']} "
              f"({info['cpu_capability']})")
    return info


def cpu_precision() -> str:
    """The precision CPU loops use now: the forced one, or the measured choice (measured once per process)."""
    if _STATE["precision"] != "auto":
        return _STATE["precision"]
    if "matmul_bf16_speedup" not in _STATE["measured"]:
        _STATE["measured"].update(measure_precision())
    return choose_precision(_STATE["measured"])


def precision(device: torch.device | str = "auto") -> str:
    """The precision of a mixed-precision (``amp=True``) loop on ``device``: ``fp32`` / ``bf16`` on CPU, ``fp16``
    on CUDA unless ``bf16`` was forced."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return "bf16" if _STATE["precision"] == "bf16" else "fp32" if _STATE["precision"] == "fp32" else "fp16"
    return cpu_precision()


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, amp: bool):
    """The autocast context of a loop on ``device``: disabled unless ``amp`` and the chosen precision is not
    fp32; then bf16 (CPU) or fp16 (CUDA) autocast."""
    dev = resolve_device(device) if isinstance(device, str) else device
    p = precision(dev) if amp else "fp32"
    if p == "fp32":
        return torch.autocast(dev.type, enabled=False)
    return torch.autocast(dev.type, dtype=_DTYPES[p])


class CpuBf16Unfused:
    """A timm attention module's ``fused_attn`` flag that answers per call (timm reads ``if self.fused_attn:`` in every
    forward): the fused kernel unless CPU bf16 autocast is on. Under bf16 the fused CPU kernel's backward is the slow
    part of a prompt-tuning step; in fp32 it is the faster one for training (module docstring)."""

    def __bool__(self) -> bool:
        return not (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)

    def __repr__(self) -> str:
        return "fused unless CPU bf16 autocast"


def fused_attention(device: torch.device | str = "auto") -> str:
    """Which attention kernel models built for ``device`` use: ``"fused"`` on CUDA; on the CPU ``"auto"`` for timm
    ViTs (fused in fp32, plain matmuls under bf16 autocast: :class:`CpuBf16Unfused`) and plain matmuls for
    transformers' MiniLM (``"eager"``: as fast or faster in both precisions). See the module docstring."""
    return "fused" if resolve_device(device).type != "cpu" else "auto"


def attention_setting(model: torch.nn.Module) -> dict:
    """The attention kernels ``model`` uses: the distinct ``fused_attn`` settings of its timm attention modules and
    the ``_attn_implementation`` of its transformers configs (part of the feature-cache key, :mod:`vpkit.featcache`)."""
    timm_fused = sorted({repr(m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")})
    hf = sorted({str(m.config._attn_implementation) for m in model.modules()
                 if hasattr(getattr(m, "config", None), "_attn_implementation")})
    return {"timm_fused": timm_fused, "hf": hf}


def apply_attention(model: torch.nn.Module, setting: str | bool | None = None) -> torch.nn.Module:
    """Set the attention kernel of every timm attention module (``fused_attn``) and transformers model
    (``set_attn_implementation``) in ``model``: ``True`` / ``"fused"`` the fused kernel, ``False`` / ``"plain"``
    plain matmuls, ``"auto"`` :class:`CpuBf16Unfused` for timm and ``"eager"`` for transformers, ``None`` =
    :func:`fused_attention` of the device models run on. Returns ``model``."""
    setting = fused_attention() if setting is None else setting
    setting = {True: "fused", False: "plain"}.get(setting, setting)
    if setting not in ("fused", "plain", "auto"):
        raise ValueError(f"setting={setting!r}; allowed: 'fused', 'plain', 'auto', True, False or None")
    flag = {"fused": True, "plain": False, "auto": CpuBf16Unfused()}[setting]
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = flag
        if hasattr(getattr(m, "config", None), "_attn_implementation") and hasattr(m, "set_attn_implementation"):
            want = "sdpa" if setting == "fused" else "eager"
            if m.config._attn_implementation != want:
                m.set_attn_implementation(want)
    return model


class FrozenBf16Linear(torch.nn.Linear):
    """An ``nn.Linear`` that, while its weight is frozen and CPU bf16 autocast is on, reuses one bf16 copy of its
    weight (and of a frozen bias) instead of autocast's cast on every call; bit-identical to autocast's own cast.
    The copy is keyed by the tensors' storage and version counter, so an in-place change (``load_state_dict``,
    ``copy_``) makes a new one. Anywhere else it is a plain ``nn.Linear``. Made by :func:`cache_frozen_bf16`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if (w.requires_grad or w.device.type != "cpu" or not torch.is_autocast_enabled("cpu")
                or torch.get_autocast_dtype("cpu") != torch.bfloat16):
            return torch.nn.functional.linear(x, w, b)
        cache_b = b is not None and not b.requires_grad
        key = (w.data_ptr(), w._version, w.dtype) + ((b.data_ptr(), b._version) if cache_b else ())
        cached = self.__dict__.get("_bf16_copy")
        if cached is None or cached[0] != key:
            cached = (key, w.detach().to(torch.bfloat16), b.detach().to(torch.bfloat16) if cache_b else None)
            self.__dict__["_bf16_copy"] = cached
        return torch.nn.functional.linear(x, cached[1], cached[2] if cache_b else b)


def cache_frozen_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """Turn every plain ``nn.Linear`` in ``model`` into a :class:`FrozenBf16Linear` (same parameters, same state
    dict; the bf16 copy is used only while the weight is frozen and CPU bf16 autocast is on). Returns ``model``."""
    for m in model.modules():
        if type(m) is torch.nn.Linear:
            m.__class__ = FrozenBf16Linear
    return model


# environment variables that hold torch's, oneDNN's or MKL's kernels below the CPU's instruction set
ISA_LIMIT_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict:
    """What ``run.json`` records: device, precision of ``amp`` loops, threads, CPU capability and model, the
    measured fp32/bf16 ratios and thread timings."""
    dev = resolve_device("auto")
    m = _STATE["measured"]
    info = {"device": str(dev), "precision_setting": _STATE["precision"], "precision": precision(dev),
            "torch_threads": torch.get_num_threads(), "available_cores": available_cores(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model(),
            "attention": "fused" if fused_attention(dev) == "fused"
            else "plain matmuls under CPU bf16 autocast (timm ViTs), eager (MiniLM)"}
    for k in ("matmul_bf16_speedup", "forward_bf16_speedup", "matmul_fp32_gflops", "matmul_bf16_gflops"):
        if k in m:
            info[k] = round(m[k], 3)
    limits = {k: os.environ[k] for k in ISA_LIMIT_VARS if os.environ.get(k)}
    if limits:  # the kernels were held below what the CPU can do (e.g. an AVX2-only CPU emulated)
        info["isa_limits"] = limits
    if "thread_seconds" in m:
        info["thread_seconds"] = {k: round(v, 6) for k, v in m["thread_seconds"].items()}
    return info

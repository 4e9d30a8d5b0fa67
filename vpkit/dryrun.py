"""Paper-shape dry runs and a CPU "virtual CUDA": proving the ``paper`` profile end to end without a GPU or internet.

A **dry run** (``python3 -m vpkit replicate NAME --profile paper --dry-run``) executes a notebook's ``paper``
profile as it would run - the papers' architectures, image sizes, class counts, optimisers, every method and
ablation kind - except that

* weights are random (timm ``pretrained=False``, open_clip ``pretrained=None``; :func:`active` is read by
  :mod:`vpkit.backbones` and :mod:`vpkit.vlm`),
* every torchvision paper dataset is replaced by :func:`fake_images`: images of the dataset's shape, its class
  count and (where vpkit knows them) class names, a few images per class,
* each :func:`vpkit.train.fit` call stops after :data:`MAX_STEPS` steps and each prediction pass after
  :data:`MAX_EVAL_BATCHES` batches,
* each study cuts its grids, seed lists and dataset lists to the fewest points that still reach every code path
  (its ``dry_run_overrides``), and the notebook writes to a scratch folder, never to ``results/``.

**Virtual CUDA** (:class:`VirtualCuda`, on by default in a dry run): tensors stay on the CPU but a tensor moved
to (or created on) a CUDA device is *tagged* - on its storage, so views, ``param.data = ...`` and in-place ops keep
the tag - and reports ``device == cuda:0``; any op that mixes tagged and untagged tensors (0-dim CPU scalars
aside, as CUDA allows), ``.numpy()`` of a tagged tensor, or an index tensor on the wrong device fails as it would
on a GPU. ``device="auto"`` resolves to ``cuda`` under it, so every ``.to(device)`` the GPU path needs is proven on
a CPU. Autocast and ``GradScaler`` see no real CUDA and stay off (fp32), which is what a dry run wants.

The dry run is switched on for a notebook kernel by the environment (:data:`ENV`, set by the harness), so the
notebooks need no extra parameter; :func:`enable` / :func:`disable` do the same in-process (tests).
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch.overrides import TorchFunctionMode

ENV = "VPKIT_DRY_RUN"  # "1": dry run with virtual CUDA; "cpu": dry run on the real device (CPU or a real GPU)
MAX_STEPS = 2  # training steps per fit() call in a dry run
MAX_EVAL_BATCHES = 2  # batches per prediction / feature pass in a dry run
FAKE_TRAIN_PER_CLASS = 2  # images per class of a fake paper dataset's train split
FAKE_TEST_PER_CLASS = 1  # ... and of its test split

_STATE: dict = {"active": False, "virtual_cuda": None}


def active() -> bool:
    """True inside a dry run (random weights, fake paper data, 1-2 steps)."""
    return _STATE["active"]


def virtual_cuda_active() -> bool:
    return _STATE["virtual_cuda"] is not None


def enable(*, virtual_cuda: bool = True) -> None:
    """Start a dry run in this process (and, with ``virtual_cuda``, the virtual-CUDA mode)."""
    _STATE["active"] = True
    if virtual_cuda and _STATE["virtual_cuda"] is None:
        mode = VirtualCuda()
        mode.__enter__()
        _STATE["virtual_cuda"] = mode


def disable() -> None:
    _STATE["active"] = False
    mode = _STATE["virtual_cuda"]
    if mode is not None:
        _STATE["virtual_cuda"] = None
        mode.__exit__(None, None, None)


@contextlib.contextmanager
def dry_run(*, virtual_cuda: bool = True):
    """``with dry_run(): ...`` - :func:`enable` for the block, restoring the previous state after it."""
    was, had_mode = _STATE["active"], _STATE["virtual_cuda"] is not None
    enable(virtual_cuda=virtual_cuda)
    try:
        yield
    finally:
        if not had_mode and _STATE["virtual_cuda"] is not None:
            mode, _STATE["virtual_cuda"] = _STATE["virtual_cuda"], None
            mode.__exit__(None, None, None)
        _STATE["active"] = was


def from_env() -> None:
    """Enable a dry run if :data:`ENV` asks for one (``"1"``: with virtual CUDA, ``"cpu"``: without)."""
    val = os.environ.get(ENV, "").strip().lower()
    if val in ("", "0", "false", "no"):
        return
    if val not in ("1", "true", "yes", "cpu", "device"):
        raise ValueError(f"{ENV}={val!r}; allowed: '1' (dry run, virtual CUDA), 'device' (dry run on the real "
                         f"device), '0'")
    enable(virtual_cuda=val in ("1", "true", "yes"))


# ----------------------------------------------------------------------------------------------------------
# Fake paper datasets
# ----------------------------------------------------------------------------------------------------------

# name -> (classes, image height/width as torchvision gives them; None = varies, stored at ``size``)
PAPER_SHAPES = {
    "cifar100": (100, 32), "cifar10": (10, 32), "fashion_mnist_tv": (10, 28), "svhn": (10, 32),
    "eurosat": (10, 64), "dtd": (47, None), "flowers102": (102, None), "oxford_pets": (37, None),
    "food101": (101, None), "caltech101": (101, None), "fgvc_aircraft": (100, None), "sun397": (397, None),
    "stanford_cars": (196, None), "ucf101": (101, None), "imagenet": (1000, None), "gtsrb": (43, None),
    "clevr_count": (8, None), "dmlab": (6, None), "kitti_distance": (4, None), "dsprites_location": (16, 64),
    "dsprites_orientation": (16, 64), "smallnorb_azimuth": (18, 96), "smallnorb_elevation": (9, 96),
    "resisc45": (45, 256), "patch_camelyon": (2, 96), "diabetic_retinopathy": (5, None),
    "caltech101_zhou": (100, None), "fgvc_aircraft_train": (100, None),  # CoOp: 100 classes; its train split
}


def fake_images(name: str, split: str = "train", *, size: int | None = None, per_class: int | None = None,
                classnames: list[str] | None = None, seed: int = 0):
    """``(images, labels, classnames)`` shaped like paper dataset ``name``: its class count, its native image size
    (or ``size`` for datasets of mixed sizes, else 224), ``per_class`` uint8 noise images per class (default
    :data:`FAKE_TRAIN_PER_CLASS` / :data:`FAKE_TEST_PER_CLASS`) and ``classnames`` (default ``"<name> class i"``).
    :func:`vpkit.data.load_torchvision` wraps them into an ``ImageSet`` in a dry run."""
    if name not in PAPER_SHAPES:
        raise ValueError(f"no paper shape for dataset name={name!r}; known: {sorted(PAPER_SHAPES)}")
    classes, native = PAPER_SHAPES[name]
    side = native or size or 224
    k = per_class or (FAKE_TRAIN_PER_CLASS if split == "train" else FAKE_TEST_PER_CLASS)
    g = torch.Generator().manual_seed(seed * 7919 + (0 if split == "train" else 1) + len(name))
    images = torch.randint(0, 256, (classes * k, 3, side, side), generator=g, dtype=torch.uint8)
    labels = torch.arange(classes).repeat_interleave(k)
    names = list(classnames) if classnames is not None else [f"{name.replace('_', ' ')} class {i}"
                                                              for i in range(classes)]
    if len(names) != classes:
        raise ValueError(f"classnames has {len(names)} names; {name} has {classes} classes")
    return images, labels, names


# ----------------------------------------------------------------------------------------------------------
# Virtual CUDA
# ----------------------------------------------------------------------------------------------------------

CUDA = torch.device("cuda", 0)
_TAG = "_vpkit_virtual_cuda"


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def is_tagged(t) -> bool:
    """True for a tensor that lives on the virtual CUDA device."""
    if not isinstance(t, torch.Tensor):
        return False
    s = _storage(t)
    return bool(s is not None and getattr(s, _TAG, False))


def _tag(t: torch.Tensor, on: bool = True) -> torch.Tensor:
    s = _storage(t)
    if s is not None:
        setattr(s, _TAG, on)
    return t


def _tensors(obj, out: list):
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out)
    return out


def _device_type(d) -> str | None:
    if d is None:
        return None
    if isinstance(d, torch.Tensor):
        return "cuda" if is_tagged(d) else "cpu"
    if isinstance(d, int):
        return "cuda"  # tensor.to(0) / cuda(0)
    if isinstance(d, (str, torch.device)):
        return torch.device(d).type
    return None


def _cpu(d):
    """``d`` with a CUDA device replaced by the CPU (devices, strings, ints)."""
    if isinstance(d, int) and not isinstance(d, bool):
        return torch.device("cpu")
    if isinstance(d, (str, torch.device)) and torch.device(d).type == "cuda":
        return torch.device("cpu")
    return d


class VirtualCudaError(RuntimeError):
    """What CUDA would have raised: tensors on different devices, or a CUDA tensor where the CPU is needed."""


_MOVES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu}
_GETTERS = {torch.Tensor.device.__get__: "device", torch.Tensor.is_cuda.__get__: "is_cuda"}
# ops that may legally take tensors on two devices
_CROSS_DEVICE = {torch.Tensor.copy_, torch.Tensor.__setstate__, torch.Tensor.__reduce_ex__,
                 torch.Tensor.__deepcopy__, torch._has_compatible_shallow_copy_type, torch.Tensor.data.__set__,
                 torch.Tensor.grad.__set__, torch.Tensor.set_}
_INDEXING = {torch.Tensor.__getitem__}  # CUDA accepts CPU index tensors (the key is not checked)
# ops whose later arguments are not checked: a deepcopy's memo dict holds every tensor copied so far (scanning it
# made copying a model quadratic in its tensors: 30 s for a ResNet-101)
_FIRST_ARG_ONLY = _INDEXING | {torch.Tensor.__deepcopy__}


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


class VirtualCuda(TorchFunctionMode):
    """A CPU stand-in for one CUDA device: see the module docstring."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _GETTERS:
            tagged = is_tagged(args[0])
            if _GETTERS[func] == "device":
                return CUDA if tagged else func(*args, **kwargs)
            return tagged
        if func is torch.Tensor.grad.__get__:  # autograd fills .grad in C++: it lives where its tensor lives
            out = func(*args, **kwargs)
            if out is not None and is_tagged(args[0]):
                _tag(out)
            return out
        if func in _MOVES:
            return self._move(func, args, kwargs)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and is_tagged(args[0]):
            raise VirtualCudaError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy "
                                   "the tensor to host memory first. (virtual CUDA)")
        if func is torch.Tensor.pin_memory:
            return args[0]
        if func is torch.Tensor.__deepcopy__:  # a copy lives where its original lives (buffers, plain tensors)
            return _tag(func(*args, **kwargs), is_tagged(args[0]))
        # an explicit device= (factories, Tensor.new_*) decides the output's device; otherwise it follows the inputs
        explicit = kwargs.get("device") is not None
        to_cuda = explicit and _device_type(kwargs["device"]) == "cuda"
        if explicit:
            kwargs = {**kwargs, "device": _cpu(kwargs["device"])}
        ins = _tensors(args if func not in _FIRST_ARG_ONLY else args[:1], [])
        _tensors(kwargs, ins)
        tagged = [t for t in ins if is_tagged(t)]
        if tagged and func not in _CROSS_DEVICE:
            stray = [t for t in ins if not is_tagged(t) and t.dim() > 0]
            if stray:
                raise VirtualCudaError(
                    f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and "
                    f"cpu! ({_name(func)}: cpu tensor of shape {tuple(stray[0].shape)}; virtual CUDA)")
        out = func(*args, **kwargs)
        if to_cuda or (not explicit and tagged and func not in _CROSS_DEVICE):
            for t in _tensors(out, []):
                _tag(t)
        return out

    @staticmethod
    def _move(func, args, kwargs):
        src = args[0]
        if func is torch.Tensor.cuda:
            target = "cuda"
            out = src.to("cpu", **{k: v for k, v in kwargs.items() if k in ("non_blocking", "memory_format")})
        elif func is torch.Tensor.cpu:
            target = "cpu"
            out = func(*args, **kwargs)
        else:  # Tensor.to(device | dtype | tensor, ...)
            target = _device_type(kwargs.get("device"))
            pos = list(args[1:])
            for i, a in enumerate(pos):
                t = _device_type(a) if not isinstance(a, torch.dtype) else None
                if t is not None:
                    target = t
                    if isinstance(a, torch.Tensor):  # .to(other): dtype of other, device handled here
                        pos[i] = a.dtype
                    else:
                        pos[i] = _cpu(a)
            kw = {**kwargs, **({"device": _cpu(kwargs["device"])} if "device" in kwargs else {})}
            out = func(src, *pos, **kw)
        if target is None:  # dtype-only conversion: keeps the device
            if is_tagged(src) and out is not src:
                _tag(out)
            return out
        want = target == "cuda"
        if is_tagged(src) != want and _storage(out) is not None and _storage(src) is not None \
                and out.untyped_storage().data_ptr() == src.untyped_storage().data_ptr():
            out = out.clone()  # a device move always copies
        return _tag(out, want)

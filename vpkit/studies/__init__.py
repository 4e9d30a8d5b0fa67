"""One module per notebook: the protocol, the ``smoke`` / ``offline`` / ``paper`` settings, the paper's numbers
and the claims of one source. A reader who wants everything about a paper opens its study here and its
prompt module in :mod:`vpkit.prompts`.

===================  ==========================  =========================================================
study                notebook                    prompt modules
===================  ==========================  =========================================================
``backbones``        00_backbones                (none: the frozen backbones of :mod:`vpkit.backbones`)
``vlm``              00_vlm                      (none: :mod:`vpkit.vlm`, :mod:`vpkit.alignment`)
``vpt``              01_vpt                      :mod:`vpkit.prompts.vpt`
``visual_prompting`` 02_visual_prompting         :mod:`vpkit.prompts.pixel`
``pro_tuning``       03_pro_tuning               :mod:`vpkit.prompts.protuning`
``cocoop``           04_cocoop                   :mod:`vpkit.prompts.coop`
``image_prompts_l2p`` 05_image_prompts_l2p       :mod:`vpkit.prompts.l2p` (task loop: :mod:`vpkit.continual`)
===================  ==========================  =========================================================

Studies import everything below them (data, prompts, methods, train, continual, metrics, report, plots) and
nothing imports a study except the notebooks, the harness and the tests.
"""
from __future__ import annotations

import importlib

STUDIES = ("backbones", "vlm", "vpt", "visual_prompting", "pro_tuning", "cocoop", "image_prompts_l2p")


def study(name: str):
    """The study module ``vpkit.studies.<name>``; unknown names fail with the known list."""
    if name not in STUDIES:
        raise ValueError(f"unknown study name={name!r}; known: {list(STUDIES)}")
    return importlib.import_module(f"{__name__}.{name}")


def settings(name: str, profile: str, **overrides) -> dict:
    """``study(name).settings(profile, **overrides)``: one notebook's validated settings."""
    return study(name).settings(profile, **overrides)


COST_FILE = "results/benchmarks/paper_cost.md"  # README includes it; `python3 -m vpkit cost` regenerates it
GPU_CHECK_FILE = "results/benchmarks/gpu_check.json"  # written by scripts/gpu_check.sh on a CUDA machine


# the cost table's columns and the names the studies' paper_cost may give them
COST_KEYS = {"runs": ("runs", "training_runs"), "epochs": ("epochs", "training_epochs", "total_epochs"),
             "train_images_seen": ("train_images_seen", "training_images_seen", "train_images", "training_images"),
             "eval_images": ("eval_images", "evaluated_images")}


def paper_costs(gpu_check: str | None = None) -> list[dict]:
    """One row per notebook: its ``paper`` profile's training runs, epochs, training images seen, evaluated
    images and dominant step kind (each study's ``paper_cost(settings("paper"))``), and GPU-hours where
    ``gpu_check`` (the report of ``scripts/gpu_check.sh``) measured that step kind: training images seen / measured
    images per second (evaluation and feature encoding are not counted, so the hours are a lower bound; a notebook
    that trains nothing is costed by the images it encodes)."""
    import json
    from pathlib import Path

    from ..report import REPO_ROOT

    path = Path(gpu_check) if gpu_check else REPO_ROOT / GPU_CHECK_FILE
    rates, gpu = {}, None
    if path.exists():
        rep = json.loads(path.read_text())
        tp = rep.get("throughput", {})
        gpu = tp.get("gpu")
        rates = {r["kind"]: r["images_per_s"] for r in tp.get("rows", []) if r.get("images_per_s")}
    rows = []
    for name in STUDIES:
        mod = study(name)
        if not hasattr(mod, "paper_cost"):
            rows.append({"notebook": name, "runs": None, "step_kind": "(no paper_cost yet)"})
            continue
        c = mod.paper_cost(mod.settings("paper"))
        for key, names in COST_KEYS.items():
            c[key] = next((c[k] for k in names if k in c), None)
        rate = rates.get(c.get("step_kind"))
        images = c["train_images_seen"] or c["eval_images"]  # inference-only notebooks: the images they encode
        hours = images / rate / 3600 if rate and gpu and images is not None else None
        rows.append({"notebook": name, **c, "images_per_s": rate, "gpu": gpu, "gpu_hours": hours})
    return rows


def paper_cost_markdown(rows: list[dict]) -> str:
    """The README's cost table of the paper profiles (from :func:`paper_costs`)."""
    def n(v):
        return "–" if v is None else f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)

    gpu = next((r["gpu"] for r in rows if r.get("gpu")), None)
    lines = ["| notebook | training runs | epochs (sum over runs) | training images seen | evaluated images | "
             "dominant step | GPU-hours (training) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        hours = f"{r['gpu_hours']:.1f}" if r.get("gpu_hours") is not None else "not measured yet"
        lines.append(f"| {r['notebook']} | {n(r.get('runs'))} | {n(r.get('epochs'))} | "
                     f"{n(r.get('train_images_seen'))} | {n(r.get('eval_images'))} | `{r.get('step_kind')}` | "
                     f"{hours} |")
    total = [r["gpu_hours"] for r in rows if r.get("gpu_hours") is not None]
    lines.append("")
    lines.append(f"GPU-hours = training images seen / the images per second `scripts/gpu_check.sh` measured for the "
                 f"step kind on {gpu} (a lower bound: evaluation, feature caching and data loading are not counted); "
                 f"in all {sum(total):.1f} h over {len(total)} notebooks." if gpu else
                 "GPU-hours: not measured yet - no CUDA GPU has run `scripts/gpu_check.sh` for this repository; the "
                 "counts above come from each study's `paper_cost` on its `paper` settings. Run the script on a GPU "
                 "and then `python3 -m vpkit cost` to fill the column in.")
    return "\n".join(lines) + "\n"

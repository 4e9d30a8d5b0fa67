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

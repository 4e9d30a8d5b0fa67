"""Prompt modules, one file per family (vpt, pixel, protuning, coop, l2p), plus shared ViT token helpers.

``nn.Module``'s and the few tensor functions they need only: no training loop, no paper numbers, no import of
:mod:`vpkit.methods` (whose builders attach these modules to a frozen backbone) or of a study.
"""

"""Prompt modules, one file per family (vpt, pixel, protuning, coop, l2p), plus shared ViT token helpers."""

"""The three profiles every notebook runs under, and the one function that turns a study's table into settings.

``smoke`` (CI: seconds), ``offline`` (default: real offline weights and data, minutes on 2 CPU cores),
``paper`` (the papers' checkpoints and datasets, a GPU and internet). Each study module
(:mod:`vpkit.studies`) owns its ``PROFILES = {"smoke": {...}, "offline": {...}, "paper": {...}}`` table next
to its protocol, so that one file holds everything about a paper; :func:`resolve` is the shared validation.
"""
from __future__ import annotations

import copy

PROFILE_NAMES = ("smoke", "offline", "paper")
# Every profile also carries these unless its table sets them: the numeric precision of mixed-precision loops and
# the torch thread count, both chosen by measurement on the machine at hand (:func:`vpkit.device.configure`).
RUNTIME_DEFAULTS = {"precision": "auto", "num_threads": "auto"}


def resolve(table: dict[str, dict], profile: str, overrides: dict | None = None, *, notebook: str = "",
            dry_run_cuts: dict | None = None) -> dict:
    """A deep copy of ``table[profile]`` (plus :data:`RUNTIME_DEFAULTS` where it does not set them) with the
    non-None ``overrides`` applied; unknown keys and profiles fail with the allowed values. The result also
    carries ``profile``.

    In a paper-shape dry run (:mod:`vpkit.dryrun`) of the ``paper`` profile, ``dry_run_cuts`` (the study's
    ``DRY_RUN`` table: grids, seeds and dataset lists cut to the fewest points that reach every code path) is
    applied before the overrides; its keys must be keys of the paper profile."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r}; allowed: {PROFILE_NAMES}")
    if set(table) != set(PROFILE_NAMES):
        raise ValueError(f"the profile table of {notebook or 'this study'} must define {PROFILE_NAMES}; "
                         f"it has {sorted(table)}")
    cfg = {**RUNTIME_DEFAULTS, **copy.deepcopy(table[profile])}
    from .dryrun import active

    if profile == "paper" and dry_run_cuts and active():
        unknown = sorted(set(dry_run_cuts) - set(cfg))
        if unknown:
            raise ValueError(f"the dry-run cuts of {notebook!r} name {unknown}, which its paper profile lacks")
        cfg.update(copy.deepcopy(dry_run_cuts))
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in cfg:
            raise ValueError(f"unknown parameter {k!r} for notebook {notebook!r}; allowed: {sorted(cfg)}")
        cfg[k] = v
    cfg["profile"] = profile
    return cfg

"""vpkit: reproducible replications of visual prompt learning papers on frozen backbones."""
from .netguard import guard_from_env as _guard_from_env

__version__ = "0.1.0"

# Smoke runs set VPKIT_NO_NETWORK=1 so that nothing vpkit drives can reach the network.
_guard_from_env()

# A paper-shape dry run (python3 -m vpkit replicate NAME --profile paper --dry-run) sets VPKIT_DRY_RUN for the
# notebook kernel: random weights, fake paper-shaped data, 1-2 steps, virtual CUDA (vpkit.dryrun).
import os as _os

if _os.environ.get("VPKIT_DRY_RUN", "").strip().lower() not in ("", "0", "false", "no"):
    from .dryrun import from_env as _dry_run_from_env

    _dry_run_from_env()

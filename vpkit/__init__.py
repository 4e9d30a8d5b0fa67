"""vpkit: reproducible replications of visual prompt learning papers on frozen backbones."""
from .netguard import guard_from_env as _guard_from_env

__version__ = "0.1.0"

# Smoke runs set VPKIT_NO_NETWORK=1 so that nothing vpkit drives can reach the network.
_guard_from_env()

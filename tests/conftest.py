import os

import pytest

# Everything the tests drive (including notebook kernels, which inherit the environment) runs with the
# network guard on: a test that reaches the network fails.
os.environ["VPKIT_NO_NETWORK"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One torch thread count for every notebook kernel the tests start (vpkit.device.THREADS_ENV), so that the
# same-seed check compares like with like on a machine whose load changes the measured choice.
os.environ.setdefault("VPKIT_THREADS", str(min(2, os.cpu_count() or 1)))

import vpkit  # noqa: E402,F401  (activates the guard in this process)


@pytest.fixture(scope="session")
def vit_s14():
    from vpkit.backbones import build_backbone

    return build_backbone("vit_s14_dinov2", img_size=56)

import os

import pytest

# Everything the tests drive (including notebook kernels, which inherit the environment) runs with the
# network guard on: a test that reaches the network fails.
os.environ["VPKIT_NO_NETWORK"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import vpkit  # noqa: E402,F401  (activates the guard in this process)


@pytest.fixture(scope="session")
def vit_s14():
    from vpkit.backbones import build_backbone

    return build_backbone("vit_s14_dinov2", img_size=56)

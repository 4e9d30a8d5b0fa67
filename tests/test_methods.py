import pytest
import timm
import torch

from vpkit import methods
from vpkit.backbones import Backbone, build_backbone, cnn_stages

BASELINES = ["linear", "full", "partial_1", "partial_2", "bias", "adapter"]


@pytest.fixture(scope="module", params=["test_vit", "test_cnn"])
def backbone(request):
    return build_backbone(request.param, img_size=64 if request.param == "test_cnn" else None)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_only_its_parameters(backbone, name):
    m = methods.build_method(name, backbone, 4)
    names = m.report.names
    assert "head.weight" in names and "head.bias" in names
    if name == "linear":
        assert names == ["head.weight", "head.bias"]
    elif name == "full":
        assert m.report.trainable == m.report.total
    elif name == "bias":
        assert all(n.endswith(".bias") or n.startswith("head.") for n in names)
    elif name.startswith("partial"):
        k = int(name[-1])
        stages = tuple(f"body.{s}." for s in backbone.stages[-k:])
        assert any(n.startswith(stages) for n in names)
        assert not any(n.startswith(f"body.{backbone.stages[0]}.") for n in names)
    elif name == "adapter":
        assert all(".down." in n or ".up." in n or n.startswith("head.") for n in names)
    # the source backbone is never touched: methods work on a copy
    assert not any(p.requires_grad for p in backbone.model.parameters())
    x = torch.randn(2, 3, backbone.img_size, backbone.img_size)
    assert m.model(x).shape == (2, 4)


def test_adapter_starts_as_the_frozen_model_and_frozen_body_stays_bit_identical(backbone):
    lin = methods.build_method("linear", backbone, 3)
    ada = methods.build_method("adapter", backbone, 3)
    ada.model.head.load_state_dict(lin.model.head.state_dict())
    x = torch.randn(2, 3, backbone.img_size, backbone.img_size)
    with torch.no_grad():
        assert torch.allclose(ada.model(x), lin.model(x), atol=1e-5)
    frozen = {n: p.clone() for n, p in ada.model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in ada.model.parameters() if p.requires_grad], lr=0.1)
    ada.model(x).sum().backward()
    opt.step()
    assert all(torch.equal(frozen[n], p) for n, p in ada.model.named_parameters() if n in frozen)


def test_unknown_method_lists_known_names(backbone):
    with pytest.raises(ValueError, match="linear"):
        methods.build_method("lora", backbone, 3)
    with pytest.raises(ValueError, match="num_classes"):
        methods.build_method("linear", backbone, 1)


def test_resnet_stages_and_adapter():
    model = timm.create_model("resnet18", pretrained=False).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    assert cnn_stages(model) == ["layer1", "layer2", "layer3", "layer4"]
    b = Backbone(name="r18", model=model, kind="cnn", embed_dim=model.num_features, img_size=64,
                 mean=(0.5,) * 3, std=(0.5,) * 3, stages=cnn_stages(model), num_classes=1000)
    m = methods.build_method("adapter", b, 3)
    assert len([n for n in m.report.names if n.endswith("down.weight")]) == 4
    assert m.model(torch.randn(1, 3, 64, 64)).shape == (1, 3)

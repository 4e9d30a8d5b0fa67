"""Pixel-space visual prompts (Bahng et al. 2022): shapes, parameter counts, what trains, reproducibility."""
import pytest
import torch
from torch import nn

from vpkit import methods
from vpkit.prompts import pixel
from vpkit.prompts.pixel import PixelPromptConfig, PixelPrompter
from vpkit.train import fit


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_padding_30_on_224_has_69840_parameters():
    p = PixelPrompter(template="padding", prompt_size=30, image_size=224)
    assert n_params(p) == 69_840
    assert pixel.num_prompt_parameters("padding", 30, 224) == 69_840


@pytest.mark.parametrize("template,size,image,expected", [
    ("padding", 4, 32, 3 * (2 * 4 * 32 + 2 * 4 * 24)),
    ("fixed_patch", 5, 33, 75),
    ("random_patch", 7, 20, 147),
])
def test_parameter_counts_and_shapes_any_size(template, size, image, expected):
    p = PixelPrompter(template=template, prompt_size=size, image_size=image)
    assert n_params(p) == expected == pixel.num_prompt_parameters(template, size, image)
    assert p.prompt().shape == (3, image, image)
    x = torch.randn(4, 3, image, image)
    assert p(x).shape == x.shape
    assert not torch.equal(p(x), x)  # official N(0, 1) init: the untrained prompt is a noisy frame
    with p.disabled():
        assert torch.equal(p(x), x)  # switched off: the frozen model's input
    assert torch.equal(PixelPrompter(template=template, prompt_size=size, image_size=image, init="zeros")(x), x)


def test_initial_prompt_has_unit_variance_as_the_official_randn():
    """Official prompters: ``nn.Parameter(torch.randn(...))`` - N(0, 1) in normalised pixel space."""
    p = PixelPrompter(template="padding", prompt_size=30, image_size=224, seed=1)
    v = torch.cat([t.detach().flatten() for t in p.parameters()])
    assert v.numel() == 69840 and abs(v.mean().item()) < 0.02 and abs(v.std().item() - 1.0) < 0.02
    again = PixelPrompter(template="padding", prompt_size=30, image_size=224, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(p.parameters(), again.parameters()))  # reproducible by seed
    with pytest.raises(ValueError, match="init"):
        PixelPrompter(template="padding", prompt_size=3, image_size=16, init="ones")


def test_padding_prompt_is_a_frame_only():
    p = PixelPrompter(template="padding", prompt_size=3, image_size=16)
    with torch.no_grad():
        for t in p.parameters():
            t.fill_(1.0)
    v = p.prompt()
    assert torch.all(v[:, 3:13, 3:13] == 0)
    assert torch.all(v[:, :3] == 1) and torch.all(v[:, -3:] == 1)
    assert torch.all(v[:, :, :3] == 1) and torch.all(v[:, :, -3:] == 1)


def test_bad_arguments_fail_with_the_parameter_name():
    with pytest.raises(ValueError, match="template"):
        PixelPromptConfig(template="frame")
    with pytest.raises(ValueError, match="prompt_size"):
        PixelPromptConfig(template="padding", prompt_size=12, image_size=24)
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        PixelPrompter(template="padding", prompt_size=2, image_size=16)(torch.zeros(1, 3, 15, 15))


def _filled(template, seed=0, size=4, image=16):
    p = PixelPrompter(template=template, prompt_size=size, image_size=image, seed=seed)
    with torch.no_grad():
        p.patch.copy_(torch.arange(1, 3 * size * size + 1, dtype=torch.float32).view(3, size, size))
    return p


def test_random_patch_one_location_per_batch_in_the_official_range():
    """Official ``RandomPatchPrompter``: ``x_ = np.random.choice(S - p)`` (and ``y_``) once per forward, so
    every image of the batch gets the patch at the same place, corners in ``[0, S - p - 1]``."""
    x = torch.zeros(8, 3, 16, 16)
    a, b, c = _filled("random_patch", seed=3), _filled("random_patch", seed=3), _filled("random_patch", seed=4)
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb)
    assert not torch.equal(ya, yc)
    assert all(torch.equal(ya[0], ya[i]) for i in range(8))  # one location for the whole batch
    corners = [a.location() for _ in range(400)]
    assert min(min(c) for c in corners) == 0 and max(max(c) for c in corners) == 16 - 4 - 1
    a.reset_generator()
    assert torch.equal(a(x), yb)
    # every image carries the whole patch exactly once
    assert torch.allclose(ya.sum(dim=(1, 2, 3)), a.patch.sum().expand(8))


def test_fixed_patch_top_left():
    p = _filled("fixed_patch")
    y = p(torch.zeros(2, 3, 16, 16))
    assert torch.equal(y[0, :, :4, :4], p.patch.detach())
    assert y[:, :, 4:, :].abs().sum() == 0 and y[:, :, :, 4:].abs().sum() == 0


def test_frequency_mapping_is_greedy_and_unique():
    logits = torch.full((6, 5), -5.0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for i, s in enumerate([3, 3, 3, 1, 4, 4]):
        logits[i, s] = 5.0
    m = pixel.frequency_mapping(logits, labels, 3)
    assert m.tolist() == [3, 1, 4]
    assert pixel.first_n_mapping(3).tolist() == [0, 1, 2]


def test_render_prompt_image():
    p = PixelPrompter(template="padding", prompt_size=2, image_size=8)
    img = pixel.render_prompt(p, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert img.shape == (8, 8, 3) and img.min() >= 0 and img.max() <= 1


def _state(m: nn.Module):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.fixture(scope="module")
def test_clip():
    from vpkit.vlm import build_vlm

    return build_vlm("test_clip")


@pytest.mark.parametrize("template", pixel.TEMPLATES)
def test_vp_tp_on_test_clip_only_the_prompt_trains(test_clip, template):
    vlm = test_clip
    tf = vlm.classifier_weights(["cat", "dog", "car"], (pixel.TP_TEMPLATE,))
    method = methods.build_vp_tp(vlm, tf, template=template, prompt_size=4 if template == "padding" else 8)
    assert method.report.names and all(n.startswith("prompter.") for n in method.report.names)
    assert method.report.trainable == pixel.num_prompt_parameters(template, 4 if template == "padding" else 8, 32)
    frozen = _state(vlm)
    prompt0 = _state(method.model.prompter)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0, 1, 2]))]
    fit(method.model, batches, epochs=2, lr=0.5, optimizer="sgd", progress=False)
    after = _state(vlm)
    assert frozen.keys() == after.keys()
    for k in frozen:
        assert torch.equal(frozen[k], after[k]), f"frozen VLM tensor {k} changed"
    changed = _state(method.model.prompter)
    assert any(not torch.equal(prompt0[k], changed[k]) for k in prompt0)
    logits = method.model(batches[0][0])
    assert logits.shape == (6, 3)
    assert float(vlm.logit_scale) <= 100.0


def test_vp_classifier_with_label_mapping_on_test_cnn():
    from vpkit.backbones import build_backbone

    bb = build_backbone("test_cnn", pretrained=False)
    if not bb.num_classes:
        pytest.skip("test_cnn has no classifier head")
    mapping = torch.tensor([5, 2, 7])
    method = methods.build_vp_classifier(bb, mapping, template="padding", prompt_size=2)
    x = torch.randn(4, 3, bb.img_size, bb.img_size)
    with torch.no_grad():
        full = bb.model(x)
    with method.model.prompter.disabled():
        out = method.model(x)
    assert torch.allclose(out, full[:, mapping], atol=1e-5)  # no prompt = the frozen mapped logits
    frozen = _state(bb.model)
    fit(method.model, [(x, torch.tensor([0, 1, 2, 0]))], epochs=1, lr=0.5, optimizer="sgd", progress=False)
    for k, v in _state(bb.model).items():
        assert torch.equal(frozen[k], v), f"frozen backbone tensor {k} changed"
    assert method.report.trainable == pixel.num_prompt_parameters("padding", 2, bb.img_size)


def test_vp_registered_in_methods_table():
    from vpkit.backbones import build_backbone
    from vpkit.methods import build_method

    bb = build_backbone("test_cnn", pretrained=False)
    m = build_method("vp", bb, 3, prompt_size=2)
    assert m.model.mapping.tolist() == [0, 1, 2]
    assert m.report.trainable == pixel.num_prompt_parameters("padding", 2, bb.img_size)
    m2 = build_method("vp", bb, 3, mapping=torch.tensor([9, 8, 7]), template="fixed_patch", prompt_size=3)
    assert m2.model.mapping.tolist() == [9, 8, 7] and m2.report.trainable == 27

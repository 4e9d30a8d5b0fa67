import numpy as np
import pytest
import torch

from vpkit import assets, backbones


def test_vit_s14_matches_onnxruntime_at_224():
    """The converted timm ViT reproduces the ONNX export's backbone output (last layernorm)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(assets.vit_s14_onnx_path()))
    out_name = "/backbone/layernorm/Add_1_output_0"
    model.graph.output.append(onnx.helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ref = torch.from_numpy(sess.run([out_name], {"input_image": x.numpy()})[0])
    b = backbones.build_backbone("vit_s14_dinov2", img_size=224)
    with torch.no_grad():
        ours = b.model.forward_features(x)
    assert ours.shape == ref.shape == (2, 257, 384)
    assert (ours - ref).abs().max().item() < 1e-3
    cos = torch.nn.functional.cosine_similarity(ours[:, 0], ref[:, 0])
    assert cos.min().item() > 0.99999


def test_vit_s14_conversion_covers_every_timm_key():
    import timm

    sd = assets.convert_vit_s14_onnx()
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518).state_dict()
    assert set(sd) == set(ref)
    assert all(sd[k].shape == ref[k].shape for k in ref)


def test_lite0_classifies_the_cat_photo():
    """Real ImageNet weights: skimage's chelsea is a cat (ImageNet classes 281-285 are domestic cats)."""
    from vpkit.studies.backbones import imagenet_topk
    from vpkit.data import load_skimage_photos

    b = backbones.build_backbone("efficientnet_lite0", img_size=224)
    rows = imagenet_topk(b, {"chelsea": load_skimage_photos(("chelsea",))["chelsea"]}, k=5)
    assert "cat" in rows[0]["top1"].lower()


def test_cache_is_checksummed_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("VPKIT_CACHE", str(tmp_path))
    calls = []

    def convert():
        calls.append(1)
        return {"w": torch.arange(4.0)}

    a = assets._cached_state_dict("thing", convert)
    b = assets._cached_state_dict("thing", convert)
    assert len(calls) == 1 and torch.equal(a["w"], b["w"])
    # a corrupted cache file is detected by its checksum and rebuilt
    (tmp_path / "thing.pt").write_bytes(b"garbage")
    assets._cached_state_dict("thing", convert)
    assert len(calls) == 2


def test_missing_package_gives_one_actionable_line(monkeypatch):
    monkeypatch.setitem(assets.SOURCE_SHA256, "no_such_pkg_xyz/file.bin", "0" * 64)
    with pytest.raises(assets.AssetError, match="pip install"):
        assets._package_file("no_such_pkg_xyz/file.bin")


def test_paper_backbone_fails_with_one_clear_line_offline():
    with pytest.raises(assets.AssetError, match="internet") as e:
        backbones.build_backbone("vit_b16_in21k")
    assert "\n" not in str(e.value)


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ValueError, match="vit_s14_dinov2"):
        backbones.build_backbone("nope")


@pytest.mark.parametrize("name", ["vit_s14_dinov2", "efficientnet_lite0"])
def test_pretrained_differs_from_random_and_is_frozen(name):
    pre = backbones.build_backbone(name, img_size=56)
    rnd = backbones.build_backbone(name, pretrained=False, img_size=56)
    assert not any(p.requires_grad for p in pre.model.parameters())
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        f1, f2 = pre.features(x), rnd.features(x)
    assert f1.shape == (2, pre.embed_dim) and not torch.allclose(f1, f2)
    assert np.isfinite(f1.numpy()).all()

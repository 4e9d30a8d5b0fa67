"""04_cocoop's paper profile (issue 17): the paper's settings, every paper dataset's loader on fake data, the GPU
path under virtual CUDA at tiny shapes, divergence, CoCoOp's chunked evaluation, and the cost estimate. No network;
seconds (the tiny random open_clip ``test_clip``)."""
import json
import math

import pytest
import torch

from vpkit import assets, dryrun
from vpkit.data import coop_splits
from vpkit.prompts import coop
from vpkit.studies import cocoop


@pytest.fixture(scope="module")
def cpu_vlm():
    from vpkit.vlm import build_vlm

    return build_vlm("test_clip")


def test_paper_settings_name_the_papers_datasets_model_and_hyper_parameters():
    cfg = cocoop.settings("paper")
    assert cfg["vlm"] == "clip_vit_b16" and cfg["img_size"] is None  # CLIP ViT-B/16 at its own 224 px
    assert cfg["datasets"] == ["eurosat", "dtd", "flowers102", "oxford_pets", "food101", "caltech101",
                               "fgvc_aircraft", "sun397"]
    assert cfg["splits"] == "zhou" and cfg["n_test_per_class"] is None and cfg["imagenet"] is False
    assert cfg["shots"] == [1, 2, 4, 8, 16] and cfg["seeds"] == [1, 2, 3]
    assert (cfg["n_ctx"], cfg["ctx_init"]) == (4, "a photo of a")
    assert cfg["cocoop"] == dict(epochs=10, batch_size=1, lr=0.002)  # vit_b16_c4_ep10_batch1_ctxv1
    assert cfg["optimizer"] == "sgd" and cfg["warmup_epochs"] == 1
    # CoOp's CUSTOM_TEMPLATES for the zero-shot baseline
    assert [cocoop.zero_shot_template(d) for d in ("eurosat", "dtd", "oxford_pets", "food101", "caltech101")] == [
        "a centered satellite photo of {}.", "{} texture.", "a photo of a {}, a type of pet.",
        "a photo of {}, a type of food.", "a photo of a {}."]
    # ImageNet is opt-in and then the cross-dataset source, as the paper's transfer
    inet = cocoop.settings("paper", imagenet=True)
    assert inet["datasets"][0] == "imagenet" and inet["cross"] == [["imagenet", d] for d in cfg["datasets"]]
    assert cocoop.settings("offline")["eval_text_chunk"] is None  # the offline protocol is unchanged


def test_dry_run_cuts_apply_only_in_a_dry_run_of_the_paper_profile():
    assert set(cocoop.DRY_RUN) <= set(cocoop.PROFILES["paper"])
    with dryrun.dry_run():
        cut = cocoop.settings("paper")
        offline = cocoop.settings("offline")
    assert cut["datasets"] == ["eurosat"] and cut["seeds"] == [1] and cut["vlm"] == "clip_vit_b16"
    assert cut["cocoop"] == cocoop.PROFILES["paper"]["cocoop"]  # optimiser and schedule are not cut
    assert offline["datasets"] == cocoop.PROFILES["offline"]["datasets"]
    assert cocoop.settings("paper")["datasets"] == cocoop.PROFILES["paper"]["datasets"]


@pytest.mark.parametrize("name", sorted(coop_splits.COOP_CLASSES))
def test_each_paper_dataset_loads_in_a_dry_run_with_coops_class_count(name):
    from vpkit.data import DATA_ROOT

    with dryrun.dry_run():
        tr = coop_splits.load_coop(name, "train", size=224, per_class=16, seed=1)
        te = coop_splits.load_coop(name, "test", size=224, per_class=None, seed=2)
    key = coop_splits._FAKE_KEY.get(name, name)
    side = dryrun.PAPER_SHAPES[key][1] or 224
    for ds in (tr, te):
        assert ds.num_classes == coop_splits.COOP_CLASSES[name] == len(ds.classes)
        assert ds.images.shape[1:] == (3, side, side) and ds.images.dtype == torch.uint8
    assert not (DATA_ROOT / name / "never").exists()  # nothing written, nothing downloaded


def test_a_missing_split_file_fails_in_one_line_naming_it_and_where_to_get_it(tmp_path):
    with pytest.raises(assets.AssetError) as e:
        coop_splits.load_coop("caltech101", "train", root=tmp_path, size=32)
    msg = str(e.value)
    assert "\n" not in msg and "split_zhou_Caltech101.json" in msg and coop_splits.DOCS in msg
    assert str(tmp_path / "caltech101") in msg


def test_split_file_loader_reads_coops_format_and_centre_crops(tmp_path, monkeypatch):
    """A split_zhou file as CoOp ships it ([path, label, classname] per image, paths relative to the image folder)."""
    import torchvision
    from PIL import Image

    img_dir = tmp_path / coop_splits.IMAGE_DIRS["eurosat"]
    rows = {"train": [], "val": [], "test": []}
    names = ["Annual Crop Land", "Forest"]
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for c, cname in enumerate(names):
            for i in range(n):
                rel = f"{cname.split()[0]}/{split}_{i}.jpg"
                (img_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (80, 40), (60 * c, 10 * i, 0)).save(img_dir / rel)  # wide: cropped, not squashed
                rows[split].append([rel, c, cname])
    path = coop_splits.split_file("eurosat", tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    monkeypatch.setattr(torchvision.datasets, "EuroSAT", lambda root, download=True, **kw: None)  # images present
    tr = coop_splits.load_coop("eurosat", "train", root=tmp_path, size=16, per_class=2, seed=0)
    te = coop_splits.load_coop("eurosat", "test", root=tmp_path, size=16)
    assert tr.classes == names and tr.images.shape == (4, 3, 16, 16) and tr.labels.tolist() == [0, 0, 1, 1]
    assert te.images.shape == (4, 3, 16, 16) and te.labels.tolist() == [0, 0, 1, 1]


def test_caltech101_has_coops_100_classes_and_names():
    """CoOp datasets/caltech101.py: BACKGROUND_Google and Faces_easy ignored, four classes renamed."""
    from vpkit.data import ImageSet

    raw = ["accordion", "airplanes", "faces", "faces easy", "leopards", "motorbikes"]
    ds = ImageSet(torch.zeros(12, 3, 4, 4, dtype=torch.uint8), torch.arange(12) % 6, raw, "caltech101")
    out = coop_splits.caltech101_coop_classes(ds)
    assert out.classes == ["accordion", "airplane", "face", "leopard", "motorbike"]
    assert len(out) == 10 and out.labels.max() == 4
    assert dryrun.PAPER_SHAPES["caltech101_zhou"][0] == coop_splits.COOP_CLASSES["caltech101"] == 100


def _feature_set(vlm, n_classes=4, per_class=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n_classes * per_class, 3, 32, 32), generator=g, dtype=torch.uint8)
    from vpkit.vlm import encode_images

    f = encode_images(vlm, imgs, amp=False)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    names = ["cat", "dog", "red car", "tree", "boat", "fish"][:n_classes]
    return cocoop.FeatureSet("toy", names, f, y, f, y, {"inverted": f.flip(0)}, False)


def test_gpu_path_runs_under_virtual_cuda(cpu_vlm):
    """The placement the probe found broken on a GPU, at tiny shapes under virtual CUDA. Before the fix each of
    these raised "Expected all tensors to be on the same device": features encoded while the VLM sat on the CPU,
    then ``fit`` moved it to CUDA and ``correct_on`` / ``zero_shot_correct`` multiplied CPU features with CUDA text
    features; ``step_times`` built CoCoOp's Meta-Net and CoOp's random context on the CPU beside a CUDA VLM and
    fed CPU labels to CUDA logits; the linear probe called ``.numpy()`` on CUDA features."""
    import copy

    vlm = copy.deepcopy(cpu_vlm)
    with dryrun.dry_run():
        fs = _feature_set(vlm)  # on the CPU, as before the fix
        kw = dict(epochs=1, batch_size=2, lr=0.01, warmup_epochs=0)
        row, model, c = cocoop.base_to_new(vlm, fs, "cocoop", k=2, seed=1, train_kw=kw, eval_text_chunk=3)
        assert vlm.device.type == "cuda" and model.meta_net[0].weight.device.type == "cuda"
        assert c["base"].device.type == "cpu" and c["base"].dtype == torch.bool and c["base"].numpy().shape == (6,)
        _, _, zc = cocoop.base_to_new(vlm, fs, "zero_shot", k=0, train_kw={})
        assert zc["new"].device.type == "cpu"
        fs_dev = _feature_set(vlm)  # encoded on the (virtual) GPU, as the notebook now does
        assert dryrun.is_tagged(fs_dev.train)
        r2, m2, _ = cocoop.base_to_new(vlm, fs_dev, "coop", k=2, seed=1, train_kw=kw)
        rows, out = cocoop.cross_dataset_rows(vlm, {"toy": fs_dev}, [("toy", "toy")], {("toy", "coop", 2, 1): m2,
                                              ("toy", "cocoop", 2, 1): model}, k=2, seeds=[1], template="{}",
                                              eval_text_chunk=3)
        assert len(rows) == 3 and all(v.device.type == "cpu" for v in out.values())
        summary, steps = cocoop.step_times(vlm, fs_dev, k=2, seed=1, batch=2, repeats=2,
                                           prompt_kw=dict(n_ctx=2, ctx_init=None))
        assert summary["batch_size"] == 2 and len(steps) == 6
        lp = cocoop.linear_probe_correct(*fs_dev.split("train", [0, 1], 2, seed=1), *fs_dev.split("test", [0, 1]))
        assert lp.shape == (6,)


def test_a_diverged_run_scores_nan_and_the_grid_goes_on(cpu_vlm, monkeypatch):
    from vpkit import train

    fs = _feature_set(cpu_vlm)
    real = cocoop.train_prompt

    def maybe_diverge(method, *a, **kw):
        if method == "cocoop":
            raise train.Diverged("loss became nan at epoch 0; lower lr=1e9")
        return real(method, *a, **kw)

    monkeypatch.setattr(cocoop, "train_prompt", maybe_diverge)
    kw = dict(epochs=1, batch_size=4, lr=0.01, warmup_epochs=0)
    rows, models, outcomes = cocoop.base_to_new_grid(cpu_vlm, {"toy": fs}, datasets=["toy"], shots=[2], seeds=[1],
                                                     train_kw={"coop": kw, "cocoop": kw}, prompt_kw={},
                                                     linear_probe=False, progress=False)
    bad = [r for r in rows if r["method"] == "cocoop"][0]
    assert bad["diverged"] and math.isnan(bad["base"]) and math.isnan(bad["H"])
    assert ("toy", "cocoop", 2, 1) not in models and ("toy", "coop", 2, 1) in models
    assert not any(k.startswith("b2n/cocoop/") for k in outcomes) and "b2n/coop/toy/base/k2/seed1" in outcomes


def test_cocoop_chunked_evaluation_equals_the_one_pass(cpu_vlm):
    m = coop.CoCoOp(cpu_vlm, ["cat", "dog", "red car"], seed=0)
    x = torch.randn(5, cpu_vlm.embed_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m(x, text_chunk=4), m(x), atol=1e-5, rtol=1e-5)
    y = torch.tensor([0, 1, 2, 0, 1])
    assert torch.equal(cocoop.correct_on(m, x, y, eval_text_chunk=4), cocoop.correct_on(m, x, y))


def test_paper_cost_follows_the_settings():
    cfg = cocoop.settings("paper")
    c = cocoop.paper_cost(cfg)
    grid = len(cfg["datasets"]) * len(cfg["shots"]) * len(cfg["seeds"]) * 2
    abl = len(cfg["ablation_seeds"]) * (2 * (1 + len(cfg["ablation_n_ctx"])) + 1)
    assert c["training_runs"] == grid + abl == 267
    assert c["step_kind"] == "clip_vitb16_cocoop_train"
    # CoCoOp on EuroSAT at K = 16: 10 epochs x 16 shots x 5 base classes
    one = cocoop.paper_cost({**cfg, "datasets": ["eurosat"], "shots": [16], "seeds": [1], "ablation_seeds": [],
                             "cross": [], "shifts": []})
    assert one["training_runs"] == 2
    assert one["training_images"] == (cfg["coop"]["epochs"] + cfg["cocoop"]["epochs"]) * 16 * 5
    assert one["training_epochs"] == cfg["coop"]["epochs"] + cfg["cocoop"]["epochs"]
    more = cocoop.paper_cost({**cfg, "seeds": [1, 2, 3, 4]})
    assert more["training_runs"] > c["training_runs"] and more["evaluated_images"] > c["evaluated_images"]

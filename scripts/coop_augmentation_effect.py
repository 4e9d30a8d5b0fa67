"""How much does CoOp lose by training on features computed once without augmentation? (issue: official fidelity)

The official CoOp trainer draws a random-resized crop (scale 0.08-1) + horizontal flip of every training image
each epoch and runs the frozen image tower on it; notebook 04 encodes every image once, unaugmented (a
deliberate difference that makes the K x seed grid affordable on a CPU). This measures the effect once, at the
offline profile's shape: the offline VLM at 128 px, Fashion-MNIST base-to-new, K = 16, seeds 1-3, 50 test
images per class, CoOp 20 epochs. "augmented" trains on ``--views`` cached augmented views of each shot for
20 / views epochs (the same number of optimisation steps); the test features are the same clean ones.

    python3 scripts/coop_augmentation_effect.py [--views 4] [--out results/cocoop_augmentation]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", default=str(ROOT / "results" / "cocoop_augmentation"))
    args = ap.parse_args(argv)
    if args.views < 1 or 20 % args.views:
        ap.error(f"--views={args.views} must divide the 20 CoOp epochs")

    from vpkit import device, report, stats
    from vpkit import vlm as V
    from vpkit.data import base_new_classes
    from vpkit.studies import cocoop

    device.configure(precision="auto", threads="auto", verbose=True)
    res = report.Results(args.out, profile="offline", seed=0, config=vars(args))
    torch.manual_seed(0)
    cfg = cocoop.settings("offline")
    vlm = V.build_vlm(cfg["vlm"], img_size=cfg["img_size"])
    max_shots = args.k * len(args.seeds)
    fs = cocoop.dataset_features(vlm, args.dataset, max_shots=max_shots, n_test_per_class=cfg["n_test_per_class"],
                                 train_views=args.views)
    clean = dataclasses.replace(fs, train_views=[])
    base, new = base_new_classes(len(fs.classnames))
    base_names, new_names = [fs.classnames[c] for c in base], [fs.classnames[c] for c in new]
    kw = dict(cfg["coop"], optimizer=cfg["optimizer"], warmup_epochs=cfg["warmup_epochs"], n_ctx=cfg["n_ctx"],
              ctx_init=cfg["ctx_init"])
    rows, correct = [], {}
    for seed in args.seeds:
        for setting in ("clean (notebook 04)", f"augmented ({args.views} views)"):
            use = clean if setting.startswith("clean") else fs
            x, y = use.train_split(base, args.k, seed=seed)
            epochs = kw["epochs"] // max(1, len(use.train_views))
            model, _ = cocoop.train_prompt("coop", vlm, base_names, x, y, seed=seed, **{**kw, "epochs": epochs})
            cb = cocoop.correct_on(model, *fs.split("test", base)).float().numpy()
            cn = cocoop.correct_on(model, *fs.split("test", new), new_names).float().numpy()
            correct[(setting.split()[0], seed)] = (cb, cn)
            acc_b, acc_n = float(cb.mean()), float(cn.mean())
            rows.append({"dataset": args.dataset, "setting": setting, "seed": seed, "k": args.k, "epochs": epochs,
                         "train_features": len(y), "base": acc_b, "new": acc_n})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    summary = df.groupby("setting", sort=False)[["base", "new"]].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    decisions = {}
    for i, m in enumerate(("base", "new")):  # augmented - clean on the same test examples, seeds then examples
        aug = np.stack([correct[("augmented", s)][i] for s in args.seeds])
        clean = np.stack([correct[("clean", s)][i] for s in args.seeds])
        decisions[m] = stats.hierarchical_bootstrap(aug, clean, direction="~", margin=0.02).as_dict()
    res.table("runs", df)
    res.table("summary", summary)
    res.json("paired_difference.json", {"comparison": "augmented - clean accuracy; equivalence margin 2 points",
                                        **decisions})
    res.run_info()
    print(summary.round(4).to_string(index=False))
    for m, d in decisions.items():
        print(f"{m}: augmented - clean {d['margin']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] -> {d['verdict']}"
              f" (within 2 points?)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

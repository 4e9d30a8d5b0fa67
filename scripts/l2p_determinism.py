"""One offline L2P run (one variant, one seed) exactly as notebook 05 builds it: its accuracy matrix and a hash of
its per-example outcomes, to check that a run repeats and to bisect a change of outcome between commits.

    PYTHONPATH=. python3 scripts/l2p_determinism.py [--variant l2p] [--seed 0] [--precision auto] [--threads 2]
                                                    [--tasks N] [--deterministic]

Prints the accuracy matrix (%), the average accuracy, and sha256 prefixes of (a) every per-example outcome
(``correct`` of each (t, j) evaluation, in order), (b) the test images' selected prompt ids and (c) the cached test
queries, so that a difference can be traced to the queries (backbone / inputs), the training, or the selection.
It runs on older trees too (``PYTHONPATH=<old tree>``; keyword arguments a tree's functions lack are dropped, the
task split and train config built as the old notebook did). ``--tasks 1`` is a ~10 s probe; ``--deterministic``
turns on ``torch.use_deterministic_algorithms`` to compare trees whose own kernels are not repeatable.

What it found (Dec 2026, torch 2.14, 2 threads, bf16): before ``prompts.l2p.gather_prompts`` the pool's
``toks[idx]`` backward summed repeated ids' gradients with atomic adds in thread order, so L2P seed 0 gave
27.0 / 21.25 % average accuracy on two runs of one commit (committed runs: 23.25 and 24.5); with the fix (or
``--deterministic``) every run gives 31.5 %, the same at 2479d9f and 93285c8.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import time

import numpy as np
import torch


def _kw(fn, **kw):
    """``kw`` minus the names ``fn`` does not take (older trees lack a few keyword arguments)."""
    ps = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in ps.values()):
        return kw
    return {k: v for k, v in kw.items() if k in ps}


def _hash(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="l2p")
    ap.add_argument("--seed", type=int, default=0, help="training seed (the notebook's seed 0 sets the split)")
    ap.add_argument("--precision", default=None, help="None: the profile's ('auto': measured)")
    ap.add_argument("--threads", default=None, help="None: the profile's")
    ap.add_argument("--tasks", type=int, default=None,
                    help="train and test only the first that many tasks (a quick probe)")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch.use_deterministic_algorithms(True) (rules out torch's nondeterministic kernels)")
    args = ap.parse_args()
    if args.deterministic:
        torch.use_deterministic_algorithms(True)

    from vpkit import backbones as bb, continual, data, device, train
    from vpkit.studies import image_prompts_l2p as study

    cfg = study.settings("offline", **_kw(study.settings, precision=args.precision))
    threads = cfg.get("num_threads", "auto") if args.threads is None else int(args.threads)
    runtime = device.configure(precision=cfg["precision"], threads=threads, verbose=False)
    print("runtime:", runtime, "| torch threads", torch.get_num_threads(), "| autocast dtype",
          device.precision() if hasattr(device, "precision") else "?")
    nb_seed = 0  # the notebook's seed parameter: split and image subsets
    split_seed = nb_seed if cfg["split_seed"] is None else cfg["split_seed"]
    train.seed_everything(nb_seed)

    backbone = bb.build_backbone(cfg["backbone"], img_size=cfg["img_size"])
    pool, test = data.offline_dataset(cfg["dataset"])
    if hasattr(study, "split_tasks"):
        tasks = study.split_tasks(pool, test, cfg, seed=split_seed)
    else:  # older trees: the notebook split the tasks itself
        from vpkit.data.continual import class_incremental_split

        tasks = class_incremental_split(pool, test, num_tasks=cfg["num_tasks"], seed=split_seed,
                                        shuffle_classes=cfg["shuffle_classes"],
                                        n_train_per_class=cfg["n_train_per_class"],
                                        n_test_per_class=cfg["n_test_per_class"])
    tasks = tasks[:args.tasks]
    C = pool.num_classes
    queries = continual.cache_queries(backbone, tasks, **_kw(continual.cache_queries, amp=cfg["amp"],
                                      normalize=cfg["normalize"], train=not cfg["augment"],
                                      crop_pct=cfg.get("eval_crop_pct")))
    mean, std = (backbone.mean, backbone.std) if cfg["normalize"] else ((0.0,) * 3, (1.0,) * 3)
    variants = study.project_variants(**_kw(study.project_variants, pool_size=cfg["pool_size"],
                                      length=cfg["length"], top_k=cfg["top_k"], pull_coeff=cfg["pull_coeff"],
                                      selection=cfg["selection"], lwf_weight=cfg["lwf_weight"],
                                      gen_lwf_weights=cfg["gen_lwf_weights"], gen_size=cfg["gen_size"]))
    if hasattr(study, "train_config"):
        base = study.train_config(cfg)
    else:  # older trees: the notebook built it
        base = continual.ContinualConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                                         optimizer="adam", amp=cfg["amp"], normalize=cfg["normalize"],
                                         augment=cfg["augment"])
    t0 = time.perf_counter()
    out = study.run_all(variants, [args.variant], seeds=[args.seed], single_seed=cfg["single_seed"],
                        backbone=backbone, tasks=tasks, train_cfg=base, queries=queries, pool=pool,
                        pool_size=cfg["pool_size"], init_classes=cfg["init_classes"], mean=mean, std=std,
                        num_classes=C)
    r = out["runs"][args.variant, args.seed]
    np.set_printoptions(precision=2, suppress=True, linewidth=120)
    print(f"{args.variant} seed {args.seed}: {time.perf_counter() - t0:.0f}s")
    print("acc matrix (%):\n", 100 * r.acc_matrix)
    print(f"avg_acc {100 * r.average_accuracy:.4f}  forgetting {100 * r.forgetting:.4f}")
    print("acc rows:", [[round(float(v), 4) for v in row] for row in r.acc_matrix])
    print("outcomes hash", _hash(r.correct[k] for k in sorted(r.correct)))
    sel = out["selections"].get((args.variant, args.seed))
    print("selection hash", _hash([sel]) if sel is not None else None)
    print("test-query hash", _hash(queries.test), "| train-query hash",
          _hash(queries.train) if queries.train is not None else None)
    print("init-image hash", _hash([out["init"][args.seed][0]]), "init classes", out["init"][args.seed][1])
    for t, h in enumerate(r.histories):
        losses = getattr(h, "loss", None) or getattr(h, "losses", None)
        print(f"task {t + 1} losses:", [round(float(v), 6) for v in losses] if losses is not None else h)


if __name__ == "__main__":
    main()

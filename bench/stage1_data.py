"""Does the K = 10 lead grow with stage 1's photos? (issue 5 §1, "why the target is missed")

The paper pretrains on LaPa's training images (18,176); the CPU study on 793 photos (the pool's
600 and the 193 unlabeled ones). This trains the study's stage 1 (spark, lite, 128 px, batch 8,
AdamW 3e-3) on a seeded fraction of those photos for the same number of steps (3,960: more epochs
over fewer photos), so that only the photos' count differs. ``bench/k10_subsets.py run
--ssl-tag`` then fine-tunes K = 10 from it on the subsets the full stage 1 ran, and
``summary --scratch-from`` pairs both with the same scratch runs. ``--heldout`` compares each
stage 1's reconstruction of photos it trained on with faces it never saw (the 100 validation
faces).

Usage:
    .venv/bin/python bench/stage1_data.py --fraction 0.25 [--threads 2]
    .venv/bin/python bench/stage1_data.py --fraction 0.25 --quick   # a few steps: the pipeline
    .venv/bin/python bench/stage1_data.py --heldout   # each stage 1's loss: seen vs unseen faces
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
import study  # noqa: E402
from k10_subsets import SSL_DEFAULT, STUDY  # noqa: E402

from trainer.data.folders import list_images  # noqa: E402
from trainer.data.imageio import atomic_write_bytes  # noqa: E402

log = logging.getLogger("stage1_data")


def pick_photos(paths: list[Path], fraction: float, seed: int = 0) -> list[Path]:
    """A seeded ``fraction`` of ``paths`` (at least one); with one seed a smaller fraction is a
    subset of a larger one."""
    if not 0 < fraction <= 1:
        raise SystemExit(f"--fraction {fraction}: must be in (0, 1]")
    n = max(1, round(fraction * len(paths)))
    order = np.random.default_rng(seed).permutation(len(paths))[:n]
    return sorted(paths[i] for i in order)


def link_folder(paths: list[Path], folder: Path) -> Path:
    """A folder of symbolic links to ``paths`` (names kept unique by their position)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for i, path in enumerate(paths):
        (folder / f"{i:04d}_{path.name}").symlink_to(path.resolve())
    return folder


def matched_epochs(n_photos: int, batch: int, steps: int) -> int:
    """Epochs over ``n_photos`` that make about ``steps`` steps (the loader drops a last short
    batch)."""
    per_epoch = max(1, n_photos // batch)
    return max(1, round(steps / per_epoch))


def reconstruction_losses(
    checkpoint: Path, groups: dict[str, list[Path]], size: int = 128, batch: int = 16
) -> dict[str, float]:
    """Mean stage-1 loss (spark: masked pixels, per-patch normalised) of ``checkpoint`` on each
    group of photos, the same seeded masks for every checkpoint: how well it reconstructs faces
    it trained on against faces it never saw."""
    import torch

    from trainer.checkpoint import load_model
    from trainer.data.masking import CenterPatchMasker, mask_input
    from trainer.data.torch_datasets import UnlabeledDataset
    from trainer.losses import reconstruction_loss

    spark = study.recipe_options("spark", study.StudySettings())
    model, _ = load_model(checkpoint)
    masker = CenterPatchMasker(size, mask_ratio=spark["mask_ratio"])
    center = masker.center_region()
    out = {}
    for name, paths in groups.items():
        data = UnlabeledDataset(paths, size, augment_flip=False)
        total = 0.0
        for start in range(0, len(data), batch):
            images = torch.stack([data[i] for i in range(start, min(start + batch, len(data)))])
            mask = masker(len(images), torch.Generator().manual_seed(start))
            with torch.no_grad():
                target = model.normalize(images)
                pred = model(mask_input(target, mask), head="reconstruction")
                loss = reconstruction_loss(
                    pred, target, mask, center, spark["loss_region"], norm_pix=spark["norm_pix"]
                )
            total += float(loss) * len(images)
        out[name] = total / len(data)
    return out


def heldout(results: Path, unlabeled: Path) -> int:
    """Every stage-1 run in ``results`` and the study's own, on the photos all of them trained on
    (the smallest run's) and on the 100 validation faces none of them saw."""
    runs = json.loads(results.read_text())
    checkpoints = {"f1": SSL_DEFAULT} | {tag: Path(r["checkpoint"]) for tag, r in runs.items()}
    small = runs[min(runs, key=lambda tag: runs[tag]["photos"])]
    photos = list_images([STUDY / "data" / "train" / "images", unlabeled])
    seen = pick_photos(photos, small["fraction"], small["seed"])
    groups = {f"seen (f{small['fraction']:g}, {len(seen)})": seen}
    groups["unseen (validation, 100)"] = list_images(STUDY / "data" / "val" / "images")
    print(f"| stage 1 | {' | '.join(groups)} |")
    print("|---" * (len(groups) + 1) + "|")
    for tag, path in checkpoints.items():
        losses = reconstruction_losses(path, groups)
        print(f"| {tag} | {' | '.join(f'{v:.4f}' for v in losses.values())} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, help="share of the 793 photos")
    parser.add_argument(
        "--heldout",
        action="store_true",
        help="no training: each stage 1's loss on photos it saw and on faces it never saw",
    )
    parser.add_argument("--seed", type=int, default=0, help="which photos")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "stage1-data"))
    parser.add_argument("--unlabeled", default=str(study.SHARED / "faces-unlabeled"))
    parser.add_argument(
        "--results",
        default=str(ROOT / "bench" / "results" / "stage1_data.json"),
        help="each run's result under its tag (updated, not replaced)",
    )
    parser.add_argument("--quick", action="store_true", help="6 steps at 64 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.heldout:
        return heldout(Path(args.results), Path(args.unlabeled))
    if args.fraction is None:
        parser.error("--fraction is required (or --heldout)")
    settings = study.QUICK if args.quick else study.StudySettings()
    pool = STUDY / "data" / "train" / "images"
    if not pool.is_dir():
        sys.exit(f"{pool}: run the study's data stage first (bench/study.py)")
    full = list_images([pool, Path(args.unlabeled)])
    photos = pick_photos(full, args.fraction, args.seed)
    steps = (len(full) // settings.pretrain_batch) * settings.pretrain_epochs
    epochs = matched_epochs(len(photos), settings.pretrain_batch, steps)
    tag = f"f{args.fraction:g}_s{args.seed}" + "_quick" * args.quick
    out = Path(args.out)
    folder = link_folder(photos, out / f"photos_{tag}")
    settings = replace(settings, pretrain_epochs=epochs)
    log.info(
        "%d of %d photos, %d epochs (~%d steps, the full stage 1's %d)",
        len(photos), len(full), epochs, epochs * (len(photos) // settings.pretrain_batch), steps,
    )  # fmt: skip
    stage_dir = out / f"pretrain_spark{study.stage1_base_tag(settings, 'spark')}_{tag}"
    result = study.run_pretrain("spark", out, settings, Path(args.unlabeled), [folder], stage_dir)
    result = {**result, "fraction": args.fraction, "seed": args.seed, "photos": len(photos)}
    result["of"] = len(full)
    result = {k: v for k, v in result.items() if k != "settings"}
    print(json.dumps(result, indent=1))
    if not args.quick:
        path = Path(args.results)
        runs = json.loads(path.read_text()) if path.is_file() else {}
        runs[tag] = {
            **result,
            "epochs": epochs,
            "command": " ".join(["bench/stage1_data.py", *(argv or sys.argv[1:])]),
        }
        atomic_write_bytes(path, (json.dumps(runs, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

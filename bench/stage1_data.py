"""Does the K = 10 lead grow with stage 1's photos? (issue 5 §1, "why the target is missed")

The paper pretrains on LaPa's training images (18,176); the CPU study on 793 photos (the pool's
600 and the 193 unlabeled ones). This trains the study's stage 1 (spark, lite, 128 px, batch 8,
AdamW 3e-3) on a seeded fraction of those photos for the same number of steps (3,960: more epochs
over fewer photos), so that only the photos' count differs. ``bench.k10_subsets run
--ssl-tag`` then fine-tunes K = 10 from it on the subsets the full stage 1 ran, and
``summary --scratch-from`` pairs both with the same scratch runs. ``--heldout`` compares each
stage 1's reconstruction of photos it trained on with faces it never saw (the 100 validation
faces).

Usage:
    .venv/bin/python -m bench.stage1_data --fraction 0.25 [--threads 2]
    .venv/bin/python -m bench.stage1_data --fraction 0.25 --quick   # a few steps: the pipeline
    .venv/bin/python -m bench.stage1_data --heldout   # each stage 1's loss: seen vs unseen faces
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.harness import (
    SHARED,
    argument_parser,
    command_line,
    machine,
    out_dir,
    require,
    results_dir,
    set_threads,
    setup_logging,
    utc_now,
    write_json,
)
from bench.recipes import (
    QUICK,
    SSL_DEFAULT,
    STUDY_OUT,
    StudySettings,
    recipe_options,
    stage1_base_tag,
)
from bench.stage1 import run_pretrain
from trainer.data.folders import list_images

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

    spark = recipe_options("spark", StudySettings())
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
    runs = json.loads(require(results, "the stage-1 runs' results (--fraction runs)").read_text())
    checkpoints = {"f1": SSL_DEFAULT} | {tag: Path(r["checkpoint"]) for tag, r in runs.items()}
    small = runs[min(runs, key=lambda tag: runs[tag]["photos"])]
    photos = list_images([STUDY_OUT / "data" / "train" / "images", unlabeled])
    seen = pick_photos(photos, small["fraction"], small["seed"])
    groups = {f"seen (f{small['fraction']:g}, {len(seen)})": seen}
    groups["unseen (validation, 100)"] = list_images(STUDY_OUT / "data" / "val" / "images")
    print(f"| stage 1 | {' | '.join(groups)} |")
    print("|---" * (len(groups) + 1) + "|")
    for tag, path in checkpoints.items():
        losses = reconstruction_losses(path, groups)
        print(f"| {tag} | {' | '.join(f'{v:.4f}' for v in losses.values())} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__,
        experiment="stage1_data",
        out=out_dir("stage1-data"),
        threads=True,
        seed=0,
        seed_help="which photos",
        quick="6 steps at 64 px",
    )
    parser.add_argument("--fraction", type=float, help="share of the 793 photos")
    parser.add_argument(
        "--heldout",
        action="store_true",
        help="no training: each stage 1's loss on photos it saw and on faces it never saw",
    )
    parser.add_argument("--unlabeled", default=str(SHARED / "faces-unlabeled"))
    parser.add_argument(
        "--results",
        default=str(results_dir("stage1_data") / "stage1_data.json"),
        help="each run's result under its tag (updated, not replaced; default %(default)s)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    if args.heldout:
        return heldout(Path(args.results), Path(args.unlabeled))
    if args.fraction is None:
        parser.error("--fraction is required (or --heldout)")
    settings = QUICK if args.quick else StudySettings()
    pool = require(STUDY_OUT / "data" / "train" / "images", "the study's data stage (bench.study)")
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
    stage_dir = out / f"pretrain_spark{stage1_base_tag(settings, 'spark')}_{tag}"
    result = run_pretrain("spark", out, settings, Path(args.unlabeled), [folder], stage_dir)
    result = {**result, "fraction": args.fraction, "seed": args.seed, "photos": len(photos)}
    result["of"] = len(full)
    result = {k: v for k, v in result.items() if k != "settings"}
    print(json.dumps(result, indent=1))
    if not args.quick:
        path = Path(args.results)
        runs = json.loads(path.read_text()) if path.is_file() else {}
        command = command_line(__spec__.name, argv)
        runs[tag] = {**result, "epochs": epochs, "command": command}
        runs[tag].update(date=utc_now(), machine=machine())
        write_json(path, runs, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

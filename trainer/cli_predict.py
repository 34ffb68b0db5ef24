"""``faceparse predict``: a folder of photos -> LaPa label maps, on one process or under
torchrun (each process parses its share, the outputs are those of one runtime)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.errors import FaceParseError

EXIT_INTERRUPTED = 130  # as the shell reports a Ctrl-C

if TYPE_CHECKING:
    from trainer.distributed import DistInfo
    from trainer.predict import Predictor


def cmd_predict(args: argparse.Namespace) -> int:
    """Run ``faceparse predict`` with the parsed ``args``; returns the exit code."""
    from trainer.distributed import cleanup, init_distributed
    from trainer.predict_folder import predict_folder

    if not Path(args.images).is_dir():
        what = "a file; give the folder that holds it" if Path(args.images).exists() else "not found"
        raise FaceParseError(f"{args.images}: {what} (predict parses a folder of images)")
    from trainer.predict_folder import photos_to_parse

    overlays = Path(args.overlays) if args.overlays else None
    # predict_folder's own scan warns about the files that are not images.
    found = len(photos_to_parse(Path(args.images), Path(args.out), overlays, warn=False))
    if not found:
        raise FaceParseError(f"{args.images}: no images found (the folder is searched recursively)")
    # Under torchrun: one process per GPU or CPU share, each parsing its share of the photos.
    info = init_distributed(args.device)
    try:
        predictor = _predictor_for_every_rank(args, info)
        count = predict_folder(
            predictor,
            args.images,
            args.out,
            overlay_dir=args.overlays,
            rank=info.rank,
            world_size=info.world_size,
        )
    except KeyboardInterrupt:
        if info.is_main:
            print(
                "faceparse predict: interrupted; the label maps written so far are kept, and the "
                "same command again finishes the folder (it replaces only the files it wrote)",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    finally:
        cleanup(info)
    if not count:
        raise FaceParseError(
            f"{args.images}: no label map written: none of the {found} images could be read "
            "(see the warnings)"
        )
    skipped = f" ({found - count} skipped, see the warnings)" if count < found else ""
    if info.is_main:
        ranks = f" by {info.world_size} processes" if info.distributed else ""
        wrote = _counted(count, "label map")
        print(f"wrote {wrote} to {args.out}{skipped}{ranks}{_faces_parsed(args.out)}")
    return 0


def _faces_parsed(out: str) -> str:
    """': N faces parsed, K photos without a face' from predict's faces.json (detect framing)."""
    from trainer.predict_folder import FACES_NAME

    try:
        record = json.loads((Path(out) / FACES_NAME).read_text("utf-8"))
        faces = [len(image["faces"]) for image in record["images"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    if record.get("framing") != "detect":
        return ""
    none = _counted(faces.count(0), "photo")
    return f": {_counted(sum(faces), 'face')} parsed, {none} without a face (all background)"


def _counted(count: int, noun: str) -> str:
    """'1 face', '3 faces', '0 faces'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _predictor_for_every_rank(args: argparse.Namespace, info: DistInfo) -> Predictor:
    """The predictor; under torchrun rank 0 chooses the runtime and every rank uses it, so the
    label maps are those of one process."""
    from trainer.runtime_choice import RUNTIMES, load_predictor

    if not info.distributed or args.runtime != "auto":
        return load_predictor(args.checkpoint, info.device, args.framing, args.runtime)
    import torch
    import torch.distributed as dist

    chosen = torch.zeros(1, dtype=torch.int64)
    if info.is_main:
        predictor = load_predictor(args.checkpoint, info.device, args.framing, "auto")
        chosen[0] = RUNTIMES.index(predictor.model_info["runtime"])
    dist.broadcast(chosen, src=0)
    if info.is_main:
        return predictor
    return load_predictor(args.checkpoint, info.device, args.framing, RUNTIMES[int(chosen)])

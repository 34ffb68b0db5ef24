"""``faceparse predict`` on a folder: every image under it into a LaPa label PNG (+ overlay).

A pipeline that keeps the cores busy: reader threads decode the next photos while the network
runs on this one, and a writer thread encodes and writes the label maps and overlays behind it
(the image codecs release the GIL). With ``whole`` framing several photos share a forward pass.

Under ``torchrun`` each rank takes every ``world_size``-th photo of the sorted list; rank 0
gathers the per-photo records into the one ``faces.json``, so the outputs are those of a single
process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.folders import list_images
from trainer.data.imageio import (
    atomic_write_bytes,
    image_size,
    read_image,
    write_image,
    write_label,
)
from trainer.errors import FaceParseError
from trainer.labels import get_label_set
from trainer.predict import DEFAULT_FRAMING, Prediction, Predictor
from trainer.run_files import hold_folder

log = logging.getLogger(__name__)

FACES_NAME = "faces.json"
# The files a run will write, listed before it writes any; gone once faces.json lists them, so
# the run after an interrupted one knows these files are predict's own.
PENDING_NAME = ".faces.pending.json"
READERS = 2  # decoding threads
# Photos decoded ahead of the network hold at most this many pixels (and always one photo): a
# folder of 200-megapixel PNGs held five decoded photos at 600 MB each besides the one parsed.
MAX_AHEAD_PIXELS = 250_000_000
WHOLE_BATCH = 4  # photos per forward pass with whole framing

Decoded = tuple[np.ndarray, tuple[int, int]]


# Rows of an overlay blended at a time: a whole-image blend held four more copies of the photo
# (colours, blend, mask, background pixels): 6.5 GB for a 200-megapixel photo.
_OVERLAY_BAND_PIXELS = 1 << 22


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    label_set_name: str = "lapa",
    alpha: float = 0.5,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 image with its (H, W) label map blended on top in the class palette.

    Args:
        out: where to write it ((H, W, 3) uint8; ``image`` itself blends in place); default a
            new array.
    """
    import cv2

    label_set = get_label_set(label_set_name)
    out = np.empty_like(image) if out is None else out
    rows = max(1, _OVERLAY_BAND_PIXELS // max(1, image.shape[1]))
    for y0 in range(0, image.shape[0], rows):
        photo, classes = image[y0 : y0 + rows], label[y0 : y0 + rows]
        mixed = cv2.addWeighted(photo, 1.0 - alpha, label_set.colorize(classes), alpha, 0.0)
        # Background stays the photo itself so the face remains easy to see.
        np.copyto(mixed, photo, where=(classes == 0)[..., None])
        out[y0 : y0 + rows] = mixed
    return out


def predict_folder(
    checkpoint: str | os.PathLike[str] | Predictor,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    overlay_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    on_progress: Callable[[int, int, Path], None] | None = None,
    framing: str = DEFAULT_FRAMING,
    readers: int = READERS,
    rank: int = 0,
    world_size: int = 1,
) -> int:
    """Parse every image under a folder (recursive) into LaPa label PNGs.

    Writes ``out_dir/<sub>/<stem>.png`` (8-bit 'L', class indices, image size) for each image
    ``in_dir/<sub>/<stem>.<ext>``, a colour overlay ``overlay_dir/<sub>/<stem>.jpg`` if asked
    (JPEG: overlays of large photos as PNG are slow to write and tens of MB each), and
    ``out_dir/faces.json``: the model and framing used, and per image the faces parsed and the
    model's uncertainty score. An unreadable image is skipped with one warning line. Nothing is
    written when a target is an input image or a file that no earlier prediction into
    ``out_dir`` wrote (its ``faces.json`` lists those): a user's files are never replaced.

    Args:
        checkpoint: a fine-tuned checkpoint path or a ready Predictor (its own framing is used).
        on_progress: called as (done, total, image_path) after each image is written, from the
            writer thread; ``total`` counts this rank's images.
        framing: "detect" or "whole" when a checkpoint path is given.
        readers: decoding threads (0: decode in this thread, one photo at a time).
        rank, world_size: this process's share under ``torchrun``; with ``world_size`` > 1 a
            process group must be initialised (:func:`trainer.distributed.init_distributed`).

    Returns:
        Number of label maps written by all ranks together.

    Raises:
        FaceParseError: a target is an input image or a file predict did not write.
    """
    predictor = (
        checkpoint
        if isinstance(checkpoint, Predictor)
        else Predictor.from_checkpoint(checkpoint, device, framing=framing)
    )
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    overlays = None if overlay_dir is None else Path(overlay_dir)
    jobs = _unique_outputs(in_dir, out_dir, overlays, warn=rank == 0)
    # Every rank checks every target before any rank writes one: all pass or all refuse.
    earlier = _refuse_foreign_targets(jobs, out_dir, overlays)
    with hold_folder(out_dir, "predict") if rank == 0 else contextlib.nullcontext():
        if rank == 0:  # again, now that no other predict can be writing here
            earlier = _refuse_foreign_targets(jobs, out_dir, overlays)
        return _predict_jobs(
            predictor, jobs, in_dir, out_dir, overlays, earlier, on_progress, readers, rank,
            world_size,
        )  # fmt: skip


def _predict_jobs(
    predictor: Predictor,
    jobs: list[tuple[Path, Path]],
    in_dir: Path,
    out_dir: Path,
    overlays: Path | None,
    earlier: set[str],
    on_progress: Callable[[int, int, Path], None] | None,
    readers: int,
    rank: int,
    world_size: int,
) -> int:
    """Parse this rank's share of ``jobs`` and write the outputs (see :func:`predict_folder`)."""
    if rank == 0:
        to_write = earlier | {rel.as_posix() for _, rel in jobs}
        if overlays is not None:
            to_write |= {_relative(overlays / rel.with_suffix(".jpg"), out_dir) for _, rel in jobs}
        atomic_write_bytes(out_dir / PENDING_NAME, json.dumps(sorted(to_write)).encode())
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # no rank writes before every rank has checked
    mine = jobs[rank::world_size]
    if predictor.framing == "detect":
        _ = predictor.finder  # loaded here, not by two reader threads at once
    writer = _Writer(predictor, in_dir, out_dir, overlays, len(mine), on_progress)
    batch = WHOLE_BATCH if predictor.framing == "whole" else 1
    try:
        pending: list[tuple[Path, Path, np.ndarray, tuple[int, int]]] = []
        for path, rel, decoded in _decoded(predictor, mine, readers):
            if isinstance(decoded, FaceParseError):
                log.warning("skipping %s", decoded)
                continue
            pending.append((path, rel, *decoded))
            if len(pending) >= batch:
                _predict_pending(predictor, pending, writer)
        _predict_pending(predictor, pending, writer)
    finally:
        records = writer.close()
    order = [path.relative_to(in_dir).as_posix() for path, _ in jobs]
    records, count = _gather(out_dir, records, order, rank, world_size)
    if rank == 0 and records:
        info = {k: v for k, v in predictor.model_info.items() if k != "metrics"}
        payload = {"model": info, "framing": predictor.framing, "images": records}
        # Files earlier runs wrote here stay ours, so a later run may replace them too.
        now = {p for r in records.values() for p in (r["label"], r.get("overlay")) if p}
        kept = sorted(p for p in earlier - now if (out_dir / p).is_file())
        if kept:
            payload["written_before"] = kept
        atomic_write_bytes(out_dir / FACES_NAME, json.dumps(payload, indent=1).encode())
    if rank == 0:
        (out_dir / PENDING_NAME).unlink(missing_ok=True)
    return count


def _relative(path: Path, out_dir: Path) -> str:
    """``path`` relative to ``out_dir`` (with ``..`` where needed), as faces.json records it."""
    # Both resolved: faces.json's paths are checked through links later (Path.resolve), so a
    # path written lexically would name another file when out_dir is reached through a link.
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def photos_to_parse(
    in_dir: Path, out_dir: Path, overlay_dir: Path | None = None, warn: bool = True
) -> list[Path]:
    """Every image under ``in_dir`` but those in the output folders, when they lie inside it
    (``photos/labels``): a run's own label maps and overlays are not photos to parse."""
    root = in_dir.resolve()
    outputs = [
        d.resolve()
        for d in (out_dir, overlay_dir)
        if d is not None and d.resolve() != root and d.resolve().is_relative_to(root)
    ]
    keep, left_out = [], []
    for path in list_images(in_dir, warn=warn):
        inside = any(path.resolve().is_relative_to(d) for d in outputs)
        (left_out if inside else keep).append(path)
    ours = {(out_dir / p).resolve() for p in _written_here(out_dir) or ()} if left_out else set()
    foreign = [p for p in left_out if p.resolve() not in ours]
    if foreign and warn:  # photos the user put there, not label maps or overlays of ours
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        log.warning(
            "left out %d image%s in the output folders inside %s, e.g. %s%s: move them out of "
            "%s to parse them", len(foreign), "s" if len(foreign) > 1 else "", in_dir,
            foreign[0], more, ", ".join(str(d) for d in (out_dir, overlay_dir) if d is not None),
        )  # fmt: skip
    return keep


def _unique_outputs(
    in_dir: Path, out_dir: Path, overlay_dir: Path | None, warn: bool
) -> list[tuple[Path, Path]]:
    """(image, its label path under out_dir) of every image; of images that would write the
    same label file (face.jpg and face.png in one folder both become face.png), the first."""
    jobs, seen = [], {}
    for path in photos_to_parse(in_dir, out_dir, overlay_dir, warn=warn):
        rel = path.relative_to(in_dir).with_suffix(".png")
        if rel in seen:
            if warn:  # decided before any is read: the other may yet prove unreadable
                log.warning(
                    "skipping %s: %s has the same name and takes its label map %s; rename one "
                    "of them to parse both", path, seen[rel].name, out_dir / rel,
                )  # fmt: skip
            continue
        seen[rel] = path
        jobs.append((path, rel))
    return jobs


def _written_here(out_dir: Path) -> set[str] | None:
    """The files (paths relative to ``out_dir``) that earlier predictions into ``out_dir`` wrote,
    as its ``faces.json`` lists them (and the list of a run that was interrupted); None when
    there is neither of ours."""
    written: set[str] | None = None
    try:
        payload = json.loads((out_dir / FACES_NAME).read_text("utf-8"))
        records = payload["images"].values()
        written = {p for r in records for p in (r["label"], r.get("overlay")) if p}
        written |= set(payload.get("written_before", ()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:
        pending = json.loads((out_dir / PENDING_NAME).read_text("utf-8"))
        written = (written or set()) | {p for p in pending if isinstance(p, str)}
    except (OSError, ValueError, TypeError):
        pass
    return written


def _refuse_foreign_targets(
    jobs: list[tuple[Path, Path]], out_dir: Path, overlay_dir: Path | None
) -> set[str]:
    """Check every file this run would write before it writes any: an input image is never a
    target, and an existing file is replaced only if an earlier prediction wrote it.

    Returns:
        The files earlier predictions wrote (relative to ``out_dir``).

    Raises:
        FaceParseError: a target is an input image, or a file predict did not write.
    """
    inputs = {path.resolve() for path, _ in jobs}
    _refuse_a_damaged_record(out_dir / FACES_NAME)
    earlier = _written_here(out_dir)
    ours = set() if earlier is None else {(out_dir / p).resolve() for p in earlier}
    if earlier is not None:
        ours.add((out_dir / FACES_NAME).resolve())
    targets = [out_dir / FACES_NAME] + [out_dir / rel for _, rel in jobs]
    if overlay_dir is not None:
        targets += [overlay_dir / rel.with_suffix(".jpg") for _, rel in jobs]
    foreign = []
    for target in targets:
        if not (target.exists() or target.is_symlink()):
            continue
        resolved = target.resolve()
        if resolved in inputs:
            raise FaceParseError(
                f"{target}: is one of the input images; predicting would overwrite it; write "
                "the label maps and overlays to another folder (a new subfolder of the photos, "
                "such as labels/, is left out of them)"
            )
        if resolved not in ours:
            foreign.append(target)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise FaceParseError(
            f"{foreign[0]}: exists and was not written by faceparse predict{more}; nothing was "
            "written: choose another output folder or move those files away"
        )
    return earlier or set()


def _refuse_a_damaged_record(record: Path) -> None:
    """Stop when ``faces.json`` is there but not JSON (cut short, emptied): without it the
    label maps predict wrote cannot be told from a user's files, and it is not a user's own.

    Raises:
        FaceParseError: it is damaged (the message says what to do).
    """
    try:
        text = record.read_bytes() if record.is_file() else None
    except OSError:
        return  # unreadable: the writes that follow name the folder
    if text is None:
        return
    try:
        json.loads(text)
    except ValueError as exc:
        reason = "empty" if not text else exc
        raise FaceParseError(
            f"{record}: damaged, so the label maps here cannot be told from files of yours "
            f"({reason}); nothing was written: predict into a new folder, or delete the "
            "folder's label maps and faces.json if they are all predict's"
        ) from None


def _decoded(
    predictor: Predictor, jobs: list[tuple[Path, Path]], readers: int
) -> Iterator[tuple[Path, Path, Decoded | FaceParseError]]:
    """Each job's decoded photo (or its read error) in order, decoded up to 2 × ``readers``
    photos ahead, and no more than :data:`MAX_AHEAD_PIXELS` of them by their headers but one
    (memory holds a few photos, not the folder)."""

    def decode(path: Path) -> Decoded | FaceParseError:
        try:
            return predictor.decode_file(path)
        except FaceParseError as exc:
            return exc

    if readers <= 0:
        for path, rel in jobs:
            yield path, rel, decode(path)
        return
    with ThreadPoolExecutor(readers, thread_name_prefix="faceparse-read") as pool:
        ahead: deque[tuple[Path, Path, Future[Decoded | FaceParseError], int]] = deque()
        held = 0  # pixels of the photos in `ahead`
        for path, rel in jobs:
            pixels = _pixels(path)
            ahead.append((path, rel, pool.submit(decode, path), pixels))
            held += pixels
            while len(ahead) > 2 * readers or (len(ahead) > 1 and held > MAX_AHEAD_PIXELS):
                first_path, first_rel, future, first_pixels = ahead.popleft()
                held -= first_pixels
                yield first_path, first_rel, future.result()
        while ahead:
            first_path, first_rel, future, _ = ahead.popleft()
            yield first_path, first_rel, future.result()


def _pixels(path: Path) -> int:
    """A photo's pixel count from its header (0 when unreadable: its reader says why)."""
    try:
        h, w = image_size(path)
    except FaceParseError:
        return 0
    return h * w


def _predict_pending(
    predictor: Predictor,
    pending: list[tuple[Path, Path, np.ndarray, tuple[int, int]]],
    writer: _Writer,
) -> None:
    if not pending:
        return
    if predictor.framing == "whole":  # one forward pass for the lot
        images, sizes = [p[2] for p in pending], [p[3] for p in pending]
        for (path, rel, image, _), pred in zip(
            pending, predictor.predict_batch(images, output_sizes=sizes, confidence=False),
            strict=True,
        ):
            writer.put(path, rel, pred, image)
    else:
        for path, rel, image, full in pending:
            # Label maps only: no full-size confidence map (800 MB for a 200-megapixel photo).
            pred, parsed_from = predictor.predict_decoded(path, image, full, confidence=False)
            writer.put(path, rel, pred, parsed_from)
    pending.clear()


class _Writer:
    """Writes label maps and overlays in a thread of its own, behind the network."""

    def __init__(
        self,
        predictor: Predictor,
        in_dir: Path,
        out_dir: Path,
        overlay_dir: str | os.PathLike[str] | None,
        total: int,
        on_progress: Callable[[int, int, Path], None] | None,
    ) -> None:
        self.predictor, self.in_dir, self.out_dir = predictor, in_dir, out_dir
        self.overlay_dir = None if overlay_dir is None else Path(overlay_dir)
        self.total, self.on_progress = total, on_progress
        self.records: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.done = 0
        self._queue: queue.Queue[tuple[Path, Path, Prediction, np.ndarray | None] | None] = (
            queue.Queue(4)
        )
        self._thread = threading.Thread(target=self._run, name="faceparse-write", daemon=True)
        self._thread.start()

    def put(self, path: Path, rel: Path, pred: Prediction, image: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        # The photo waits in the queue only for an overlay (600 MB at 200 megapixels).
        self._queue.put((path, rel, pred, image if self.overlay_dir is not None else None))

    def close(self) -> dict[str, Any]:
        """Wait for the writes; their records by image (path under in_dir), or raise the
        writer's error."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.records

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain; the error is raised in the caller's thread
            try:
                self._write(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.error = exc

    def _write(self, path: Path, rel: Path, pred: Prediction, image: np.ndarray | None) -> None:
        write_label(self.out_dir / rel, pred.label)
        if self.predictor.framing == "detect" and not pred.faces:
            log.warning("%s: no face found; its label map is all background", path)
        record = {
            "label": rel.as_posix(),
            "faces": [f.to_json() for f in pred.faces],
            "score": None if math.isnan(pred.score) else round(pred.score, 5),
        }
        if self.overlay_dir is not None and image is not None:
            if image.shape[:2] != pred.label.shape:
                image = read_image(path)  # parsed from a reduced copy
            target = self.overlay_dir / rel.with_suffix(".jpg")
            # Blended in place: the photo handed to the writer is not used after it.
            mixed = overlay(image, pred.label, self.predictor.label_set.name, out=image)
            write_image(target, mixed, quality=90)
            # Where it went, relative to out_dir: a later run may replace it (not a user's file).
            record["overlay"] = _relative(target, self.out_dir)
        self.records[path.relative_to(self.in_dir).as_posix()] = record
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total, path)


def _gather(
    out_dir: Path, records: dict[str, Any], order: list[str], rank: int, world_size: int
) -> tuple[dict[str, Any], int]:
    """Every rank's records on rank 0 in the order of one process (through JSON files: no
    pickles), and the number of label maps all ranks wrote."""
    if world_size <= 1:
        return records, len(records)
    import torch
    import torch.distributed as dist

    part = out_dir / f".faces.rank{rank}.json"
    atomic_write_bytes(part, json.dumps(records).encode())
    count = torch.tensor([len(records)], dtype=torch.int64)
    dist.all_reduce(count)  # also: every rank has written its part
    merged: dict[str, Any] = {}
    if rank == 0:
        parts: dict[str, Any] = {}
        for r in range(world_size):
            parts.update(json.loads((out_dir / f".faces.rank{r}.json").read_text("utf-8")))
        merged = {key: parts[key] for key in order if key in parts}
    dist.barrier()  # rank 0 has read every part
    part.unlink(missing_ok=True)
    return merged, int(count.item())

"""Enormous photos (12-200 megapixels): time and peak memory of ``faceparse predict`` and of the
app's pre-label of one photo, and where they go.

Photos are made once in ``--photos`` (default /tmp/large_photos, never in the repository) by
upscaling in-the-wild photos of ../shared/data/faces-unlabeled to each size: JPEGs (one face;
seven faces of a group selfie) and one PNG (a couple). Each photo is run in a fresh process:

- ``cli``: ``faceparse predict MODEL FOLDER OUT --runtime torch`` in-process (the folder holds the
  one photo), from start to the label map on disk;
- ``overlays``: the same with ``--overlays`` (a colour overlay JPEG at full size too);
- ``app``: what the app's pre-label queue does with a photo it opens
  (faceparse_app/prelabel_queue.py): ``read_image`` (the whole photo), ``Predictor.find_faces``,
  then ``faceparse_app.training.prelabel``, each step with its own peak memory.

Every step's seconds are summed from wrappers around the trainer's functions (decode, header,
find, crop, network, paste, label write), so nested calls (a photo read twice) show. Peak
memory is the process's maximum resident set (``ru_maxrss``); ``model_mib`` is what it held
after loading the model. A photo over the pixel limit is tried again with the limit lifted
(``Image.MAX_IMAGE_PIXELS = None``) and both outcomes are recorded.

    OMP_NUM_THREADS=1 nice -n 5 python -m bench.large_photos --threads 1 --label before
    python -m bench.large_photos --sizes 12,88 --paths cli --label after --threads 1

Labels on ordinary photos before and after a change: ``--write-labels DIR`` writes the label
maps of every ``--every``-th shared photo at its own size (``predict_file``, what ``faceparse
predict`` writes, and the app's whole-photo pre-label) with the code checked out;
``--compare-labels BEFORE AFTER`` writes how many pixels agree (``same_labels.json``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness

EXPERIMENT = "large_photos"
SOURCES = {  # name: (shared photo, format of the big copies)
    "one": ("deepface_img49.jpg", "JPEG"),
    "group": ("deepface_selfie-many-people.jpg", "JPEG"),
    "couple": ("deepface_couple.jpg", "PNG"),
    "longhair": ("deepface_img3.jpg", "JPEG"),  # hair past the 1.5x crop: the third, hair parse
}
SIZES_MP = (12, 24, 50, 88, 108, 200)
PNG_SIZES_MP = (50,)  # PNG copies: slow to write and to read, one size is enough

# (module, attribute, step) of the functions timed; a missing one is skipped (the code changes).
STEPS = (
    ("trainer.predict", "image_size", "header"),
    ("trainer.predict", "read_image", "decode"),
    ("trainer.predict", "read_photo", "decode"),
    ("trainer.face_parses", "crop_face", "crop"),
    ("trainer.predict", "paste_logits", "paste"),
    ("trainer.predict_folder", "write_label", "write"),
    ("trainer.predict_folder", "read_image", "decode_overlay"),
)
METHOD_STEPS = (("find_faces", "find"), ("crop_logits", "network"))


def make_photo(source: Path, target: Path, megapixels: float, fmt: str) -> Path:
    """``source`` upscaled (bicubic) to about ``megapixels``, as ``fmt``, written once."""
    if target.is_file():
        return target
    import cv2
    from PIL import Image

    from trainer.data.imageio import read_image

    image = read_image(source)
    h, w = image.shape[:2]
    k = (megapixels * 1e6 / (h * w)) ** 0.5
    big = cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
    del image
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    pil = Image.fromarray(big)
    del big
    if fmt == "JPEG":
        pil.save(tmp, format="JPEG", quality=90)
    else:
        pil.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, target)
    return target


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status in MiB (``VmRSS``: now, ``VmHWM``: the peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux: clear_refs 5); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _install_timers(seconds: dict[str, float]) -> None:
    """Wrap :data:`STEPS` so each call adds its wall seconds to ``seconds[step]``."""
    import importlib

    def timed(fn, step):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - t0

        return wrapper

    for module_name, attr, step in STEPS:
        module = importlib.import_module(module_name)
        if hasattr(module, attr):
            setattr(module, attr, timed(getattr(module, attr), step))
    from trainer.predict import Predictor

    for attr, step in METHOD_STEPS:
        setattr(Predictor, attr, timed(getattr(Predictor, attr), step))


def _child(kind: str, checkpoint: str, photo: str, lift: bool) -> dict[str, Any]:
    """One photo, one path, in this (fresh) process."""
    import numpy as np
    import torch
    from PIL import Image

    if lift:
        Image.MAX_IMAGE_PIXELS = None
    seconds: dict[str, float] = {}
    _install_timers(seconds)
    from trainer.predict import Predictor
    from trainer.starter import STARTER_PARSER  # noqa: F401 - the import cost outside the timing

    row: dict[str, Any] = {"path": kind, "limit_lifted": lift, "torch_threads": torch.get_num_threads()}
    t0, c0 = time.perf_counter(), time.process_time()
    if kind in ("cli", "overlays"):
        from trainer.cli import main

        out = Path(tempfile.mkdtemp(prefix="large_photos_"))
        extra = ["--overlays", str(out / "overlays")] if kind == "overlays" else []
        code = main(["predict", checkpoint, str(Path(photo).parent), str(out / "labels"),
                     "--runtime", "torch", "--device", "cpu", *extra])  # fmt: skip
        row["exit_code"] = code
        written = sorted((out / "labels").glob("*.png"))
        row["label_written"] = bool(written)
        if written:
            with Image.open(written[0]) as im:
                row["label_size"] = list(im.size)
            record = json.loads((out / "labels" / "faces.json").read_text())
            row["faces_found"] = sum(len(r["faces"]) for r in record["images"].values())
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    else:
        from faceparse_app.training import prelabel
        from trainer.data.imageio import read_image

        predictor = Predictor.from_checkpoint(checkpoint, device="cpu", framing="detect")
        predictor.find_faces(np.zeros((64, 64, 3), np.uint8))  # the finder loaded
        row["model_mib"] = round(_status_mib("VmRSS"), 1)
        t0, c0 = time.perf_counter(), time.process_time()
        peaks: dict[str, float] = {}
        app_steps: dict[str, float] = {}

        def step(name, fn, *args, **kwargs):
            base = _status_mib("VmRSS")
            _reset_peak()
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            app_steps[name] = round(time.perf_counter() - t, 2)
            peaks[name] = _status_mib("VmHWM") - base
            return out

        row["app_steps_s"] = app_steps
        try:
            image = step("read_image", read_image, photo)
            faces = step("find_faces", predictor.find_faces, image)
            pred = step("prelabel", prelabel, predictor, image, faces=faces)
            row["faces_found"] = len(pred.faces)
            row["label_size"] = [int(pred.label.shape[1]), int(pred.label.shape[0])]
            row["peak_mib_above_start_by_step"] = {k: round(v, 1) for k, v in peaks.items()}
            row["refused"] = None
        except Exception as exc:  # noqa: BLE001 - recorded: a refusal is a result
            row["refused"] = str(exc)[-300:]
    row["seconds"] = round(time.perf_counter() - t0, 2)
    row["cpu_seconds"] = round(time.process_time() - c0, 2)
    row["steps_s"] = {k: round(v, 2) for k, v in sorted(seconds.items())}
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def photos(
    folder: Path, sizes: list[int], png_sizes: tuple[int, ...] = PNG_SIZES_MP, copies: int = 1
) -> list[tuple[str, int, Path]]:
    """(source name, megapixels, photo) for every size, made where missing, one per folder, or
    with ``copies`` > 1 that many hard links of it in a folder of its own (a folder run)."""
    shared = harness.require(harness.SHARED / "faces-unlabeled", "the in-the-wild photos")
    out = []
    for name, (file, fmt) in SOURCES.items():
        for mp in sizes:
            if fmt == "PNG" and mp not in png_sizes:
                continue
            ext = ".jpg" if fmt == "JPEG" else ".png"
            target = folder / f"{name}_{mp}mp" / f"{name}_{mp}mp{ext}"
            photo = make_photo(shared / file, target, mp, fmt)
            if copies > 1:
                many = folder / f"{name}_{mp}mp_x{copies}"
                many.mkdir(exist_ok=True)
                for k in range(copies):
                    link = many / f"{name}_{mp}mp_{k}{ext}"
                    if not link.exists():
                        os.link(photo, link)
                photo = many / f"{name}_{mp}mp_0{ext}"
            out.append((name, mp, photo))
    return out


def write_labels(folder: Path, checkpoint: str, every: int) -> None:
    """Label maps of every ``every``-th shared photo: ``<stem>.file.png`` and ``<stem>.app.png``."""
    from faceparse_app.training import prelabel
    from trainer.data.folders import list_images
    from trainer.data.imageio import read_image, write_label
    from trainer.predict import Predictor

    shared = harness.require(harness.SHARED / "faces-unlabeled", "the in-the-wild photos")
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", framing="detect")
    for path in list_images(shared)[::every]:
        write_label(folder / f"{path.stem}.file.png", predictor.predict_file(path)[0].label)
        write_label(folder / f"{path.stem}.app.png", prelabel(predictor, read_image(path)).label)


def compare_labels(before: Path, after: Path) -> dict[str, Any]:
    """Per label map of ``before`` (and its namesake in ``after``): pixels, pixels that differ."""

    from trainer.data.imageio import read_label

    rows = []
    for old in sorted(before.glob("*.png")):
        a, b = read_label(old), read_label(after / old.name)
        rows.append({"label": old.name, "pixels": int(a.size), "differ": int((a != b).sum()),
                     "face_pixels": int((a > 0).sum())})  # fmt: skip
    differ = sum(r["differ"] for r in rows)
    face = sum(r["face_pixels"] for r in rows)
    return {"maps": len(rows), "identical_maps": sum(r["differ"] == 0 for r in rows),
            "differ_pixels": differ, "face_pixels": face,
            "differ_share_of_face_pixels": round(differ / max(1, face), 7), "rows": rows}  # fmt: skip


def markdown(results: Path, before: str = "before", after: str = "after") -> str:
    """The before/after table of a results file: per photo and path, seconds and peak RSS
    (before: "refused" when it was, with the figures of the run with the limit lifted)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[tuple[str, str]] = []
    for r in harness.read_jsonl(results):
        copies = r.get("photos_in_folder", 1)
        key = (r["file"] if copies == 1 else f"folder of {copies} × {r['file']}", r["path"])
        if key not in rows:
            rows[key] = {}
            order.append(key)
        refused = r.get("refused") or (r["path"] != "app" and not r.get("label_written"))
        slot = rows[key].setdefault(r["label"], {})
        if refused:
            slot["refused"] = True
        else:
            slot["run"] = r
    lines = ["| photo | path | before s (CPU s) | before peak MiB | after s (CPU s) | after peak MiB | load |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip

    def cell(slot: dict[str, Any] | None) -> tuple[str, str]:
        if not slot or "run" not in slot:
            return ("refused" if slot and slot.get("refused") else "-"), "-"
        run = slot["run"]
        mark = " (refused; limit lifted)" if slot.get("refused") else ""
        return f"{run['seconds']:.1f} ({run['cpu_seconds']:.1f}){mark}", f"{run['peak_rss_mib']:.0f}"

    for key in order:
        b, a = rows[key].get(before), rows[key].get(after)
        loads = [s["run"]["machine"]["load_average"][0] for s in (b, a) if s and "run" in s]
        lines.append(f"| {key[0]} | {key[1]} | {' | '.join(cell(b))} | {' | '.join(cell(a))} | "
                     f"{' / '.join(f'{v:.1f}' for v in loads)} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, results="large_photos.jsonl", threads=True
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MP)), help="megapixels")
    parser.add_argument("--png-sizes", default=",".join(map(str, PNG_SIZES_MP)),
                        help="megapixels of the PNG copies")  # fmt: skip
    parser.add_argument("--copies", type=int, default=1,
                        help="a folder of this many links of each photo (a folder run)")  # fmt: skip
    parser.add_argument("--sources", default="one,group,couple", help="of " + ",".join(SOURCES))
    parser.add_argument("--paths", default="cli,app", help="of cli, overlays, app")
    parser.add_argument("--photos", default="/tmp/large_photos", help="where the photos are made")
    parser.add_argument("--label", default="", help="names the run (before, after)")
    parser.add_argument("--parser", default=None, help="checkpoint (default: the starter parser)")
    parser.add_argument("--markdown", action="store_true", help="print the before/after table")
    parser.add_argument("--write-labels", default=None, metavar="DIR")
    parser.add_argument("--every", type=int, default=8, help="with --write-labels: every N-th photo")
    parser.add_argument("--compare-labels", nargs=2, default=None, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--child", nargs=4, metavar=("KIND", "CHECKPOINT", "PHOTO", "LIFT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.child:
        harness.set_threads(args.threads)
        kind, checkpoint, photo, lift = args.child
        print(json.dumps(_child(kind, checkpoint, photo, lift == "1")))
        return 0
    from trainer.starter import STARTER_PARSER

    checkpoint = str(args.parser or STARTER_PARSER)
    if args.markdown:
        print(markdown(Path(args.results)))
        return 0
    if args.write_labels:
        harness.set_threads(args.threads)
        write_labels(Path(args.write_labels), checkpoint, args.every)
        return 0
    if args.compare_labels:
        result = compare_labels(Path(args.compare_labels[0]), Path(args.compare_labels[1]))
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
        harness.write_json(Path(args.results).with_name("same_labels.json"), result)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    wanted = set(args.sources.split(","))
    command = harness.command_line()
    png_sizes = tuple(int(s) for s in args.png_sizes.split(","))
    for name, mp, photo in photos(Path(args.photos), sizes, png_sizes, args.copies):
        if name not in wanted:
            continue
        for kind in args.paths.split(","):
            for lift in ("0", "1"):
                cmd = harness.module_command(
                    "bench.large_photos",
                    ["--child", kind, checkpoint, str(photo), lift]
                    + (["--threads", str(args.threads)] if args.threads else []),
                )
                done = subprocess.run(cmd, capture_output=True, text=True, env=harness.child_env())
                lines = done.stdout.strip().splitlines()
                if done.returncode != 0 or not lines:
                    row = {"path": kind, "limit_lifted": lift == "1", "crashed": done.returncode,
                           "stderr": done.stderr[-600:]}  # fmt: skip
                else:
                    row = json.loads(lines[-1])
                    if kind != "app" and not row.get("label_written"):
                        row["stderr"] = done.stderr[-400:]
                payload = {"label": args.label, "source": name, "megapixels": mp,
                           "file": photo.name, "file_mib": round(photo.stat().st_size / 2**20, 1),
                           "photos_in_folder": args.copies,
                           **row}  # fmt: skip
                record = harness.jsonl_record(EXPERIMENT, f"{args.label}:{photo.stem}:{kind}",
                                              payload, command)  # fmt: skip
                harness.append_jsonl(args.results, record)
                print(json.dumps({k: v for k, v in record.items() if k != "machine"}), flush=True)
                refused = row.get("refused") or (kind != "app" and not row.get("label_written"))
                if not refused:
                    break  # read at the limit in force: no need to lift it
    harness.record_output(args.results, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

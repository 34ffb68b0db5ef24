"""How long opening a large project takes when its folder was changed in a file manager, and
whether every label stays on its own picture.

A project of N distinct 48-px JPEGs named 00000.jpg … (every one labeled by hand with a label of
its own: a number drawn into it), closed, changed, then opened again (``Project.open``: the scan
and the label reconciliation). Timed, each on a fresh copy of the project:

- ``unchanged``: nothing changed (the common reopen);
- ``renumbered``: photo 00001.jpg deleted and every later photo renamed one number down to close
  the gap (N − 2 moves along one chain, the deleted photo's name taken over);
- ``reencoded``: every photo saved as PNG under its name and the JPEG deleted (N format changes);
- ``cropped``: every photo replaced by a smaller crop (N labels kept aside, N fresh starts).

For each: the seconds of the open, and ``wrong``: labels not on their own picture afterwards
(each label is checked against the number drawn for its picture; 0 expected), ``unusable``:
labels left under a photo they cannot fit, ``missing_rows``, ``kept_aside`` (``.invalid`` files)
and ``review`` (rows marked for review).

    python -m bench.scan_moves [--images 2000] [--cases unchanged,renumbered,reencoded,cropped]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import add_common, argument_parser, command_line, machine, utc_now, write_json
from bench.image_list import make_folder

EXPERIMENT = "scan_moves"
CASES = ("unchanged", "renumbered", "reencoded", "cropped")


def _label(k: int) -> np.ndarray:
    """A 48×48 label telling photo ``k`` apart: its number's bits, a class per bit row."""
    label = np.zeros((48, 48), np.uint8)
    for bit in range(16):
        label[bit * 3 : bit * 3 + 2, :] = 1 + ((k >> bit) & 1)
    return label


def _number(label: np.ndarray) -> int:
    return sum(int(label[bit * 3, 0] == 2) << bit for bit in range(16))


def _build(folder: Path, n: int) -> dict[str, int]:
    """The project, every photo labeled; photo relpath -> its number (by content, sorted names)."""
    from faceparse_app.project import Project

    make_folder(folder, n)
    names = sorted(p.name for p in folder.iterdir())
    for k, name in enumerate(names):  # short numbered names, renumbered like a user would
        (folder / name).rename(folder / f"{k:05d}.jpg")
    with Project.open(folder) as project:
        for k, rec in enumerate(project.images()):
            project.save_label(rec, _label(k), status="labeled")
    return {f"{k:05d}.jpg": k for k in range(n)}


def _change(folder: Path, case: str, n: int, numbers: dict[str, int]) -> dict[str, int]:
    """Change the folder as ``case`` says; photo relpath -> the number its label must carry."""
    import cv2

    if case == "renumbered":
        (folder / "00001.jpg").unlink()
        for k in range(2, n):
            (folder / f"{k:05d}.jpg").rename(folder / f"{k - 1:05d}.jpg")
        return {"00000.jpg": 0, **{f"{k - 1:05d}.jpg": k for k in range(2, n)}}
    if case == "reencoded":
        for name in numbers:
            cv2.imwrite(str(folder / name.replace(".jpg", ".png")), cv2.imread(str(folder / name)))
            (folder / name).unlink()
        return {name.replace(".jpg", ".png"): k for name, k in numbers.items()}
    if case == "cropped":
        for name in numbers:
            cv2.imwrite(str(folder / name), cv2.imread(str(folder / name))[4:, 4:])
        return {}  # every label kept aside: none on a photo
    return dict(numbers)


def _run(base: Path, work: Path, case: str, n: int, numbers: dict[str, int]) -> dict[str, object]:
    from faceparse_app.project import Project
    from trainer.errors import LabelMapError

    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    want = _change(work, case, n, numbers)
    t0 = time.perf_counter()
    project = Project.open(work)
    seconds = time.perf_counter() - t0
    try:
        wrong = unusable = 0
        for rec in project.images(include_missing=False):
            try:
                label = project.load_label(rec)
            except LabelMapError:  # kept under the name, of the old picture's size
                unusable += 1
                continue
            expected = want.get(rec.relpath)
            if (label is None) != (expected is None) or (
                label is not None and _number(label) != expected
            ):
                wrong += 1
        rows = project.images()
        kept_aside = len(list(project.labels_dir.glob("*.invalid")))
    finally:
        project.close()
    return {
        "seconds": round(seconds, 2),
        "wrong": wrong,
        "unusable": unusable,
        "missing_rows": sum(r.missing for r in rows),
        "kept_aside": kept_aside,
        "review": sum(r.needs_review for r in rows),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    add_common(parser, EXPERIMENT, out=True, results="scan_moves.json")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    if set(cases) - set(CASES):
        parser.error(f"--cases: some of {', '.join(CASES)}")
    results: dict[str, object] = {"images": args.images}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        numbers = _build(base, args.images)
        for case in cases:
            results[case] = _run(base, Path(tmp) / "work", case, args.images, numbers)
            print(case, results[case], flush=True)
    payload = {
        "what": "opening a project changed in a file manager: scan time, labels on the wrong picture",
        "date": utc_now(),
        "machine": machine(),
        "command": command_line(__spec__.name if __spec__ else "bench.scan_moves", argv),
        "results": results,
    }
    print(f"results: {write_json(args.results, payload, payload['command'])}")


if __name__ == "__main__":
    main()

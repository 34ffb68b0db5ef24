"""False alarms and catches of ``faceparse_app.label_checks`` on good labels.

Every label of ``celebamask-hq-dev`` (converted to LaPa's classes with
``trainer.labels.celebamask_to_lapa``) and of ``lapa-format-helen`` is checked as it is (good
labels: every finding is a false alarm) and with LaPa's 2<->3 and 4<->5 swapped (the person's
left/right: every face should say "left/right swapped"). Faces are those found in the label.

Not every label there is good: some CelebAMask-HQ masks have l_/r_ the viewer's way, so their
LaPa conversion is swapped. These faces are aligned and upright, so a face whose left-eye (else
left-brow) class lies right of its right-eye class in x is counted as truly swapped; a verdict
that agrees is a catch, one that disagrees a false alarm.

    python -m bench.label_checks [--limit N]
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np
from PIL import Image

from bench.harness import SHARED, argument_parser, command_line, machine, utc_now, write_json
from faceparse_app.label_checks import PINHOLE, SWAPPED, Finding, check_label
from trainer.faces import faces_from_label
from trainer.labels import celebamask_to_lapa

SWAP = np.arange(256, dtype=np.uint8)
SWAP[[2, 3, 4, 5]] = [3, 2, 5, 4]


def labels(limit: int | None) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, LaPa label, the CelebAMask-HQ mask it came from or None)."""
    out = []
    for path in sorted((SHARED / "celebamask-hq-dev" / "masks").glob("*.png"))[:limit]:
        raw = np.asarray(Image.open(path))
        out.append((f"celebamask/{path.stem}", celebamask_to_lapa(raw), raw))
    for path in sorted((SHARED / "lapa-format-helen").glob("*/labels/*.png")):
        out.append((f"helen/{path.stem}", np.asarray(Image.open(path)), None))
    return out


def unlabeled_in_source(f: Finding, label: np.ndarray, raw: np.ndarray | None) -> bool:
    """A pinhole whose pixels are unlabeled (0) in the CelebAMask-HQ mask too (not glasses or
    an earring that LaPa calls background)."""
    if f.kind != PINHOLE or raw is None:
        return False
    x0, y0, x1, y1 = f.box
    hole = label[y0:y1, x0:x1] == 0
    return bool((raw[y0:y1, x0:x1][hole] == 0).all())


def truly_swapped(label: np.ndarray) -> bool | None:
    """For an upright face: class 4 (else 2) right of 5 (else 3) in x; None when unknown."""
    for left, right in ((4, 5), (2, 3)):
        a, b = np.nonzero(label == left)[1], np.nonzero(label == right)[1]
        if len(a) and len(b):
            return bool(a.mean() > b.mean())
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, experiment="label_checks", results="label_checks.json")
    parser.add_argument("--limit", type=int, default=None, help="first N CelebAMask-HQ labels only")
    parser.add_argument("--verbose", action="store_true", help="print every false alarm")
    args = parser.parse_args(argv)
    good: collections.Counter[str] = collections.Counter()
    flagged_photos = 0
    faces = caught = judged_faces = data_swapped = data_caught = source_holes = 0
    seconds = []
    for name, label, raw in labels(args.limit):
        boxes = [f.box for f in faces_from_label(label)]
        start = time.perf_counter()
        found = check_label(label)
        seconds.append(time.perf_counter() - start)
        truth = truly_swapped(label) if len(boxes) == 1 else None
        said = any(f.kind == SWAPPED for f in found)
        data_swapped += bool(truth)
        if truth and said:
            found = [f for f in found if f.kind != SWAPPED]  # a true catch in the data
            data_caught += 1
        flagged_photos += bool(found)
        for f in found:
            good[f.kind] += 1
            source_holes += unlabeled_in_source(f, label, raw)
            if args.verbose:
                print(f"  {name}: {f.message} at {f.box}")
        faces += len(boxes)
        if truth is False:  # a good face: swapping it must be caught
            swapped = check_label(SWAP[label], boxes)
            caught += bool(any(f.kind == SWAPPED for f in swapped))
            judged_faces += 1
    n = len(seconds)
    print(f"labels: {n} photos, {faces} faces; {data_swapped} photos swapped in the data, "
          f"{data_caught} of them flagged left/right swapped")
    print(f"other findings: {flagged_photos} photos with one; by kind: {dict(good)}; "
          f"{source_holes} of the pinholes are unlabeled in the CelebAMask-HQ mask too")
    print(f"good faces swapped 2<->3, 4<->5: {caught} of {judged_faces} flagged left/right swapped "
          f"({100 * caught / max(judged_faces, 1):.1f}%)")
    print(f"check time per label: median {1000 * float(np.median(seconds)):.1f} ms")
    if args.results:
        payload = {
            "what": "label checks on good labels (false alarms) and on swapped ones (catches)",
            "date": utc_now(),
            "machine": machine(),
            "photos": n,
            "faces": faces,
            "swapped_in_the_data": data_swapped,
            "swapped_in_the_data_flagged": data_caught,
            "photos_with_another_finding": flagged_photos,
            "other_findings_by_kind": dict(good),
            "pinholes_unlabeled_in_the_source_too": source_holes,
            "good_faces_swapped": judged_faces,
            "good_faces_swapped_flagged": caught,
            "median_ms_per_label": round(1000 * float(np.median(seconds)), 1),
        }
        write_json(args.results, payload, command_line(__spec__.name, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the face finder's points and box sit in a training crop (calibrates trainer.face_detect).

The parser is trained on CelebAMask-HQ's aligned crops. YuNet (the ``yunet`` finder) is run,
one pass, on the 700 crops of the study's data stage; the medians of its eye points, its
mouth-corner midpoint and its box (centre, larger side), in crop units, become
``YUNET_TEMPLATE`` and ``YUNET_BOX_FRAMING``: a face found in any photo is then framed as the
training crops frame theirs. Also recorded: how far each median sits from the label-centroid
template (``trainer.faces.TEMPLATE``) and the spread over faces.

    python -m bench.face_framing
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

from bench import harness
from trainer.data.imageio import read_image

EXPERIMENT = "face_framing"


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, experiment=EXPERIMENT, results="face_framing.json")
    parser.add_argument("--data", default=str(harness.OUT / "study" / "data"),
                        help="the study's data stage (python -m bench.study --stop-after data)")
    args = parser.parse_args(argv)
    from trainer.face_detect import _raw_detect
    from trainer.faces import TEMPLATE

    data = harness.require(args.data, "the study's data stage (python -m bench.study --stop-after data)")
    paths = sorted((data / "train" / "images").glob("*")) + sorted((data / "val" / "images").glob("*"))
    rows, missed = [], 0
    for path in paths:
        rgb = read_image(path)
        side = float(max(rgb.shape[:2]))
        found = _raw_detect(rgb, 0.5)
        if not found:
            missed += 1
            continue
        _, box, pts = max(found, key=lambda f: (f[1][2] - f[1][0]) * (f[1][3] - f[1][1]))
        box, pts = box / side, pts / side
        mouth = (pts[3] + pts[4]) / 2
        rows.append([*pts[0], *pts[1], *mouth, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                     max(box[2] - box[0], box[3] - box[1])])
    a = np.array(rows)
    med = np.median(a, axis=0)
    sd = a.std(axis=0)
    names = ["left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "mouth_x", "mouth_y",
             "box_cx", "box_cy", "box_side"]
    template = {"left_eye": [round(float(med[0]), 4), round(float(med[1]), 4)],
                "right_eye": [round(float(med[2]), 4), round(float(med[3]), 4)],
                "mouth": [round(float(med[4]), 4), round(float(med[5]), 4)]}
    offset = {k: [round(template[k][i] - TEMPLATE[k][i], 4) for i in (0, 1)] for k in template}
    payload = {
        "crops": len(paths), "found": len(rows), "missed": missed,
        "yunet_template": template,
        "yunet_box_framing": [round(float(med[6]), 4), round(float(med[7]), 4), round(float(med[8]), 4)],
        "offset_from_label_template": offset,
        "sd": {n: round(float(v), 4) for n, v in zip(names, sd, strict=True)},
        "eye_distance_median": round(float(statistics.median(a[:, 2] - a[:, 0])), 4),
    }
    print(payload)
    harness.write_json(args.results, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

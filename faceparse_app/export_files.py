"""The text files of a LaPa export beside its images: README.txt, names.csv and effort.csv.

``effort.csv`` says what each exported label cost: the annotator's active seconds on the image
(pauses over 30 s not counted) and the edits made (strokes, fills, polygons, assisted edits,
undos), from the project store; the README sums them up, so a team knows its cost per face.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from faceparse_app import __version__
from faceparse_app.project import ImageRecord

SPLITS: tuple[str, ...] = ("train", "val", "test")
README_MARK = "FaceParse Studio LaPa export"
NAMES_CSV = "names.csv"
MANIFEST_NAME = "export-manifest.json"
# The manifest's record of photos drawn into a split but given no image (per face: no face),
# so that a later export keeps them there (names.csv lists only what was written).
NO_IMAGE_SPLITS = "splits_of_photos_without_images"
EFFORT_CSV = "effort.csv"
FACE_BOX_COLUMNS = ("face_x0", "face_y0", "face_x1", "face_y1")
EFFORT_COLUMNS = (
    "split", "name", "original", "status", "active_seconds", "actions", "label_source", "model_version",
)  # fmt: skip


def readme(
    counts: dict[str, int],
    landmarks: dict[str, list[str]],
    skipped: list[tuple[str, str]],
    reviewed_only: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    effort: Sequence[tuple[str, str, ImageRecord]] = (),
    strays: Sequence[str] = (),
    samples: Sequence[tuple[str, str, ImageRecord]] | None = None,
    no_face: Sequence[str] | None = None,
    issues: Sequence[str] = (),
) -> str:
    """The export's README.txt: what it is, its split, which landmarks were derived (and which
    images have none: no face in their label), what the labels cost.

    Args:
        landmarks: "derived", "known": the landmark files written of each kind; "none": the
            images written without one.
        strays: files not of this export kept where LaPa loaders read (``split/images``,
            ``split/labels``).
        effort: (split, name, record) per exported photo.
        samples: (split, name, record) per exported image (default: ``effort``); the
            warnings name these.
        no_face: given for an export of one image per face: the photos (relpaths) that had
            no face and gave no image.
        issues: README lines naming the exported labels with issues
            (``label_review.readme_lines``).
    """
    derived, known, faceless = (landmarks.get(k, []) for k in ("derived", "known", "none"))
    samples = effort if samples is None else samples
    per_face = no_face is not None
    lines = [
        README_MARK,
        "=" * len(README_MARK),
        "",
        f"Written by FaceParse Studio {__version__} on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
        "Layout: {train,val,test}/images/<name>.jpg, labels/<name>.png (8-bit 'L', LaPa classes",
        "0..10: background, skin, left eyebrow, right eyebrow, left eye, right eye, nose, upper",
        "lip, inner mouth, lower lip, hair; left/right are the viewer's), landmarks/<name>.txt",
        "(LaPa's 106 points: '106', then one 'x y' line per point).",
        "",
        f"Images: {'reviewed only' if reviewed_only else 'labeled and reviewed'}"
        + (", one image per face" if per_face else "") + "; "
        + ", ".join(f"{s} {counts[s]}" for s in SPLITS)
        + f". Split seed {seed}, val fraction {val_fraction}, test fraction {test_fraction}.",
        *(_per_face_lines(no_face, landmarks.get("unlabeled", [])) if no_face is not None else []),
        *unedited_held_out(samples),
        *unreviewed(samples),
        *issues,
        "",
        "LANDMARKS: the files listed as derived were NOT annotated by hand: they were placed",
        "from each label map (eye centres 74/104 and 83/105 inside the eyes, nose tip 54 inside",
        "the nose, mouth corners 84 and 90 at the lips' leftmost and rightmost points, the rest",
        "along the part outlines, a template where a part is absent). They are good enough for",
        *([
            "face alignment, not for landmark research. Each crop's are its own face's, placed",
            "from that face's pixels only (a neighbour reaching into the crop is not used).",
        ] if per_face else [
            "face alignment, not for landmark research. In a photo with several faces they are the",
            "largest face's (LaPa has one face per image): crop the others out before using them.",
        ]),  # fmt: skip
        "",
        f"Derived landmark files ({len(derived)}):",
        *[f"  {name}" for name in derived],
        f"Landmark files from the project's own landmarks ({len(known)}):",
        *[f"  {name}" for name in known],
    ]
    if faceless:
        lines += [f"No landmark file (no face in the label, all background or hair) ({len(faceless)}):"]
        lines += [f"  {name}" for name in faceless]
    if strays:
        lines += [
            "", f"NOT OURS ({len(strays)}): kept where LaPa loaders read them, each as an image or label",
            "without its pair, which stops a training run; move them out of the export:",
            *[f"  {rel}" for rel in strays],
        ]  # fmt: skip
    lines += ["", *effort_summary(effort, "photo" if per_face else "image")]
    if skipped:
        lines += ["", f"Skipped images ({len(skipped)}):"]
        lines += [f"  {relpath}: {reason}" for relpath, reason in skipped]
    return "\n".join(lines) + "\n"


def _per_face_lines(no_face: Sequence[str], unlabeled: Sequence[str] = ()) -> list[str]:
    """The README's account of an export of one image per face: how the crops are framed,
    what names.csv adds, the faces left out (no labeled part of their own) and the photos with
    no face."""
    lines = [
        "",
        "ONE IMAGE PER FACE: each face of a photo is a sample of its own, NAME__face<i> (i from 1,",
        "left to right: the faces FaceParse Studio keeps, as Tab steps through them, and any face",
        "labeled where none was kept). A crop is framed as the",
        "trainer frames a face (eyes and mouth at the training crops' places, zoomed out 1.5x so",
        "the hair and chin are inside), square, at the photo's own resolution (not resized). A",
        "face known by its eyes and mouth is turned upright: its image is resampled bilinearly and",
        "its label nearest neighbour; a face drawn as a box is an upright cut of the photo's own",
        "pixels. Past the photo's edge the image is black and the label is background. A",
        "neighbouring face that reaches into a crop keeps its labels there.",
        "names.csv gives each crop's photo and face box (face_x0, face_y0, face_x1, face_y1, in",
        "the photo's pixels); every face of a photo is in that photo's split. effort.csv is per",
        "photo.",
    ]
    if unlabeled:
        lines += [
            f"Faces not exported: no face part of their own is labeled in their crop ({len(unlabeled)});",
            "a face left unlabeled (a passer-by, a box over a wall) would be a crop labeled all",
            "background over a face, which a model trained on the export would learn. Label them",
            "to export them, or remove their face boxes:",
            *[f"  {name}" for name in unlabeled],
        ]  # fmt: skip
    if no_face:
        lines += [f"Photos with no face, so no image (none kept, none in the label) ({len(no_face)}):"]
        lines += [f"  {relpath}" for relpath in no_face]
    return lines


def unedited_held_out(effort: Sequence[tuple[str, str, ImageRecord]]) -> list[str]:
    """The README's warning when val/ or test/ hold a model's pre-labels accepted unchanged:
    they score that model, and any fine-tuned from it, too well."""
    held = [(split, name, rec) for split, name, rec in effort if split != "train"]
    unedited = [f"  {split}/{name}" for split, name, rec in held if rec.label_source == "model"]
    if not unedited:
        return []
    return [
        "",
        f"EVALUATION: {len(unedited)} of the {len(held)} val/test labels are a model's pre-labels",
        "accepted unchanged (effort.csv: label_source=model). Scored on them, that model, and any",
        "model fine-tuned from it, looks better than it is; review them, or leave them out of",
        "the score:",
        *unedited,
    ]


def unreviewed(effort: Sequence[tuple[str, str, ImageRecord]]) -> list[str]:
    """The README's warning when the export holds labels flagged "needs review" that nobody has
    looked at since: imported, found on disk by a store recovery (finished or not, the rebuilt
    store could not tell) or changed outside the app."""
    flagged = [f"  {split}/{name}" for split, name, rec in effort if rec.needs_review]
    if not flagged:
        return []
    return [
        "",
        f"NEEDS REVIEW: {len(flagged)} label(s) were imported (File > Import labels), found on disk",
        "when the project store was rebuilt or restored, or changed outside the app, and nobody",
        "has looked at them since; some may be unfinished. Check them in FaceParse Studio (Show:",
        "needs review) and mark them reviewed:",
        *flagged,
    ]


def write_names(path: Path, exported: Sequence[tuple[str, ...]], per_face: bool = False) -> None:
    """names.csv: which original image each exported name came from (per face: and the face's
    box in it, x0, y0, x1, y1 in its pixels)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "name", "original", *(FACE_BOX_COLUMNS if per_face else ())])
        writer.writerows(exported)


def read_names(path: Path) -> dict[str, str]:
    """names.csv of an earlier export: original relpath -> split ({} when unreadable)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return {r["original"]: r["split"] for r in csv.DictReader(f) if r.get("split") in SPLITS}
    except (OSError, KeyError, ValueError, csv.Error):
        return {}


def write_effort(path: Path, effort: Sequence[tuple[str, str, ImageRecord]]) -> None:
    """effort.csv: one row per exported image (see EFFORT_COLUMNS)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(EFFORT_COLUMNS)
        for split, name, rec in effort:
            writer.writerow([
                split, name, rec.relpath, rec.status, f"{rec.active_seconds:.1f}", rec.actions,
                rec.label_source or "", rec.model_version or "",
            ])  # fmt: skip


def effort_summary(effort: Sequence[tuple[str, str, ImageRecord]], unit: str = "image") -> list[str]:
    """README lines: total and per-``unit`` (image, or photo when each face is a crop of its
    own) active time and edits of the exported labels."""
    if not effort:
        return [f"Effort ({EFFORT_CSV}): no {unit}s."]
    seconds = [rec.active_seconds for _, _, rec in effort]
    edits = statistics.median(rec.actions for _, _, rec in effort)
    return [
        f"Effort ({EFFORT_CSV}, per {unit}): {total_time(sum(seconds))} of active labeling in all "
        f"(pauses over 30 s not counted), median {statistics.median(seconds):.0f} s and "
        f"{edits:g} edit{'' if edits == 1 else 's'} per {unit}.",
    ]


def total_time(seconds: float) -> str:
    """'14 s', '6.0 min', '2.35 h': a short session read as "0.00 h" looked like nothing saved."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def export_message(
    out_dir: object, counts: dict[str, int], statuses: dict[str, int], reviewed_only: bool = False
) -> str:
    """What the window says after an export: the counts, and the edited images it left out
    (only finished ones are exported; an image worked on but never marked went without a word).

    Args:
        out_dir: where it went.
        counts: the export's counts per split (and "skipped").
        statuses: the project's images per status (``Project.counts``).
        reviewed_only: only reviewed images were asked for.
    """
    counts = dict(counts)
    back, strays = counts.pop("put_back", 0), counts.pop("stray", 0)
    per_face, no_face = "no_face" in counts, counts.pop("no_face", 0)
    unlabeled = counts.pop("unlabeled_faces", 0)
    text = (
        f"Exported to {out_dir}{' (one image per face)' if per_face else ''}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()) + "."
    )
    if no_face:
        text += (
            f" {no_face} labeled photo{' has' if no_face == 1 else 's have'} no face, so no image "
            "(the README names them)."
        )
    if unlabeled:
        text += (
            f" {unlabeled} face{'' if unlabeled == 1 else 's'} with no labeled part of {'its' if unlabeled == 1 else 'their'} "
            "own left out (a crop labeled all background over a face would mislead a model; the "
            "README names them)."
        )
    if strays:
        one = strays == 1
        text += (
            f" {strays} file{'' if one else 's'} of yours {'is' if one else 'are'} in images/ or labels/, "
            f"where LaPa loaders take {'it' if one else 'them'} for a face without its pair and stop: "
            f"the README names {'it' if one else 'them'}; move {'it' if one else 'them'} out."
        )
    if back:
        text += (
            f" An export killed midway had hidden {back} of the folder's own files; they were "
            "put back first."
        )
    left = [(statuses.get("in_progress", 0), "in progress"), (statuses.get("pre-labeled", 0), "pre-labeled")]
    if reviewed_only:
        left.append((statuses.get("labeled", 0), "labeled but not reviewed"))
    left = [(n, what) for n, what in left if n]
    if statuses.get("needs_review", 0) and not reviewed_only:
        text += (
            f" {statuses['needs_review']} photo(s) still need review (a label imported, found on "
            "disk when the store was recovered, maybe unfinished, or changed outside the app; Show: "
            "needs review): those marked labeled are in the export, and its README names them."
        )
    if left:
        how = "Ctrl+Shift+Return marks one reviewed" if reviewed_only else "Ctrl+Return marks one labeled, A accepts a pre-label"
        text += (
            " Left out as not finished: " + ", ".join(f"{n} {what}" for n, what in left)
            + f" (not exported until marked: {how})."
        )
    return text

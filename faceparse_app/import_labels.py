"""Import existing labels into a project: File → Import labels… and
``faceparse-studio import-labels PROJECT FOLDER``.

Sources, told apart by the folder's contents:

``export``
    Our own LaPa export (``names.csv`` beside ``{train,val,test}/labels``): each exported name
    goes back to the photo ``names.csv`` says it came from, so a round trip lands every label on
    its own photo. The folder may be the export's root, a split or a split's ``labels/``.
``lapa``
    LaPa label PNGs (8-bit, values 0..10): a folder of them (searched recursively), a split
    holding ``labels/``, or a LaPa tree's root (every ``*/labels/``).
``celebamask``
    CelebAMask-HQ merged masks (values 0..18, ``masks/<id>.png``): a ``masks`` folder or a folder
    holding one. Converted with the trainer's ``celebamask_to_lapa`` (its left/right swap: the
    person's left eye, on the image's right, is LaPa's right eye 5).

A label file finds its photo by, in turn: the photo's relative path (``names.csv``, or a
project's own ``a/b.jpg.png``); its path stem below the labels folder (``a/b.png`` -> ``a/b.*``),
also with ``labels``/``masks`` read as ``images`` (a tree's ``test/labels/x.png`` ->
``test/images/x.*``); its file name's stem anywhere in the project. The first of these that
names photos decides: two photos there (``x.jpg`` and ``x.png``), or two label files for one
photo, are refused by name, never guessed.

Nothing of the annotator's is lost: only a photo with no label or only a model's pre-label
(``Project.may_prelabel``) takes an imported label; any other keeps its own and is named. A
window importing into its open project also keeps the photos it has edited
(``Annotation.may_replace``), and has the photo on screen imported on its own thread
(:func:`import_held`), where no stroke can come between the check and the write.
An imported label is written by ``Project.save_label`` (atomic), recorded as a person's (no
pre-label replaces it; no model version, even where it replaced a pre-label), status
"labeled", flagged needs review. A LaPa landmark file beside it
(``landmarks/<stem>.txt``, 106 points) is kept as the photo's known landmarks, which the export
writes instead of deriving them.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceparse_app.export_files import FACE_BOX_COLUMNS, NAMES_CSV, SPLITS
from faceparse_app.landmarks import format_landmarks, known_landmarks
from faceparse_app.project import ImageRecord, Project, ProjectError
from faceparse_app.project_scan import DATASET_LABEL_FOLDERS
from faceparse_app.scan_texts import name_list
from trainer.data.imageio import atomic_write_bytes, read_label
from trainer.errors import LabelMapError
from trainer.labels import CELEBAMASK, LAPA, celebamask_to_lapa
from trainer.predict_folder import FACES_NAME

__all__ = ["FORMATS", "ImportReport", "import_held", "import_labels"]

log = logging.getLogger(__name__)

FORMATS = ("auto", "lapa", "celebamask")
LAPA_LANDMARKS = "landmarks"  # LaPa's landmark files, beside labels/
NO_PHOTO = "no photo of that name in the project"
SOURCE_NAMES = {"export": "a FaceParse Studio export", "lapa": "LaPa labels", "celebamask": "CelebAMask-HQ masks"}


@dataclass(frozen=True)
class LabelFile:
    """One label file to import.

    Attributes:
        path: the PNG.
        name: how reports name it (its path below the folder imported).
        keys: the photo relpath stems it may belong to, most specific first (see the module).
        original: the photo's relpath, when ``names.csv`` says it.
        landmarks: a LaPa landmark file beside it, if any.
    """

    path: Path
    name: str
    keys: tuple[str, ...] = ()
    original: str | None = None
    landmarks: Path | None = None


@dataclass
class ImportReport:
    """What an import did.

    Attributes:
        source: "export", "lapa" or "celebamask".
        imported: relpaths of the photos that took an imported label.
        kept: relpaths of the photos that kept the annotator's own label.
        skipped: (label file name, reason) of each label file not imported.
        landmarks: imported labels whose landmark file was kept.
        held: the match of the photo a window holds on screen (``import_labels``'s ``hold``),
            written by :func:`import_held`.
    """

    source: str
    imported: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    landmarks: int = 0
    predicted_by: str | None = None
    held: list[tuple[ImageRecord, LabelFile]] = field(default_factory=list)

    def message(self, folder: str, most: int = 5) -> str:
        """The one summary the window shows (``most`` names per list)."""
        parts = [f"Imported {SOURCE_NAMES[self.source]} from {folder}: {len(self.imported)} imported"]
        if self.imported:
            parts[0] += ", marked labeled and needs review (Show: needs review): check each and mark it reviewed"
        if self.imported and self.predicted_by:
            parts[0] += f" ({self.predicted_note()})"
        if self.kept:
            parts.append(f"kept the label already there (yours, or imported before) on {len(self.kept)} ({name_list(self.kept, most)})")
        # Label files for photos not in the project (a whole dataset against a few photos) are
        # counted apart, so that the reasons of the ones that were for its photos stay in view.
        unmatched = [n for n, why in self.skipped if why.startswith(NO_PHOTO)]
        failed = [(n, why) for n, why in self.skipped if not why.startswith(NO_PHOTO)]
        if failed:
            shown = [f"{n} ({why})" for n, why in failed[:most]]
            more = f" and {len(failed) - most} more" if len(failed) > most else ""
            parts.append(f"skipped {len(failed)}: " + "; ".join(shown) + more)
        if unmatched:
            parts.append(f"no photo in this project for {len(unmatched)} more ({name_list(unmatched, 3)})")
        return "; ".join(parts) + "."

    def lines(self) -> list[str]:
        """The command's report: the summary, then every kept photo and skipped file."""
        head = f"imported {len(self.imported)} ({SOURCE_NAMES[self.source]}; labeled, needs review)"
        head += f", kept {len(self.kept)}, skipped {len(self.skipped)}"
        return [
            head,
            *([self.predicted_note()] if self.predicted_by else []),
            *(f"kept the label already there: {p}" for p in self.kept),
            *(f"skipped {n}: {why}" for n, why in self.skipped),
        ]


    def predicted_note(self) -> str:
        return (
            f"a model's predictions, written by faceparse predict with {self.predicted_by}: kept as "
            "that model's labels, not hand labels, so no fine-tune scores itself against them"
        )


def import_labels(
    project: Project | str | os.PathLike[str],
    folder: str | os.PathLike[str],
    fmt: str = "auto",
    on_progress: Callable[[int, int], None] | None = None,
    may_replace: Callable[[int], bool] | None = None,
    hold: int | None = None,
) -> ImportReport:
    """Import a folder of existing labels into a project (see the module docstring).

    Args:
        project: an open, writable Project, or a project folder (opened here, with its lock: a
            window editing it makes this raise ProjectLockedError).
        folder: the labels: a LaPa labels folder or tree, our export, CelebAMask-HQ masks.
        fmt: "auto" (from the folder's layout), "lapa" or "celebamask".
        on_progress: called as on_progress(done, total) after each label file.
        may_replace: a window's say on each photo id (False: it edited the photo; it keeps its
            label); called on this function's thread.
        hold: the id of the photo on a window's screen: matched, not written (``report.held``).

    Returns:
        What was imported, kept and skipped (with each reason).

    Raises:
        ProjectError: the folder is missing or holds no label file; the project is read-only
            or held by another window.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown label format {fmt!r}; choose one of {', '.join(FORMATS)}")
    src = Path(folder).expanduser().absolute()
    if not src.is_dir():
        raise ProjectError(f"{src}: no such folder of labels")
    if not isinstance(project, Project):
        with Project.open(project) as opened:
            return import_labels(opened, src, fmt, on_progress, may_replace, hold)
    if project.read_only:
        raise ProjectError(f"{project.root} is open to look only: labels cannot be imported")
    if src == project.store_dir or project.store_dir in src.parents:
        raise ProjectError(f"{src} is inside the project's own store: choose a folder of labels made elsewhere")
    source, files = find_label_files(src, fmt)
    if not files:
        raise ProjectError(
            f"{src}: no label PNGs found (expected LaPa labels/<name>.png, a LaPa tree, a FaceParse "
            "Studio export or CelebAMask-HQ masks/<id>.png)"
        )
    report = ImportReport(source, predicted_by=_predicted_by(src))
    matched = _match(project, files, report)
    for done, (rec, label_file) in enumerate(matched, 1):
        if rec.id == hold:
            report.held.append((rec, label_file))
        elif may_replace is not None and not may_replace(rec.id):
            report.kept.append(rec.relpath)
        else:
            _import_one(project, rec, label_file, source, report)
        if on_progress is not None:
            on_progress(done, len(matched))
    return report


def import_held(project: Project, report: ImportReport, may_replace: Callable[[int], bool]) -> None:
    """Import ``report.held`` (the photo on a window's screen) on the window's thread, unless
    ``may_replace`` says the annotator edited it meanwhile: then it keeps its label."""
    for rec, label_file in report.held:
        if may_replace(rec.id):
            _import_one(project, project.get(rec.id), label_file, report.source, report)
        else:
            report.kept.append(rec.relpath)
    report.held.clear()


def find_label_files(folder: Path, fmt: str = "auto") -> tuple[str, list[LabelFile]]:
    """The source kind and the label files of a folder (see the module docstring)."""
    export = _export_root(folder) if fmt != "celebamask" else None
    if export is not None:
        return "export", _export_files(export, folder)
    if fmt == "auto":
        is_masks = folder.name == "masks" or ((folder / "masks").is_dir() and not (folder / "labels").is_dir())
        fmt = "celebamask" if is_masks else "lapa"
    sub = "masks" if fmt == "celebamask" else "labels"  # each layout's label folder
    if (folder / sub).is_dir():
        dirs = [folder / sub]
    else:
        subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]  # not .faceparse
        dirs = sorted(p / sub for p in subs if (p / sub).is_dir())
    if not dirs:  # a plain folder of label files (sub-folders mirror the photos')
        return fmt, [_label_file(folder, p, folder) for p in _pngs(folder, recursive=True)]
    return fmt, [_label_file(folder, p, d) for d in dirs for p in _pngs(d, recursive=False)]


def _pngs(folder: Path, recursive: bool) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [Path(dirpath) / n for n in sorted(filenames) if n.lower().endswith(".png") and not n.startswith(".")]
    return found


def _label_file(folder: Path, path: Path, labels_dir: Path) -> LabelFile:
    """A label file of a LaPa or CelebAMask-HQ folder, with the keys that find its photo."""
    below = path.relative_to(labels_dir).with_suffix("").as_posix()
    under = path.relative_to(folder).with_suffix("").as_posix()
    as_images = "/".join("images" if p in DATASET_LABEL_FOLDERS else p for p in under.split("/"))
    landmarks = labels_dir.parent / LAPA_LANDMARKS / (below + ".txt")
    keys = tuple(dict.fromkeys([below, as_images]))
    return LabelFile(path, path.relative_to(folder).as_posix(), keys, None, landmarks if landmarks.is_file() else None)


def _export_root(folder: Path) -> Path | None:
    """The root of our export that ``folder`` is (or is a split or split/labels of), if any."""
    for root in (folder, folder.parent, folder.parent.parent):
        if (root / NAMES_CSV).is_file() and any((root / s / "labels").is_dir() for s in SPLITS):
            return root
    return None


def _export_files(root: Path, folder: Path) -> list[LabelFile]:
    """The label files of our export under ``folder``, each with its photo from names.csv."""
    try:
        with open(root / NAMES_CSV, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if r.get("split") in SPLITS and r.get("name") and r.get("original")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProjectError(f"{root / NAMES_CSV}: unreadable ({exc})") from None
    if set(FACE_BOX_COLUMNS) <= set(reader.fieldnames or ()):
        raise ProjectError(
            f"{root} was exported with one image per face: its labels are crops of faces, not of "
            "whole photos, and cannot be put back on the photos. Import an export of whole photos "
            "(File → Export LaPa… without 'One image per face')"
        )
    files, named = [], set()
    for row in rows:
        path = root / row["split"] / "labels" / f"{row['name']}.png"
        named.add(path)
        if folder != root and folder not in path.parents:
            continue
        landmarks = root / row["split"] / LAPA_LANDMARKS / f"{row['name']}.txt"
        name = path.relative_to(folder).as_posix()
        files.append(LabelFile(path, name, (), row["original"], landmarks if landmarks.is_file() else None))
    for split in SPLITS:  # labels added to the export since (not in names.csv): found by name
        labels_dir = root / split / "labels"
        if labels_dir.is_dir() and (folder == root or folder == labels_dir or folder in labels_dir.parents):
            files += [_label_file(folder, p, labels_dir) for p in _pngs(labels_dir, False) if p not in named]
    return files


def _match(project: Project, files: list[LabelFile], report: ImportReport) -> list[tuple[ImageRecord, LabelFile]]:
    """Each label file's photo; those with none, or with several, go to ``report.skipped``."""
    recs = project.images()
    by_relpath = {r.relpath: r for r in recs}
    by_stem: dict[str, list[ImageRecord]] = {}
    by_name: dict[str, list[ImageRecord]] = {}
    for r in recs:
        stem = r.relpath.rsplit(".", 1)[0] if "." in r.relpath.rsplit("/", 1)[-1] else r.relpath
        by_stem.setdefault(stem, []).append(r)
        base = r.relpath.rsplit("/", 1)[-1]
        for key in {base, base.rsplit(".", 1)[0]}:
            by_name.setdefault(key, []).append(r)
    claims: dict[int, list[LabelFile]] = {}
    for lf in files:
        if lf.original is not None:
            found = [by_relpath[lf.original]] if lf.original in by_relpath else []
        else:
            stem = lf.path.name[: -len(".png")]
            levels = [[by_relpath[k]] if k in by_relpath else by_stem.get(k, []) for k in lf.keys]
            # A label file inside the project folder is listed as a photo too: never its own photo.
            itself = lf.path.relative_to(project.root).as_posix() if lf.path.is_relative_to(project.root) else None
            levels = [[r for r in hit if r.relpath != itself] for hit in [*levels, by_name.get(stem, [])]]
            found = next((hit for hit in levels if hit), [])
        if not found:
            where = f" ({lf.original})" if lf.original else ""
            report.skipped.append((lf.name, f"{NO_PHOTO}{where}"))
        elif len(found) > 1:
            report.skipped.append((lf.name, f"fits {len(found)} photos, {name_list([r.relpath for r in found])}: "
                                            "move or rename one"))  # fmt: skip
        else:
            claims.setdefault(found[0].id, []).append(lf)
    matched = []
    for image_id, claimed in claims.items():
        rec = project.get(image_id)
        if len(claimed) > 1:
            names = [c.name for c in claimed]
            for lf in claimed:
                others = name_list([n for n in names if n != lf.name])
                report.skipped.append((lf.name, f"{others} is also for {rec.relpath}: keep one of them"))
        else:
            matched.append((rec, claimed[0]))
    return sorted(matched, key=lambda m: m[0].relpath)


def _import_one(project: Project, rec: ImageRecord, lf: LabelFile, source: str, report: ImportReport) -> None:
    if rec.missing:
        report.skipped.append((lf.name, f"its photo {rec.relpath} is missing from the project folder"))
        return
    if not project.may_prelabel(rec):  # labeled, reviewed, edited, or a label file of a person's
        report.kept.append(rec.relpath)
        return
    if rec.width <= 0 or rec.height <= 0:
        report.skipped.append((lf.name, f"its photo {rec.relpath} cannot be read"))
        return
    classes = CELEBAMASK.num_classes if source == "celebamask" else LAPA.num_classes
    try:
        label = read_label(lf.path, num_classes=classes, expected_size=(rec.height, rec.width))
        if source == "celebamask":
            label = celebamask_to_lapa(label)
        # A model's guess stays the model's (label_source "model"): fine-tuning never holds it out
        # as a hand label, and an export warns of it in val/test.
        guessed_by = f"predict:{report.predicted_by}" if report.predicted_by else None
        project.save_label(rec, label, status="labeled", imported=True, model_version=guessed_by)
    except (LabelMapError, ProjectError) as exc:
        reason = str(exc).removeprefix(f"{lf.path}: ")
        if source == "lapa" and "out of range" in reason and int(np.max(_values(lf.path))) < CELEBAMASK.num_classes:
            reason += " (CelebAMask-HQ masks? Put them in a folder named masks, or choose that format)"
        report.skipped.append((lf.name, reason))
        return
    report.imported.append(rec.relpath)
    if lf.landmarks is not None:
        points = known_landmarks(lf.landmarks, label.shape)
        if points is not None:
            dst = project.landmarks_file(rec.relpath)
            try:
                atomic_write_bytes(dst, format_landmarks(points).encode("utf-8"))
                report.landmarks += 1
            except OSError as exc:
                log.warning("could not keep the landmarks of %s: %s", rec.relpath, exc)


def _predicted_by(folder: Path) -> str | None:
    """The checkpoint's file name when ``folder`` is `faceparse predict`'s output (its faces.json
    names the model), else None."""
    try:
        model = json.loads((folder / FACES_NAME).read_text("utf-8"))["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(model, dict):
        return None
    return Path(str(model.get("path") or "an unnamed model")).name


def _values(path: Path) -> np.ndarray:
    """A label file's values (read again only to word a skip's reason)."""
    try:
        return read_label(path)
    except LabelMapError:
        return np.array([255])

"""Export the finished labels of a project as a LaPa dataset that LaPa loaders read as-is.

Layout written::

    <out>/{train,val,test}/images/<name>.jpg      JPEG (LaPa loaders list *.jpg only)
    <out>/{train,val,test}/labels/<name>.png      'L' PNG, class indices 0..10, image's size
    <out>/{train,val,test}/landmarks/<name>.txt   '106', then 106 'x y' lines (none: no face)
    <out>/README.txt                              what this is; which landmark files are derived
    <out>/names.csv                               split, exported name, original relpath
    <out>/effort.csv                              per image: active seconds and edits it took
    <out>/export-manifest.json                    every file this export wrote, with its sha256

A JPEG original is copied byte for byte, unless its EXIF orientation is not 1: then it is
re-encoded upright (quality 95), so that image and label agree for loaders that ignore EXIF.
Other formats are encoded as JPEG quality 95. Landmarks come from
``.faceparse/landmarks/<relpath>.txt`` when the project has them, else derive_landmarks places
them from the label map; a label with no face part gets none (a template there is a made-up face).

With ``per_face`` each face of a photo is written as a sample of its own instead,
``<name>__face<i>``, cropped as the trainer frames it (``export_faces``), in the photo's split;
names.csv adds the face's box, effort.csv stays per photo.

The export is built in a hidden temp folder beside ``out`` and moved into place with one
os.replace, so a crash or a full disk never leaves a half export that looks complete. Exporting
again into an earlier export replaces only the files its manifest lists: anything else in the
folder (notes, another project's ``.faceparse/``, files, empty folders and links added by hand) is
carried over untouched, and a listed file that was changed since is never overwritten (the export is refused). A folder
that is neither empty nor an export of ours is refused. An image exported there before keeps its
split (with the same seed and fractions); only new images are drawn. Exports into one folder
run one at a time, and one killed midway is undone by the next (``export_recovery``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from faceparse_app import label_review
from faceparse_app.export_faces import FaceSample, encode_jpeg
from faceparse_app.export_files import (
    EFFORT_CSV,
    MANIFEST_NAME,
    NAMES_CSV,
    NO_IMAGE_SPLITS,
    README_MARK,
    SPLITS,
    export_message,
    readme,
    write_effort,
    write_names,
)
from faceparse_app.export_recovery import folders_of, one_export_at_a_time, put_back
from faceparse_app.export_splits import earlier_splits, export_name, split_of, unique_names
from faceparse_app.landmarks import (
    FACE_CLASSES,
    derive_landmarks,
    format_landmarks,
    known_landmarks,
    largest_face_label,
)
from faceparse_app.project import (
    FINISHED,
    ImageRecord,
    Project,
    ProjectError,
    file_hash,
)
from faceparse_app.store_guard import write_error
from trainer.data.imageio import encode_label_png, make_temp_dir, read_image
from trainer.errors import ImageReadError, LabelMapError

__all__ = [
    "SPLITS", "derive_landmarks", "export_folder_problem", "export_message", "export_name", "export_project",
]  # fmt: skip

log = logging.getLogger(__name__)

README_NAME = "README.txt"
MANIFEST_FORMAT = "faceparse-lapa-export"
# What an export written before manifests existed holds: anything else in it is not ours.
_READ_BY_LOADERS = re.compile(r"^(train|val|test)/(images|labels)/")  # a stray file there stops one
_OLD_LAYOUT = re.compile(r"^(README\.txt|(train|val|test)/(images/[^/]+\.jpg|labels/[^/]+\.png|landmarks/[^/]+\.txt))$")

def _jpeg_copyable(path: Path) -> bool:
    """An RGB JPEG needing no rotation (else re-encoded: every exported image is upright RGB)."""
    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode != "RGB":
                return False
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable here means: re-encode from the pixels read_image gives
        return False
    return orientation in (1, None)


def export_folder_problem(out_dir: str | os.PathLike[str], project_root: Path) -> str:
    """Why an export into ``out_dir`` would be refused ('' when it would not), for the export
    form to say before it closes; the export checks again."""
    out = Path(out_dir).expanduser().resolve()
    try:
        _check_outside_project(out, project_root)
        _check_out_dir(out, _identity_of(project_root))
    except (ProjectError, OSError) as exc:
        return str(exc)
    return ""


def _identity_of(project_root: Path) -> dict[str, str | None] | None:
    """:func:`project_identity` of a project folder; None when its store cannot be read here
    (the export itself checks again)."""
    try:
        with Project.open(project_root, read_only=True) as project:
            return project_identity(project)
    except ProjectError:
        return None


def project_identity(project: Project) -> dict[str, str | None]:
    """What an export's manifest records of its project: the folder, and the store's creation
    stamp, which stays the same when the folder is moved or renamed."""
    rows = project.query("SELECT value FROM meta WHERE key='created_at'")
    return {"root": str(project.root), "created": rows[0][0] if rows else None}


def _check_same_project(out: Path, recorded: object, identity: dict[str, str | None] | None) -> None:
    """Refuse to export over another project's export: its manifest lists its files as the
    export's own, so every one of them would go (and the splits a model was trained on)."""
    if identity is None or not isinstance(recorded, dict):
        return  # an export from before manifests named their project
    if recorded.get("root") == identity["root"] or (
        identity["created"] is not None and recorded.get("created") == identity["created"]
    ):
        return
    raise ProjectError(
        f"{out} is an export of another project ({recorded.get('root')}): this project's export "
        "would replace it. Choose an empty or new folder (or export that project there)"
    )


def _check_outside_project(out: Path, project_root: Path) -> None:
    """Refuse an export folder inside the project (unless under a hidden folder)."""
    project_root = project_root.resolve()  # out is resolved: a link must not hide the project
    if out == project_root or project_root in out.parents:
        if not any(
            p.name.startswith(".") for p in [out, *out.parents] if project_root in p.parents
        ):
            raise ProjectError(
                f"{out} lies inside the project folder, where its images would be picked up as "
                "new images; choose a folder outside the project"
            )


def _check_out_dir(out: Path, identity: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """Refuse an unusable export folder (another project's export too, given this one's
    :func:`project_identity`); return the files an earlier export of ours wrote there
    (relpath -> sha256, or None for an export from before manifests), {} for a new folder."""
    if not out.exists():
        return {}
    if not out.is_dir():
        raise ProjectError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return {}
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            if data.get("format") == MANIFEST_FORMAT and isinstance(data.get("files"), dict):
                _check_same_project(out, data.get("project"), identity)
                return {str(k): str(v) for k, v in data["files"].items()}
        except (OSError, ValueError):
            pass
        raise ProjectError(f"{manifest} is damaged; export into an empty or new folder")
    readme = out / README_NAME
    if readme.is_file() and readme.read_text(errors="replace").startswith(README_MARK):
        return {rel: None for rel in _tree(out) if _OLD_LAYOUT.match(rel)}
    raise ProjectError(
        f"{out} is not empty and is not an earlier FaceParse Studio export; choose an empty or "
        "new folder"
    )


def _tree(root: Path) -> list[str]:
    """Every file under root, as '/'-separated relpaths."""
    return sorted(
        (Path(d) / f).relative_to(root).as_posix() for d, _dirs, files in os.walk(root) for f in files
    )


def export_project(
    project_dir: str | os.PathLike[str] | Project,
    out_dir: str | os.PathLike[str],
    reviewed_only: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    per_face: bool = False,
) -> dict[str, int]:
    """Export the labeled (or only the reviewed) images of a project in the LaPa layout.

    Args:
        project_dir: the project folder (read without taking it from a window that has it
            open), or an open Project.
        out_dir: the export folder: new, empty, or an earlier export, whose own files are
            replaced and whose other files are kept.
        reviewed_only: export only images with status "reviewed".
        val_fraction: share of images drawn into val/.
        test_fraction: share of images drawn into test/.
        seed: seed of the split; the same seed and images give the same split.
        on_progress: called as on_progress(done, total) after each image.
        per_face: one image per face (``export_faces``): a crop of each face of a photo, all
            in the photo's split; else each photo whole.

    Returns:
        Images per split {"train", "val", "test"} (per face: crops), plus "skipped" (unreadable
        image or label), per face "no_face" (labeled photos with no face: nothing written),
        and "put_back" when an export killed midway had left files of the folder hidden beside
        it (they are put back first).

    Raises:
        ProjectError: out_dir is unusable (inside the project, not empty, not writable, disk
            full, a file an earlier export wrote was changed since); nothing is left behind
            that looks like an export, and nothing in out_dir is changed.
    """
    own = not isinstance(project_dir, Project)
    project = (
        Project.open(project_dir, read_only=True) if own else project_dir  # type: ignore[arg-type]
    )
    # A link to the export folder stays a link: the export goes where it points.
    out = Path(out_dir).expanduser().resolve()
    try:
        _check_outside_project(out, project.root)
        with one_export_at_a_time(out):
            back = put_back(out, MANIFEST_NAME)  # what an export killed midway left beside it
            counts = _export(
                project, out, reviewed_only, val_fraction, test_fraction, seed, on_progress, per_face
            )
            return {**counts, "put_back": len(back)} if back else counts
    finally:
        if own:
            project.close()


def _export(
    project: Project,
    out: Path,
    reviewed_only: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    on_progress: Callable[[int, int], None] | None,
    per_face: bool = False,
) -> dict[str, int]:
    identity = project_identity(project)
    previous = _check_out_dir(out, identity)
    wanted = {"reviewed"} if reviewed_only else set(FINISHED)
    recs = [
        r
        for r in project.images(include_missing=False)
        if r.status in wanted and project.label_path(r).is_file()
    ]
    names = unique_names([r.relpath for r in recs])
    settings = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    earlier = earlier_splits(out, previous, settings)
    splits = split_of(
        len(recs), val_fraction, test_fraction, seed, [earlier.get(r.relpath) for r in recs]
    )
    counts = {s: 0 for s in SPLITS}
    landmarks: dict[str, list[str]] = {"derived": [], "known": [], "none": [], "unlabeled": []}
    skipped: list[tuple[str, str]] = []
    exported: list[tuple[str, ...]] = []  # names.csv rows (per face: and the face's box)
    effort: list[tuple[str, str, ImageRecord]] = []  # per photo
    samples: list[tuple[str, str, ImageRecord]] = []  # per file written (the README's warnings)
    no_face: dict[str, str] = {}  # per face: photos with no face -> the split drawn for them
    try:
        tmp = make_temp_dir(out.parent, f".{out.name}.partial-")
    except OSError as exc:
        raise write_error(exc, out, "the export") from None
    try:
        for split in SPLITS:
            for sub in ("images", "labels", "landmarks"):
                (tmp / split / sub).mkdir(parents=True)
        for done, (rec, name, split) in enumerate(zip(recs, names, splits, strict=True), 1):
            try:
                written = _export_one(project, rec, tmp / split, name, per_face)
            except (ImageReadError, LabelMapError) as exc:
                log.warning("export skips %s: %s", rec.relpath, exc)
                skipped.append((rec.relpath, str(exc)))
                for sub, ext in (("images", ".jpg"), ("labels", ".png"), ("landmarks", ".txt")):
                    (tmp / split / sub / f"{name}{ext}").unlink(missing_ok=True)
            else:
                left_out = [f"{split}/{s.name}" for s in written if s.landmarks == "unlabeled"]
                landmarks["unlabeled"] += left_out
                written = [s for s in written if s.landmarks != "unlabeled"]
                effort += [(split, name, rec)] if written else []
                no_face.update({} if written else {rec.relpath: split})
                for sample in written:
                    counts[split] += 1
                    box = () if sample.box is None else tuple(f"{v:.1f}" for v in sample.box)
                    exported.append((split, sample.name, rec.relpath, *box))
                    samples.append((split, sample.name, rec))
                    where = "images/{}.jpg" if sample.landmarks == "none" else "landmarks/{}.txt"
                    landmarks[sample.landmarks].append(f"{split}/{where.format(sample.name)}")
            if on_progress is not None:
                on_progress(done, len(recs))
        # Files of the user's kept where LaPa loaders read: an image without its label there
        # stops a training run, so the export names them.
        strays = [r for r in _foreign_entries(out, tmp, previous) if _READ_BY_LOADERS.match(r)] if previous else []
        (tmp / README_NAME).write_text(
            readme(counts, landmarks, skipped, reviewed_only, val_fraction, test_fraction, seed, effort, strays,
                   samples, list(no_face) if per_face else None, label_review.readme_lines(project, samples)),  # fmt: skip
            encoding="utf-8",
        )
        write_names(tmp / NAMES_CSV, exported, per_face)
        write_effort(tmp / EFFORT_CSV, effort)
        ours = {rel: file_hash(tmp / rel) for rel in _tree(tmp)}
        (tmp / MANIFEST_NAME).write_text(
            json.dumps(
                {"format": MANIFEST_FORMAT, "version": 1, "project": identity, "split": settings,
                 **({"images": "faces", NO_IMAGE_SPLITS: no_face} if per_face else {}), "files": ours}, indent=1,
            ),
            encoding="utf-8",
        )
        # The manifest tells a later export which files in tmp are the user's (export_recovery):
        # on disk, with its folder entry, before any of them is moved in.
        _fsync_files(tmp, [MANIFEST_NAME, "."])
        carried = _carry_foreign_files(out, tmp, previous, ours)
        try:
            _publish(tmp, out, [*ours, MANIFEST_NAME])
        except BaseException:
            for src, dst in reversed(carried):  # the foreign files go back where they were
                os.replace(dst, src)
            raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(exc, out, "the export") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    faceless = {"no_face": len(no_face), "unlabeled_faces": len(landmarks["unlabeled"])} if per_face else {}
    return {**counts, "skipped": len(skipped), **faceless, **({"stray": len(strays)} if strays else {})}


def _carry_foreign_files(
    out: Path, tmp: Path, previous: dict[str, str | None], ours: dict[str, str]
) -> list[tuple[Path, Path]]:
    """Move every file in ``out`` that no earlier export of ours wrote into the new export.

    A file the previous manifest lists but whose bytes changed since is someone's edit: it is
    never overwritten, so the export is refused (nothing moved yet).

    Returns:
        (old place, new place) of each move, to undo them if the publish fails.
    """
    if not previous:
        return []
    changed = [
        rel
        for rel, digest in previous.items()
        if digest is not None and (out / rel).is_file() and file_hash(out / rel) != digest
    ]
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        it = "them" if len(changed) > 1 else "it"
        raise ProjectError(
            f"{out}: {shown} changed since the last export wrote {it}; move {it} elsewhere (or "
            "export into another folder) so your edits are not overwritten"
        )
    foreign = _foreign_entries(out, tmp, previous)
    clash = [rel for rel in foreign if os.path.lexists(tmp / rel)]
    if clash:
        raise ProjectError(
            f"{out}: {', '.join(clash[:5])} would be replaced by this export but were not "
            "written by one; move them elsewhere or export into another folder"
        )
    moved: list[tuple[Path, Path]] = []
    try:
        for rel in foreign:
            src, dst = out / rel, tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append((src, dst))
    except BaseException:
        for src, dst in reversed(moved):
            os.replace(dst, src)
        raise
    return moved


def _foreign_entries(out: Path, tmp: Path, previous: dict[str, str | None]) -> list[str]:
    """What in ``out`` no earlier export of ours wrote, as '/'-separated relpaths: files, links
    and whole folders that hold nothing of ours (empty ones too). A folder that holds something
    of ours, or that the new export in ``tmp`` has too, is looked into instead."""
    ours_dirs = folders_of(previous)
    found: list[str] = []

    def visit(folder: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = prefix + entry.name
            if rel in previous or rel == MANIFEST_NAME:
                continue
            if entry.is_dir(follow_symlinks=False) and (rel in ours_dirs or (tmp / rel).is_dir()):
                visit(Path(entry.path), rel + "/")
            else:
                found.append(rel)

    visit(out, "")
    return found


def _export_one(
    project: Project, rec: ImageRecord, split_dir: Path, name: str, per_face: bool = False
) -> list[FaceSample]:
    """Write one image, label and landmark file (per face: those of each face's crop; a photo
    with no face writes none); returns what was written, each with its landmarks' origin:
    "derived", "known" or "none" (no face part in the label: no landmark file)."""
    src = project.image_path(rec)
    image = read_image(src)  # also proves the file is readable before anything is written
    if file_hash(src) != rec.content_hash:  # a label made for another picture is never exported
        raise LabelMapError(
            f"{src} is not the picture that was labeled (replaced since): open the project in "
            "FaceParse Studio, check its label and mark it labeled again"
        )
    label = project.load_label(rec)
    if label is None:
        raise LabelMapError(f"{project.label_path(rec)}: label file not found")
    if label.shape != image.shape[:2]:
        raise LabelMapError(
            f"{project.label_path(rec)}: label is {label.shape[1]}×{label.shape[0]} but its image "
            f"{src} is {image.shape[1]}×{image.shape[0]}"
        )
    points = known_landmarks(project.landmarks_file(rec.relpath), label.shape)
    if per_face:
        from faceparse_app.export_faces import photo_faces, write_face_samples

        return write_face_samples(image, label, photo_faces(project, rec, label), split_dir, name, points)
    dst = split_dir / "images" / f"{name}.jpg"
    if src.suffix.lower() in (".jpg", ".jpeg") and _jpeg_copyable(src):
        shutil.copyfile(src, dst)
    else:
        dst.write_bytes(encode_jpeg(image))
    (split_dir / "labels" / f"{name}.png").write_bytes(encode_label_png(label))
    how = "known" if points is not None else "derived" if np.isin(label, FACE_CLASSES).any() else "none"
    if how != "none":
        if points is None:
            points = derive_landmarks(largest_face_label(label, project.face_boxes(rec) or []))
        (split_dir / "landmarks" / f"{name}.txt").write_text(format_landmarks(points), encoding="utf-8")
    return [FaceSample(name, None, how)]


def _fsync_files(root: Path, relpaths: Iterable[str]) -> None:
    # Flush every file written before the folder is published: after the rename, a power cut
    # must not leave empty files in an export that looks complete. (Only ours: what was carried
    # over was already on disk, and may be a dangling link or a file we cannot open.)
    for rel in relpaths:
        fd = os.open(root / rel, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, out: Path, ours: Iterable[str]) -> None:
    """Move the finished temp folder onto out (replacing an earlier export) in one rename."""
    _fsync_files(tmp, ours)
    if out.exists() and any(out.iterdir()):
        old = make_temp_dir(out.parent, f".{out.name}.old-")
        os.replace(out, old / "export")
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / "export", out)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)

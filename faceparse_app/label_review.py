"""A project's saved labels through :mod:`faceparse_app.label_checks` (no Qt): which labels are
checked, with which faces, and how the findings are said (the check command's lines, the
export README's section, the window's message).

A label is checked once a person has worked on it or accepted it (in progress, labeled,
reviewed; imported labels are labeled): a pre-label nobody has looked at yet is the model's,
and the annotator meets it anyway. Its faces are those the project keeps, else those found in
the label itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from faceparse_app.faces import boxes_from_text
from faceparse_app.label_checks import (
    MISFIT,
    PINHOLE,
    STRAY,
    SWAPPED,
    Finding,
    check_label,
    summary,
)
from faceparse_app.project import ImageRecord, Project
from trainer.data.imageio import image_size, read_label
from trainer.errors import ImageReadError, LabelMapError
from trainer.labels import LAPA

CHECKED_STATUSES = frozenset({"in_progress", "labeled", "reviewed"})

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class LabelJob:
    """What checking one saved label needs, read from the store beforehand (so the check can
    run on any thread).

    Attributes:
        image_id: the image's row id.
        relpath: its name in the project.
        label_path: its label file.
        boxes: the faces the project keeps (photo pixels), or None: found in the label.
        image_path: the photo's file, whose size the label must have (None: not compared).
    """

    image_id: int
    relpath: str
    label_path: Path
    boxes: tuple[Box, ...] | None
    image_path: Path | None = None


def checked(rec: ImageRecord) -> bool:
    """Whether the image's saved label is one to check."""
    return rec.status in CHECKED_STATUSES and not rec.missing and rec.label_source is not None


def jobs(project: Project, records: Sequence[ImageRecord] | None = None) -> list[LabelJob]:
    """The checks of these images' labels (default: all), those worth checking only; one
    query for their faces (a save's recheck reads one row, not the project's 10,000)."""
    wanted = [r for r in (project.images() if records is None else records) if checked(r)]
    if not wanted:
        return []
    if records is None or len(wanted) > 500:
        faces = dict(project.query("SELECT id, faces FROM images"))
    else:
        marks = ",".join("?" * len(wanted))
        faces = dict(project.query(f"SELECT id, faces FROM images WHERE id IN ({marks})", [r.id for r in wanted]))
    out = []
    for rec in wanted:
        boxes = boxes_from_text(faces.get(rec.id))
        kept = tuple(boxes) if boxes else None
        out.append(LabelJob(rec.id, rec.relpath, project.label_path(rec), kept, project.root / rec.relpath))
    return out


def run(job: LabelJob) -> list[Finding]:
    """The findings of one saved label ([] when it is gone or unreadable: other checks say so)."""
    try:
        label = read_label(job.label_path, num_classes=LAPA.num_classes)
    except (LabelMapError, OSError):
        return []
    misfit = _misfit(job, label.shape)
    return [misfit] if misfit is not None else check_label(label, job.boxes)


def _misfit(job: LabelJob, shape: tuple[int, ...]) -> Finding | None:
    """A label of another size than its photo (the photo cropped, turned or replaced under the
    name): its parts lie on no face of this picture, so it is the one finding, not the stray
    pieces and swaps the checks would read into it. None when it fits or the photo is unreadable
    (the window says so on opening it)."""
    if job.image_path is None:
        return None
    try:
        h, w = image_size(job.image_path)
    except (ImageReadError, OSError):
        return None
    if (h, w) == tuple(shape[:2]):
        return None
    lh, lw = shape[:2]
    return Finding(
        MISFIT,
        f"label does not fit the photo: it is {lw}×{lh}, the photo {w}×{h} (made for another "
        "picture of this name)",
        (0, 0, w, h),
    )


def findings_of(project: Project, todo: Sequence[LabelJob]) -> Iterator[tuple[LabelJob, list[Finding]]]:
    """Each job's findings: those the window kept for an unchanged label
    (:mod:`~faceparse_app.label_check_cache`, read only here: the window writes it), else
    checked now."""
    from faceparse_app.label_check_cache import LabelCheckCache, job_key

    cache = LabelCheckCache(project.store_dir, writable=False)
    cache.load()
    for job in todo:
        cached = cache.lookup(job, job_key(job))
        yield job, run(job) if cached is None else cached


def check_project(project: Project) -> Iterator[tuple[LabelJob, list[Finding]]]:
    """Every checked label of a project and its findings, in the project's order."""
    yield from findings_of(project, jobs(project))


def check_command(folder: str) -> int:
    """``faceparse-studio check``: print each finding of a project's labels; 1 when any."""
    project = Project.open(folder, read_only=True)
    try:
        labels = issues = 0
        for job, findings in check_project(project):
            labels += 1
            issues += len(findings)
            for finding in findings:
                print(finding_line(job.relpath, finding), flush=True)
    finally:
        project.close()
    if issues:
        print(f"{issues} label issue(s) in {labels} labels checked")
        return 1
    print(f"no label issues in {labels} labels checked")
    return 0


def finding_line(relpath: str, finding: Finding) -> str:
    """One line of ``faceparse-studio check``: 'a.jpg: face 1: eyes: left/right swapped ...
    [x0,y0,x1,y1]'."""
    x0, y0, x1, y1 = finding.box
    face = "" if finding.kind == MISFIT else f"face {finding.face + 1}: "  # the whole label's
    return f"{relpath}: {face}{finding.message} [{x0},{y0},{x1},{y1}]"


def photo_message(relpath: str, findings: Sequence[Finding]) -> str:
    """The window's one message when a photo with issues opens."""
    faces = sorted({f.face + 1 for f in findings if f.kind != MISFIT})
    where = "" if not faces else f" (face {faces[0]})" if len(faces) == 1 else f" (faces {', '.join(map(str, faces))})"
    kinds = {f.kind for f in findings}
    why = [text for kind, text in EXPLAINED.items() if kind in kinds]
    return f"Label issues in {relpath}{where}: {summary(findings)}. " + " ".join(why)


# What each kind means, said in the window after the findings.
EXPLAINED = {
    MISFIT: "Its label file is not of this photo's size (put there by another program?): the file "
    "is kept as it is until you edit the photo, then kept aside as .invalid. (A photo cropped or "
    "replaced in the folder has its old label kept aside when the app finds it.)",
    SWAPPED: "LaPa's left eye and eyebrow are the ones on the viewer's left (the person's right).",
    PINHOLE: "A pinhole is a few unlabeled pixels inside the face (fill them).",
    STRAY: "A stray piece is a part painted far from that part.",
}


def readme_lines(project: Project, exported: Sequence[tuple[str, str, ImageRecord]]) -> list[str]:
    """The export README's section naming the exported labels with issues (none: no lines).

    Args:
        exported: (split, name, record) per label file written (one per face of a photo in a
            per-face export: each is named, as the files are; the photo is checked once).
    """
    photos = list({rec.id: rec for _, _, rec in exported}.values())
    by_id = {job.image_id: findings for job, findings in findings_of(project, jobs(project, photos))}
    named = []
    for split, name, rec in exported:
        findings = by_id.get(rec.id, [])
        if findings:
            named.append(f"  {split}/{name}: {summary(findings)}")
    if not named:
        return []
    return [
        "",
        f"LABEL ISSUES: {len(named)} exported label(s) look wrong to FaceParse Studio's checks:",
        "left/right swapped (LaPa's left eye and eyebrow are the viewer's left; these are the",
        "person's, as in CelebAMask-HQ), pinholes (a few unlabeled pixels inside a face) or stray",
        "pieces (a part painted far from that part). Check them (Show: label issues):",
        *named,
    ]

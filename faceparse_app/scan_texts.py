"""What opening, scanning and moving on through a project say: photos renamed, replaced or gone
from the folder (their labels kept), and nothing left to label."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.data.imageio import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from faceparse_app.project_scan import ScanReport


def all_done_text(root: Path, counts: Mapping[str, int], unreadable: int = 0) -> str:
    """What "next unfinished" says when there is none: every image is labeled (but for the
    `unreadable` ones, no longer offered), or the folder holds no image at all (the wrong
    folder opened), and which files it looks for."""
    if unreadable:
        those = "it" if unreadable == 1 else "them"
        return (
            f"Every image that can be read is labeled; {unreadable} cannot be read or "
            f"pre-labeled (Show: problems lists {those}; click one to try it again)."
        )
    if counts.get("total", 0):  # images present in the folder
        return "Every image is labeled."
    kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
    return (
        f"No images in {root.name}: FaceParse Studio looks for {kinds} files in the folder and "
        "its subfolders. Open a folder of face photos (File → Open folder…)."
    )


def name_list(relpaths: Sequence[str], most: int = 5) -> str:
    """The first few names, and how many more: 'a.jpg, b.jpg and 3 more'."""
    shown = ", ".join(relpaths[:most])
    return shown + (f" and {len(relpaths) - most} more" if len(relpaths) > most else "")


def replaced_text(replaced: Sequence[str]) -> str:
    """What opening or a rescan says of labeled or started photos whose file is another picture
    now ("" when none)."""
    if not replaced:
        return ""
    return (
        f"{len(replaced)} labeled or started photo(s) were replaced on disk by another picture "
        f"({name_list(replaced)}): their labels, made for the old pictures, are kept and marked "
        "for review; check that each fits, then mark it labeled again."
    )


def gone_text(report: ScanReport) -> str:
    """What opening says about images renamed or moved since the last open, worked-on ones gone
    from the folder, or replaced by another picture ("" when none): their rows and labels are
    kept."""
    replaced = " ".join(
        filter(None, [reencoded_text(report.reencoded), replaced_text(report.replaced), set_aside_text(report.set_aside)])
    )
    if report.moved:  # renamed, moved or renumbered in a file manager: said, so nothing surprises
        n = len(report.moved)
        replaced = (
            f"{n} photo{'s were' if n != 1 else ' was'} renamed or moved in the folder since it was "
            f"last opened ({renames(report.moved)}): "
            f"{'each label' if n != 1 else 'its label'} followed its picture. {replaced}"
        ).rstrip()
    if not report.gone:
        return replaced
    return replaced + (" " if replaced else "") + kept_text(report.gone, "since it was last opened")


def reencoded_text(reencoded: Sequence[tuple[str, str]]) -> str:
    """What is said of photos saved in another format under their name ("" when none)."""
    if not reencoded:
        return ""
    return (
        f"{len(reencoded)} photo(s) were saved in another format under the same name ({renames(reencoded)}): "
        "each label followed its photo; a label you made is marked for review (the pixels may "
        "differ a little): check that it fits, then mark it labeled again."
    )


def set_aside_text(set_aside: Sequence[tuple[str, Path]]) -> str:
    """What is said of labeled or started photos replaced by a picture of another size ("" when
    none): their labels could not fit, are kept aside, and the photos start again."""
    if not set_aside:
        return ""
    kept = name_list([f"{name} → {path.parent.parent.name}/{path.parent.name}/{path.name}" for name, path in set_aside])
    return (
        f"{len(set_aside)} labeled or started photo(s) were replaced on disk by a picture of another "
        f"size ({kept}): a label made for the old picture cannot fit the new one, so it is kept "
        "aside as that file, and the photo starts again from the model's pre-label."
    )


def renames(moved: Sequence[tuple[str, str]]) -> str:
    """The first few renames of a scan, 'old → new', and how many more."""
    return name_list([f"{old} → {new}" for old, new in moved])


def kept_text(gone: Sequence[str], when: str) -> str:
    """What is said of labeled or started photos gone from the folder ``when``: their labels
    are kept (also when another picture took the name, ``project_moves.aside_relpath``)."""
    n = len(gone)
    return (
        f"{n} labeled or started image{'s are' if n != 1 else ' is'} gone from the folder {when} "
        f"({name_list(gone)}): {'their labels are kept and come back when the files do' if n != 1 else 'its label is kept and comes back when the file does'}, "
        "under any name; until then the export leaves "
        f"{'them' if n != 1 else 'it'} out."
    )


def without_path(text: str, path: str | os.PathLike[str]) -> str:
    """An error about an image, told next to its name: the full path the reader put in front
    ("/home/.../a.jpg: not an image") left out, so the name is not said twice."""
    return text.replace(f"{os.fspath(path)}: ", "", 1)

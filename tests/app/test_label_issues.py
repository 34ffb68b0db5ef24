"""Label issues where a user meets them, without a window: ``faceparse-studio check PROJECT``
prints one line per finding and exits 1 (0 when none), and the LaPa export's README names the
exported labels with issues. Real HELEN faces with their LaPa labels, one swapped left/right."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from faceparse_app.__main__ import main
from faceparse_app.export import export_project
from faceparse_app.import_labels import import_labels
from trainer.data.imageio import read_label, write_label

HELEN = "lapa-format-helen/test"
SWAP = np.arange(256, dtype=np.uint8)
SWAP[[2, 3, 4, 5]] = [3, 2, 5, 4]


def helen_project(tmp_path: Path, shared_data: Path, swapped: bool = True) -> tuple[Path, str]:
    """A project of the HELEN photos with their labels imported; the first label's left and
    right swapped (the person's way) before the import when ``swapped``. Returns the project
    and the swapped photo's name."""
    photos, labels = tmp_path / "proj", tmp_path / "labels"
    shutil.copytree(shared_data / HELEN / "images", photos)
    shutil.copytree(shared_data / HELEN / "labels", labels)
    first = sorted(labels.glob("*.png"))[0]
    if swapped:
        write_label(first, SWAP[read_label(first)])
    report = import_labels(photos, labels)
    assert len(report.imported) == 6
    return photos, first.name


def test_check_prints_one_line_per_finding_and_exits_1(tmp_path, shared_data, capsys):
    project, name = helen_project(tmp_path, shared_data)
    code = main(["check", str(project)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    findings = [line for line in out if line.startswith(name)]
    assert len(findings) == 2  # brows and eyes
    assert all("left/right swapped" in line for line in findings)
    assert any("eyes" in line for line in findings) and any("eyebrows" in line for line in findings)
    assert not [line for line in out if ".png:" in line and not line.startswith(name)]


def test_check_of_good_labels_exits_0(tmp_path, shared_data, capsys):
    project, _ = helen_project(tmp_path, shared_data, swapped=False)
    code = main(["check", str(project)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no label issues" in out and "6 labels" in out


def test_the_export_readme_names_the_labels_with_issues(tmp_path, shared_data):
    project, name = helen_project(tmp_path, shared_data)
    out = tmp_path / "export"
    counts = export_project(project, out, val_fraction=0, test_fraction=0)
    assert counts["train"] == 6  # an issue blocks nothing
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "LABEL ISSUES" in readme
    section = readme.split("LABEL ISSUES")[1].split("\n\n")[0]
    stem = Path(name).stem
    assert f"train/{stem}: left/right swapped (eyebrows, eyes)" in section
    assert section.count("train/") == 1  # the good ones are not named


def test_a_per_face_exports_readme_names_the_face_images_it_wrote(tmp_path, shared_data):
    """One image per face: the files are NAME__face1…, so LABEL ISSUES must name those, not
    the photo's name, which is no file of the export."""
    project, name = helen_project(tmp_path, shared_data)
    out = tmp_path / "export"
    export_project(project, out, val_fraction=0, test_fraction=0, per_face=True)
    readme = (out / "README.txt").read_text(encoding="utf-8")
    section = readme.split("LABEL ISSUES")[1].split("\n\n")[0]
    named = [line.strip().split(":")[0] for line in section.splitlines() if line.startswith("  train/")]
    assert named and all((out / "train" / "labels" / f"{n.split('/', 1)[1]}.png").is_file() for n in named), named
    assert all(Path(name).stem in n for n in named)


def test_a_label_made_for_another_picture_is_named_as_such_not_as_stray_pieces(tmp_path, shared_data, capsys):
    """A photo cropped under its label (same name, another size): the checks read the old
    label against the new picture's faces and said 'stray piece', a meaningless finding, or
    nothing at all; the label fits no face of this picture and is what to look at."""
    from trainer.data.imageio import read_image, write_image

    project, _ = helen_project(tmp_path, shared_data, swapped=False)
    photo = sorted(p for p in project.iterdir() if p.is_file())[2]
    image = read_image(photo)
    write_image(photo, image[: image.shape[0] - 40, 30:])  # cropped in another program
    code = main(["check", str(project)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    lines = [line for line in out if line.startswith(photo.name)]
    assert len(lines) == 1, out
    assert "label does not fit the photo" in lines[0] and "made for another picture" in lines[0]
    assert f"{image.shape[1]}×{image.shape[0]}" in lines[0]
    assert not [line for line in out if ": face " in line and not line.startswith(photo.name)]

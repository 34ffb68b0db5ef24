"""The model-in-the-loop jobs the app runs in the background (Qt-free).

Each job is a plain function taking ``on_progress`` (a callable receiving dicts) and ``cancel``
(a ``threading.Event``), so it runs the same in a test, a script or a Qt worker thread
(``faceparse_app.workers``). A failed run raises :class:`TrainingError` with the reason in its
message and publishes nothing; labels are never touched by these jobs.

- :func:`prelabel`: one face in, label map + confidence + uncertainty score out.
- :func:`run_finetune_job`: fine-tune on the project's labeled faces, publish a parser version.

Pretraining (stage 1 on the project's photos) is ``faceparse_app.pretraining``.

The app's defaults (run lengths, preset, device) live in ``faceparse_app.training_settings``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceparse_app.model_store import ModelStore, ModelVersion
from faceparse_app.training_settings import (
    DEFAULT_DEVICE,
    DEFAULT_PRESET,
    FINETUNE_LENGTH,
)
from trainer.checkpoint import read_metadata
from trainer.configs import FinetuneConfig, FinetuneRuntime
from trainer.data.imageio import read_image, read_label
from trainer.data.sample import NamedSamples, Sample, as_named
from trainer.errors import CheckpointError, FaceParseError
from trainer.faces import Face
from trainer.finetune import FinetuneResult, finetune_on_samples
from trainer.predict import Prediction, Predictor
from trainer.recipes import finetune_recipe, recipe_for_start

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]

DEFAULT_VAL_FRACTION = 0.2


class TrainingError(FaceParseError):
    """A background training run failed; the message says why (shown in the app)."""


def preload_model_code() -> None:
    """Import the model and training code now (about 3-5 s on a small CPU, once per process).

    The first model build imports segmentation-models-pytorch and its dependencies (over a
    thousand modules). Done inside a worker thread, those imports hold the GIL in long stretches
    and stall the GUI for hundreds of milliseconds; call this at start-up instead (before the
    main window shows, or behind a splash), so background jobs start with nothing left to import.
    """
    import segmentation_models_pytorch  # noqa: F401
    import torch.utils.data  # noqa: F401

    import trainer.data.masking  # noqa: F401
    import trainer.data.torch_datasets  # noqa: F401
    import trainer.data.transforms  # noqa: F401
    import trainer.evaluate  # noqa: F401
    import trainer.losses  # noqa: F401
    import trainer.pretrain  # noqa: F401


# ---------------------------------------------------------------------------------------------
# Pre-labels


def prelabel(
    predictor: Predictor,
    image: np.ndarray,
    faces: Sequence[Face] | None = None,
    interrupt: Callable[[], bool] | None = None,
    confidence: bool = True,
) -> Prediction:
    """A photo's pre-label, through the trainer's one inference path.

    Args:
        predictor: a loaded parser (its framing decides: every face found and parsed, or the
            whole image as one aligned face).
        image: (H, W, 3) uint8 RGB.
        faces: the faces to parse instead of finding them (an annotator's own), or None.
        interrupt: asked between the steps of a photo; True stops it with
            ``trainer.errors.PredictionInterrupted`` (to make way for a more urgent photo).
        confidence: False leaves the confidence map out (either framing): the scoring sweep
            and the look-ahead need only the score and the label, and a 200-megapixel photo's
            map is 800 MB.

    Returns:
        The Prediction: label (H, W) uint8, confidence (H, W) float32 or None, the faces parsed,
        and the uncertainty score in [0, 1] over the faces (NaN when none was found).
    """
    given = None if faces is None else [list(faces)]
    return predictor.predict_batch([image], faces=given, interrupt=interrupt, confidence=confidence)[0]


# ---------------------------------------------------------------------------------------------
# Labeled faces from the project


@dataclass(frozen=True)
class LabeledFile:
    """One labeled face of the project, as the training job needs it.

    Attributes:
        name: the image's project-relative path (recorded in the model's data snapshot).
        image_path: the image file.
        label_path: its label PNG.
        content_hash: the image's content hash (from the project store).
        by_hand: an annotator drew or corrected the label (False: an accepted pre-label, the
            model's own output, which can be trained on but says nothing about accuracy).
    """

    name: str
    image_path: Path
    label_path: Path
    content_hash: str = ""
    by_hand: bool = True

    @property
    def snapshot_entry(self) -> str:
        return f"{self.name}@{self.content_hash}"


class LazySamples(NamedSamples):
    """Labeled faces read from disk on access (a project may hold more photos than fit in RAM).

    Args:
        files: the faces.
        num_classes: label values must be below this.

    Attributes:
        names: the faces' names (what ``finetune_on_samples`` records as the label subset).
    """

    def __init__(self, files: Sequence[LabeledFile], num_classes: int = 11) -> None:
        self.files = list(files)
        self.names = [f.name for f in self.files]
        self.num_classes = num_classes

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        f = self.files[index]
        image = read_image(f.image_path)
        label = read_label(f.label_path, num_classes=self.num_classes, expected_size=image.shape[:2])
        return Sample(image, label, f.name, f.image_path, f.label_path)


def snapshot_labels(files: Iterable[LabeledFile], snapshot_dir: str | os.PathLike[str]) -> list[LabeledFile]:
    """Copy the label PNGs of a training set, so annotators can keep editing while it trains.

    Args:
        files: the labeled faces at the start of training.
        snapshot_dir: where the copies go (e.g. inside the run folder).

    Returns:
        The same faces with ``label_path`` pointing at the copies (images are read in place:
        the app never rewrites an image).
    """
    dest = Path(snapshot_dir)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        copy = dest / f"{i:06d}.png"
        shutil.copyfile(f.label_path, copy)
        out.append(dataclasses.replace(f, label_path=copy))
    return out


def split_holdout(
    names: Sequence[str], fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Choose which labeled faces are held out for validation.

    Each face is assigned by a seeded hash of its name, so a face stays on the same side as more
    faces get labeled (validation scores of successive versions stay comparable). With two or
    more faces, at least one is held out and at least one is trained on; a single face is
    trained on and nothing is validated.

    Args:
        names: the faces' names (unique).
        fraction: share to hold out, in (0, 1).
        seed: changes the assignment.

    Returns:
        (train indices, validation indices), each ascending.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(names)
    if n < 2:
        return list(range(n)), []
    keys = [
        int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") / 2.0**64
        for name in names
    ]
    val = {i for i, k in enumerate(keys) if k < fraction}
    by_key = sorted(range(n), key=lambda i: keys[i])
    if not val:
        val = {by_key[0]}
    if len(val) == n:
        val.discard(by_key[-1])
    return [i for i in range(n) if i not in val], sorted(val)


def split_by_hand(
    files: Sequence[LabeledFile], fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Hold out faces for validation among those labeled or corrected by hand only.

    An accepted pre-label is the model's own output: a model scored on it measures how well it
    agrees with itself (99.7% after one epoch), so such faces are only trained on. With fewer
    than two hand-labeled faces nothing is validated (see :func:`split_holdout`).

    Returns:
        (train indices, validation indices) into ``files``, each ascending.
    """
    hand = [i for i, f in enumerate(files) if f.by_hand]
    _, held = split_holdout([files[i].name for i in hand], fraction, seed)
    val = {hand[j] for j in held}
    return [i for i in range(len(files)) if i not in val], sorted(val)


def compare_on_holdout(
    candidate: str | os.PathLike[str],
    baseline: tuple[str | os.PathLike[str], str],
    val_samples: Sequence[Sample],
    device: str = DEFAULT_DEVICE,
) -> dict[str, Any]:
    """Score a new parser and the one in use on the same held-out faces, the same way.

    Returns:
        {"baseline_version", "baseline_mean_f1", "candidate_mean_f1", "baseline_miou",
        "candidate_miou"} (in [0, 1]); a parser in use whose file cannot be loaded (damaged)
        scores None, with the reason as "baseline_error": it pre-labels nothing, so the new one
        replaces it.
    """
    from trainer import evaluate as scoring  # looked up at call time: tests stand in for it

    new = scoring.evaluate(candidate, val_samples, device=device)
    scores = {
        "baseline_version": baseline[1], "baseline_mean_f1": None, "baseline_miou": None,
        "candidate_mean_f1": new["mean_f1"], "candidate_miou": new.get("miou"),
    }  # fmt: skip
    try:
        old = scoring.evaluate(baseline[0], val_samples, device=device)
        scores["baseline_mean_f1"], scores["baseline_miou"] = old["mean_f1"], old.get("miou")
    except CheckpointError as exc:
        log.warning("the parser in use cannot be loaded; the new one replaces it: %s", exc)
        scores["baseline_error"] = str(exc)
    return scores


def candidate_wins(scores: dict[str, Any]) -> bool:
    """Whether a new parser replaces the one in use, from :func:`compare_on_holdout`'s scores:
    only if it is no worse on the held-out faces (a worse one is kept, not made active), or
    the one in use cannot be loaded at all. A mean F1 of None (no part in the held-out labels
    nor in the predictions: faces labeled all background, predicted so) is a perfect score."""
    if scores.get("baseline_error"):
        return True
    new, old = (1.0 if s is None else s for s in (scores["candidate_mean_f1"], scores["baseline_mean_f1"]))
    return bool(new >= old)


# ---------------------------------------------------------------------------------------------
# Fine-tuning


@dataclass
class FinetuneJobResult(FinetuneResult):
    """A FinetuneResult plus what the app needs after it.

    Attributes:
        version: the published parser version; None when cancelled or no store was given.
        train_names, val_names: the faces trained on and held out.
    """

    version: ModelVersion | None = None
    train_names: list[str] = field(default_factory=list)
    val_names: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """How the run ended, for ``loop_state.RunOutcome``: kind, version, metrics, cancelled."""
        return {
            "kind": "finetune",
            "version": self.version.id if self.version else None,
            "metrics": dict(self.version.metrics) if self.version else _metric_summary(self.metrics),
            "cancelled": self.cancelled,
        }


def _init_for(path: str | os.PathLike[str] | None) -> str:
    """The fine-tuning ``init`` for a file: ``ckpt:`` for a parser, ``ssl:`` for a backbone."""
    if not path:
        return "scratch"
    try:
        stage = read_metadata(path).get("stage")
    except FaceParseError as exc:
        raise TrainingError(f"cannot start from {path}: {exc}") from exc
    return f"{'ckpt' if stage == 'finetune' else 'ssl'}:{path}"


def run_finetune_job(
    train_samples: Sequence[Sample],
    out_dir: str | os.PathLike[str],
    *,
    val_samples: Sequence[Sample] | None = None,
    init_backbone: str | os.PathLike[str] | None = None,
    preset: str = DEFAULT_PRESET,
    epochs: int = FINETUNE_LENGTH.epochs,
    max_steps: int | None = FINETUNE_LENGTH.max_steps,
    batch_size: int = FINETUNE_LENGTH.batch_size,
    lr: float | None = None,
    device: str = DEFAULT_DEVICE,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    store: ModelStore | None = None,
    data_snapshot: Iterable[str] = (),
    parent: str | None = None,
    note: str = "",
    baseline: tuple[str | os.PathLike[str], str] | None = None,
    on_progress: ProgressFn | None = None,
    cancel: Any = None,
    num_by_hand: int | None = None,
) -> FinetuneJobResult:
    """Fine-tune a parser on labeled faces and publish it as a new version.

    Args:
        train_samples: labeled faces (a list of Samples or :class:`LazySamples`).
        out_dir: the run folder (checkpoints, logs); a fresh one per run.
        val_samples: faces to validate on; None: hold out part of ``train_samples``
            (see :func:`split_holdout`: seeded, at least one face when there are two or more).
        init_backbone: the checkpoint to start from: a stage-1 one (the project's or the
            starter backbone: a fresh FP decoder is trained on it with the ``head-on-backbone``
            recipe) or a parser (the starter parser: trained further with the
            ``continue-parser`` recipe); None starts from random weights with the ``plain``
            recipe (fine for tests, poor for users). See ``trainer.recipes``.
        preset: model preset when there is no backbone (a backbone brings its own).
        lr: peak learning rate; None: the recipe's.
        epochs, max_steps, batch_size, seed: the recipe's settings this run changes (see
            ``trainer.recipes.FinetuneRecipe``).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        val_fraction: share held out when ``val_samples`` is None.
        store: where to publish the best checkpoint as a "parser" version (skipped when None).
        data_snapshot, parent, note: recorded with the version (see ``ModelStore.publish``).
        baseline: (checkpoint, version id) of the parser in use: the new version is made
            active only if it scores at least as well on the same validation faces (both are
            recorded with it); without validation faces it is recorded as not validated and
            kept aside (the user may activate it); None: nothing to compare with or to keep in
            use, so it is made active.
        on_progress: receives the trainer's dicts: ``phase="train"`` after each step (step,
            total_steps, epoch, epochs, loss, lr, images_per_s, eta_s) and ``phase="val"`` after
            each validation (epoch, step, mean_f1, miou, best).
        cancel: a ``threading.Event``; when set the run stops within one step and publishes
            nothing.
        num_by_hand: faces labeled or corrected by hand among all given, kept with the version.

    Returns:
        A FinetuneJobResult (``.version`` is the published version).

    Raises:
        TrainingError: the run failed (bad data, a bad backbone file, NaN loss, ...); its message
            says why. Nothing is published then.
    """
    train_part: NamedSamples = as_named(train_samples)
    val_part: NamedSamples | None = None
    if val_samples is None:
        train_idx, val_idx = split_holdout(train_part.names, val_fraction, seed)
        train_part, val_part = train_part.subset(train_idx), train_part.subset(val_idx)
    elif len(val_samples):
        val_part = as_named(val_samples)
    if not len(train_part):
        raise TrainingError("no labeled faces to fine-tune on; label a few faces first")
    init = _init_for(init_backbone)
    recipe = finetune_recipe(
        recipe_for_start(init),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        seed=seed,
        **({"lr": lr} if lr is not None else {}),
    )
    config = FinetuneConfig(
        FinetuneRuntime(out_dir=str(out_dir), device=device, progress_bar=False),
        init=init,
        preset=preset,
        recipe=recipe,
    )
    try:
        result = finetune_on_samples(
            config, train_part, val_part or None, on_progress=on_progress, cancel=cancel
        )
    except Exception as exc:
        log.exception("fine-tuning failed")
        raise TrainingError(f"fine-tuning failed: {exc}") from exc
    job = FinetuneJobResult(
        best_path=result.best_path,
        last_path=result.last_path,
        metrics=result.metrics,
        history=result.history,
        cancelled=result.cancelled,
        train_names=list(train_part.names),
        val_names=list(val_part.names) if val_part is not None else [],
    )
    if store is not None and not result.cancelled:
        summary = _metric_summary(result.metrics)
        summary.update(num_train=len(job.train_names), num_val=len(job.val_names))
        if num_by_hand is not None:  # what the outcome says when too few are held out
            summary["num_by_hand"] = num_by_hand
        activate = True
        if baseline is not None and (val_part is None or not len(val_part)):
            activate = False  # unscored: it never replaces the parser in use on its own
            summary["baseline_version"] = baseline[1]
        elif val_part is not None and baseline is not None:
            try:
                summary.update(compare_on_holdout(result.best_path, baseline, val_part, device))
            except Exception as exc:
                log.exception("comparing with the active parser failed")
                raise TrainingError(f"could not compare with the model in use: {exc}") from exc
            activate = candidate_wins(summary)
        summary["activated"] = activate
        try:
            job.version = store.publish(
                result.best_path, "parser", summary, data_snapshot, parent=parent, note=note,
                activate=activate,
            )  # fmt: skip
        except FaceParseError as exc:
            raise TrainingError(f"training finished but publishing the model failed: {exc}") from exc
    return job


def run_finetune_on_files(
    files: Sequence[LabeledFile], run_dir: str | os.PathLike[str], **kwargs: Any
) -> FinetuneJobResult:
    """Fine-tune on project faces: snapshot their labels, then :func:`run_finetune_job`.

    Validation faces are held out among the faces labeled by hand only (:func:`split_by_hand`).
    The run's checkpoints are deleted when it ends (the published version has its own copy); its
    logs and label snapshot stay in ``run_dir``.
    Meant to run in a worker thread: copying the label PNGs into ``run_dir/snapshot`` happens
    there, and annotators may keep editing while the run trains on the copies. The data snapshot
    recorded with the published version is the faces' ``relpath@hash`` list.

    Args:
        files: the labeled faces at the start (built in the GUI thread from the project store).
        run_dir: a fresh run folder, e.g. ``<project>/.faceparse/runs/finetune-<time>``.
        **kwargs: passed to :func:`run_finetune_job` (store, init_backbone, preset, epochs,
            max_steps, batch_size, device, parent, on_progress, cancel, ...).
    """
    if not files:
        raise TrainingError("no labeled faces to fine-tune on; label a few faces first")
    try:
        snapshot = snapshot_labels(files, Path(run_dir) / "snapshot")
    except OSError as exc:
        raise TrainingError(f"could not copy the labels to train on: {exc}") from exc
    kwargs.setdefault("data_snapshot", [f.snapshot_entry for f in files])
    kwargs.setdefault("num_by_hand", sum(f.by_hand for f in files))
    samples = LazySamples(snapshot)
    train_idx, val_idx = split_by_hand(
        snapshot, kwargs.pop("val_fraction", DEFAULT_VAL_FRACTION), kwargs.get("seed", 0)
    )
    try:
        return run_finetune_job(
            samples.subset(train_idx), run_dir, val_samples=samples.subset(val_idx), **kwargs
        )
    finally:
        drop_run_checkpoints(run_dir)


def drop_run_checkpoints(run_dir: str | os.PathLike[str]) -> None:
    """Delete a fine-tuning run's checkpoints: the published version is a copy in the model
    store, and the run's own weights (best and last, tens of MB each) are never read again,
    whether it finished, was cancelled, failed or was killed. Its logs and snapshot stay."""
    for path in Path(run_dir).glob("*.safetensors"):
        path.unlink(missing_ok=True)


def _metric_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalars worth keeping with a version (not the confusion matrix)."""
    keep = ("mean_f1", "miou", "pixel_accuracy", "epoch", "step", "num_images")
    out = {k: metrics[k] for k in keep if k in metrics}
    if "per_class" in metrics:
        out["per_class_f1"] = {k: v.get("f1") for k, v in metrics["per_class"].items()}
    return out

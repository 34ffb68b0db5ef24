"""Fine-tune runs read across result files by what they vary: stage-1 length and fine-tune length.

The spark starts and scratch at K = 10 and 50 come from three writers, each naming its runs its
own way: ``bench.study`` (arms ``ssl-spark``, a 10-epoch stage 1 in ``study_plain.json``, and
``scratch``), ``bench.ssl_length`` (arms ``ssl-e<epochs>``) and ``bench.probe_finetune``
(``probes.jsonl``: names ``e<epochs>_K<k>_s<seed>_<n>steps`` and
``scratch_K<k>_s<seed>_<n>steps``). :func:`collect_by_epochs` reads them into one table keyed
by (stage-1 epochs, K, subset seed, steps), which the plot scripts draw.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.harness import RESULTS, read_jsonl
from bench.study_results import read_study

# Arm names in the study's results (its spark start is a 10-epoch stage 1) and ssl_length's
# (``ssl-e<epochs>``, any length) -> stage-1 epochs (0 = scratch).
FIXED_ARMS = {"scratch": 0, "ssl-spark": 10}
SSL_LENGTH_ARM = re.compile(r"^ssl-e(\d+)$")
PROBE_NAME = re.compile(r"^(?:e(\d+)|scratch)_K\d+(?:_s\d+)?_\d+steps$")
# The results files that hold the 250-step fine-tunes by stage-1 length, the earlier recipe's
# (experiment folder, file name).
STAGE1_LENGTH_SOURCES = (
    ("study", "study_plain.json"),
    ("ssl_length", "ssl_length_cpu.json"),
    ("ssl_length", "ssl_length_cpu_e40.json"),
)
PROBES = ("probes", "probes.jsonl")

EpochRun = tuple[int, int, int, int]  # stage-1 epochs (0 = scratch), K, subset seed, steps


def stage1_length_files(root: Path = RESULTS) -> list[Path]:
    """The results files of the runs by stage-1 length under ``root`` (bench/results)."""
    return [root / folder / name for folder, name in STAGE1_LENGTH_SOURCES]


def probes_file(root: Path = RESULTS) -> Path:
    """``probes.jsonl`` under ``root`` (bench/results)."""
    return root / PROBES[0] / PROBES[1]


def collect_by_epochs(
    results_json: list[Path], probes_jsonl: Path
) -> dict[EpochRun, tuple[float, float]]:
    """(stage-1 epochs, K, seed, steps) -> (mean F1, mIoU) in %, for the spark starts and
    scratch at K in {10, 50}; a later file overrides an earlier one for the same run."""
    runs: dict[EpochRun, tuple[float, float]] = {}
    for path in results_json:
        for r in read_study(path)["runs"]:
            m = SSL_LENGTH_ARM.match(r["arm"])
            epochs = int(m.group(1)) if m else FIXED_ARMS.get(r["arm"])
            if epochs is not None and r["k"] in (10, 50):
                key = (epochs, r["k"], r["seed"], r["steps"])
                runs[key] = (100 * r["mean_f1"], 100 * r["miou"])
    for r in read_jsonl(probes_jsonl):
        m = PROBE_NAME.match(r["run"])
        if m and r["k"] in (10, 50):
            key = (int(m.group(1) or 0), r["k"], r["subset_seed"], r["steps"])
            runs[key] = (100 * r["mean_f1"], 100 * r["miou"])
    return runs

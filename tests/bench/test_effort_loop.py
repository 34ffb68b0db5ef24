"""bench.effort_loop's summary counts what the app would show: a fine-tuned parser that the app's
gate refuses leaves the annotator with the starter's pre-labels."""

from __future__ import annotations

import json

from bench.effort_loop import gated_summary, run_prefix
from bench.harness import append_jsonl, done_path


def _record(results, run, face, seconds):
    append_jsonl(results, {"run": run, "face": face, "arm": "pre-basic", "seconds": seconds})


def _gate(out, n, seed, activates):
    path = done_path(out / f"finetune_N{n}_s{seed}")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"settings": {}, "app_activates": activates}))


def test_a_refused_fine_tune_counts_as_the_starter_and_draws_pool_by_seconds(tmp_path):
    results, out = tmp_path / "effort.jsonl", tmp_path / "out"
    # Draw 0: N=5 is slower (refused by the gate); draw 1: N=5 is faster (activated).
    for seed, tuned in ((0, [150.0, 150.0]), (1, [50.0, 50.0])):
        prefix = run_prefix(seed)
        for i, t in enumerate(tuned):
            _record(results, f"{prefix}starter:", f"val/s{seed}f{i}", 100.0)
            _record(results, f"{prefix}N5:", f"val/s{seed}f{i}", t)
    _gate(out, 5, 0, False)
    _gate(out, 5, 1, True)
    _gate(out, 5, 12, True)  # a draw past seed 9 is read too
    _record(results, "s12-starter:", "val/s12f0", 100.0)
    _record(results, "s12-N5:", "val/s12f0", 100.0)
    (line,) = gated_summary(results, out)
    # Fine-tuned: 500 s against 500 s; the app: 200 (starter kept) + 100 + 100 against 500.
    assert line.startswith("N=5: fine-tuned +0.0%, with the app's gate -20.0%")
    assert "s0: +50% (kept starter) (2 faces)" in line and "s1: -50% (2 faces)" in line
    assert "s12: +0% (1 face)" in line


def test_faces_without_a_starter_record_and_draws_without_a_gate_are_left_out(tmp_path):
    results, out = tmp_path / "effort.jsonl", tmp_path / "out"
    _record(results, "starter:", "val/a", 100.0)
    _record(results, "N10:", "val/a", 80.0)
    _record(results, "N10:", "val/b", 500.0)  # no starter record for b
    _record(results, "s1-N10:", "val/c", 10.0)  # draw 1 has no fine-tune marker
    _record(results, "s1-starter:", "val/c", 100.0)
    _gate(out, 10, 0, True)
    assert gated_summary(results, out) == [
        "N=10: fine-tuned -20.0%, with the app's gate -20.0%; s0: -20% (1 face)"
    ]

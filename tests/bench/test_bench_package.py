"""bench/ is a package run as ``python -m bench.<script>``: every module imports, every script's
``--help`` works, no module edits sys.path, and the harness's JSON lines and manifests round-trip.
Fast: no training, no shared data."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench import harness

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
MODULES = sorted(f"bench.{m.name}" for m in pkgutil.iter_modules(bench.__path__))


def _has_main(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


SCRIPTS = sorted(m for m in MODULES if _has_main(BENCH / f"{m.split('.')[1]}.py"))


def test_the_package_holds_the_scripts_the_readme_names():
    names = {m.split(".")[1] for m in SCRIPTS}
    assert {"study", "k10_subsets", "probe_finetune", "bench_speed", "plot_study"} <= names
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in names if f"bench.{n}" not in readme]
    assert not missing, f"README's Benchmarks table does not name {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_every_bench_module_imports(module):
    importlib.import_module(module)


def test_every_script_answers_help():
    """Each script's --help, run the way ``python -m`` runs it (runpy, as ``__main__``), in one
    fresh interpreter so that torch loads once; then one real ``python -m``."""
    probe = (
        "import contextlib, io, json, runpy, sys\n"
        "codes = {}\n"
        f"for name in {SCRIPTS!r}:\n"
        "    sys.argv = [name, '--help']\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            runpy.run_module(name, run_name='__main__', alter_sys=True)\n"
        "        codes[name] = ['no exit', out.getvalue()]\n"
        "    except SystemExit as e:\n"
        "        codes[name] = [e.code or 0, out.getvalue()]\n"
        "print(json.dumps(codes))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(codes) == set(SCRIPTS)
    for name, (code, text) in codes.items():
        assert code == 0, f"{name} --help: exit {code}"
        assert text.startswith(f"usage: python -m {name}"), f"{name} --help printed {text[:200]!r}"
        # A working folder is --out-dir in every command (trainer's and bench's alike); --out
        # names a file (a plot, a PNG).
        for option in re.findall(r"^  (--out\b(?!-).*(?:\n {6,}.*)*)", text, re.M):
            assert "folder" not in option, f"{name}: a folder option must be --out-dir: {option!r}"
            assert re.search(r"plot|png|file", option, re.I), f"{name}: --out must say which file: {option!r}"
    real = subprocess.run(
        [sys.executable, "-m", "bench.plot_study", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert real.returncode == 0 and "python -m bench.plot_study" in real.stdout


def _edits_sys_path(tree: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute)
        and n.attr == "path"
        and isinstance(n.value, ast.Name)
        and n.value.id == "sys"
        for n in ast.walk(tree)
    )


def test_no_bench_module_edits_sys_path():
    offenders = [
        p.name for p in sorted(BENCH.glob("*.py")) if _edits_sys_path(ast.parse(p.read_text()))
    ]
    assert not offenders, f"these bench modules touch sys.path: {offenders}"
    for script in BENCH.glob("*.sh"):
        assert "sys.path" not in script.read_text(), script.name


def test_jsonl_records_round_trip_with_the_envelope(tmp_path):
    path = tmp_path / "exp" / "runs.jsonl"
    first = harness.jsonl_record("exp", "run_a", {"miou": 0.61, "k": 10}, command="python -m x")
    harness.append_jsonl(path, first)
    harness.append_jsonl(path, harness.jsonl_record("exp", "run_b", {"miou": 0.65}))
    with path.open("a") as f:
        f.write('{"run": "cut sh')  # a line cut short by a killed process
    records = harness.read_jsonl(path)
    assert [r["run"] for r in records] == ["run_a", "run_b"]
    assert list(records[0])[:5] == list(harness.ENVELOPE)
    assert records[0]["command"] == "python -m x" and records[0]["miou"] == 0.61
    machine = records[0]["machine"]
    assert machine["isa"] and isinstance(machine["avx512f"], bool) and machine["cores"] >= 1
    # bf16 speed depends on AMX / AVX512-BF16 and on oneDNN using them: every record says which.
    assert set(machine["bf16"]) <= {"amx_bf16", "avx512_bf16"}
    assert isinstance(machine["onednn_bf16"], bool)
    with pytest.raises(ValueError, match="envelope"):
        harness.jsonl_record("exp", "run_c", {"machine": "mine"})
    assert harness.read_jsonl(tmp_path / "absent.jsonl") == []


def test_records_from_before_the_envelope_read_with_run_and_time(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"name": "e80_K10_s0_500steps", "date": "2026-11-28 04:41 UTC"}))
    (record,) = harness.read_jsonl(path)
    assert record["run"] == "e80_K10_s0_500steps" and record["time"] == "2026-11-28 04:41 UTC"


def test_manifest_names_each_file_with_its_command_and_keeps_the_earlier_one(tmp_path):
    out = tmp_path / "speed.json"
    harness.write_json(out, {"rows": []}, command="python -m bench.bench_speed --repeats 3")
    harness.record_output(out, "python -m bench.bench_speed --repeats 3")  # same command again
    entry = harness.read_manifest(tmp_path)["files"]["speed.json"]
    assert entry["command"] == "python -m bench.bench_speed --repeats 3"
    assert "earlier" not in entry
    assert entry["machine"]["isa"] == __import__("torch").backends.cpu.get_cpu_capability()
    harness.record_output(out, "python -m bench.bench_speed --update", note="train rerun")
    entry = harness.read_manifest(tmp_path)["files"]["speed.json"]
    assert entry["command"] == "python -m bench.bench_speed --update"
    assert entry["note"] == "train rerun"
    assert [e["command"] for e in entry["earlier"]] == ["python -m bench.bench_speed --repeats 3"]


def test_command_line_is_the_python_m_form_with_thread_variables(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert harness.command_line("bench.study", ["--ks", "10"]) == "python -m bench.study --ks 10"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert harness.command_line("bench.study", ["a b"]).startswith("OMP_NUM_THREADS=1 python -m")


def test_done_markers_hold_until_the_settings_change(tmp_path):
    harness.mark_done(tmp_path / "stage", {"lr": 0.01}, {"miou": 0.6})
    assert harness.load_done(tmp_path / "stage", {"lr": 0.01})["miou"] == 0.6
    assert harness.load_done(tmp_path / "stage", {"lr": 0.003}) is None
    assert harness.load_done(tmp_path / "nothing", {}) is None


def test_missing_shared_data_says_where_it_should_be():
    with pytest.raises(SystemExit, match="shared"):
        harness.require(harness.SHARED / "no-such-dataset", "a dataset")


def test_every_committed_result_is_named_in_its_manifest():
    for folder in sorted(p for p in harness.RESULTS.iterdir() if p.is_dir()):
        files = harness.read_manifest(folder)["files"]
        present = {p.name for p in folder.iterdir() if p.name != harness.MANIFEST_NAME}
        assert present == set(files), f"{folder.name}: {sorted(present ^ set(files))}"
        for name, entry in files.items():
            assert entry["command"] and entry["date"] and entry["machine"], f"{folder.name}/{name}"
    assert not [p for p in harness.RESULTS.iterdir() if p.is_file()], "results outside a folder"


def test_benchmarks_md_names_only_result_files_that_exist():
    text = (ROOT / "BENCHMARKS.md").read_text() + (ROOT / "README.md").read_text()
    paths = set(re.findall(r"bench/results/[\w./-]+\.(?:jsonl|json|csv|png)\b", text))
    assert paths, "BENCHMARKS.md names no result files"
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"named but absent: {missing}"

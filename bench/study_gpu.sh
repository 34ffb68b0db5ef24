#!/usr/bin/env bash
# The label-efficiency study at the paper's setting (ResNet-50 UNet++, 512 px) on one lent GPU.
#
# Two steps:
#   bash bench/study_gpu.sh prepare   # here (CPU): build what travels, under bench/out/gpu-carry + .whl
#   bash bench/study_gpu.sh run       # there (GPU): the study, sized for a 15-minute device budget
#
# What travels (64 MiB limit): the converted dev set in LaPa layout (the study's own data stage,
# mirrored-side masks fixed, val/pool split done; ~29 MiB), faces-unlabeled downscaled to at most
# 512 px (JPEG q92), and the segmentation-models-pytorch wheel (the GPU image has torch, timm,
# safetensors, opencv, but not smp). With the device tool:
#   run(command="bash bench/study_gpu.sh run", carry=["bench/out/gpu-carry", ".whl"], timeout_s=600)
# Results come back as $OUT/study_gpu.json / .csv (named, with the command and the machine, in
# $OUT/MANIFEST.json) and $OUT/study_gpu.log; they belong in bench/results/study/.
#
# Budget (15 min of device time in all, a machine start included): stage 1 with the paper's
# recipe only (20 epochs over 793 faces), then fine-tunes of 200 steps of batch 16 for the SSL and
# scratch arms, headline K values first (every weight from step 1, 200 steps at every K: the
# recipe of the recorded run, not the CPU study's current one); the whole command stops itself
# at STUDY_SECONDS (540 s by default) and every finished run is already in the results file, so
# a cut-off still reports.
set -euo pipefail
cd "$(dirname "$0")/.."

CARRY=bench/out/gpu-carry
DATA_SRC=../shared/data/celebamask-hq-dev   # the string the data stage's done-marker records
STUDY_SECONDS=${STUDY_SECONDS:-540}

# The smp wheel the GPU image lacks (it has torch, timm, safetensors, opencv).
fetch_smp_wheel() {
    mkdir -p .whl
    "$1" -m pip download -q --no-deps --only-binary=:all: -d .whl segmentation-models-pytorch==0.6.0
}

prepare() {
    local py=.venv/bin/python
    "$py" -m bench.study --stop-after data --data "$DATA_SRC" --out-dir "$CARRY/study"
    PYTHONPATH=. "$py" - "$CARRY/unlabeled" <<'EOF'
import sys
from pathlib import Path

from PIL import Image

from trainer.data.folders import list_images
from trainer.data.imageio import read_image

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
src = Path("../shared/data/faces-unlabeled")
for path in list_images(src):
    image = Image.fromarray(read_image(path))
    image.thumbnail((512, 512), Image.LANCZOS)
    rel = path.relative_to(src).with_suffix(".jpg")
    dst = out / "__".join(rel.parts)
    image.save(dst, quality=92)
print(f"{len(list(out.iterdir()))} unlabeled images in {out}")
EOF
    fetch_smp_wheel "$py"
    du -sh "$CARRY" .whl
    echo "carry: $CARRY .whl  (bench/out/ and .whl/ are git-ignored)"
}

install_smp() {
    if ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONUNBUFFERED=1
}

# gpu_run NAME MODULE ARGS...: python -m MODULE under the time limit, its log and results in $OUT
# as NAME.*
gpu_run() {
    local name=$1 module=$2
    shift 2
    local out=${OUT:-bench/out/gpu-results}
    mkdir -p "$out"
    install_smp
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
    # timeout leaves the device call time to bring $OUT back; results are written after every run.
    timeout "$STUDY_SECONDS" python3 -m "$module" \
        --data "$DATA_SRC" \
        --out-dir "$CARRY/study" \
        --unlabeled "$CARRY/unlabeled" \
        --results "$out/$name" \
        --device cuda \
        "$@" \
        2>&1 | tr '\r' '\n' | grep --line-buffered -v 'it/s\]' | tee "$out/$name.log" || true
    ls -la "$out"
}

run() {
    gpu_run study_gpu bench.study \
        --preset paper \
        --num-workers 12 \
        --finetune-workers 4 \
        --recipes center \
        --pretrain-epochs 20 \
        --pretrain-batch 32 \
        --finetune-steps 200 \
        --steps-for-k "" \
        --head-only-steps 0 \
        --finetune-batch 16 \
        --checkpoint-every 200
}

# The stage-1 length experiment (bench.ssl_length) at the CPU study's lite setting: the CPU's
# 10 epochs and one longer schedule in PRETRAIN_SECONDS, then the study's fine-tunes from both and
# from scratch. Same carry as `run`:
#   run(command="bash bench/study_gpu.sh length", carry=["bench/out/gpu-carry", ".whl"], timeout_s=600)
length() {
    gpu_run ssl_length bench.ssl_length \
        --num-workers 8 \
        --finetune-workers 4 \
        --pretrain-seconds "${PRETRAIN_SECONDS:-250}"
}

# The K = 10 lead over many subsets (bench.k10_subsets): the study's K = 10 fine-tune from its
# own stage-1 checkpoint and from scratch on subset seeds 0-39, a dozen at once, lowest seeds
# first; every finished fine-tune is in the results at once. Its carry is the study's data stage
# and that checkpoint without its optimizer state (~54 MB), too much to travel beside the tracked
# starter models (55 MB): send it from a local branch that drops trainer/assets/models/*.safetensors.
#   bash bench/study_gpu.sh prepare-k10   # here, after the CPU study
#   run(command="bash bench/study_gpu.sh k10", carry=["bench/out/gpu-k10", ".whl"], timeout_s=560)
# Flags after "k10" go to "python -m bench.k10_subsets run", e.g. a recipe variant over the same
# subsets (the records come back in $OUT/k10_subsets.jsonl; they belong in bench/results/k10_subsets/):
#   run(command="bash bench/study_gpu.sh k10 --class-weighting enet", ...)
K10=bench/out/gpu-k10
K10_SECONDS=${K10_SECONDS:-480}

prepare_k10() {
    local py=.venv/bin/python
    rm -rf "${K10:?}/data"
    mkdir -p "$K10"
    cp -r bench/out/study/data "$K10/data"
    "$py" -m bench.k10_subsets strip \
        bench/out/study/pretrain_spark_128px_lr0.003/pretrain_last.safetensors "$K10/ssl.safetensors"
    fetch_smp_wheel "$py"
    du -sh "$K10" .whl
}

k10() {
    if ! [[ $K10_SECONDS =~ ^[0-9]+$ ]] || ((K10_SECONDS < 60)); then
        echo "K10_SECONDS=$K10_SECONDS: give whole seconds, at least 60" >&2
        exit 2
    fi
    local out=${OUT:-bench/out/gpu-results}
    mkdir -p "$out"
    install_smp
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
    timeout "$K10_SECONDS" python3 -m bench.k10_subsets run \
        --ssl "$K10/ssl.safetensors" \
        --data "$K10/data" \
        --subsets 0-39 \
        --workers "${K10_WORKERS:-14}" \
        --threads 1 \
        --device cuda \
        --seconds $((K10_SECONDS - 15)) \
        --out-dir /tmp/k10-subsets \
        --results "$out/k10_subsets.jsonl" \
        "$@" \
        2>&1 | tee "$out/k10_subsets.log" || true
    python3 -m bench.k10_subsets summary "$out/k10_subsets.jsonl" --json 2>&1 \
        | tee "$out/k10_summary.txt" || true
}

# The paper's setting with SparK's stage 1 (issue 33): ResNet-50 UNet++ at 512 px, stage 1 with
# S1_RECIPE (sparse-image: 60% of the stride-32 cells masked, the sparse encoder) for S1_EPOCHS
# over the 793 photos, then K = 10 and K = 36 (0.2% of LaPa's train split) fine-tuned for
# FT_STEPS steps of 16 (the last GPU run stopped at 200, underfit; 500 of 16 are twice the images
# per step count of the CPU recipe, which plateaus by its step 400), the first fifth with the
# backbone held, for the SSL and scratch arms, K = 10 first. Results are written after every
# fine-tune ($OUT/study_gpu_sparse.json / .csv), so a cut-off still reports; then
# $OUT/study_gpu_sparse_summary.json: mIoU / mean F1 per arm and K, stage-1 and fine-tune
# images/s, the GPU. Same carry as `run`:
#   bash bench/study_gpu.sh prepare
#   run(command="bash bench/study_gpu.sh sparse", carry=["bench/out/gpu-carry", ".whl"], timeout_s=600)
# Checked here first, on the CPU, at 64 px and a few steps (the same code path):
#   bash bench/study_gpu.sh sparse --probe
S1_RECIPE=${S1_RECIPE:-sparse-image}
S1_EPOCHS=${S1_EPOCHS:-12}
FT_STEPS=${FT_STEPS:-500}

# The study's flags shared by the GPU run and its CPU probe.
SPARSE_STUDY_ARGS=(
    --preset paper --pretrain-input-size 0 --recipes "$S1_RECIPE" --ks 10,36 --seeds 0
    --recipe-ks 50 --steps-for-k ""  # recipe K 50: none of this run's, so no extra reference arm
)

summarise_sparse() {
    python3 - "$1" <<'PY'
import json
import sys
from pathlib import Path

results = Path(sys.argv[1])
study = json.loads(results.with_suffix(".json").read_text())
settings = study["settings"]
runs = [
    {
        "arm": r.get("arm"), "k": r.get("k"), "miou": r.get("miou"), "mean_f1": r.get("mean_f1"),
        "finetune_images_per_s": round(
            r["steps"] * settings["finetune_batch"] / r["train_seconds"], 1
        ) if r.get("steps") and r.get("train_seconds") else None,
    }
    for r in study["runs"]
]
summary = {
    "machine": study["machine"], "command": study["command"], "date": study["date"],
    "stage1": {r: {k: p.get(k) for k in ("steps", "images_per_s", "final_loss", "seconds_this_run")}
               for r, p in study["pretrain"].items()},
    "runs": runs,
}
out = results.with_name(results.name + "_summary.json")
out.write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
}

sparse() {
    if [[ ${1:-} == --probe ]]; then
        local out=bench/out/study-gpu-probe
        .venv/bin/python -m bench.study --quick "${SPARSE_STUDY_ARGS[@]}" --input-size 64 \
            --finetune-steps 4 --head-only-steps 1 --device cpu --out "$out" \
            --results "$out/study_gpu_sparse"
        PATH=.venv/bin:$PATH summarise_sparse "$out/study_gpu_sparse"
        return
    fi
    local out=${OUT:-bench/out/gpu-results}
    gpu_run study_gpu_sparse bench.study "${SPARSE_STUDY_ARGS[@]}" \
        --num-workers 12 \
        --finetune-workers 4 \
        --pretrain-epochs "$S1_EPOCHS" \
        --pretrain-batch 32 \
        --finetune-steps "$FT_STEPS" \
        --head-only-steps $((FT_STEPS / 5)) \
        --finetune-batch 16 \
        --checkpoint-every 100
    summarise_sparse "$out/study_gpu_sparse" || true
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    length) length ;;
    prepare-k10) prepare_k10 ;;
    k10) k10 "${@:2}" ;;
    sparse) sparse "${@:2}" ;;
    *) echo "usage: $0 prepare|run|length|prepare-k10|k10|sparse [--probe]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# One-shot check of the GPU path on a bare CUDA machine (see docs/gpu.md).
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# Runs from a plain copy of the source tree: no pip install, no network. What the machine lacks
# (mujoco, robosuite, LIBERO and the LIBERO scene assets, EGL loaders) comes from .gpu_bundle/,
# made beforehand by scripts/gpu_check_bundle.py where those are installed; without it the steps
# that need them fail and say why. Steps, each under `timeout`, a failing step never stopping the
# others, all within GPU_CHECK_BUDGET seconds (default 460, under 8 minutes with the overhead):
#   nvidia-smi   card, driver
#   bundle       unpacks .gpu_bundle (packages, mujoco wheel, scene assets; EGL loaders if missing)
#   build_cuda   the native modules (_C with the CUDA sources, _cpu_kernels) by CMake + nvcc, in
#                the background while `env` runs
#   env          python/torch/triton/transformers/timm versions, imports, CUDA + Triton smoke
#   tests_gpu    the tests that need or use a CUDA GPU (Triton kernels, torch.compile, policy, timm)
#   tests_cpu    the rest of tests/kernels and tests/policy, CUDA hidden (native CPU kernels too)
#   tests_native EGL on the card and the CUDA build: tests/render, tests/engine/test_egl_devices.py,
#                test_cuda_build.py, tests/kernels/test_native_loader.py (the three test steps
#                run at the same time)
#   egl          the EGL devices with their CUDA ordinals, the rank's choice, a frame's GL renderer
#   fsdp_nccl    FSDP2 on NCCL with one rank: a PPO update against the plain model
#   grpo_libero  one GRPO iteration on LIBERO: GPU rollout + update, OpenVLA-OFT widths, 2 layers
#   bench_libero benchmarks/bench_libero.py: LIBERO chunk rate, LIBERO's envs vs the engine
#   bench_render benchmarks/bench_render.py: frames/s, robosuite vs mujoco.Renderer vs the engine
#   bench_kernels  benchmarks/bench_kernels.py's CUDA tables (scripts/gpu_check.py kernels)
#   bench_policy   benchmarks/bench_policy.py's 7B GPU rows (scripts/gpu_check.py policy)
#   bench_pipeline benchmarks/bench_rollout_pipeline.py --gpu-7b: lockstep vs pipelined LIBERO
#                rollout with the 7B layout on the card next to the CPU and device-model rows
# Writes $OUT/gpu_check.log (every step's full output), $OUT/summary.txt, $OUT/tables.txt (the
# benchmark, egl, fsdp and GRPO outputs), $OUT/junit_*.xml; prints progress, the benchmark tables
# and a summary table on stdout. Without CUDA the GPU steps say "skipped: no CUDA"
# (GPU_CHECK_CPU_TESTS=1 runs the kernel/policy test steps anyway, Triton interpreted).
# Environment: OUT (default /tmp/vlarl_gpu_check), PYTHON (default python3), GPU_CHECK_BUDGET,
# GPU_CHECK_SKIP ("step step": skip those), GPU_CHECK_EXTRA_TESTS (more test files for tests_native),
# GPU_CHECK_BUNDLE_DIR (default .gpu_bundle).
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd -P)
OUT=${OUT:-/tmp/vlarl_gpu_check}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
: > "$LOG"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-460}
T0=$(date +%s)
WORK=$(mktemp -d /tmp/vlarl_gpu_check.XXXXXX)
mkdir -p "$WORK/shim" "$WORK/steps"

# vlarl_fast, vlarl_fast.kernels (= kernels/), tests, benchmarks importable without pip and
# without the tree on sys.path (python3 -P): see scripts/gpu_sitecustomize.py
cp scripts/gpu_sitecustomize.py "$WORK/shim/sitecustomize.py"
export VLARL_REPO=$REPO
export PYTHONPATH=$WORK/shim${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export MPLBACKEND=Agg MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
export TRITON_CACHE_DIR=$WORK/triton_cache TORCHINDUCTOR_CACHE_DIR=$WORK/inductor_cache
export HYPOTHESIS_STORAGE_DIRECTORY=$WORK/hypothesis
PYTEST=("$PY" -P -m pytest -p no:cacheprovider -v --tb=short -rfEs --color=no)
PYTEST_TIMEOUT=(--timeout 120)   # per test, where pytest-timeout is installed
"$PY" -c "import pytest_timeout" 2>/dev/null || PYTEST_TIMEOUT=()

now() { date +%s; }
say() { echo "$*"; echo "$*" >> "$LOG"; }

# run_step NAME LIMIT CMD...: runs CMD under timeout (LIMIT seconds, cut to what is left of the
# budget), output to $WORK/steps/NAME.log, status to $WORK/steps/NAME.status. Never fails.
run_step() {
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - ($(now) - T0) ))
    (( left < limit )) && limit=$left
    if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then  # GPU_CHECK_SKIP="step step": a rerun skips them
        echo "skipped: GPU_CHECK_SKIP" > "$WORK/steps/$name.log"
        echo "SKIPPED 0 GPU_CHECK_SKIP" > "$WORK/steps/$name.status"
        return 0
    fi
    if (( limit < 5 )); then
        echo "skipped: out of time (budget ${BUDGET} s)" > "$WORK/steps/$name.log"
        echo "SKIPPED 0 out of time" > "$WORK/steps/$name.status"
        return 0
    fi
    local start; start=$(now)
    { echo "\$ $*"; echo "(limit ${limit} s)"; } > "$WORK/steps/$name.log"
    timeout -k 10 "$limit" "$@" >> "$WORK/steps/$name.log" 2>&1
    local rc=$? status
    case $rc in
        0) status=ok ;;
        3) status=SKIPPED ;;
        124|137) status=TIMEOUT ;;
        *) status="FAIL(rc=$rc)" ;;
    esac
    echo "$status $(( $(now) - start ))" > "$WORK/steps/$name.status"
    return 0
}

# note NAME: one line for the summary table
note() {
    local f=$WORK/steps/$1.log
    case $1 in
        nvidia-smi)
            grep -m1 -E "^[^,]+, [0-9.]+, [0-9]+ MiB" "$f" || tail -n1 "$f" ;;
        env)
            local d; d=$(grep -m1 -E "^device: " "$f" | cut -c9-70)
            local fl; fl=$(grep -m1 "^FAILED" "$f" | cut -c1-70)
            echo "${fl:+$fl; }$(grep -m1 '^torch ' "$f" | cut -d, -f1-2); $(grep -m1 '^triton ' "$f"); $(grep -m1 '^transformers ' "$f"); ${d:-no CUDA device}; $(grep -m1 -o 'Triton smoke.*' "$f" | sed 's/ incl. compile//' | cut -c1-60)" ;;
        tests_*)
            local last; last=$(grep -E "^=+ .*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s" "$f" | tail -n1 | tr -d '=')
            if [[ -n $last ]]; then echo "$last"
            elif grep -q "^skipped: " "$f"; then grep -m1 "^skipped: " "$f"
            else echo "cut off: $(grep -c ' PASSED' "$f") passed, $(grep -c ' FAILED' "$f") failed, $(grep -c ' SKIPPED' "$f") skipped so far"
            fi ;;
        bench_kernels|bench_policy)
            grep -m1 -E "^skipped: |^(kernels|policy) benchmark: " "$f" || echo "$(grep -c '^FAILED' "$f") failure(s) so far" ;;
        bundle|build_cuda)
            grep -m1 -E "^skipped: |^bundle: |^build: |FAILED|rror" "$f" || tail -n1 "$f" ;;
        egl)
            grep -m1 -E "^skipped: |^FAILED|^egl: " "$f" || tail -n1 "$f" ;;
        fsdp_nccl)
            grep -m1 -E "^skipped: |^FAILED|^fsdp: " "$f" || tail -n1 "$f" ;;
        grpo_libero)
            grep -m1 -E "^skipped: |^FAILED|^grpo_libero: " "$f" || tail -n1 "$f" ;;
        bench_libero|bench_render|bench_pipeline)
            grep -m1 -E "^skipped: |Error|FAILED" "$f" || echo "$(wc -l < "$f") lines (table in tables.txt)" ;;
    esac
}

# finish NAME: appends the step's output to the log, prints its status line
finish() {
    local name=$1 status dur
    read -r status dur _ < "$WORK/steps/$name.status" 2>/dev/null || { status=LOST; dur=0; }
    { echo; echo "================ $name: $status (${dur} s)"; cat "$WORK/steps/$name.log"; } >> "$LOG"
    printf '[%4ds] %-13s %-13s %s\n' "$(( $(now) - T0 ))" "$name" "$status" "$(note "$name" | head -n1 | cut -c1-150)"
}

say "vlarl-fast gpu_check: $(date -u +%FT%TZ) on $(uname -n), repo $REPO, $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), budget ${BUDGET} s, log $LOG"

# 1. the card and the software
run_step nvidia-smi 15 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,compute_cap --format=csv,noheader && nvidia-smi'
finish nvidia-smi
CARD=0
grep -q "^ok" "$WORK/steps/nvidia-smi.status" && CARD=1

# the bundle: packages, the mujoco wheel and LIBERO assets the machine lacks (docs/gpu.md)
skip_step() {  # skip_step NAME WHY
    echo "skipped: $2" > "$WORK/steps/$1.log"; echo "SKIPPED 0 $2" > "$WORK/steps/$1.status"; finish "$1"
}
BUNDLE=${GPU_CHECK_BUNDLE_DIR:-$REPO/.gpu_bundle}
if [[ $CARD == 0 ]]; then
    skip_step bundle "no CUDA"
elif [[ ! -f $BUNDLE/site.tar.xz ]]; then
    skip_step bundle "no .gpu_bundle (make it with scripts/gpu_check_bundle.py where LIBERO is installed)"
else
    run_step bundle 60 bash -c '
        set -e; mkdir -p "$1/bundle"; tar -xJf "$2/site.tar.xz" -C "$1/bundle"
        for w in "$2"/mujoco-*.whl; do python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$w" "$1/bundle/site"; done
        if ! ldconfig -p | grep -q "libEGL.so.1" && ls "$2"/debs/*.deb >/dev/null 2>&1; then
            for d in "$2"/debs/*.deb; do dpkg -x "$d" /; done; ldconfig; echo "EGL loaders unpacked"; fi
        echo "bundle: $(du -sh "$1/bundle" | cut -f1) unpacked, $(ls "$1/bundle/site" | wc -l) entries in site/"' _ "$WORK" "$BUNDLE"
    finish bundle
    export PYTHONPATH=$PYTHONPATH:$WORK/bundle/site VLARL_LIBERO_ASSETS=$WORK/bundle/libero_assets
    export LIBERO_CONFIG_PATH=$WORK/libero_config
    nv_egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [[ -z ${__EGL_VENDOR_LIBRARY_FILENAMES:-} && -f $nv_egl ]] && ! ls /usr/share/glvnd/egl_vendor.d/*nvidia* >/dev/null 2>&1 \
        && export __EGL_VENDOR_LIBRARY_FILENAMES=$nv_egl
fi
# the native modules, CUDA sources included, built into the tree's vlarl_fast/ while `env` runs
if [[ $CARD == 1 ]]; then
    run_step build_cuda 200 bash -c '
        set -e; cmake -S . -B "$1/build" -DPython_EXECUTABLE="$(command -v "$2")" -DVLARL_WITH_CUDA=ON \
            -DVLARL_BUILD_TESTS=OFF -DVLARL_PYTHON_OUTPUT_DIR="$PWD/vlarl_fast" -DCMAKE_BUILD_TYPE=Release
        cmake --build "$1/build" --target _C _cpu_kernels --parallel "$(nproc)"
        echo "build: $(ls vlarl_fast/*.so | xargs -n1 basename | tr "\n" " ")"' _ "$WORK" "$PY" &
    BUILD_PID=$!
fi
run_step env 60 "$PY" -P scripts/gpu_check.py env
finish env
HAS_CUDA=0   # torch sees a device, or at least nvidia-smi does (then the steps say what fails)
grep -q "^device: " "$WORK/steps/env.log" && HAS_CUDA=1
[[ $CARD == 1 ]] && HAS_CUDA=1
if [[ -n ${BUILD_PID:-} ]]; then wait "$BUILD_PID"; finish build_cuda; else skip_step build_cuda "no CUDA"; fi

# 2. tests. GPU group: the files with CUDA-only tests (skipped on CPU: 'needs a CUDA GPU') or
# whose Triton tests run on CUDA tensors when a GPU exists. CPU group: everything else in
# tests/kernels and tests/policy except the TensorFlow/LIBERO parity module, CUDA hidden, run at
# the same time (other cores). Nothing there needs mujoco or the native core: the tests that do
# (native CPU kernels) skip themselves.
GPU_TESTS=(tests/kernels/test_action_logprob.py tests/kernels/test_grpo_loss.py
           tests/kernels/test_dispatch.py tests/kernels/test_torch_compile.py
           tests/policy/test_policy_gpu.py tests/policy/test_vision_timm_parity.py)
IGNORE=(); for t in "${GPU_TESTS[@]}" tests/policy/test_simplevla_input_parity.py; do IGNORE+=(--ignore "$t"); done
if [[ $HAS_CUDA == 1 || ${GPU_CHECK_CPU_TESTS:-0} == 1 ]]; then
    PTXAS=$("$PY" -P -c 'import os, triton; p = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"); print(p if os.path.exists(p) else "")' 2>/dev/null)
    ( export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=4 ${PTXAS:+TRITON_PTXAS_PATH=$PTXAS}
      run_step tests_cpu 140 "${PYTEST[@]}" "${PYTEST_TIMEOUT[@]}" --junitxml="$OUT/junit_cpu.xml" \
          tests/kernels tests/policy "${IGNORE[@]}" ) &
    CPU_PID=$!
    if [[ $CARD == 1 ]]; then
        # the trainer's CUDA cases (issue 14: bf16 rollout replica on the card with a device
        # generator; FSDP2 with CPU offload) import the whole rl layer, hence this step (bundle, _C)
        NATIVE_TESTS=(tests/render tests/engine/test_egl_devices.py tests/engine/test_cuda_build.py
                      tests/kernels/test_native_loader.py tests/rl/test_device_replica.py
                      tests/rl/test_mixed_precision.py ${GPU_CHECK_EXTRA_TESTS:-})
        ( run_step tests_native 120 "${PYTEST[@]}" "${PYTEST_TIMEOUT[@]}" --junitxml="$OUT/junit_native.xml" \
              "${NATIVE_TESTS[@]}" ) &
        NATIVE_PID=$!
    fi
    run_step tests_gpu 120 "${PYTEST[@]}" "${PYTEST_TIMEOUT[@]}" --junitxml="$OUT/junit_gpu.xml" "${GPU_TESTS[@]}"
    finish tests_gpu
    wait "$CPU_PID"
    finish tests_cpu
    if [[ -n ${NATIVE_PID:-} ]]; then wait "$NATIVE_PID"; finish tests_native; else skip_step tests_native "no CUDA"; fi
else
    for s in tests_gpu tests_cpu tests_native; do skip_step $s "no CUDA"; done
fi

# the native stack on the card: EGL, FSDP2 on NCCL, one GRPO iteration on LIBERO, LIBERO and
# render benchmarks (in order of what earlier runs lack; later steps get what is left of the budget)
if [[ $CARD == 1 ]]; then
    run_step egl 40 "$PY" -P scripts/gpu_check_native.py egl
    finish egl
    run_step fsdp_nccl 60 "$PY" -P scripts/gpu_check_native.py fsdp
    finish fsdp_nccl
    run_step grpo_libero 150 "$PY" -P scripts/gpu_check_native.py grpo --envs 16 --chunks 8
    finish grpo_libero
    run_step bench_libero 90 "$PY" -P benchmarks/bench_libero.py --envs 16 --threads 1,8,16
    finish bench_libero
    run_step bench_render 60 "$PY" -P benchmarks/bench_render.py --num-envs 8
    finish bench_render
else
    for s in egl fsdp_nccl grpo_libero bench_libero bench_render; do skip_step $s "no CUDA"; done
fi

# 3.-4. benchmarks (the GPU is otherwise idle now)
if [[ $HAS_CUDA == 1 ]]; then
    run_step bench_kernels 70 "$PY" -P scripts/gpu_check.py kernels --budget 35
    finish bench_kernels
    run_step bench_policy 45 "$PY" -P scripts/gpu_check.py policy --batches 8
    finish bench_policy
    run_step bench_pipeline 150 "$PY" -P benchmarks/bench_rollout_pipeline.py --gpu-7b
    finish bench_pipeline
else
    for s in bench_kernels bench_policy bench_pipeline; do skip_step $s "no CUDA"; done
fi

# stdout: failures, benchmark tables, summary
{
    echo
    fails=$(grep -h -E "^(FAILED|ERROR) tests/" "$WORK/steps/tests_gpu.log" "$WORK/steps/tests_cpu.log" 2>/dev/null | sort -u)
    [[ -n $fails ]] && { echo "==== failed tests"; echo "$fails" | cut -c1-220 | head -n 15; echo; }
    for b in bench_kernels bench_policy; do
        f=$WORK/steps/$b.log
        if grep -q "^==== $b tables" "$f"; then
            grep -E "^check|^FAILED" "$f" | cut -c1-220 | head -n 12
            sed -n "/^==== $b tables/,\$p" "$f" | head -n 60; echo
        elif grep -q -E "^FAILED|^  |^check|^policy benchmark" "$f"; then
            echo "==== $b (cut off; as far as it got)"
            grep -E "^FAILED|^  |^check|^copy|^7B on|^policy benchmark" "$f" | cut -c1-220 | head -n 40; echo
        fi
    done
    echo "==== gpu_check summary: $(( $(now) - T0 )) s of a ${BUDGET} s budget; full output in $LOG"
    printf '%-14s %-13s %5s  %s\n' step status secs note
    for s in nvidia-smi bundle build_cuda env tests_gpu tests_cpu tests_native egl fsdp_nccl grpo_libero \
             bench_libero bench_render bench_kernels bench_policy bench_pipeline; do
        read -r status dur _ < "$WORK/steps/$s.status" 2>/dev/null || { status=LOST; dur=0; }
        printf '%-14s %-13s %5s  %s\n' "$s" "$status" "$dur" "$(note "$s" | head -n1 | cut -c1-160)"
    done
} > "$WORK/summary.txt"
cat "$WORK/summary.txt" >> "$LOG"
cp "$WORK/summary.txt" "$OUT/summary.txt"
# the tables: the native-stack steps' outputs whole, then the summary
{
    for s in egl fsdp_nccl grpo_libero bench_libero bench_render bench_pipeline; do
        echo "================ $s"; tail -n +3 "$WORK/steps/$s.log" 2>/dev/null; echo
    done
    cat "$WORK/summary.txt"
} > "$OUT/tables.txt"
cat "$WORK/summary.txt"
rm -rf "$WORK"
exit 0

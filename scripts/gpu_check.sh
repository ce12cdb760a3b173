#!/usr/bin/env bash
# One-shot check of the pure-Python GPU path on a bare CUDA machine (see docs/gpu.md).
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# Runs from a plain copy of the source tree: no pip install, no network, no native core
# (vlarl_fast._C and mujoco are neither built nor needed). Steps, each under `timeout`, a failing
# step never stopping the others, all within GPU_CHECK_BUDGET seconds (default 330):
#   nvidia-smi   card, driver
#   env          python/torch/triton/transformers/timm versions, imports, CUDA + Triton smoke
#   tests_gpu    the tests that need or use a CUDA GPU (Triton kernels, torch.compile, policy, timm)
#   tests_cpu    the rest of tests/kernels and tests/policy, CUDA hidden, in parallel with tests_gpu
#   bench_kernels  benchmarks/bench_kernels.py's CUDA tables (scripts/gpu_check.py kernels)
#   bench_policy   benchmarks/bench_policy.py's 7B GPU rows (scripts/gpu_check.py policy)
# Writes $OUT/gpu_check.log (every step's full output), $OUT/summary.txt, $OUT/junit_*.xml; prints
# progress, the benchmark tables and a summary table on stdout. Without CUDA the GPU steps say
# "skipped: no CUDA" (GPU_CHECK_CPU_TESTS=1 runs the test steps anyway, Triton interpreted).
# Environment: OUT (default /tmp/vlarl_gpu_check), PYTHON (default python3), GPU_CHECK_BUDGET.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd -P)
OUT=${OUT:-/tmp/vlarl_gpu_check}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
: > "$LOG"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-330}
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
        bench_*)
            grep -m1 -E "^skipped: |^(kernels|policy) benchmark: " "$f" || echo "$(grep -c '^FAILED' "$f") failure(s) so far" ;;
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
run_step env 60 "$PY" -P scripts/gpu_check.py env
finish env
HAS_CUDA=0   # torch sees a device, or at least nvidia-smi does (then the steps say what fails)
grep -q "^device: " "$WORK/steps/env.log" && HAS_CUDA=1
grep -q "^ok" "$WORK/steps/nvidia-smi.status" && HAS_CUDA=1

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
    run_step tests_gpu 140 "${PYTEST[@]}" "${PYTEST_TIMEOUT[@]}" --junitxml="$OUT/junit_gpu.xml" "${GPU_TESTS[@]}"
    finish tests_gpu
    # diagnostic: the fp32-dot extreme-value test with exact fp32 dots instead of tf32x3
    VLARL_TRITON_FP32_DOT=ieee run_step diag_ieee_dot 40 "${PYTEST[@]}" "${PYTEST_TIMEOUT[@]}" \
        tests/kernels/test_action_logprob.py -k "extreme_logits and triton"
    finish diag_ieee_dot
    wait "$CPU_PID"
    finish tests_cpu
else
    for s in tests_gpu tests_cpu; do
        echo "skipped: no CUDA" > "$WORK/steps/$s.log"; echo "SKIPPED 0" > "$WORK/steps/$s.status"; finish $s
    done
fi

# 3.-4. benchmarks (the GPU is otherwise idle now)
run_step bench_kernels 100 "$PY" -P scripts/gpu_check.py kernels --budget 60
finish bench_kernels
run_step bench_policy 75 "$PY" -P scripts/gpu_check.py policy --batches 8,16
finish bench_policy

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
    for s in nvidia-smi env tests_gpu diag_ieee_dot tests_cpu bench_kernels bench_policy; do
        read -r status dur _ < "$WORK/steps/$s.status" 2>/dev/null || { status=LOST; dur=0; }
        printf '%-14s %-13s %5s  %s\n' "$s" "$status" "$dur" "$(note "$s" | head -n1 | cut -c1-160)"
    done
} > "$WORK/summary.txt"
cat "$WORK/summary.txt" >> "$LOG"
cp "$WORK/summary.txt" "$OUT/summary.txt"
cat "$WORK/summary.txt"
rm -rf "$WORK"
exit 0

"""Benchmark of the fused action log-prob (and, on a GPU, the fused GRPO loss).

    python benchmarks/bench_kernels.py            # OpenVLA-OFT sizes: H=4096, V=32064, 256 bins
    python benchmarks/bench_kernels.py --smoke    # tiny sizes
    python benchmarks/bench_kernels.py --threads 1   # one torch thread per case

Action log-prob, forward + backward, methods measured in the same run:
  simplevla  SimpleVLA-RL's path, the baseline: full-vocabulary logits h W^T, slice [-320:-64],
             / temperature, log-softmax, gather
  fused      vlarl_fast.kernels.action_logprob, CPU path (touches the 256 bin rows only): on a
             CPU with AVX512-BF16 the native kernels of csrc/kernels/action_logprob_cpu.cc, else
             torch ops (bf16 inputs converted to fp32 512 columns at a time)
  triton     the Triton kernels (CUDA only)
  compiled   torch.compile of simplevla / fused (CUDA only)
  bound      lower bound: one read of the hidden states and the 256 weight rows
The header of the CPU table names the code path each row ran and the baseline.

CPU baseline dtype. OpenVLA-OFT is a bf16 model, and on a CPU whose torch bf16 matmuls run in
oneDNN (x86 with AVX512, natively with AVX512-BF16 / AMX-BF16) its user runs the LM head in bf16:
the baseline is then simplevla in bf16. Without them (e.g. AVX2-only CPUs) torch falls back to
ATen's generic GEMM for bf16, which emulates it: one 56-token bf16 forward + backward of the
full-vocabulary path took 104 s there (dL/dh alone 97 s) against 1.8 s in fp32, so such a user
loads the policy in fp32 and the baseline is simplevla in fp32 (fp32 hidden states and LM head;
upcasting the bf16 head per call would add a 500 MB fp32 copy and its conversion to every call
and still be the same fp32 GEMMs). Which case applies is measured, not guessed: a short probe
times bf16 against fp32 matmuls in the layouts of the full path's forward and backward
(`--baseline-dtype` overrides it). With an fp32 baseline, fused runs on the same fp32 inputs and
on bf16 inputs (what a bf16 checkpoint runs with vlarl-fast on that CPU).

Time budget: every CPU case runs in its own process with a timeout, takes fewer timed repeats
when one repeat is long (at least one after the warm-up), and a case that would overrun the
run's budget (--budget, seconds) is skipped and says so.

CPU peak memory: each case runs in its own process with MALLOC_MMAP_THRESHOLD_=65536, so every
allocation of 64 KiB or more is its own mapping, returned to the OS when freed; after a warm-up
iteration the VmHWM high-water mark of /proc/self/status is reset (clear_refs) and "peak" is the
extra resident memory the forward (and forward + backward) needed on top of the inputs. On CUDA
the same with torch.cuda.max_memory_allocated. Timings are medians after one warm-up.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import torch  # noqa: E402

from cpu_paths import cpu_capabilities, cpu_line, logprob_path  # noqa: E402
from vlarl_fast.kernels import action_logprob, grpo_loss  # noqa: E402

TEMPERATURE = 1.6
N_BINS = 256
CHUNK_TOKENS = 56  # 8 actions x 7 dims per forward pass


def sizes(smoke: bool) -> dict:
    """budget_s: the whole CPU run's time budget (cases that would overrun it are skipped)."""
    if smoke:
        return dict(hidden=256, vocab=2048, trajectories=(2,), reps=3, dtype="bfloat16",
                    budget_s=60.0)
    return dict(hidden=4096, vocab=32064, trajectories=(16, 64), reps=2, dtype="bfloat16",
                budget_s=300.0)


# ----------------------------------------------------------------------------- methods

def simplevla_logprob(hidden, weight, labels):
    logits = hidden @ weight.T  # [T, V], the model's dtype
    logits = logits[..., -320:-64].float() / TEMPERATURE
    return torch.log_softmax(logits, dim=-1).gather(-1, labels[..., None])[..., 0]


def fused_logprob(hidden, weight, labels, backend="torch"):
    vocab = weight.shape[0]
    return action_logprob(hidden, weight, labels, temperature=TEMPERATURE,
                          bin_start=vocab - 320, bin_end=vocab - 64, backend=backend)


def bound_read(hidden, weight, labels):
    """One read of the hidden states and the bin rows (amax allocates nothing of their size)."""
    vocab = weight.shape[0]
    return torch.maximum(hidden.amax(), weight[vocab - 320: vocab - 64].amax())


# ----------------------------------------------------------------------------- CPU worker

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_worker(spec: dict) -> dict:
    """One case in a fresh process: warm-up, then up to spec["reps"] timed repeats, fewer when
    the next one would take the case past spec["budget_s"] seconds (at least one)."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    torch.manual_seed(0)
    dtype = getattr(torch, spec["dtype"])
    n_tokens, hidden_size, vocab = spec["tokens"], spec["hidden"], spec["vocab"]
    hidden = torch.randn(n_tokens, hidden_size).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, hidden_size) * hidden_size ** -0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, N_BINS, (n_tokens,))
    fn = dict(simplevla=simplevla_logprob, fused=fused_logprob, bound=bound_read)[spec["method"]]
    backward = spec["method"] != "bound"
    budget = spec.get("budget_s")
    fwd_times, total_times = [], []
    fwd_peak = total_peak = None
    for rep in range(spec["reps"] + 1):  # rep 0: warm-up; rep 1 also measures memory
        gc.collect()
        base = _status_kb("VmRSS")
        reset_ok = _reset_high_water()
        t0 = time.perf_counter()
        out = fn(hidden, weight, labels)
        t1 = time.perf_counter()
        if rep == 1 and reset_ok:
            fwd_peak = (_status_kb("VmHWM") - base) / 1024
        if backward:
            out.sum().backward()
        t2 = time.perf_counter()
        if rep == 1 and reset_ok:
            total_peak = (_status_kb("VmHWM") - base) / 1024
        hidden.grad = weight.grad = None
        del out
        if rep > 0:
            fwd_times.append((t1 - t0) * 1e3)
            total_times.append((t2 - t0) * 1e3)
            if budget is not None and time.perf_counter() - start + (t2 - t0) > budget:
                break
    if spec["method"] == "fused":
        path = logprob_path(hidden.dtype, weight.dtype)
    elif spec["method"] == "simplevla":
        path = (f"torch {spec['dtype']} matmuls, full [T, V] logits"
                + (f" ({cpu_capabilities()['bf16_matmul']})" if dtype == torch.bfloat16 else ""))
    else:
        path = "torch amax reads"
    return dict(fwd_ms=statistics.median(fwd_times),
                total_ms=statistics.median(total_times) if backward else None,
                fwd_peak_mb=fwd_peak, total_peak_mb=total_peak if backward else None,
                reps=len(fwd_times), path=path)


def run_cpu_case(spec: dict, timeout_s: float | None = None) -> dict | None:
    """A case in its own process; None when it ran past timeout_s (the process is killed)."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout_s,
                              env=dict(os.environ, VLARL_KERNEL_BACKEND="torch",
                                       MALLOC_MMAP_THRESHOLD_="65536"))
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_MMAP_THRESHOLD_SET = False


def _in_process(spec: dict) -> dict:
    """cpu_worker in this process; glibc's mmap threshold set as the worker processes get it
    (MALLOC_MMAP_THRESHOLD_), so freed buffers leave the resident set there too."""
    global _MMAP_THRESHOLD_SET
    if not _MMAP_THRESHOLD_SET:
        _MMAP_THRESHOLD_SET = True
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").mallopt(-3, 65536)  # M_MMAP_THRESHOLD
        except (OSError, AttributeError):
            pass
    threads = torch.get_num_threads()
    try:
        return cpu_worker(spec)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- CPU capability

BF16_EMULATED_RATIO = 3.0  # bf16 matmuls this much slower than fp32: emulated, not a user's choice


def probe_bf16_matmul() -> dict:
    """bf16 against fp32 matmul time in the three layouts of the full path (forward h W^T,
    backward G W and G^T h) at [16 tokens, 1024 vocab, 1024 hidden], on one thread (what is
    asked is how each product is computed; several threads on a busy machine only add barrier
    stalls): under a second where bf16 is emulated, milliseconds elsewhere. Best of up to 3 runs
    per layout."""
    t, v, h = 16, 1024, 1024
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = _probe_times(t, v, h)
    finally:
        torch.set_num_threads(threads)
    return dict(fp32_ms=out["float32"], bf16_ms=out["bfloat16"],
                ratio=out["bfloat16"] / out["float32"])


def _probe_times(t: int, v: int, h: int) -> dict:
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        x = torch.randn(t, h).to(dtype)
        w = torch.randn(v, h).to(dtype)
        g = torch.randn(t, v).to(dtype)
        total = 0.0
        for op in (lambda: x @ w.T, lambda: g @ w, lambda: g.T @ x):
            op()  # warm-up (oneDNN primitive creation)
            best, spent = float("inf"), 0.0
            for _ in range(3):
                t0 = time.perf_counter()
                op()
                dt = time.perf_counter() - t0
                best, spent = min(best, dt), spent + dt
                if spent > 0.5:
                    break
            total += best
        out[str(dtype).removeprefix("torch.")] = total * 1e3
    return out


# ----------------------------------------------------------------------------- GPU

def _cuda_time(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _cuda_peak_mb(fn) -> float:
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth_gbs(n_bytes: int = 1 << 30) -> float:
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = _cuda_time(lambda: dst.copy_(src), 20)
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def gpu_action_rows(spec: dict, reps: int = 20) -> list[dict]:
    torch.manual_seed(0)
    dtype = getattr(torch, spec["dtype"])
    n_tokens, hidden_size, vocab = spec["tokens"], spec["hidden"], spec["vocab"]
    hidden = torch.randn(n_tokens, hidden_size, device="cuda").to(dtype).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, device="cuda") * hidden_size ** -0.5).to(dtype)
    weight.requires_grad_()
    labels = torch.randint(0, N_BINS, (n_tokens,), device="cuda")
    methods = {
        "simplevla": simplevla_logprob,
        "simplevla compiled": torch.compile(simplevla_logprob),
        "fused torch": fused_logprob,
        "fused torch compiled": torch.compile(fused_logprob),
        "triton": lambda h, w, y: fused_logprob(h, w, y, backend="triton"),
        "bound": bound_read,
    }
    rows = []
    for name, fn in methods.items():
        backward = name != "bound"

        def fwd():
            with torch.no_grad():
                fn(hidden, weight, labels)

        def both():
            out = fn(hidden, weight, labels)
            out.sum().backward()
            hidden.grad = weight.grad = None

        rows.append(dict(method=name, fwd_ms=_cuda_time(fwd, reps),
                         total_ms=_cuda_time(both, reps) if backward else None,
                         fwd_peak_mb=_cuda_peak_mb(fwd),
                         total_peak_mb=_cuda_peak_mb(both) if backward else None))
    return rows


def gpu_loss_rows(n_seq: int, seq_len: int, copy_gbs: float, reps: int = 50) -> list[dict]:
    torch.manual_seed(0)
    logp = (torch.randn(n_seq, seq_len, device="cuda") - 1).requires_grad_()
    old = logp.detach() + 0.1 * torch.randn_like(logp)
    adv = torch.randn(n_seq, seq_len, device="cuda")
    mask = torch.rand(n_seq, seq_len, device="cuda") < 0.9
    # bytes a fused pass must move: read logp, old, adv (fp32), mask (1 B); write grad (fp32)
    n_bytes = logp.numel() * (4 * 4 + 1)

    def make(backend, compiled=False):
        def step():
            loss, _ = grpo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, clip_c=3.0,
                                agg="seq-mean-token-mean", backend=backend)
            loss.backward()
            logp.grad = None
        return torch.compile(step) if compiled else step

    from vlarl_fast.kernels.grpo_loss import grpo_loss_fwd_triton

    def fused_pass():  # the one kernel pass: loss, statistics and gradient
        grpo_loss_fwd_triton(logp.detach(), old, adv, mask, 0.2, 0.28, 3.0, "seq-mean-token-mean")

    rows = []
    for name, fn in (("eager torch", make("torch")), ("torch.compile", make("torch", True)),
                     ("triton", make("triton")), ("triton pass only", fused_pass)):
        ms = _cuda_time(fn, reps)
        gbs = n_bytes / (ms * 1e-3) / 1e9
        rows.append(dict(method=name, ms=ms, gbs=gbs, frac=gbs / copy_gbs))
    return rows


# ----------------------------------------------------------------------------- report

def _fmt(x, spec="{:.2f}"):
    return "-" if x is None else spec.format(x)


def action_table(title: str, results: list[tuple[int, str, dict | str]],
                 base_method: str = "simplevla") -> list[str]:
    """results: (trajectories, method, measurements), or (trajectories, method, note) for a case
    that did not run (budget, timeout); ratios against base_method at the same batch."""
    lines = [title,
             f"{'batch':>12} {'method':<22} {'fwd ms':>10} {'fwd+bwd ms':>11} {'x faster':>9} "
             f"{'fwd peak MB':>12} {'x less':>8} {'fwd+bwd peak MB':>16}"]
    base = {n: r for n, m, r in results if m == base_method and isinstance(r, dict)}
    for n_traj, method, r in results:
        batch = f"{n_traj}x{CHUNK_TOKENS} tok"
        if not isinstance(r, dict):
            lines.append(f"{batch:>12} {method:<22} {r}")
            continue
        b = base.get(n_traj)
        bound = method.startswith("bound")
        speed = less = None
        if b is not None and r["total_ms"] and b["total_ms"]:
            speed = b["total_ms"] / r["total_ms"]
        elif b is not None and bound:
            speed = b["fwd_ms"] / r["fwd_ms"]
        if (b is not None and not bound and r["fwd_peak_mb"] is not None
                and b["fwd_peak_mb"] is not None and b["fwd_peak_mb"] >= 0.1):
            # below 0.1 MB the RSS high-water mark is allocator noise: the ratio is then a
            # lower bound, printed as ">=N"
            less = b["fwd_peak_mb"] / max(r["fwd_peak_mb"], 0.1)
        less_text = ("" if less is None or r["fwd_peak_mb"] >= 0.1 else ">=") + _fmt(less, "{:.0f}")
        lines.append(f"{batch:>12} {method:<22} {_fmt(r['fwd_ms']):>10} "
                     f"{_fmt(r['total_ms']):>11} {_fmt(speed, '{:.1f}'):>9} "
                     f"{_fmt(r['fwd_peak_mb'], '{:.2f}'):>12} "
                     f"{less_text:>8} {_fmt(r['total_peak_mb'], '{:.1f}'):>16}")
    return lines


def choose_baseline_dtype(requested: str, probe: dict | None) -> tuple[str, str]:
    """(dtype of the simplevla baseline, why): bf16, the model's dtype, unless this CPU's torch
    bf16 matmuls are emulated (probe ratio above BF16_EMULATED_RATIO), then fp32."""
    if requested != "auto":
        return requested, f"--baseline-dtype {requested}"
    if probe["ratio"] > BF16_EMULATED_RATIO:
        return "float32", (f"bf16 matmuls are emulated here (probe: bf16 {probe['bf16_ms']:.1f} ms "
                           f"vs fp32 {probe['fp32_ms']:.1f} ms, {probe['ratio']:.0f}x), so a user "
                           f"of this CPU runs the LM head in fp32")
    return "bfloat16", (f"torch bf16 matmuls are fast here (probe: bf16 {probe['bf16_ms']:.1f} ms vs "
                        f"fp32 {probe['fp32_ms']:.1f} ms), so a user runs the bf16 model as is")


def cpu_cases(trajectories, baseline_dtype: str) -> list[tuple[int, str, str]]:
    """(trajectories, method, dtype) in run order; with an fp32 baseline fused also runs on the
    bf16 inputs a bf16 checkpoint gives it."""
    cases = []
    for n_traj in trajectories:
        cases += [(n_traj, "simplevla", baseline_dtype), (n_traj, "fused", baseline_dtype)]
        if baseline_dtype != "bfloat16":
            cases.append((n_traj, "fused", "bfloat16"))
        cases.append((n_traj, "bound", baseline_dtype))
    return cases


_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def run_cpu(cfg: dict, threads: int | None, budget_s: float, baseline_dtype: str,
            isolate: bool = True) -> list[str]:
    """isolate: every case in its own process (clean peak memory, a hard timeout); without it
    (smoke) all cases run in this process, which saves a torch import per case."""
    t_start = time.perf_counter()
    load = os.getloadavg()[0]
    n_threads = threads or torch.get_num_threads()
    cap = cpu_capabilities()
    probe = probe_bf16_matmul() if baseline_dtype == "auto" else None
    dtype, why = choose_baseline_dtype(baseline_dtype, probe)
    out = [f"device: CPU, {os.cpu_count()} cores, {n_threads} torch thread(s), load average "
           f"{load:.1f} at start, torch {torch.__version__} (no GPU: Triton rows need CUDA)",
           cpu_line(cap),
           f"baseline: simplevla in {dtype}: {why}"]
    cases = cpu_cases(cfg["trajectories"], dtype)
    # run order: within a batch size the baseline last, so that a slow baseline can only cost
    # its own row; shown in the order of cpu_cases
    order = sorted(range(len(cases)), key=lambda i: (cases[i][0], cases[i][1] == "simplevla"))
    rows, paths, measured = {}, {}, {}
    for done, i in enumerate(order):
        n_traj, method, case_dtype = cases[i]
        label = f"{method} {_SHORT.get(case_dtype, case_dtype)}"
        remaining = budget_s - (time.perf_counter() - t_start)
        # the same case at the previous batch size, scaled by tokens: warm-up + one repeat
        prev = measured.get((method, case_dtype))
        per_iter_s = None if prev is None else \
            (prev[1]["total_ms"] or prev[1]["fwd_ms"]) * 1e-3 * n_traj / prev[0]
        if remaining <= 0:
            rows[i] = (n_traj, label, "skipped: time budget spent")
            continue
        if per_iter_s == float("inf"):
            rows[i] = (n_traj, label, "skipped: the smaller batch timed out")
            continue
        if per_iter_s is not None and 2 * per_iter_s > remaining:
            rows[i] = (n_traj, label, f"skipped: warm-up + 1 repeat ~{2 * per_iter_s:.0f} s > "
                                      f"{remaining:.0f} s left of the time budget")
            continue
        spec = dict(tokens=n_traj * CHUNK_TOKENS, hidden=cfg["hidden"], vocab=cfg["vocab"],
                    dtype=case_dtype, method=method, threads=threads,
                    reps=cfg["reps"] if method == "simplevla" else 5,
                    budget_s=remaining / (len(cases) - done))
        if isolate:
            r = run_cpu_case(spec, timeout_s=remaining + 10)
        else:
            r = _in_process(spec)
        if r is None:
            rows[i] = (n_traj, label, f"timed out after {remaining + 10:.0f} s (time budget)")
            measured[(method, case_dtype)] = (n_traj, dict(total_ms=float("inf"), fwd_ms=None))
            continue
        measured[(method, case_dtype)] = (n_traj, r)
        paths[label] = r.pop("path")
        rows[i] = (n_traj, label, r)
    results = [rows[i] for i in range(len(cases))]
    out_base = f"simplevla {_SHORT.get(dtype, dtype)}"
    head = (f"action log-prob: H={cfg['hidden']} V={cfg['vocab']} bins={N_BINS} "
            f"T=trajectories x {CHUNK_TOKENS}, temperature {TEMPERATURE}; forward + backward "
            f"(grad to hidden and weight); ratios vs simplevla {_SHORT.get(dtype, dtype)} "
            f"(CPU, peak = RSS high-water over the inputs"
            f"{'' if isolate else '; smoke: all cases in one process, peaks approximate'})")
    out.append("code path of each method:")
    out += [f"  {k:<16} {v}" for k, v in sorted(paths.items(), key=lambda kv: kv[0] != out_base)]
    out += action_table(head, results, base_method=out_base)
    reps = sorted({r["reps"] for _, _, r in results if isinstance(r, dict)})
    out.append(f"timed repeats per case after one warm-up: {'-'.join(map(str, (reps[0], reps[-1])))}"
               f" (time budget {budget_s:.0f} s; this run took "
               f"{time.perf_counter() - t_start:.0f} s)" if reps else "no case ran")
    weight_mb = (cfg["vocab"] * cfg["hidden"] * torch.empty(0, dtype=getattr(torch, dtype)).element_size()
                 / 2**20)
    out.append("autograd needs a dense [V, H] weight gradient for any op taking the full "
               f"LM-head weight ({weight_mb:.0f} MB in {dtype}): simplevla's is zero-filled and "
               f"resident (in its fwd+bwd peak); fused's is lazily zeroed, only its {N_BINS} bin "
               f"rows are written.")
    return out


def run(smoke: bool, threads: int | None = None, budget_s: float | None = None,
        baseline_dtype: str = "auto") -> str:
    """Runs the benchmark and returns the table (the `vlarl-fast bench kernels` CLI prints it).
    `threads`: torch CPU threads per case (default: torch's choice). On a CPU shared with other
    jobs, 1 thread avoids OpenMP barrier stalls that penalise many small ops far more than one
    large matmul. `budget_s`: the CPU run's time budget (default 300 s, smoke 60 s).
    `baseline_dtype`: auto (bf16 unless this CPU's bf16 matmuls are emulated, then fp32),
    bfloat16 or float32."""
    cfg = sizes(smoke)
    on_gpu = torch.cuda.is_available()
    head = (f"action log-prob: H={cfg['hidden']} V={cfg['vocab']} bins={N_BINS} "
            f"T=trajectories x {CHUNK_TOKENS}, {cfg['dtype']}, temperature {TEMPERATURE}; "
            f"forward + backward (grad to hidden and weight); ratios vs simplevla")
    out = []
    if on_gpu:
        out.append(f"device: {torch.cuda.get_device_name()}")
        results = []
        for n_traj in cfg["trajectories"]:
            spec = dict(tokens=n_traj * CHUNK_TOKENS, hidden=cfg["hidden"], vocab=cfg["vocab"],
                        dtype=cfg["dtype"])
            for row in gpu_action_rows(spec):
                results.append((n_traj, row.pop("method"), row))
        out += action_table(head + " (CUDA, peak = torch.cuda.max_memory_allocated)", results)
        copy = copy_bandwidth_gbs()
        out.append("")
        out.append(f"GRPO loss fwd+bwd (and the fused Triton pass alone), seq-mean-token-mean, "
                   f"dual clip; measured copy bandwidth {copy:.0f} GB/s; GB/s counts the 17 B per "
                   f"token a fused pass must move (4 fp32 streams + 1 B mask)")
        out.append(f"{'B x L':>14} {'method':<16} {'ms':>9} {'GB/s':>8} {'of copy':>8}")
        for n_seq, seq_len in ((16, 2048), (128, 4096), (512, 4096)):
            for r in gpu_loss_rows(n_seq, seq_len, copy):
                out.append(f"{f'{n_seq}x{seq_len}':>14} {r['method']:<16} {r['ms']:>9.4f} "
                           f"{r['gbs']:>8.0f} {r['frac'] * 100:>7.0f}%")
    else:
        out += run_cpu(cfg, threads, cfg["budget_s"] if budget_s is None else budget_s,
                       baseline_dtype, isolate=not smoke)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per case (default: torch's choice)")
    parser.add_argument("--budget", type=float, default=None,
                        help="CPU: time budget of the run in seconds (default 300, smoke 60)")
    parser.add_argument("--baseline-dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="CPU: dtype of the simplevla baseline (auto: bf16 unless this CPU's "
                             "bf16 matmuls are emulated)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(cpu_worker(json.loads(args.worker))))
        return
    print(run(args.smoke, args.threads, args.budget, args.baseline_dtype))


if __name__ == "__main__":
    main()

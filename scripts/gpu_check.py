"""The Python steps of scripts/gpu_check.sh: the environment report and the CUDA benchmarks,
printed row by row so that a timeout keeps what was measured, each row guarded so that one
failure (a torch.compile error, an OOM) costs only that row.

    python3 -P scripts/gpu_check.py env                      # versions, imports, CUDA + Triton smoke
    python3 -P scripts/gpu_check.py kernels [--budget S]     # benchmarks/bench_kernels.py, CUDA mode
    python3 -P scripts/gpu_check.py policy [--batches 8,16]  # benchmarks/bench_policy.py --gpu-7b rows

`env` reports versions (python, torch + CUDA, triton, transformers, timm, numpy), whether the
Hugging Face `kernels` package, mujoco and the native core `vlarl_fast._C` are present (the last
two are not needed here), the C compiler and ptxas Triton uses, imports vlarl_fast.kernels and
vlarl_fast.policy and transformers' Llama (checking that neither pulls mujoco or the native
core), and on CUDA runs a bf16 matmul and the Triton kernels once against the PyTorch path.

`kernels` measures what `python benchmarks/bench_kernels.py` prints on a CUDA machine (same
functions, sizes and tables: action log-prob fwd / fwd+bwd for SimpleVLA-RL's full-vocabulary
path, the fused op's PyTorch path, Triton, torch.compile of both, and the read bound; the GRPO
loss against eager PyTorch and torch.compile as a fraction of copy bandwidth) in another order:
every eager and Triton row first, the torch.compile rows last, skipped past `--budget` seconds;
plus a numerical check of Triton against the PyTorch path at the benchmark sizes.
`policy` prints the analytic memory estimates, then measures bench_policy's 7B rows (bf16
rollout forward, one training forward+backward, peak memory) at each batch size.

Run with `python3 -P` and scripts/gpu_sitecustomize.py on PYTHONPATH (gpu_check.sh does both).
Exit status 0: all fine; 3: no CUDA device (nothing measured); 1: something failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback


def _p(*args) -> None:
    print(*args, flush=True)


def _drop_repo_root() -> None:
    """bench_kernels puts the repository root on sys.path; take it off again (see the
    sitecustomize docstring: the root on sys.path breaks `import transformers` where the Hugging
    Face `kernels` package is missing)."""
    root = os.path.realpath(os.environ.get("VLARL_REPO", os.getcwd()))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != root]


def _fail(what: str, exc: BaseException) -> None:
    _p(f"FAILED {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
    traceback.print_exc(limit=6, file=sys.stdout)
    sys.stdout.flush()


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception as exc:  # noqa: BLE001
        return f"absent ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    return str(getattr(mod, "__version__", "?"))


def env() -> int:
    import importlib.machinery
    import importlib.util
    import platform
    import shutil

    failures = 0
    _p(f"python {platform.python_version()} ({sys.executable}), {platform.platform()}, "
       f"{os.cpu_count()} CPUs")
    import torch

    _p(f"torch {torch.__version__}, CUDA runtime {torch.version.cuda}, cuDNN "
       f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else '-'}")
    for name in ("triton", "transformers", "numpy", "timm", "torchvision", "safetensors",
                 "tokenizers", "sentencepiece", "hypothesis", "pytest"):
        _p(f"{name} {_version(name)}")
    root = os.path.realpath(os.environ.get("VLARL_REPO", os.getcwd()))
    hub = importlib.machinery.PathFinder.find_spec(
        "kernels", [p for p in sys.path if os.path.realpath(p or os.getcwd()) != root])
    _p(f"Hugging Face `kernels` package: {'present at ' + str(hub.origin) if hub else 'absent'}")
    _p(f"repository root on sys.path: {root in [os.path.realpath(p or os.getcwd()) for p in sys.path]}"
       f" (expected False under python3 -P)")
    for name in ("mujoco", "robosuite", "libero", "gymnasium"):
        _p(f"{name}: {'present' if importlib.util.find_spec(name) else 'absent'} (not needed here)")
    _p(f"C compiler (Triton's launcher, inductor): cc={shutil.which('cc')} gcc={shutil.which('gcc')}"
       f" CC={os.environ.get('CC', '-')}")
    try:
        import triton

        bundled = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
        _p(f"ptxas: PATH {shutil.which('ptxas')}, triton's {bundled if os.path.exists(bundled) else 'absent'}")
    except Exception:  # noqa: BLE001
        pass

    t0 = time.perf_counter()
    try:
        import vlarl_fast.kernels as vk
        import vlarl_fast.policy  # noqa: F401
        from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401

        from vlarl_fast.kernels import cpu_native

        # before anything asks for the native CPU kernels (that loads mujoco + _C where built);
        # a `kernels` module from outside the tree is the Hugging Face package, which is fine
        src = getattr(sys.modules.get("kernels"), "__file__", None) or ""
        loaded = [m for m in ("mujoco", "vlarl_fast._C", "vlarl_fast.engine") if m in sys.modules]
        loaded += ["kernels (the source folder)"] if src.startswith(os.path.join(root, "kernels", "")) else []
        _p(f"imports ok ({time.perf_counter() - t0:.1f} s): vlarl_fast.kernels from {vk.__file__}, "
           f"vlarl_fast.policy, transformers Llama; triton_available={vk.triton_available()}")
        _p(f"modules pulled in by those imports that should not be: {loaded or 'none'}")
        if loaded:
            failures += 1
            _p(f"FAILED imports: pulled in {loaded}")
        _p(f"native AVX512-BF16 CPU kernels: {cpu_native.native_bf16_available()} (needs the native core)")
    except Exception as exc:  # noqa: BLE001
        failures += 1
        _fail("imports", exc)

    # GPU_CHECK_EMULATE_CPU=1 with TRITON_INTERPRET=1: run the Triton smoke on CPU tensors under
    # Triton's interpreter (a check of this script on a machine without a GPU)
    emulate = os.environ.get("GPU_CHECK_EMULATE_CPU") == "1"
    if not torch.cuda.is_available() and not emulate:
        _p("CUDA: not available; the GPU steps are skipped")
        return 1 if failures else 0
    dev = "cpu" if emulate else "cuda"
    if not emulate:
        props = torch.cuda.get_device_properties(0)
        _p(f"device: {torch.cuda.get_device_name()}, capability {props.major}.{props.minor}, "
           f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
           f"{torch.cuda.device_count()} device(s)")
        try:
            a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
            a @ a
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()
            _p(f"bf16 matmul 4096^3: {20 * 2 * 4096 ** 3 / (time.perf_counter() - t0) / 1e12:.0f} "
               f"TFLOP/s")
        except Exception as exc:  # noqa: BLE001
            failures += 1
            _fail("CUDA matmul", exc)
    try:  # the first Triton launch compiles the kernel and its C launcher (needs cc)
        t0 = time.perf_counter()
        from vlarl_fast.kernels import action_logprob, grpo_loss

        g = torch.Generator(device=dev).manual_seed(0)
        h = torch.randn(64, 128, device=dev, generator=g).bfloat16()
        w = torch.randn(512, 128, device=dev, generator=g).bfloat16()
        y = torch.randint(0, 256, (64,), device=dev, generator=g)
        out = {b: action_logprob(h, w, y, temperature=1.6, bin_start=192, bin_end=448, backend=b)
               for b in ("torch", "triton")}
        d_logp = (out["triton"] - out["torch"]).abs().max().item()
        lp = torch.randn(4, 32, device=dev, generator=g)
        args = (lp, lp + 0.1, torch.randn(4, device=dev, generator=g), torch.ones(4, 32, device=dev))
        loss = {b: grpo_loss(*args, clip_low=0.2, clip_high=0.28, backend=b)[0] for b in ("torch", "triton")}
        d_loss = (loss["triton"] - loss["torch"]).abs().item()
        ok = d_logp < 1e-4 and d_loss < 1e-5
        failures += not ok
        _p(f"Triton smoke ({time.perf_counter() - t0:.1f} s incl. compile): action_logprob max|diff| "
           f"{d_logp:.1e}, grpo_loss |diff| {d_loss:.1e} vs PyTorch: {'ok' if ok else 'MISMATCH'}")
    except Exception as exc:  # noqa: BLE001
        failures += 1
        _fail("Triton smoke", exc)
    return 1 if failures else 0


def bench_kernels(budget: float) -> int:
    """Phase 1: every eager and Triton row (the figures docs/kernels.md lacks); phase 2, while
    `budget` seconds have not passed: the torch.compile rows (compilation takes most of the time).
    Then the tables of benchmarks/bench_kernels.py."""
    import torch

    if not torch.cuda.is_available():
        _p("skipped: no CUDA")
        return 3
    import benchmarks.bench_kernels as bk
    from vlarl_fast.kernels import grpo_loss
    from vlarl_fast.kernels.grpo_loss import grpo_loss_fwd_triton

    _drop_repo_root()
    start = time.perf_counter()
    failures = 0
    cfg = bk.sizes(False)
    dtype = getattr(torch, cfg["dtype"])
    _p(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    head = (f"action log-prob: H={cfg['hidden']} V={cfg['vocab']} bins={bk.N_BINS} "
            f"T=trajectories x {bk.CHUNK_TOKENS}, {cfg['dtype']}, temperature {bk.TEMPERATURE}; "
            f"forward + backward (grad to hidden and weight); ratios vs simplevla")
    loss_sizes = ((16, 2048), (128, 4096), (512, 4096))
    action_rows = {n: {} for n in cfg["trajectories"]}
    loss_rows = {size: {} for size in loss_sizes}
    compiled = {"simplevla compiled": torch.compile(bk.simplevla_logprob),
                "fused torch compiled": torch.compile(bk.fused_logprob)}
    methods = {
        "simplevla": bk.simplevla_logprob,
        "fused torch": bk.fused_logprob,
        "triton": lambda h, w, y: bk.fused_logprob(h, w, y, backend="triton"),
        "bound": bk.bound_read,
        **compiled,
    }

    def action_inputs(n_traj):
        torch.manual_seed(0)
        n_tokens = n_traj * bk.CHUNK_TOKENS
        hidden = torch.randn(n_tokens, cfg["hidden"], device="cuda").to(dtype).requires_grad_()
        weight = (torch.randn(cfg["vocab"], cfg["hidden"], device="cuda")
                  * cfg["hidden"] ** -0.5).to(dtype).requires_grad_()
        labels = torch.randint(0, bk.N_BINS, (n_tokens,), device="cuda")
        return hidden, weight, labels

    def loss_inputs(n_seq, seq_len):
        torch.manual_seed(0)
        logp = (torch.randn(n_seq, seq_len, device="cuda") - 1).requires_grad_()
        old = logp.detach() + 0.1 * torch.randn_like(logp)
        adv = torch.randn(n_seq, seq_len, device="cuda")
        mask = torch.rand(n_seq, seq_len, device="cuda") < 0.9
        return logp, old, adv, mask

    def action_check(n_traj):
        """Triton against the PyTorch path (both fp32 math on bf16 inputs) at this size."""
        nonlocal failures
        hidden, weight, labels = action_inputs(n_traj)
        try:
            outs = {}
            for backend in ("torch", "triton"):
                logp = bk.fused_logprob(hidden, weight, labels, backend=backend)
                logp.sum().backward()
                outs[backend] = (logp.detach(), hidden.grad.float(), weight.grad.float())
                hidden.grad = weight.grad = None
            d = [(x - y).abs().max().item() for x, y in zip(outs["triton"], outs["torch"])]
            ref = bk.simplevla_logprob(hidden, weight, labels).detach()
            _p(f"check {n_traj}x{bk.CHUNK_TOKENS} tok: max|triton - fused torch| logp {d[0]:.2e}, "
               f"grad h {d[1]:.2e}, grad W {d[2]:.2e}; max|triton - simplevla (bf16 logits)| "
               f"logp {(outs['triton'][0] - ref).abs().max().item():.2e}")
            if not d[0] < 1e-3:
                failures += 1
                _p("FAILED check: Triton and PyTorch log-probs disagree")
        except Exception as exc:  # noqa: BLE001
            failures += 1
            _fail(f"triton vs torch check {n_traj}", exc)

    def action_row(n_traj, name):
        nonlocal failures
        hidden, weight, labels = action_inputs(n_traj)
        fn = methods[name]

        def fwd():
            with torch.no_grad():
                fn(hidden, weight, labels)

        def both():
            out = fn(hidden, weight, labels)
            out.sum().backward()
            hidden.grad = weight.grad = None

        backward = name != "bound"
        t0 = time.perf_counter()
        try:
            row = dict(fwd_ms=bk._cuda_time(fwd, 20),
                       total_ms=bk._cuda_time(both, 20) if backward else None,
                       fwd_peak_mb=bk._cuda_peak_mb(fwd),
                       total_peak_mb=bk._cuda_peak_mb(both) if backward else None)
        except Exception as exc:  # noqa: BLE001
            failures += 1
            _fail(f"{name} {n_traj}x{bk.CHUNK_TOKENS}", exc)
            return
        action_rows[n_traj][name] = row
        _p(f"  {n_traj:>3}x{bk.CHUNK_TOKENS} {name:<22} fwd {row['fwd_ms']:.3f} ms, fwd+bwd "
           f"{bk._fmt(row['total_ms'], '{:.3f}')} ms ({time.perf_counter() - t0:.1f} s)")

    def loss_check(n_seq, seq_len):
        nonlocal failures
        logp, old, adv, mask = loss_inputs(n_seq, seq_len)
        try:
            vals = {}
            for backend in ("torch", "triton"):
                loss, _ = grpo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, clip_c=3.0,
                                    agg="seq-mean-token-mean", backend=backend)
                loss.backward()
                vals[backend] = (loss.detach(), logp.grad.clone())
                logp.grad = None
            dl = (vals["triton"][0] - vals["torch"][0]).abs().item()
            dg = (vals["triton"][1] - vals["torch"][1]).abs().max().item()
            _p(f"check {n_seq}x{seq_len}: |loss triton - torch| {dl:.2e}, max|grad diff| {dg:.2e}")
            if not (dl < 1e-4 and dg < 1e-6):
                failures += 1
                _p("FAILED check: Triton and PyTorch GRPO losses disagree")
        except Exception as exc:  # noqa: BLE001
            failures += 1
            _fail(f"grpo loss check {n_seq}x{seq_len}", exc)

    def loss_row(n_seq, seq_len, name):
        nonlocal failures
        logp, old, adv, mask = loss_inputs(n_seq, seq_len)

        def step(backend):
            loss, _ = grpo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, clip_c=3.0,
                                agg="seq-mean-token-mean", backend=backend)
            loss.backward()
            logp.grad = None

        def fused_pass():  # the one kernel pass: loss, statistics and gradient
            grpo_loss_fwd_triton(logp.detach(), old, adv, mask, 0.2, 0.28, 3.0, "seq-mean-token-mean")

        fn = {"eager torch": lambda: step("torch"), "triton": lambda: step("triton"),
              "triton pass only": fused_pass,
              "torch.compile": torch.compile(lambda: step("torch"))}[name]
        try:
            loss_rows[(n_seq, seq_len)][name] = bk._cuda_time(fn, 50)
        except Exception as exc:  # noqa: BLE001
            failures += 1
            _fail(f"grpo loss {name} {n_seq}x{seq_len}", exc)
            return
        _p(f"  {n_seq}x{seq_len} {name:<16} {loss_rows[(n_seq, seq_len)][name]:.4f} ms")

    # phase 1: checks, eager and Triton rows
    for n_traj in cfg["trajectories"]:
        action_check(n_traj)
        for name in ("simplevla", "fused torch", "triton", "bound"):
            action_row(n_traj, name)
        torch.cuda.empty_cache()
    try:
        copy = bk.copy_bandwidth_gbs()
        _p(f"copy bandwidth {copy:.0f} GB/s")
    except Exception as exc:  # noqa: BLE001
        failures += 1
        _fail("copy bandwidth", exc)
        copy = float("nan")
    for size in loss_sizes:
        loss_check(*size)
        for name in ("eager torch", "triton", "triton pass only"):
            loss_row(*size, name)
    _p(f"phase 1 (eager, Triton) done at {time.perf_counter() - start:.0f} s")
    # phase 2: torch.compile rows while the budget lasts
    todo = ([("action", n, name) for n in cfg["trajectories"] for name in compiled]
            + [("loss", size, "torch.compile") for size in loss_sizes])
    for kind, key, name in todo:
        if time.perf_counter() - start > budget:
            _p(f"skipped {name} {key}: past the {budget:.0f} s budget")
            continue
        if kind == "action":
            action_row(key, name)
        else:
            loss_row(*key, name)
        torch.cuda.empty_cache()

    _p("\n==== bench_kernels tables")
    results = [(n, name, action_rows[n][name]) for n in cfg["trajectories"] for name in methods
               if name in action_rows[n] and "simplevla" in action_rows[n]]
    if results:
        _p("\n".join(bk.action_table(head + " (CUDA, peak = torch.cuda.max_memory_allocated)",
                                      results)))
    _p(f"\nGRPO loss fwd+bwd (and the fused Triton pass alone), seq-mean-token-mean, dual clip; "
       f"measured copy bandwidth {copy:.0f} GB/s; GB/s counts the 17 B per token a fused pass "
       f"must move (4 fp32 streams + 1 B mask)")
    _p(f"{'B x L':>14} {'method':<16} {'ms':>9} {'GB/s':>8} {'of copy':>8}")
    for (n_seq, seq_len), rows in loss_rows.items():
        n_bytes = n_seq * seq_len * (4 * 4 + 1)
        for name in ("eager torch", "torch.compile", "triton", "triton pass only"):
            if name in rows:
                gbs = n_bytes / (rows[name] * 1e-3) / 1e9
                _p(f"{f'{n_seq}x{seq_len}':>14} {name:<16} {rows[name]:>9.4f} {gbs:>8.0f} "
                   f"{gbs / copy * 100:>7.0f}%")
    _p(f"kernels benchmark: {time.perf_counter() - start:.0f} s, {failures} failure(s)")
    return 1 if failures else 0


def bench_policy(batches: list[int]) -> int:
    import torch

    if not torch.cuda.is_available():
        _p("skipped: no CUDA")
        return 3
    import benchmarks.bench_policy as bp
    from vlarl_fast.policy import OpenVLAOFTConfig
    from vlarl_fast.policy.memory_estimate import estimate_memory

    _drop_repo_root()
    failures = 0
    name = torch.cuda.get_device_name()
    _p(estimate_memory().table())
    _p(estimate_memory(checkpointing=True).table())
    out = []
    for batch in batches:
        t0 = time.perf_counter()
        try:
            rows = bp._measured_rows(OpenVLAOFTConfig.openvla_7b(), batch, torch.device("cuda"),
                                     f"7B on {name}")
            out.append(bp._format(rows, f"policy benchmark (GPU, measured), B={batch}"))
            _p(out[-1])
        except Exception as exc:  # noqa: BLE001 (an OOM at the larger batch included)
            failures += 1
            _fail(f"7B rows B={batch}", exc)
        _p(f"(B={batch}: {time.perf_counter() - t0:.1f} s)")
        torch.cuda.empty_cache()
    _p("\n==== bench_policy tables")
    _p("\n\n".join(out) if out else "no 7B rows measured")
    _p(f"policy benchmark: {failures} failure(s)")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("env", "kernels", "policy"))
    parser.add_argument("--budget", type=float, default=75.0,
                        help="kernels: seconds after which torch.compile rows are skipped")
    parser.add_argument("--batches", default="8,16", help="policy: 7B batch sizes")
    args = parser.parse_args()
    if args.what == "env":
        return env()
    if args.what == "kernels":
        return bench_kernels(args.budget)
    return bench_policy([int(b) for b in args.batches.split(",") if b])


if __name__ == "__main__":
    sys.exit(main())

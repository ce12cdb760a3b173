"""GRPO improves the policy: one-demo SFT, a few GRPO iterations, success measured before and
after on the same fixed evaluation set (fixed seeds throughout; deterministic on one machine).

Short version of the learning demonstration (docs/training.md): one task and one initial state
(the demo's); SFT on that demo, GRPO on groups from that state, and the evaluation runs the sampled
policy (temperature 1.6, fixed generator) 128 times from it: the quantity GRPO maximises. It checks
that the loop learns, not generalisation; the long run measures greedy success on held-out states.
"""

from __future__ import annotations

import json

from vlarl_fast.envs.builtin.init_states import eval_seeds

from _runs import run_train

EVAL_SEED = eval_seeds(1)[0]  # the demo, the GRPO pool and the evaluation share this initial state

# Chosen so that the gain holds on any machine of this kind, not on one seed of one machine
# (scripts/seed_sweep.py): sampled success before -> after on the 128 evaluation episodes,
# AMD EPYC with AVX512-BF16, run.seed 0/1/2 x ATEN_CPU_CAPABILITY native/avx2 (two sets of CPU
# kernels, so two float roundings; avx2 is what an AVX2-only machine of this kind runs):
#   seed 0: +0.086 / +0.062   seed 1: +0.281 / +0.375   seed 2: +0.336 / +0.375
# The 10-step lr warm-up matters: without it AdamW's first steps (every weight moved by ~lr)
# collapsed the rollout success in 2 of these 6 runs (-0.117, -0.156), and the configuration that
# had gained +0.125..+0.49 under another sampling-noise stream no longer held.
LEARN = [
    "env.tasks=[reach_green]", "env.num_envs=32", "env.max_chunks=5", "env.image_size=32",
    "policy.image_size=16", f"sft.demo_seed={EVAL_SEED}", "sft.steps=200", "sft.lr=1e-3",
    "grpo.iterations=18", "grpo.groups_per_iteration=4", "grpo.group_size=8", "grpo.max_sample_rounds=1",
    "grpo.lr=5e-4", "grpo.lr_warmup_steps=10", "grpo.ppo_epochs=1", "grpo.mini_batches=2", "grpo.micro_batch_observations=32",
    "grpo.filter_groups=true", f"grpo.seed_pool=[{EVAL_SEED}]", "eval.episodes_per_task=1", "eval.repeats=128",
    "eval.greedy=false", "run.checkpoint_every=0", "run.torch_threads=1",
]
# Without an update the policy and the evaluation's sampling generator are unchanged, so the gain
# is exactly 0: a GRPO that does nothing fails, and so does one that collapses the policy (the
# -0.12 and -0.16 above). The margin sits below the smallest gain measured above (+0.062).
MARGIN = 0.04


def test_grpo_improves_success_on_fixed_eval_set(tmp_path):
    run_train(tmp_path, *LEARN, timeout=1500)
    history = json.loads((tmp_path / "summary.json").read_text())["history"]
    before = next(h for h in history if h["label"] == "sft")
    after = next(h for h in history if h["label"] == "final")
    assert before["episodes"] == after["episodes"] == 128
    assert after["success"] >= before["success"] + MARGIN, (before["success"], after["success"])

"""The training job as named steps: setup -> SFT -> evaluate -> [collect -> update -> log ->
checkpoint]* -> evaluate. SPMD: every rank runs this same code (see distributed.py).

Randomness is derived from (run.seed, iteration, rank, round), so a resumed run draws the same
initial states and rollout samples as the uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlarl_fast.envs.chunk_env import repeat_rows
from vlarl_fast.envs.suites import make_suite, make_suite_env
from vlarl_fast.policy.augment import ImageAugment
from vlarl_fast.policy.checkpoint import empty_like
from vlarl_fast.recipes.config import TrainConfig
from vlarl_fast.rl import checkpoint, grpo
from vlarl_fast.rl.distributed import (DistInfo, all_reduce_min, all_reduce_sum, compute_dtype, device_for, init,
                                       make_all_done, parallelize, rank_cuda_ordinal, sampling_rounds,
                                       sync_rollout_policy, uses_collectives)
from vlarl_fast.rl.evaluate import evaluate, evaluation_set, results_table, write_results
from vlarl_fast.rl.logging import MetricLogger
from vlarl_fast.rl.policy_setup import BUILTIN_UNNORM_KEY, build_policy, suite_cameras, tiny_shape
from vlarl_fast.rl.progress import Progress
from vlarl_fast.rl.rollout import RolloutTimes, rollout
from vlarl_fast.rl.sft import proprio_statistics, sft_dataset, train_sft
from vlarl_fast.rl.trajectories import TrajectoryBatch
from vlarl_fast.rl.update import UpdateSettings, ppo_update, recompute_old_logprobs


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@dataclass
class Trainer:
    cfg: TrainConfig
    info: DistInfo = field(default_factory=DistInfo)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        if cfg.run.torch_threads:
            torch.set_num_threads(cfg.run.torch_threads)
        if cfg.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(derive_seed(cfg.run.seed, 0))
        self.out_dir = Path(cfg.run.out_dir)
        self.video_writer = None
        if cfg.eval.videos and self.info.is_main:
            from vlarl_fast.rl.video import VideoWriter

            self.video_writer = VideoWriter()  # before the engine: see VideoWriter
        self.suite = make_suite(cfg.env.suite, cfg.env.tasks)
        self.tasks = self.suite.tasks
        self.instructions = [t.instruction for t in self.tasks]
        self.policy = build_policy(cfg.policy.image_size, cfg.run.seed, cfg.policy.init,
                                   stats_key=BUILTIN_UNNORM_KEY if cfg.env.suite == "builtin" else cfg.env.suite,
                                   use_proprio=cfg.policy.use_proprio, **tiny_shape(cfg))
        self.unnorm_key = self.suite.unnorm_key(self.policy.norm_stats)
        k = self.policy.config.chunk_len
        self.choose_render_device()
        self.env = make_suite_env(self.suite, cfg.env.num_envs, max_steps=cfg.env.max_chunks * k,
                                  image_size=cfg.env.image_size, num_threads=cfg.env.num_threads,
                                  backend=cfg.env.backend, fast_render=cfg.env.fast_render,
                                  cameras=suite_cameras(cfg.env.suite, cfg.env.cameras, self.policy.config),
                                  settle_steps=cfg.env.settle_steps)
        say = print if self.info.is_main else (lambda message: None)
        self.resume_from = checkpoint.latest_checkpoint(self.out_dir, log=say) if cfg.run.resume else None
        if not cfg.run.resume and self.info.is_main and (self.out_dir / "metrics.jsonl").is_file() \
                and (self.out_dir / "metrics.jsonl").stat().st_size:
            raise ValueError(f"config field run.resume: {self.out_dir} already holds a run (metrics.jsonl); "
                             "pass run.resume=true to continue it, or choose a new run.out_dir")
        self.log = MetricLogger(self.out_dir, enabled=self.info.is_main, tensorboard=cfg.run.tensorboard,
                                wandb=cfg.run.wandb, config=cfg.to_dict(), resume=True)
        if self.resume_from is None and self.info.is_main and (self.out_dir / "metrics.jsonl").stat().st_size:
            self.log.log(0, {"restart": 1}, kind="restart")  # earlier records kept; this run starts over
        self.progress = Progress(enabled=cfg.run.progress and self.info.is_main)
        self.eval_set = evaluation_set(self.suite, cfg.eval.episodes_per_task, cfg.eval.seed_offset,
                                       cfg.eval.repeats)
        self.history: list[dict] = []
        self.start_iteration = 0

    def choose_render_device(self) -> None:
        """This rank renders on the EGL device that is its CUDA device (or env.egl_device /
        $VLARL_EGL_DEVICE); without an NVIDIA EGL device, on EGL's default (said once)."""
        from vlarl_fast.engine.egl_devices import apply_rank_egl_device

        say = (lambda line: print(line, flush=True)) if self.info.is_main else (lambda line: None)
        self.egl_choice = apply_rank_egl_device(
            rank_cuda_ordinal(self.info), self.cfg.env.egl_device,
            visible_count=torch.cuda.device_count() if torch.cuda.is_available() else None, log=say)

    def collective_rollout(self) -> bool:
        """Rollout forwards run collectives (an FSDP-sharded rollout policy): every rank must
        make the same number of policy calls."""
        return self.info.enabled and uses_collectives(self.rollout_policy)

    def close(self) -> None:
        if self.video_writer is not None:
            self.video_writer.close()
        self.env.close()
        self.suite.close()
        self.log.close()
        self.progress.close()

    # ------------------------------------------------------------------ SFT
    def sft(self) -> dict:
        cfg = self.cfg
        k = self.policy.config.chunk_len
        t0 = time.perf_counter()
        frames, instructions, actions, proprio, n_demos = self.suite.sft_samples(self.env, cfg, k, self.out_dir,
                                                                                 log=self.progress.write)
        key = self.unnorm_key or BUILTIN_UNNORM_KEY
        stats = self.policy.norm_stats[key]["action"]
        x, prompts, y = sft_dataset(frames, instructions, actions, stats, self.policy.config.n_action_bins)
        state = None
        if self.policy.config.use_proprio:
            if proprio is None:
                raise ValueError("config field policy.use_proprio: the SFT demos carry no robot state "
                                 "(obs/ee_pos, obs/ee_ori, obs/gripper_states)")
            self.policy.norm_stats[key]["proprio"] = proprio_statistics(proprio)  # saved with the policy
            state = torch.from_numpy(proprio)
        torch.manual_seed(derive_seed(cfg.run.seed, 1))
        threads = torch.get_num_threads()
        if cfg.sft.torch_threads:
            torch.set_num_threads(cfg.sft.torch_threads)
        try:
            with self.progress.phase("sft", total=cfg.sft.steps) as bar:
                losses = train_sft(self.policy, x, prompts, y, steps=cfg.sft.steps, lr=cfg.sft.lr,
                                   weight_decay=cfg.sft.weight_decay, log_every=1, batch_size=cfg.sft.batch_size,
                                   generator=torch.Generator().manual_seed(derive_seed(cfg.run.seed, 6)),
                                   proprio=state, unnorm_key=self.unnorm_key, lr_schedule=cfg.sft.lr_schedule,
                                   augment=ImageAugment() if cfg.sft.image_aug else None,
                                   log=lambda step, loss: bar.update(1, loss=f"{loss:.3f}"))
        finally:
            torch.set_num_threads(threads)
        metrics = {"sft/loss_first": losses[0] if losses else float("nan"),
                   "sft/loss_last": losses[-1] if losses else float("nan"),
                   "sft/samples": len(prompts), "sft/demos": n_demos, "time/sft_s": time.perf_counter() - t0}
        self.log.log(0, metrics, kind="sft")
        return metrics

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, step: int, label: str) -> dict:
        cfg = self.cfg
        with self.progress.phase(f"eval ({label})", total=None):
            result = evaluate(self.rollout_policy, self.env, self.eval_set, max_chunks=cfg.env.max_chunks,
                              temperature=cfg.grpo.temperature, greedy=cfg.eval.greedy,
                              seed=derive_seed(cfg.run.seed, 2), videos=cfg.eval.videos if self.info.is_main else 0,
                              unnorm_key=self.unnorm_key, pipeline=cfg.env.pipeline,
                              all_done=make_all_done(self.info) if self.collective_rollout() else None)
        record = {"step": step, "label": label, "success": result["success"], "per_task": result["per_task"],
                  "episodes": result["episodes"]}
        self.history.append(record)
        metrics = {"success": result["success"], "episodes": result["episodes"], "seconds": result["seconds"],
                   **{f"success/{k}": v for k, v in result["per_task"].items()}}
        self.log.log(step, metrics, kind="eval")
        self.progress.write(f"[eval {label}] step {step}: success {result['success']:.3f} over "
                            f"{result['episodes']} held-out episodes {result['per_task']}")
        if self.info.is_main:
            write_results(results_table(cfg.env.suite, self.eval_set, result),
                          self.out_dir / "eval" / f"{label}_step{step:06d}")
        if result["videos"] and self.video_writer is not None:
            self.video_writer.write(self.out_dir / "videos" / f"{label}_step{step:06d}", result["videos"])
        return record

    # ------------------------------------------------------------------ GRPO
    def build_optimizer(self) -> None:
        """The training model and the rollout policy on this rank's device. Distributed: the policy
        is sharded in place (FSDP2, fp32 master shards) and the rollout runs a replica in the
        compute dtype, refreshed by `sync_rollout_policy` (one tensor at a time). One process: one
        model does both. Called once, after SFT."""
        cfg = self.cfg
        g = cfg.grpo
        device = device_for(self.info)
        dtype = compute_dtype(g.param_dtype, device)
        self.policy.gradient_checkpointing_enable(g.gradient_checkpointing)
        if g.cpu_offload or self.info.enabled:
            replica = empty_like(self.policy, dtype=dtype, device=device)  # built on meta: no full copy
            self.train_policy = parallelize(self.policy, self.info, param_dtype=dtype, cpu_offload=g.cpu_offload)
            self.rollout_policy = replica
            sync_rollout_policy(self.train_policy, self.rollout_policy, self.info)
        else:
            self.train_policy = self.rollout_policy = self.policy.to(device)
        params = [p for p in self.train_policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.grpo.lr, weight_decay=cfg.grpo.weight_decay)
        self.update_settings = UpdateSettings(
            ppo_epochs=cfg.grpo.ppo_epochs, mini_batches=cfg.grpo.mini_batches,
            micro_batch_observations=cfg.grpo.micro_batch_observations, clip_low=cfg.grpo.clip_low,
            clip_high=cfg.grpo.clip_high, max_grad_norm=cfg.grpo.max_grad_norm, temperature=cfg.grpo.temperature,
            lr=cfg.grpo.lr, lr_warmup_steps=cfg.grpo.lr_warmup_steps)

    def groups_per_rank(self) -> int:
        g, w = self.cfg.grpo.groups_per_iteration, self.info.world_size
        if g % w:
            raise ValueError(f"config field grpo.groups_per_iteration: expected a multiple of the world size {w}, got {g}")
        return g // w

    def sample_round(self, iteration: int, rnd: int) -> tuple[TrajectoryBatch, RolloutTimes]:
        """One round of groups on this rank: num_envs // group_size (task, init state) pairs."""
        cfg = self.cfg
        n = cfg.grpo.group_size
        groups = cfg.env.num_envs // n
        rng = np.random.default_rng(derive_seed(cfg.run.seed, 3, iteration, self.info.rank, rnd))
        task_idx, init_ids = self.suite.sample_groups(rng, groups, cfg.grpo.seed_pool)
        states = self.suite.init_states(task_idx, init_ids)
        ep_tasks = [self.tasks[i] for i in np.repeat(task_idx, n)]
        base = ((iteration * cfg.grpo.max_sample_rounds + rnd) * self.info.world_size + self.info.rank) * groups
        group_ids = base + np.repeat(np.arange(groups), n)
        gen = torch.Generator(device=self.rollout_policy.device)  # sampling draws on the policy's device
        gen.manual_seed(derive_seed(cfg.run.seed, 4, iteration, self.info.rank, rnd))
        batch, times = rollout(self.rollout_policy, self.env, ep_tasks, repeat_rows(states, n),
                               task_ids=np.repeat(task_idx, n), group_ids=group_ids, max_chunks=cfg.env.max_chunks,
                               temperature=cfg.grpo.temperature, generator=gen, unnorm_key=self.unnorm_key,
                               pipeline=cfg.env.pipeline,
                               all_done=make_all_done(self.info) if self.collective_rollout() else None)
        times.extra["reward_mismatch"] = self.cross_check_rewards(batch)
        return batch, times

    def cross_check_rewards(self, batch: TrajectoryBatch) -> int:
        """Envs whose reward differs from the suite's own success check on the episode's final
        state (LIBERO's `_check_success`, recomputed from the engine state); 0 when all agree.
        Families without an independent check return 0."""
        check = getattr(self.env, "check_success", None)
        if check is None:
            return 0
        return int((check(np.arange(len(batch))) != batch.success).sum())

    def collect_batch(self, iteration: int) -> tuple[TrajectoryBatch | None, dict]:
        """Dynamic sampling: rounds of rollouts until every rank holds its share of mixed groups."""
        cfg = self.cfg
        need = self.groups_per_rank()
        kept: list[TrajectoryBatch] = []
        times = RolloutTimes()
        task_success = np.zeros((len(self.tasks), 2))  # successes, episodes
        sampled_groups = 0
        mismatches = 0
        footprint = 0
        t0 = time.perf_counter()

        def one_round(rnd: int, missing: int) -> int:
            nonlocal times, mismatches, footprint, sampled_groups
            batch, rt = self.sample_round(iteration, rnd)
            times.add(rt)
            mismatches += rt.extra["reward_mismatch"]
            footprint = max(footprint, batch.nbytes())
            np.add.at(task_success[:, 0], batch.task_ids, batch.success)
            np.add.at(task_success[:, 1], batch.task_ids, 1)
            sampled_groups += len(np.unique(batch.group_ids))
            groups = (grpo.accuracy_groups(batch, cfg.grpo.accuracy_lower, cfg.grpo.accuracy_upper)
                      if cfg.grpo.filter_groups else np.unique(batch.group_ids))[:missing]
            if groups.size:
                kept.append(grpo.keep_groups(batch, groups))
            return int(groups.size)

        # every rank runs the same rounds; with collective rollout forwards every rank samples in each
        n_kept, rounds = sampling_rounds(one_round, need, cfg.grpo.max_sample_rounds, self.info,
                                         every_rank_samples=self.collective_rollout())
        use = all_reduce_min(n_kept, self.info)  # every rank updates on the same number of groups
        batch = None
        if use > 0:
            batch = TrajectoryBatch.concat(kept)
            keep_ids = np.unique(batch.group_ids)[:use]
            batch = grpo.keep_groups(batch, keep_ids)
        wall = time.perf_counter() - t0
        totals = all_reduce_sum(np.concatenate([task_success.reshape(-1),
                                                [sampled_groups, times.env_steps, times.env_s, times.policy_s,
                                                 footprint, 0 if batch is None else len(batch), mismatches]]),
                                self.info)
        ts = totals[: task_success.size].numpy().reshape(task_success.shape)
        sampled, env_steps, env_s, policy_s, foot, n_traj, mismatch = totals[task_success.size:].tolist()
        w = self.info.world_size
        metrics = {
            "rollout/success": float(ts[:, 0].sum() / max(ts[:, 1].sum(), 1)),
            **{f"rollout/success/{t.name}": float(ts[i, 0] / ts[i, 1]) for i, t in enumerate(self.tasks) if ts[i, 1]},
            "rollout/groups_sampled": sampled,
            "rollout/groups_kept": float(use * w),
            "rollout/rounds": rounds,
            "rollout/trajectories": n_traj,
            "rollout/reward_mismatch": mismatch,
            "perf/env_steps": env_steps,
            "perf/env_steps_per_s": env_steps / max(wall, 1e-9) ,
            "time/rollout_s": wall,
            "time/rollout_env_s": env_s / w,
            "time/rollout_policy_s": policy_s / w,
            "memory/trajectory_bytes": foot / w / max(cfg.env.num_envs, 1),
        }
        return batch, metrics

    def update(self, iteration: int, batch: TrajectoryBatch) -> dict:
        adv = grpo.advantages(batch)
        if self.cfg.grpo.recompute_old_logp:  # SimpleVLA-RL's order: old log-probs from the training model
            rollout_logp = batch.logp
            batch.logp = recompute_old_logprobs(self.train_policy, batch, self.instructions, self.update_settings,
                                                self.info, unnorm_key=self.unnorm_key)
            drift = all_reduce_sum([float(np.abs(batch.logp - rollout_logp)[batch.token_mask()].max(initial=0.0))],
                                   self.info)
        gen = torch.Generator().manual_seed(derive_seed(self.cfg.run.seed, 5, iteration))
        metrics = ppo_update(self.train_policy, self.optimizer, batch, adv, self.instructions,
                             self.update_settings, self.info, gen, unnorm_key=self.unnorm_key)
        if self.cfg.grpo.recompute_old_logp:
            metrics["actor/old_logp_drift_max"] = float(drift[0]) / self.info.world_size
        sync_rollout_policy(self.train_policy, self.rollout_policy, self.info)
        return metrics

    def save(self, step: int) -> None:
        path = checkpoint.save_checkpoint(self.out_dir, step, self.train_policy, self.optimizer, self.info,
                                          policy_template=self.rollout_policy,
                                          extra={"config": self.cfg.to_dict(), "history": self.history})
        if path is not None:
            self.progress.write(f"[checkpoint] {path}")

    def try_resume(self) -> bool:
        path = self.resume_from
        if path is None:
            return False
        state = checkpoint.restore(path, self.train_policy, self.optimizer, self.info)
        stats = checkpoint.load_statistics(path)  # SFT's proprio statistics are in no config
        for model in (self.policy, self.train_policy, self.rollout_policy):
            model.norm_stats = dict(stats)
        sync_rollout_policy(self.train_policy, self.rollout_policy, self.info)
        self.start_iteration = int(state["step"])
        self.history = list(state.get("history", []))
        self.progress.write(f"[resume] from {path} at GRPO iteration {self.start_iteration}")
        return True

    # ------------------------------------------------------------------ the job
    def run(self) -> dict:
        cfg = self.cfg
        self.setup()
        self.rollout_policy = self.policy
        t_start = time.perf_counter()
        try:
            resumed = self.resume_from is not None
            trained_sft = not resumed and cfg.sft.enabled and not cfg.policy.init and self.suite.has_demos
            if trained_sft:
                self.sft()  # identically on every rank, before the policy is sharded
                self.policy.eval()
            self.build_optimizer()
            if resumed:
                self.try_resume()
            elif cfg.eval.episodes_per_task:
                self.evaluate(0, "sft")
            if trained_sft and cfg.run.checkpoint_every:
                self.save(0)  # the SFT policy: a resume never redoes SFT (rl/checkpoint.py)
            if resumed and self._already_complete():
                self.progress.write(f"[resume] {self.out_dir} is a complete run (final evaluation at step "
                                    f"{self.start_iteration}); nothing to do")
                return {"history": self.history, "wall_s": time.perf_counter() - t_start, "complete": True}
            iterations_this_process = 0
            last_step = cfg.grpo.iterations
            t_grpo = time.perf_counter()
            self.progress.start(self.start_iteration, cfg.grpo.iterations)
            for it in range(self.start_iteration, cfg.grpo.iterations):
                t_it = time.perf_counter()
                self.progress.set_phase(f"grpo {it + 1}/{cfg.grpo.iterations}: rollout")
                batch, metrics = self.collect_batch(it)
                if batch is not None:
                    self.progress.set_phase(f"grpo {it + 1}/{cfg.grpo.iterations}: update")
                    metrics.update(self.update(it, batch))
                    metrics["memory/batch_bytes"] = batch.nbytes()
                else:
                    metrics["update/skipped"] = 1.0
                metrics["time/iteration_s"] = time.perf_counter() - t_it
                step = it + 1
                self.log.log(step, metrics)
                self.progress.iteration(step, cfg.grpo.iterations, metrics)
                # every rank stops at the same iteration: any rank over budget stops them all
                out_of_time = bool(cfg.run.time_budget_min) and all_reduce_sum(
                    float(time.perf_counter() - t_grpo >= 60 * cfg.run.time_budget_min), self.info).item() > 0
                if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.grpo.iterations \
                        and not out_of_time:  # the final evaluation follows
                    self.evaluate(step, "grpo")
                if (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0) or \
                        step == cfg.grpo.iterations or out_of_time:
                    self.save(step)
                iterations_this_process += 1
                if cfg.run.stop_after and iterations_this_process >= cfg.run.stop_after:
                    return {"stopped_at": step, "history": self.history}
                if out_of_time:
                    self.progress.write(f"[budget] GRPO stopped after {(time.perf_counter() - t_grpo) / 60:.1f} "
                                        f"min (run.time_budget_min={cfg.run.time_budget_min}) at iteration {step}")
                    last_step = step
                    break
            if cfg.grpo.iterations and cfg.eval.episodes_per_task and \
                    not (self.history and self.history[-1]["label"] == "final"):
                self.evaluate(last_step, "final")
                if self.info.is_main:
                    self._write_summary(time.perf_counter() - t_start)
            return {"history": self.history, "wall_s": time.perf_counter() - t_start}
        finally:
            self.close()

    def _already_complete(self) -> bool:
        """The run reached its last iteration and its final evaluation was recorded (summary.json)."""
        import json

        summary = self.out_dir / "summary.json"
        if self.start_iteration < self.cfg.grpo.iterations or not summary.is_file():
            return False
        try:
            history = json.loads(summary.read_text()).get("history", [])
        except ValueError:
            return False
        final = [h for h in history if h.get("label") == "final"]
        if final and final[-1]["step"] == self.start_iteration:
            self.history = history
            return True
        return False

    def _write_summary(self, wall: float) -> None:
        import json

        (self.out_dir / "summary.json").write_text(json.dumps({"history": self.history, "wall_s": wall}, indent=2))


def train(cfg: TrainConfig) -> dict:
    info = init()
    return Trainer(cfg, info).run()

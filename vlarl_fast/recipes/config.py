"""Typed configuration of a training run: dataclasses, YAML loading, dotted overrides, validation.

    cfg = load_config("builtin_cpu", overrides=["grpo.lr=1e-5", "env.tasks=[touch_red]"])

A recipe is a YAML file in this folder (or any path); overrides are `section.field=value` with the
value parsed as YAML. Unknown sections/fields and bad values raise `ValueError` naming the field,
what was expected and what was given.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RECIPE_DIR = Path(__file__).parent
PARAM_DTYPES = ("auto", "bfloat16", "float32")
_REMOVED = {"grpo.micro_batch_size": "micro-batches are counted in observations now: set "
                                     "grpo.micro_batch_observations (SimpleVLA-RL: 16)"}


@dataclass
class EnvConfig:
    suite: str = "builtin"  # builtin | libero_spatial | libero_object | libero_goal | libero_10 | libero_90
    # builtin: task names. LIBERO: task indices or names of the suite; [] = every task of the suite.
    tasks: list[str] = field(default_factory=lambda: ["reach_red", "reach_green", "reach_blue"])
    backend: str = "engine"  # engine (native) | reference (robosuite Python stepping; builtin only)
    image_size: int = 64  # rendered frame side (pixels)
    max_chunks: int = 5  # episode limit in action chunks (max_steps = max_chunks * chunk_len)
    # LIBERO only: no-op steps before the policy's first (None: 10, SimpleVLA-RL's num_steps_wait)
    settle_steps: int | None = None
    # LIBERO only: cameras the policy sees, in order ([] = agentview, plus the wrist camera
    # robot0_eye_in_hand when the checkpoint takes 2 images). With policy.preset=tiny, one image per
    # camera listed: [agentview, robot0_eye_in_hand] is OpenVLA-OFT's LIBERO input, and the
    # scripted demos then record the wrist camera too (LIBERO's obs/eye_in_hand_rgb)
    cameras: list[str] = field(default_factory=list)
    num_envs: int = 32  # env slots per rank (a multiple of grpo.group_size)
    num_threads: int = 2
    # Render without MSAA, shadows and reflections (the engine's fast=True): ~3.5x faster frames
    # on a software renderer; SFT demos and rollouts see the same pixels either way.
    fast_render: bool = False
    # EGL device index the engines render on. None: this rank's CUDA device (the EGL device whose
    # EGL_CUDA_DEVICE_NV is it), else $VLARL_EGL_DEVICE / $MUJOCO_EGL_DEVICE_ID; without an
    # NVIDIA EGL device, EGL's default (vlarl_fast/engine/egl_devices.py). -1: EGL's default.
    egl_device: int | None = None
    # Rollout schedule (vlarl_fast.rl.rollout): lockstep | pipelined (the env simulates one half
    # of the envs while the policy infers the other's chunk; LIBERO) | auto (pipelined where the
    # env supports it and the policy is on an accelerator, else lockstep). docs/rollout.md has the measurements behind the default.
    pipeline: str = "auto"


@dataclass
class PolicyConfig:
    preset: str = "tiny"  # tiny | checkpoint (then `init` is required)
    image_size: int = 32  # model input side; frames are resized to it
    patch_size: int = 4  # tiny preset: side of the vision towers' patches ((image_size / patch_size)^2 tokens)
    width: int = 1  # tiny preset: factor on every width (vision, text, MLPs); ~width^2 the parameters
    chunk_len: int = 8  # tiny preset: actions per chunk (OpenVLA-OFT: 8 on LIBERO, 25 on ALOHA)
    init: str | None = None  # a policy checkpoint dir to start from (skips SFT when set)
    # tiny preset on LIBERO: OpenVLA-OFT's proprio input (eef position, axis-angle, gripper qpos),
    # normalised with statistics of the SFT demos' states (a checkpoint's config decides for itself)
    use_proprio: bool = False


@dataclass
class SFTConfig:
    enabled: bool = True
    demos_per_task: int = 1
    steps: int = 300
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (lr down to 0 at the last step)
    torch_threads: int = 0  # torch's threads during SFT (no env runs then); 0: run.torch_threads
    weight_decay: float = 0.0
    batch_size: int = 0  # samples per SFT step (0: all, full-batch)
    # OpenVLA's --image_aug: random 90%-area crop (the centre crop's area), brightness, contrast,
    # saturation and hue jitter, drawn per sample and step (vlarl_fast/policy/augment.py)
    image_aug: bool = False
    demo_seed: int = 424242
    # LIBERO only (tiny policy): the init state ids the expert's demos start from, demos_per_task
    # of them per task (keep them out of grpo.seed_pool and the evaluation ids).
    init_ids: list[int] = field(default_factory=lambda: [0])
    # LIBERO only: a folder of demo files in LIBERO's dataset layout, `<task name>_demo.hdf5`
    # (`vlarl-fast demos` writes them); empty: the scripted expert records them into
    # <run.out_dir>/demos first. SFT reads its samples from those files.
    demos: str = ""


@dataclass
class GRPOConfig:
    iterations: int = 10
    groups_per_iteration: int = 8  # global (over all ranks); each group = one task x init state
    group_size: int = 8  # rollouts per group (SimpleVLA-RL n=8)
    temperature: float = 1.6
    max_sample_rounds: int = 4  # dynamic-sampling rounds before updating with what was kept
    filter_groups: bool = True  # dynamic sampling: keep groups whose success rate is in the bounds
    accuracy_lower: float = 0.1  # SimpleVLA-RL's accuracy_lower_bound (inclusive)
    accuracy_upper: float = 0.9  # SimpleVLA-RL's accuracy_upper_bound (inclusive)
    lr: float = 5e-6
    # Optimizer steps of linear lr warm-up, lr * (k+1)/N at step k (0: constant lr, SimpleVLA-RL's).
    # Small policies trained from scratch need it: AdamW's first steps move every weight by ~lr.
    lr_warmup_steps: int = 0
    weight_decay: float = 0.01
    ppo_epochs: int = 1
    mini_batches: int = 1
    # Observations (policy calls) per forward/backward of the update and of the old log-prob pass
    # (SimpleVLA-RL: traj_mini_batch_size=16); what policy/memory_estimate.py assumes.
    micro_batch_observations: int = 16
    # Old log-probs of the PPO ratio recomputed by the training model before the update
    # (SimpleVLA-RL's order); false: the rollout's own log-probs.
    recompute_old_logp: bool = True
    gradient_checkpointing: bool = False  # recompute ViT blocks and Llama layers in backward
    # Compute dtype of forwards (FSDP2 MixedPrecisionPolicy param_dtype; the rollout replica's dtype):
    # auto = bfloat16 on CUDA, float32 on CPU. Master weights, gradient reduction and AdamW stay fp32.
    param_dtype: str = "auto"
    cpu_offload: bool = False  # FSDP2 CPUOffloadPolicy: parameters, gradients and AdamW state on the host
    clip_low: float = 0.2
    clip_high: float = 0.28
    max_grad_norm: float = 1.0
    # Init states to train on: built-in seeds, or LIBERO init state ids (empty: built-in fresh draws;
    # LIBERO all 50, SimpleVLA-RL's training prompts)
    seed_pool: list[int] = field(default_factory=list)


@dataclass
class EvalConfig:
    episodes_per_task: int = 20
    greedy: bool = True
    every: int = 0  # evaluate every N GRPO iterations (0: only before and after GRPO)
    seed_offset: int = 0  # first evaluation init id (LIBERO: init state index)
    repeats: int = 1  # episodes per (task, initial state); > 1 with greedy=false measures the sampled policy
    videos: int = 0  # mp4 videos to write per evaluation


@dataclass
class RunConfig:
    out_dir: str = "runs/builtin"
    seed: int = 0
    checkpoint_every: int = 5  # GRPO iterations between checkpoints (0: only at the end)
    resume: bool = True  # continue from out_dir's latest checkpoint if there is one
    stop_after: int = 0  # stop (as if killed) after this many GRPO iterations of this process (0: off)
    # End GRPO (then run the final evaluation) once this process has spent this many minutes in
    # the GRPO loop, periodic evaluations included (0: off; grpo.iterations still bounds it).
    time_budget_min: float = 0.0
    tensorboard: bool = True
    wandb: bool = False
    torch_threads: int = 0  # 0: leave torch's default
    deterministic: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self, explicit: set[str] | frozenset[str] = frozenset()) -> "TrainConfig":
        """Checks every field; `explicit` (the keys a recipe or an override set) lets a key that does
        not apply to the chosen suite be an error rather than silently ignored."""
        from vlarl_fast.envs.suites import SUITE_NAMES, is_libero

        _check(self.env.suite in SUITE_NAMES, "env.suite", f"one of {SUITE_NAMES}", self.env.suite)
        _check(self.env.backend in ("engine", "reference"), "env.backend", "'engine' or 'reference'", self.env.backend)
        _check(self.sft.torch_threads >= 0, "sft.torch_threads", ">= 0 (0: run.torch_threads)",
               self.sft.torch_threads)
        _check(self.sft.lr_schedule in ("constant", "cosine"), "sft.lr_schedule", "'constant' or 'cosine'",
               self.sft.lr_schedule)
        _check(self.env.pipeline in ("lockstep", "pipelined", "auto"), "env.pipeline",
               "'lockstep', 'pipelined' or 'auto'", self.env.pipeline)
        _check(self.env.image_size >= 8, "env.image_size", ">= 8", self.env.image_size)
        _check(self.env.max_chunks >= 1, "env.max_chunks", ">= 1", self.env.max_chunks)
        _check(self.env.num_threads >= 1, "env.num_threads", ">= 1", self.env.num_threads)
        _check(self.policy.preset in ("tiny", "checkpoint"), "policy.preset", "'tiny' or 'checkpoint'", self.policy.preset)
        _check(self.policy.preset != "checkpoint" or bool(self.policy.init), "policy.init",
               "a checkpoint directory when policy.preset=checkpoint", self.policy.init)
        _check(self.policy.patch_size >= 1, "policy.patch_size", ">= 1", self.policy.patch_size)
        _check(self.policy.width >= 1, "policy.width", ">= 1", self.policy.width)
        _check(self.policy.chunk_len >= 1, "policy.chunk_len", ">= 1", self.policy.chunk_len)
        _check(self.policy.image_size % self.policy.patch_size == 0 and self.policy.image_size >= 8,
               "policy.image_size", f"a multiple of policy.patch_size={self.policy.patch_size}, >= 8",
               self.policy.image_size)
        _check(self.sft.demos_per_task >= 1, "sft.demos_per_task", ">= 1", self.sft.demos_per_task)
        _check(self.sft.steps >= 0, "sft.steps", ">= 0", self.sft.steps)
        _check(self.sft.lr > 0, "sft.lr", "> 0", self.sft.lr)
        _check(self.sft.batch_size >= 0, "sft.batch_size", ">= 0", self.sft.batch_size)
        g = self.grpo
        _check(g.iterations >= 0, "grpo.iterations", ">= 0", g.iterations)
        _check(g.group_size >= 2, "grpo.group_size", ">= 2 (GRPO needs a group)", g.group_size)
        _check(self.env.num_envs >= g.group_size and self.env.num_envs % g.group_size == 0, "env.num_envs",
               f"a positive multiple of grpo.group_size={g.group_size}", self.env.num_envs)
        _check(g.groups_per_iteration >= 1, "grpo.groups_per_iteration", ">= 1", g.groups_per_iteration)
        _check(g.temperature > 0, "grpo.temperature", "> 0", g.temperature)
        _check(g.max_sample_rounds >= 1, "grpo.max_sample_rounds", ">= 1", g.max_sample_rounds)
        _check(g.lr > 0, "grpo.lr", "> 0", g.lr)
        _check(g.lr_warmup_steps >= 0, "grpo.lr_warmup_steps", ">= 0", g.lr_warmup_steps)
        _check(g.weight_decay >= 0, "grpo.weight_decay", ">= 0", g.weight_decay)
        _check(g.ppo_epochs >= 1, "grpo.ppo_epochs", ">= 1", g.ppo_epochs)
        _check(g.mini_batches >= 1, "grpo.mini_batches", ">= 1", g.mini_batches)
        _check(g.micro_batch_observations >= 1, "grpo.micro_batch_observations", ">= 1", g.micro_batch_observations)
        _check(g.param_dtype in PARAM_DTYPES, "grpo.param_dtype", f"one of {PARAM_DTYPES}", g.param_dtype)
        _check(0 < g.clip_low < 1, "grpo.clip_low", "in (0, 1)", g.clip_low)
        _check(g.clip_high > 0, "grpo.clip_high", "> 0", g.clip_high)
        _check(g.max_grad_norm > 0, "grpo.max_grad_norm", "> 0", g.max_grad_norm)
        _check(self.eval.episodes_per_task >= 0, "eval.episodes_per_task", ">= 0", self.eval.episodes_per_task)
        _check(self.eval.repeats >= 1, "eval.repeats", ">= 1", self.eval.repeats)
        _check(self.eval.every >= 0, "eval.every", ">= 0", self.eval.every)
        _check(self.run.checkpoint_every >= 0, "run.checkpoint_every", ">= 0", self.run.checkpoint_every)
        _check(self.run.stop_after >= 0, "run.stop_after", ">= 0", self.run.stop_after)
        _check(self.run.time_budget_min >= 0, "run.time_budget_min", ">= 0", self.run.time_budget_min)
        _check(0 <= g.accuracy_lower <= g.accuracy_upper <= 1, "grpo.accuracy_lower/accuracy_upper",
               "0 <= lower <= upper <= 1", (g.accuracy_lower, g.accuracy_upper))
        _check(self.eval.seed_offset >= 0, "eval.seed_offset", ">= 0", self.eval.seed_offset)
        _check(self.env.egl_device is None or self.env.egl_device >= -1, "env.egl_device",
               "an EGL device index >= 0, -1 (EGL's default) or null (this rank's CUDA device)",
               self.env.egl_device)
        if is_libero(self.env.suite):
            self._validate_libero(explicit)
        else:
            from vlarl_fast.envs.builtin.tasks import TASKS

            unknown = [t for t in self.env.tasks if t not in TASKS]
            _check(not unknown and len(self.env.tasks) >= 1, "env.tasks", f"names from {sorted(TASKS)}",
                   self.env.tasks)
            for key in ("env.settle_steps", "env.cameras", "policy.use_proprio"):
                _check(key not in explicit, key, "not set: it applies to LIBERO suites only (env.suite=builtin)",
                       _get(self, key))
        return self

    def _validate_libero(self, explicit) -> None:
        suite = self.env.suite
        _check(self.env.backend == "engine", "env.backend",
               f"'engine' for {suite} (the robosuite reference backend is built-in only)", self.env.backend)
        if self.policy.preset == "tiny":  # one-demo SFT from the scripted expert (recipe libero_learn)
            _check(self.sft.enabled, "sft.enabled",
                   f"true for {suite} with policy.preset=tiny (a randomly initialised policy needs SFT first)",
                   self.sft.enabled)
            _check(not self.policy.init, "policy.init", "unset with policy.preset=tiny", self.policy.init)
            _check(len(self.sft.init_ids) >= self.sft.demos_per_task, "sft.init_ids",
                   f"at least sft.demos_per_task={self.sft.demos_per_task} LIBERO init state ids",
                   self.sft.init_ids)
            held = set(range(self.eval.seed_offset, self.eval.seed_offset + self.eval.episodes_per_task))
            used = set(self.sft.init_ids[: self.sft.demos_per_task])
            _check(not (used & held), "sft.init_ids", f"ids outside {suite}'s evaluation init states "
                   f"{self.eval.seed_offset}..{self.eval.seed_offset + self.eval.episodes_per_task - 1}",
                   self.sft.init_ids)
        else:
            _check(self.policy.preset == "checkpoint" and bool(self.policy.init), "policy.init",
                   f"an OpenVLA-OFT checkpoint directory for {suite} (policy.preset=checkpoint policy.init=DIR): "
                   "LIBERO training starts from an SFT checkpoint (or policy.preset=tiny: one-demo SFT)",
                   self.policy.init)
            for key in ("policy.image_size", "policy.patch_size", "policy.width", "policy.chunk_len",
                        "policy.use_proprio"):
                _check(key not in explicit, key, "not set: the checkpoint's config fixes it", _get(self, key))
            _check(not self.sft.enabled, "sft.enabled",
                   f"false for {suite} with a checkpoint: it is the SFT policy", self.sft.enabled)
            sft_keys = sorted(k for k in explicit if k.startswith("sft.") and k != "sft.enabled")
            _check(not sft_keys, "sft", f"no sft.* settings for {suite} (SFT does not run)", sft_keys)
        _check(self.env.settle_steps is None or self.env.settle_steps >= 0, "env.settle_steps", ">= 0",
               self.env.settle_steps)
        from vlarl_fast.envs.libero.scene import CAMERAS

        bad = [c for c in self.env.cameras if c not in CAMERAS]
        _check(not bad, "env.cameras", f"cameras from {list(CAMERAS)}", self.env.cameras)
        _check(len(set(self.env.cameras)) == len(self.env.cameras), "env.cameras", "distinct cameras",
               self.env.cameras)
        _check("grpo.seed_pool" not in explicit or len(self.grpo.seed_pool) >= 1, "grpo.seed_pool",
               "at least one LIBERO init state id", self.grpo.seed_pool)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _get(cfg: "TrainConfig", dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def _check(ok: bool, name: str, expected: str, actual) -> None:
    if not ok:
        raise ValueError(f"config field {name}: expected {expected}, got {actual!r}")


def _coerce(name: str, tp, value):
    """Converts a YAML value to the annotated type, or raises naming the field."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, inner[0], value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config field {name}: expected a bool, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"config field {name}: expected an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"config field {name}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        raise ValueError(f"config field {name}: expected a string, got {value!r}")
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ValueError(f"config field {name}: expected a list, got {value!r}")
        return [_coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(value)]
    return value


def _section_types(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _apply(cfg: TrainConfig, dotted: str, value) -> str:
    parts = dotted.split(".")
    if len(parts) != 2:
        raise ValueError(f"config override {dotted!r}: expected section.field (e.g. grpo.lr), got {len(parts)} parts")
    section_name, field_name = parts
    sections = _section_types(TrainConfig)
    if section_name not in sections:
        raise ValueError(f"config section {section_name!r}: expected one of {sorted(sections)}")
    section = getattr(cfg, section_name)
    types = _section_types(type(section))
    if dotted in _REMOVED:
        raise ValueError(f"config field {dotted}: removed; {_REMOVED[dotted]}")
    if field_name not in types:
        raise ValueError(f"config field {dotted}: unknown field; {section_name} has {sorted(types)}")
    setattr(section, field_name, _coerce(dotted, types[field_name], value))
    return dotted


def recipe_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = RECIPE_DIR / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    available = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    raise FileNotFoundError(f"recipe {name!r}: no such file and not one of {available}")


def _apply_recipe(cfg: TrainConfig, recipe: str, explicit: set[str], chain: tuple[str, ...] = ()) -> None:
    """Applies a recipe file; a top-level `base: <recipe>` is applied first (its values can be overridden)."""
    if recipe in chain:
        raise ValueError(f"recipe {recipe}: `base` chain loops: {' -> '.join(chain + (recipe,))}")
    data = yaml.safe_load(recipe_path(recipe).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {recipe}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is not None:
        _apply_recipe(cfg, str(base), explicit, chain + (recipe,))
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ValueError(f"recipe {recipe}: section {section!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            explicit.add(_apply(cfg, f"{section}.{key}", value))


def load_config(recipe: str | None = "builtin_cpu", overrides: list[str] | None = None) -> TrainConfig:
    cfg = TrainConfig()
    explicit: set[str] = set()
    if recipe:
        _apply_recipe(cfg, recipe, explicit)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"config override {item!r}: expected section.field=value")
        key, raw = item.split("=", 1)
        explicit.add(_apply(cfg, key.strip(), yaml.safe_load(raw) if raw.strip() else ""))
    return cfg.validate(explicit)

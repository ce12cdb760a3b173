"""A batched TorchRL environment over the native LIBERO pool: N LIBERO envs, one `EnvBase`.

Replaces TorchRL's `ParallelEnv` of `LiberoEnv` processes (the `vla_grpo` recipe's env side,
`LiberoEnv` + `MultiAction` per worker) by one object whose `step` runs every env's action chunk
through one native call per task engine, in this process:

    from vlarl_fast.compat.torchrl_env import NativeLiberoEnv

    env = NativeLiberoEnv("libero_spatial", task_id=list(range(10)) * 8, chunk_size=8)  # 80 envs
    td = env.reset()                       # td["observation", "image"]: [80, 3, 256, 256] uint8
    td["action"] = chunks                  # [80, 8, 7]: one policy decision = one action chunk
    td = env.step(td)                      # td["next", "success"]: [80, 1] bool

TensorDict schema (TorchRL's `LiberoEnv` schema, with the batch dimension [N] in front):

    ("observation", "image")        uint8 [N, 3, H, W]  `camera` (default agentview), rotated by
                                    180 degrees as `LiberoEnv(flip_image=True)` (its default)
    ("observation", "wrist_image")  uint8 [N, 3, H, W]  with `wrist_camera=` ("robot0_eye_in_hand")
    ("observation", "state")        float32 [N, 9]      eef position, eef quaternion (x, y, z, w),
                                    gripper qpos: `LiberoEnv`'s default `proprio_keys`;
                                    `state="axis_angle"`: OpenVLA-OFT's [N, 8] (eef position,
                                    eef axis-angle, gripper qpos)
    "language_instruction"          NonTensor [N] str   each env's task instruction
    "success"                       bool [N, 1]         the task's goal holds (LIBERO's check)
    "task_id", "init_state_id"      int64 [N, 1]        the LIBERO task index in the suite and
                                    the init state the episode started from
    "group_id"                      int64 [N, 1]        with `group_repeats` (GRPO groups)
    "pixels"                        uint8 [N, H, W, 3]  with `from_pixels=True` (videos)
    "action"                        float32 [N, K, 7]   one chunk of K OSC_POSE deltas + gripper
    "reward"                        float32 [N, 1]      1.0 at the step whose chunk succeeded
    "done", "terminated", "truncated"  bool [N, 1]      terminated = success, truncated = step
                                    limit (`max_episode_steps` control steps) without success

One env step is one chunk, executed control step by control step with LIBERO's success check
after each: an env whose goal holds stops there (the rest of its chunk is not executed), as
`MultiAction` stops a `LiberoEnv` worker at its first done. Frames are rendered once per chunk,
at its end (`LiberoEnv` renders every camera at every control step). Done envs execute nothing
until reset; a TorchRL collector resets them (partial reset through the `"_reset"` mask); a
`"_step"` mask leaves the unmasked envs untouched. Episodes start as LIBERO's do (init state,
then `settle_steps` no-op steps); docs/libero.md says where the native physics differs from
LIBERO's env.

Init-state control follows `LiberoWrapper`, per env (each env behaves like one `LiberoEnv`
worker): `init_state_mode` "random" | "cycle" | "fixed", `init_state_id`, `group_repeats`,
`group_id_offset`, `group_id_mode` "episode" | "init_state". As with `LiberoEnv(num_workers=N)`,
a list-valued `task_id`, `init_state_id`, `group_id_offset` or `init_states` gives one value per
env; any other value is shared by all envs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal, Sequence

import numpy as np
import torch
from tensordict import NonTensorStack, TensorDict, TensorDictBase
from torchrl.data.tensor_specs import Bounded, Categorical, Composite, NonTensor, Unbounded
from torchrl.envs import EnvBase

from vlarl_fast.envs.libero.chunk_env import LiberoChunkEnv
from vlarl_fast.envs.libero.registry import SETTLE_STEPS, suite_tasks

__all__ = ["NativeLiberoEnv"]

ACTION_DIM = 7
STATE_LAYOUTS = {"quat": 9, "axis_angle": 8}


def _per_env(value, n: int, name: str) -> list:
    """`value` once per env: a list must hold one entry per env; anything else is shared."""
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{name}: a list gives one value per env; expected {n} values, "
                             f"got {len(value)}")
        return list(value)
    return [value] * n


class NativeLiberoEnv(EnvBase):
    """`num_envs` LIBERO envs of `task_suite` in one batched TorchRL env; see the module doc.

    Args:
        task_suite: "libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90".
        task_id: the task index in the suite, or a list with one per env.

    Keyword Args:
        num_envs: number of envs (default: len(task_id) for a list, else 1).
        chunk_size: K, the actions per chunk (one env step). Default 8 (OpenVLA-OFT).
        camera, wrist_camera, camera_height, camera_width, flip_image, from_pixels: as
            `LiberoEnv`'s.
        state: "quat" (LiberoEnv's default proprio, [9]) or "axis_angle" (OpenVLA-OFT, [8]).
        init_states: a [M, 1 + nq + nv] array of init states replacing the task's LIBERO init
            states (or a list of such arrays, one per env). Default: LIBERO's.
        init_state_mode, init_state_id, group_repeats, group_id_offset, group_id_mode: as
            `LiberoWrapper`'s, applied per env.
        max_episode_steps: control steps per episode before truncation (default 512 as
            `LiberoEnv`; None: the suite's OpenVLA-OFT evaluation limit).
        settle_steps: no-op steps after setting the init state (default 10).
        num_threads: native worker threads (default: the engine's default).
        seed: seeds each env's init-state sampler (env i: seed + i).
        device: device of the output tensordicts (the engine runs on the CPU).
        scenes: a dict of already built `LiberoScene`s, keyed (suite, task index), to reuse.
        render_options: passed to the engine's renderer (fast=, egl_device=, ...).
    """

    def __init__(self, task_suite: str, task_id: int | Sequence[int] = 0, *,
                 num_envs: int | None = None, chunk_size: int = 8,
                 camera: str = "agentview", wrist_camera: str | None = None,
                 camera_height: int = 256, camera_width: int = 256, flip_image: bool = True,
                 from_pixels: bool = False, state: Literal["quat", "axis_angle"] = "quat",
                 init_states=None,
                 init_state_mode: Literal["random", "cycle", "fixed"] = "random",
                 init_state_id: int | Sequence[int] = 0, group_repeats: int | None = None,
                 group_id_offset: int | Sequence[int] = 0,
                 group_id_mode: Literal["episode", "init_state"] = "episode",
                 max_episode_steps: int | None = 512, settle_steps: int = SETTLE_STEPS,
                 num_threads: int | None = None, seed: int | None = None,
                 device="cpu", scenes: dict | None = None, **render_options):
        if isinstance(task_id, (list, tuple)):
            task_id = list(task_id)
            if num_envs is not None and int(num_envs) != len(task_id):
                raise ValueError(f"num_envs ({num_envs}) and len(task_id) ({len(task_id)}) differ")
            num_envs = len(task_id)
        n = 1 if num_envs is None else int(num_envs)
        if n < 1:
            raise ValueError(f"num_envs: expected >= 1, got {num_envs}")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
        if state not in STATE_LAYOUTS:
            raise ValueError(f"state: expected one of {sorted(STATE_LAYOUTS)}, got {state!r}")
        if init_state_mode not in ("random", "cycle", "fixed"):
            raise ValueError(f"init_state_mode: expected 'random', 'cycle' or 'fixed', got "
                             f"{init_state_mode!r}")
        if group_id_mode not in ("episode", "init_state"):
            raise ValueError(f"group_id_mode: expected 'episode' or 'init_state', got "
                             f"{group_id_mode!r}")
        if group_id_mode == "init_state" and init_state_mode == "random":
            raise ValueError("group_id_mode='init_state' requires init_state_mode='cycle' or 'fixed'")
        if group_repeats is not None and int(group_repeats) < 1:
            raise ValueError(f"group_repeats: expected >= 1, got {group_repeats}")
        super().__init__(device=device, batch_size=torch.Size([n]))

        suite = suite_tasks(task_suite)
        ids = [int(t) for t in _per_env(task_id, n, "task_id")]
        for t in ids:
            if not 0 <= t < len(suite):
                raise ValueError(f"task_id: {task_suite} has tasks 0..{len(suite) - 1}, got {t}")
        self.task_suite = task_suite
        self.tasks = [suite[t] for t in ids]
        self.chunk_size = int(chunk_size)
        self.camera, self.wrist_camera = camera, wrist_camera
        self.from_pixels = bool(from_pixels)
        self.state_layout = state
        self.init_state_mode = init_state_mode
        self.group_repeats = None if group_repeats is None else int(group_repeats)
        self.group_id_mode = group_id_mode
        tables = _per_env(init_states, n, "init_states")
        self._tables = [task.init_states() if tab is None else np.asarray(tab, np.float64)
                        for task, tab in zip(self.tasks, tables)]
        self._init_id = np.array(_per_env(init_state_id, n, "init_state_id"), np.int64)
        for i, tab in enumerate(self._tables):
            if tab.ndim != 2 or not 0 <= self._init_id[i] < len(tab):
                raise ValueError(f"init_state_id: env {i} has init states 0..{len(tab) - 1} "
                                 f"(table shape {tab.shape}), got {int(self._init_id[i])}")
        self._group_offset = np.array(_per_env(group_id_offset, n, "group_id_offset"), np.int64)

        cameras = [camera] + ([wrist_camera] if wrist_camera else [])
        self.pool = LiberoChunkEnv(n, num_threads, cameras=cameras, height=camera_height,
                                   width=camera_width,
                                   image_convention="openvla" if flip_image else "opengl",
                                   max_steps=max_episode_steps, settle_steps=settle_steps,
                                   scenes=scenes, **render_options)
        self.is_closed = False
        # Per-env episode bookkeeping (each env is one LiberoWrapper worker).
        self._episodes = np.zeros(n, np.int64)
        self._group_init = np.full(n, -1, np.int64)
        self._current_init = np.zeros(n, np.int64)
        self._group_id = np.zeros(n, np.int64)
        self._rngs = [torch.Generator() for _ in range(n)]
        self._success = np.zeros(n, bool)
        self._done = np.ones(n, bool)  # no episode yet
        self._frames = np.zeros((n, *self.pool.frame_shape()), np.uint8)
        self._state = np.zeros((n, STATE_LAYOUTS[state]), np.float32)
        self._instructions = [t.language for t in self.tasks]
        self._task_ids = torch.tensor(ids, dtype=torch.int64).unsqueeze(-1)
        self._make_specs(n, camera_height, camera_width, len(suite))
        if seed is not None:
            self.set_seed(seed)

    # ------------------------------------------------------------------ specs
    def _make_specs(self, n: int, height: int, width: int, num_tasks: int) -> None:
        dev = self.device
        image = Unbounded(shape=(n, 3, height, width), dtype=torch.uint8, device=dev)
        observation = Composite(
            image=image,
            state=Unbounded(shape=(n, STATE_LAYOUTS[self.state_layout]), dtype=torch.float32,
                            device=dev),
            shape=(n,))
        if self.wrist_camera:
            observation["wrist_image"] = image.clone()
        flag = Categorical(2, shape=(n, 1), dtype=torch.bool, device=dev)
        spec = Composite(
            observation=observation,
            language_instruction=NonTensor(shape=(n,), example_data=self._instructions[0],
                                           device=dev),
            success=flag.clone(),
            task_id=Categorical(num_tasks, shape=(n, 1), dtype=torch.int64, device=dev),
            init_state_id=Categorical(max(len(t) for t in self._tables), shape=(n, 1),
                                      dtype=torch.int64, device=dev),
            shape=(n,))
        if self.group_repeats is not None:
            spec["group_id"] = Unbounded(shape=(n, 1), dtype=torch.int64, device=dev)
        if self.from_pixels:
            spec["pixels"] = Unbounded(shape=(n, height, width, 3), dtype=torch.uint8, device=dev)
        self.observation_spec = spec
        self.action_spec = Bounded(-1.0, 1.0, shape=(n, self.chunk_size, ACTION_DIM),
                                   dtype=torch.float32, device=dev)
        self.reward_spec = Bounded(0.0, 1.0, shape=(n, 1), dtype=torch.float32, device=dev)
        self.done_spec = Composite(done=flag.clone(), terminated=flag.clone(),
                                   truncated=flag.clone(), shape=(n,))

    # ------------------------------------------------------------------ episodes
    def _select_init(self, i: int) -> int:
        """Env i's next init-state index, as `LiberoWrapper._select_init_state` picks it."""
        repeats = self.group_repeats or 1
        group = self._episodes[i] // repeats
        if self.init_state_mode == "fixed":
            return int(self._init_id[i])
        if self.init_state_mode == "cycle":
            return int(group % len(self._tables[i]))
        if self._episodes[i] % repeats == 0 or self._group_init[i] < 0:
            self._group_init[i] = int(torch.randint(len(self._tables[i]), (),
                                                    generator=self._rngs[i]))
        return int(self._group_init[i])

    def _read_state(self, ids: np.ndarray) -> np.ndarray:
        if self.state_layout == "axis_angle":
            return self.pool.proprio(ids)
        out = np.zeros((ids.size, 9))
        groups: dict[int, list[int]] = defaultdict(list)
        for pos, slot in enumerate(ids):
            groups[id(self.pool.slot_engine[slot])].append(pos)
        for pos in groups.values():
            pos = np.asarray(pos)
            task_engine = self.pool.slot_engine[ids[pos[0]]]
            eng, local = task_engine.engine, self.pool.slot_local[ids[pos]]
            obs = eng.spec.observation
            quat = eng.field("xquat")[local, obs["eef_body"]]  # (w, x, y, z)
            out[pos, :3] = eng.field("site_xpos")[local, obs["eef_site"]]
            out[pos, 3:7] = quat[:, [1, 2, 3, 0]]  # robosuite's robot0_eef_quat: (x, y, z, w)
            out[pos, 7:] = eng.qpos[local][:, list(obs["gripper_qpos"])]
        return out

    def _observe(self, ids: np.ndarray) -> None:
        """Renders envs `ids` and reads their robot state into the per-env caches."""
        if ids.size:
            self._frames[ids] = self.pool.render(ids)
            self._state[ids] = self._read_state(ids)

    def _output(self) -> TensorDict:
        """The observation of every env (fresh tensors: collectors keep them)."""
        frames = torch.from_numpy(self._frames)  # [N, C, H, W, 3]
        image = frames[:, 0].permute(0, 3, 1, 2).contiguous()
        td = {
            "observation": {"image": image, "state": torch.from_numpy(self._state.copy())},
            "language_instruction": NonTensorStack(*self._instructions),
            "success": torch.from_numpy(self._success.copy()).unsqueeze(-1),
            "task_id": self._task_ids.clone(),
            "init_state_id": torch.from_numpy(self._current_init.copy()).unsqueeze(-1),
        }
        if self.wrist_camera:
            td["observation"]["wrist_image"] = frames[:, 1].permute(0, 3, 1, 2).contiguous()
        if self.group_repeats is not None:
            td["group_id"] = torch.from_numpy(self._group_id.copy()).unsqueeze(-1)
        if self.from_pixels:
            td["pixels"] = frames[:, 0].clone()
        return TensorDict(td, batch_size=self.batch_size, device=self.device)

    def _flags(self, out: TensorDict) -> TensorDict:
        success = torch.from_numpy(self._success.copy()).unsqueeze(-1)
        done = torch.from_numpy(self._done.copy()).unsqueeze(-1)
        out["done"], out["terminated"], out["truncated"] = done, success.clone(), done & ~success
        return out

    def _mask(self, tensordict: TensorDictBase | None, key: str) -> np.ndarray:
        n = self.batch_size[0]
        value = None if tensordict is None else tensordict.get(key, None)
        if value is None:
            return np.ones(n, bool)
        return value.reshape(n).cpu().numpy().astype(bool)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        ids = np.nonzero(self._mask(tensordict, "_reset"))[0]
        if ids.size:
            chosen = [self._select_init(int(i)) for i in ids]
            for i, c in zip(ids, chosen):
                self._current_init[i] = c
                if self.group_repeats is not None:
                    group = (c if self.group_id_mode == "init_state"
                             else self._episodes[i] // self.group_repeats)
                    self._group_id[i] = self._group_offset[i] + group
                self._episodes[i] += 1
            states = [self._tables[i][c] for i, c in zip(ids, chosen)]
            self.pool.reset(states, [self.tasks[i] for i in ids], ids, render=False)
            self._success[ids] = False
            self._done[ids] = False
            self._observe(ids)
        return self._flags(self._output())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        n = self.batch_size[0]
        actions = tensordict.get("action").detach().cpu().numpy().astype(np.float64)
        if actions.shape != (n, self.chunk_size, ACTION_DIM):
            raise ValueError(f"action: expected shape ({n}, {self.chunk_size}, {ACTION_DIM}), "
                             f"got {tuple(actions.shape)}")
        active = self._mask(tensordict, "_step") & ~self._done
        ids = np.nonzero(active)[0]
        if ids.size:
            result = self.pool.step_chunk(actions[ids], ids, render=False)
            self._success[ids] = result.success
            self._done[ids] = result.done
            self._observe(ids)
        out = self._output()
        out["reward"] = torch.from_numpy(
            (self._success & active).astype(np.float32)).unsqueeze(-1)
        return self._flags(out)

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            for i, rng in enumerate(self._rngs):
                rng.manual_seed(int(seed) + i)
            self._group_init[:] = -1

    # ------------------------------------------------------------------ info
    @property
    def episode_steps(self) -> np.ndarray:
        """[N] int64: control steps each env's episode has executed."""
        return self.pool.episode_steps

    def close(self, *, raise_if_closed: bool = True) -> None:
        if not self.is_closed:
            self.pool.close()
        super().close(raise_if_closed=raise_if_closed)

"""Demonstrations in the HDF5 layout of LIBERO's own datasets (LIBERO's scripts/create_dataset.py),
so the files serve any LIBERO data loader (robomimic, OpenVLA-OFT's regenerate script, LeRobot's
converters) as well as this project's SFT.

    data                       attrs: env_name, problem_info (JSON: problem_name, domain_name,
                               language_instruction), bddl_file_name, bddl_file_content, env_args
                               (JSON), macros_image_convention, num_demos, total
    data/demo_<i>/actions      [T, 7] float64: OSC_POSE deltas + gripper (-1 open, +1 close)
    data/demo_<i>/states       [T, 1 + nq + nv] float64: robosuite flattened state before each action
    data/demo_<i>/robot_states [T, 9]: gripper qpos (2), eef position (3), eef quaternion (4, x y z w)
    data/demo_<i>/rewards      [T] uint8, 1 at the last step;  dones [T] uint8, 1 at the last step
    data/demo_<i>/obs/agentview_rgb [T, H, W, 3] uint8 (the frame before each action)
    data/demo_<i>/obs/eye_in_hand_rgb [T, H, W, 3] uint8 (the wrist camera's; when recorded)
    data/demo_<i>/obs/{ee_pos [T, 3], ee_ori [T, 3] axis-angle, ee_states [T, 6],
                       gripper_states [T, 2], joint_states [T, 7]}
    demo attrs: num_samples, init_state (the LIBERO init state the episode started from),
                model_file (empty here: the task's BDDL file rebuilds the model)

Added attributes (not in LIBERO's files, ignored by its loaders): data.attrs["image_convention"]
(the engine's, e.g. "openvla": frames as OpenVLA-OFT sees them) and per demo "init_state_id",
"success", "task_suite", "task_index".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OBS_KEYS = ("agentview_rgb", "ee_pos", "ee_ori", "ee_states", "gripper_states", "joint_states")
# LIBERO's dataset key of each camera's frames; agentview's is required, the wrist camera's optional
CAMERA_KEYS = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}
OPTIONAL_OBS_KEYS = ("eye_in_hand_rgb",)  # written when an episode has them


@dataclass
class Episode:
    """One demonstration: per control step, the state and observations before the action."""

    actions: np.ndarray  # [T, 7]
    states: np.ndarray  # [T, S]
    obs: dict  # OBS_KEYS -> [T, ...]
    robot_states: np.ndarray  # [T, 9]
    init_state: np.ndarray  # [S]
    init_state_id: int = -1
    success: bool = True
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def _require_h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the libero extra
        raise ImportError("writing LIBERO demo files needs h5py: pip install 'vlarl-fast[libero]'") from e
    return h5py


def write_demos(path, task, episodes: list[Episode], *, image_convention: str) -> Path:
    """Writes `episodes` of one LIBERO task (`LiberoTask`) to `path` in LIBERO's layout."""
    h5py = _require_h5py()
    if not episodes:
        raise ValueError("write_demos: expected at least one episode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bddl = Path(task.bddl_file).read_text()
    problem = "LIBERO_Tabletop_Manipulation"
    for line in bddl.splitlines():
        if line.strip().startswith("(define (problem"):
            problem = line.split("(problem", 1)[1].strip().rstrip(")").strip()
    problem_info = {"problem_name": problem, "domain_name": "robosuite", "language_instruction": task.language}
    env_args = {"type": 1, "env_name": problem, "problem_name": problem, "bddl_file": task.bddl_file,
                "env_kwargs": {"robots": ["Panda"], "controller": "OSC_POSE", "control_freq": 20}}
    with h5py.File(path, "w") as f:
        grp = f.create_group("data")
        grp.attrs["env_name"] = problem
        grp.attrs["problem_info"] = json.dumps(problem_info)
        grp.attrs["bddl_file_name"] = task.bddl_file
        grp.attrs["bddl_file_content"] = bddl
        grp.attrs["env_args"] = json.dumps(env_args)
        grp.attrs["macros_image_convention"] = "opengl" if image_convention == "opengl" else "opencv"
        grp.attrs["image_convention"] = image_convention
        total = 0
        for i, ep in enumerate(episodes):
            g = grp.create_group(f"demo_{i}")
            n = len(ep)
            for key, value in (("actions", ep.actions), ("states", ep.states), ("robot_states", ep.robot_states)):
                if len(value) != n:
                    raise ValueError(f"write_demos: demo {i} {key} has {len(value)} rows, actions {n}")
                g.create_dataset(key, data=np.asarray(value, dtype=np.float64))
            last = np.zeros(n, np.uint8)
            last[-1] = 1
            g.create_dataset("rewards", data=last if ep.success else np.zeros(n, np.uint8))
            g.create_dataset("dones", data=last)
            obs = g.create_group("obs")
            for key in OBS_KEYS + tuple(k for k in OPTIONAL_OBS_KEYS if k in ep.obs):
                if key not in ep.obs:
                    raise ValueError(f"write_demos: demo {i} has no obs[{key!r}]")
                value = np.asarray(ep.obs[key])
                if len(value) != n:
                    raise ValueError(f"write_demos: demo {i} obs[{key!r}] has {len(value)} rows, actions {n}")
                obs.create_dataset(key, data=value, compression="gzip" if value.dtype == np.uint8 else None)
            g.attrs["num_samples"] = n
            g.attrs["init_state"] = np.asarray(ep.init_state, dtype=np.float64)
            g.attrs["model_file"] = ""
            g.attrs["init_state_id"] = int(ep.init_state_id)
            g.attrs["success"] = bool(ep.success)
            g.attrs["task_suite"] = task.suite
            g.attrs["task_index"] = int(task.index)
            total += n
        grp.attrs["num_demos"] = len(episodes)
        grp.attrs["total"] = total
    return path


@dataclass
class DemoFile:
    """What SFT needs from a LIBERO demo file: the task's instruction and each demo's frames and actions."""

    language: str
    bddl_file_name: str
    image_convention: str
    frames: list  # per demo [T, H, W, 3] uint8 (agentview)
    actions: list  # per demo [T, 7]
    init_state_ids: list
    # per demo [T, 8] OpenVLA-OFT's LIBERO state before each action (ee_pos, ee_ori as axis-angle,
    # gripper_states), as `LiberoTaskEngine.proprio` gives it in rollouts; None where a demo lacks them
    proprio: list = field(default_factory=list)
    wrist_frames: list = field(default_factory=list)  # per demo [T, H, W, 3] uint8, None where not recorded


def read_demos(path) -> DemoFile:
    """Reads a LIBERO-layout demo file (ours, or one of LIBERO's own datasets)."""
    h5py = _require_h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demo file {path} does not exist")
    with h5py.File(path, "r") as f:
        if "data" not in f:
            raise ValueError(f"demo file {path}: no 'data' group (not LIBERO's dataset layout)")
        grp = f["data"]
        info = json.loads(grp.attrs["problem_info"])
        names = sorted((k for k in grp.keys() if k.startswith("demo_")), key=lambda k: int(k.split("_")[1]))
        frames, actions, ids, proprio, wrist = [], [], [], [], []
        for name in names:
            d = grp[name]
            frames.append(np.asarray(d["obs/agentview_rgb"][()], dtype=np.uint8))
            wrist.append(np.asarray(d["obs/eye_in_hand_rgb"][()], dtype=np.uint8) if "obs/eye_in_hand_rgb" in d
                         else None)
            actions.append(np.asarray(d["actions"][()], dtype=np.float64))
            ids.append(int(d.attrs.get("init_state_id", -1)))
            keys = ("obs/ee_pos", "obs/ee_ori", "obs/gripper_states")
            proprio.append(np.concatenate([np.asarray(d[k][()], dtype=np.float64) for k in keys], axis=1)
                           if all(k in d for k in keys) else None)
        convention = grp.attrs.get("image_convention", grp.attrs.get("macros_image_convention", "opengl"))
        return DemoFile(language=info["language_instruction"], bddl_file_name=str(grp.attrs["bddl_file_name"]),
                        image_convention=str(convention), frames=frames, actions=actions, init_state_ids=ids,
                        proprio=proprio, wrist_frames=wrist)

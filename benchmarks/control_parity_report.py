"""Measures how far the native engine is from robosuite 1.4.0's env.step (the numbers in
docs/control.md): per scene and plan, the largest |engine - robosuite| in qpos, qvel, eef pose
and arm torques (ctrl) after 1, 8 and 50 control steps, next to robosuite's own divergence when
its initial arm qpos is scaled by 1 +- 1e-15. Uses the plans of tests/control.

Usage: python benchmarks/control_parity_report.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.control import robosuite_ref as R  # noqa: E402
from vlarl_fast import Engine  # noqa: E402

K = 50


def main() -> None:
    warnings.filterwarnings("ignore")
    print(f"{'scene':13s}{'plan':14s}{'step':>5s}{'qpos':>10s}{'qvel':>10s}{'eef_pos':>10s}"
          f"{'eef_quat':>10s}{'ctrl':>10s}{'rs self qpos':>14s}")
    for scene in R.SCENES:
        env = R.make_env(scene)
        rng = np.random.default_rng(R.SCENES.index(scene))
        states = R.diverse_states(env, rng, 2)
        plans = [("random", states[0], R.random_actions(rng, K)),
                 ("random", states[1], R.random_actions(rng, K)),
                 ("reach-grasp", states[0], R.reach_grasp_actions(env, scene, states[0], rng, K)),
                 ("grasp", states[1], R.grasp_actions(rng, K))]
        with Engine.from_robosuite(env, 1, 1) as engine:
            for name, state, actions in plans:
                ref = R.rollout(env, state, actions)
                sens = R.self_divergence(env, state, actions, ref)
                for k in (1, 8, 50):
                    R.start(env, state)
                    for a in actions[:k]:
                        env.step(a)
                    rs_ctrl = env.sim.data.ctrl.copy()
                    engine.set_state(state)
                    res = engine.step_chunk(actions[None, :k], render="none")
                    err = [np.abs(engine.qpos[0] - ref["qpos"][k - 1]).max(),
                           np.abs(engine.qvel[0] - ref["qvel"][k - 1]).max(),
                           np.abs(res.eef_pos[0, -1] - ref["eef_pos"][k - 1]).max(),
                           np.abs(res.eef_quat[0, -1] - ref["eef_quat"][k - 1]).max(),
                           np.abs(engine.ctrl[0] - rs_ctrl).max()]
                    print(f"{scene:13s}{name:14s}{k:5d}" + "".join(f"{e:10.1e}" for e in err)
                          + f"{sens['pos'][k - 1]:14.1e}")


if __name__ == "__main__":
    main()

"""`LiberoSuccess.check_after_step` (the rewards' cross-check, `rollout/reward_mismatch`) equals
LIBERO's own `done` after every `env.step`, from the state the step left alone (qpos, qvel).

The cases sit on the boundary where a forward pass at that state disagrees with `done`: a bowl
dropped onto the stove's cook region from up to 16 cm, thrown sideways and down, lands and
bounces. `done` reads the poses and contacts of the last physics substep before its integration;
the check recovers them by integrating the positions back one timestep."""

import numpy as np

from vlarl_fast.envs.libero.registry import NOOP_ACTION, get_task
from vlarl_fast.envs.libero.success import LiberoSuccess

SUITE = "libero_goal"
GOAL = [("on", "akita_black_bowl_1", "flat_stove_1_cook_region")]
TRIALS, STEPS = 24, 4


def _dropped_bowl(scene, base, rng):
    sim = scene.robosuite_env.sim
    model = sim.model._model
    sim.set_state_from_flattened(base)
    sim.forward()
    joint = model.joint("akita_black_bowl_1_joint0")
    qadr, vadr = model.jnt_qposadr[joint.id], model.jnt_dofadr[joint.id]
    state = base.copy()
    above = sim.data.get_site_xpos("flat_stove_1_cook_region") + [0.0, 0.0, 0.04 + rng.uniform(0.0, 0.12)]
    state[1 + qadr:1 + qadr + 3] = above
    state[1 + model.nq + vadr:1 + model.nq + vadr + 3] = rng.uniform(-0.6, 0.6, 3) * [1.0, 1.0, 2.0]
    return state


def _forward_check(scene, qpos, qvel):
    """The check this replaced: a forward pass at the integrated state itself."""
    sim = scene.robosuite_env.sim
    sim.set_state_from_flattened(np.concatenate([[0.0], qpos, qvel]))
    sim.forward()
    return bool(scene.robosuite_env._check_success())


def test_check_after_step_equals_liberos_done(get_scene, get_reference):
    scene, ref = get_scene(SUITE), get_reference(SUITE)
    saved = (list(scene.robosuite_env.parsed_problem["goal_state"]),
             list(ref.env.parsed_problem["goal_state"]))
    for env in (scene.robosuite_env, ref.env):
        env.parsed_problem["goal_state"] = [list(g) for g in GOAL]
    check = LiberoSuccess(scene)
    base = get_task(SUITE, 0).init_states()[0]
    rng = np.random.default_rng(0)
    done_flags, after_step, forward = [], [], []
    try:
        ref.seed(0)
        ref.reset()  # once: TRIALS x STEPS steps stay far below the episode's horizon
        for _ in range(TRIALS):
            ref.set_init_state(_dropped_bowl(scene, base, rng))
            for _ in range(STEPS):
                _, _, done, _ = ref.step(NOOP_ACTION)
                state = ref.env.sim.get_state().flatten()
                qpos, qvel = state[1:1 + scene.model.nq], state[1 + scene.model.nq:]
                done_flags.append(bool(done))
                after_step.append(check.check_after_step(qpos, qvel))
                forward.append(_forward_check(scene, qpos, qvel))
    finally:
        scene.robosuite_env.parsed_problem["goal_state"] = saved[0]
        ref.env.parsed_problem["goal_state"] = saved[1]
    done_flags, after_step, forward = map(np.array, (done_flags, after_step, forward))
    assert 0 < done_flags.sum() < done_flags.size, "the drops should land on the goal at some steps only"
    assert (forward != done_flags).any(), "no case on the boundary: the cases do not test the check"
    mismatched = np.nonzero(after_step != done_flags)[0]
    assert mismatched.size == 0, f"check_after_step differs from LIBERO's done at steps {mismatched.tolist()}"

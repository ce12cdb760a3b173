"""Success detection fires: for each LIBERO predicate kind, states constructed by placing objects
or setting joints are scored alike by the engine and by LIBERO's own env, step by step: success
where the goal holds, none where it does not."""

import numpy as np
import pytest

from vlarl_fast.envs.libero.registry import NOOP_ACTION, get_task
from vlarl_fast.envs.libero.task_engine import LiberoTaskEngine

STEPS = 4


def _joint_state(scene, base, joint, value):
    model = scene.robosuite_env.sim.model
    state = base.copy()
    state[1 + model.get_joint_qpos_addr(joint)] = value
    return state


def _moving_joint_state(scene, base, joint, value, velocity):
    """A joint at `value` moving at `velocity`: the goal starts to hold a few steps later."""
    model = scene.robosuite_env.sim.model
    state = _joint_state(scene, base, joint, value)
    state[1 + model.nq + model.jnt_dofadr[model.joint_name2id(joint)]] = velocity
    return state


def _place(scene, base, obj, target_xyz):
    """Puts a free object's body at target_xyz (orientation kept, at rest)."""
    sim = scene.robosuite_env.sim
    joint = scene.robosuite_env.get_object(obj).joints[-1]
    start, _ = sim.model.get_joint_qpos_addr(joint)
    vstart = sim.model.jnt_dofadr[sim.model.joint_name2id(joint)]
    state = base.copy()
    state[1 + start:1 + start + 3] = target_xyz
    nq = sim.model.nq
    state[1 + nq + vstart:1 + nq + vstart + 6] = 0.0
    return state


def _positions(scene, base, body=None, site=None):
    sim = scene.robosuite_env.sim
    sim.set_state_from_flattened(base)
    sim.forward()
    if site is not None:
        return sim.data.get_site_xpos(site).copy()
    return sim.data.body_xpos[scene.robosuite_env.obj_body_id[body]].copy()


def _cases():
    """(suite, goal, builder(scene, base) -> (state where it holds, state where it does not))."""
    goal_scene = "libero_goal"
    return [
        (goal_scene, [("open", "wooden_cabinet_1_middle_region")],
         lambda s, b: (_moving_joint_state(s, b, "wooden_cabinet_1_middle_level", -0.12, -0.4),
                       _joint_state(s, b, "wooden_cabinet_1_middle_level", 0.0))),
        (goal_scene, [("close", "wooden_cabinet_1_middle_region")],
         lambda s, b: (_joint_state(s, b, "wooden_cabinet_1_middle_level", 0.003),
                       _joint_state(s, b, "wooden_cabinet_1_middle_level", -0.15))),
        (goal_scene, [("turnon", "flat_stove_1")],
         lambda s, b: (_joint_state(s, b, "flat_stove_1_button", 1.0),
                       _joint_state(s, b, "flat_stove_1_button", -0.003))),
        (goal_scene, [("turnoff", "flat_stove_1")],
         lambda s, b: (_joint_state(s, b, "flat_stove_1_button", -0.003),
                       _joint_state(s, b, "flat_stove_1_button", 1.0))),
        (goal_scene, [("on", "akita_black_bowl_1", "plate_1")],
         lambda s, b: (_place(s, b, "akita_black_bowl_1",
                              _positions(s, b, body="plate_1") + [0, 0, 0.02]), b.copy())),
        (goal_scene, [("on", "akita_black_bowl_1", "flat_stove_1_cook_region")],
         lambda s, b: (_place(s, b, "akita_black_bowl_1",
                              _positions(s, b, site="flat_stove_1_cook_region") + [0, 0, 0.03]),
                       b.copy())),
        ("libero_object", [("in", "alphabet_soup_1", "basket_1_contain_region")],
         lambda s, b: (_place(s, b, "alphabet_soup_1",
                              _positions(s, b, body="basket_1") + [0, 0, 0.06]), b.copy())),
    ]


def _libero_done(ref, state):
    """LIBERO's success after set_init_state and after each no-op step (fresh episode)."""
    ref.seed(0)
    ref.reset()
    ref.set_init_state(state)
    flags = []
    for _ in range(STEPS):
        _, _, done, _ = ref.step(NOOP_ACTION)
        flags.append(bool(done))
    return flags


@pytest.mark.parametrize("case", range(7), ids=lambda i: "-".join(map(str, _cases()[i][1][0])))
def test_goal_predicates_fire_like_libero(case, get_scene, get_reference):
    suite, goal, build = _cases()[case]
    scene, ref = get_scene(suite), get_reference(suite)
    base = get_task(suite, 0).init_states()[0]
    holds, fails = build(scene, base)
    saved = (list(scene.robosuite_env.parsed_problem["goal_state"]),
             list(ref.env.parsed_problem["goal_state"]))
    scene.robosuite_env.parsed_problem["goal_state"] = [list(g) for g in goal]
    ref.env.parsed_problem["goal_state"] = [list(g) for g in goal]
    eng = LiberoTaskEngine(scene, num_envs=2, num_threads=2, cameras=None, settle_steps=0)
    try:
        want = [_libero_done(ref, holds), _libero_done(ref, fails)]
        eng.reset(init_states=np.stack([holds, fails]))
        got = []
        for _ in range(STEPS):
            got.append(eng.step(np.tile(NOOP_ACTION, (2, 1, 1)), render=False).success.copy())
        got = np.array(got).T  # [env, step]
        for env in range(2):
            # The engine stops an env at its first success: compare up to it.
            expected = np.maximum.accumulate(np.array(want[env], dtype=bool))
            assert got[env].tolist() == expected.tolist(), (goal, env, want[env], got[env])
        assert got[0].any(), f"{goal}: the constructed state never satisfied the goal"
        assert not got[1].any(), f"{goal}: the control state satisfied the goal"
        # The same episodes, the first step then one chunk: each env stops at its first success
        # step (every predicate kind compiles to native predicates: one native call, native
        # early stop).
        assert eng.native_predicates is not None, goal
        eng.reset(init_states=np.stack([holds, fails]))
        eng.step(np.tile(NOOP_ACTION, (2, 1, 1)), render=False)  # the episode's first step
        out = eng.step(np.tile(NOOP_ACTION, (2, STEPS - 1, 1)), render=False)
        for env in range(2):
            first = want[env].index(True) + 1 if any(want[env]) else STEPS
            assert out.success[env] == any(want[env])
            assert out.executed[env] == max(first - 1, 0), (goal, env, want[env])
            assert eng.episode_steps[env] == first
    finally:
        eng.close()
        scene.robosuite_env.parsed_problem["goal_state"] = saved[0]
        ref.env.parsed_problem["goal_state"] = saved[1]

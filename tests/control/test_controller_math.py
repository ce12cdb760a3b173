"""The controller's building blocks against robosuite's own functions."""

import numpy as np
import robosuite.utils.transform_utils as T

from vlarl_fast._native import C


def test_goal_rotation_is_bitwise_robosuite():
    """quat2mat(axisangle2quat(v)) with robosuite's float32 steps (numba quat2mat, BLAS sdot)."""
    rng = np.random.default_rng(0)
    vs = np.concatenate([
        rng.uniform(-0.5, 0.5, size=(8000, 3)),  # OSC_POSE's scaled rotation deltas
        rng.normal(size=(4000, 3)) * rng.uniform(0, 1e-3, size=(4000, 1)),  # tiny
        rng.uniform(-4, 4, size=(4000, 3)),  # large
        np.array([[0.0, 0.0, 0.0], [1e-300, 0.0, 0.0], [0.0, 0.0, np.pi]]),
    ])
    mismatches = [v for v in vs
                  if not np.array_equal(C.osc_axisangle_to_mat(v), T.quat2mat(T.axisangle2quat(v)))]
    assert not mismatches, f"{len(mismatches)} of {len(vs)} differ, e.g. v = {mismatches[0]}"


def test_inverse_matches_numpy_inv_and_pinv():
    rng = np.random.default_rng(1)
    for n in (3, 6, 7):
        for _ in range(50):
            b = rng.normal(size=(n, n))
            spd = b @ b.T + 0.1 * np.eye(n)
            inv = np.linalg.inv(spd)
            assert np.abs(C.osc_inverse(spd) - inv).max() <= 1e-12 * np.abs(inv).max()
            b = rng.normal(size=(n, n - 1))
            singular = b @ b.T  # rank n - 1: pinv drops the rounding-level eigenvalue
            pinv = np.linalg.pinv(singular)
            assert np.abs(C.osc_inverse(singular) - pinv).max() <= 1e-10 * np.abs(pinv).max()
    exact = np.zeros((6, 6))
    exact[:3, :3] = 4 * np.eye(3)
    np.testing.assert_allclose(C.osc_inverse(exact), np.linalg.pinv(exact), atol=1e-15)

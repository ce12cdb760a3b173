"""Built-in MuJoCo scenes that need no downloads (benchmarks and tests use them)."""

from __future__ import annotations

import numpy as np


def contact_pile_xml(num_objects: int = 24, seed: int = 0) -> str:
    """A pile of boxes, spheres and capsules dropped on a plane and into each other: a scene
    dominated by contacts (dozens of active contacts once it settles), with one motorised hinge
    arm sweeping through the pile so that controls matter."""
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(num_objects):
        x, y = rng.uniform(-0.25, 0.25, size=2)
        z = 0.15 + 0.12 * i
        kind = ("box", "sphere", "capsule")[i % 3]
        size = {"box": "0.04 0.04 0.04", "sphere": "0.045", "capsule": "0.03 0.04"}[kind]
        bodies.append(
            f'<body name="obj{i}" pos="{x:.4f} {y:.4f} {z:.4f}"><freejoint/>'
            f'<geom type="{kind}" size="{size}" density="600" rgba="{0.2 + 0.6 * (i % 2)} 0.4 0.7 1"/>'
            f"</body>"
        )
    return f"""
<mujoco model="contact_pile">
  <option timestep="0.002"/>
  <size memory="20M"/>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="1 1 0.1" rgba="0.8 0.8 0.8 1"/>
    <geom type="box" pos="0 0.35 0.1" size="0.35 0.02 0.1"/>
    <geom type="box" pos="0 -0.35 0.1" size="0.35 0.02 0.1"/>
    <geom type="box" pos="0.35 0 0.1" size="0.02 0.35 0.1"/>
    <geom type="box" pos="-0.35 0 0.1" size="0.02 0.35 0.1"/>
    <body name="sweeper" pos="0 0 0.06">
      <joint name="sweep" type="hinge" axis="0 0 1" damping="0.5"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02" density="2000"/>
    </body>
    {''.join(bodies)}
  </worldbody>
  <actuator><motor name="sweep" joint="sweep" gear="5" ctrlrange="-1 1" ctrllimited="true"/></actuator>
</mujoco>
"""

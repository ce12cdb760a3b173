"""Chunked control on the engine: robosuite's OSC_POSE natively, success predicates, episodes.

(Filled in by the control work: `Engine.from_robosuite`, `Engine.step_chunk`.)
"""


class ControlMixin:
    """Methods of `Engine` that execute action chunks through the native controller."""

"""Offscreen rendering inside the engine's worker threads (one EGL context per thread).

(Filled in by the rendering work: `Engine.render`, the `cameras=`/`height=`/`width=` options.)
"""


class RenderMixin:
    """Methods of `Engine` that render cameras into its zero-copy frame buffer."""

    def _init_rendering(self, cameras=None, height=256, width=256, **options):
        if cameras:
            raise NotImplementedError("rendering is not built yet")
        self.cameras = []

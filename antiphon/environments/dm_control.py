"""DeepMind Control Suite tasks (state features) as dm_env environments.

Rendering backend: dm_control picks an OpenGL backend once, when it is first imported. On a
machine without a display its automatic choice is GLFW, which cannot open a context there, and
some tasks need one even for state observations (quadruped-escape uploads its terrain to the GPU
in reset()). So when MUJOCO_GL is unset and there is no display we choose a headless backend:
EGL if libEGL is present and a headless display initialises, else OSMesa if libOSMesa is present,
else "disable" (every task but quadruped-escape works). An explicit MUJOCO_GL always wins.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Any

import dm_env


def _try_backend(backend: str) -> bool:
    """Imports dm_control's renderer with MUJOCO_GL=backend; False (and undone) if that fails."""
    os.environ["MUJOCO_GL"] = backend
    try:
        import dm_control._render  # noqa: F401  (the import itself selects the backend)
    except Exception:  # ImportError or an OpenGL error while initialising the display
        del os.environ["MUJOCO_GL"]
        # A failed import leaves no dm_control._render module behind, so a later import picks
        # again with the next backend. egl_renderer sets PYOPENGL_PLATFORM; undo that too.
        if os.environ.get("PYOPENGL_PLATFORM") == backend:
            del os.environ["PYOPENGL_PLATFORM"]
        return False
    return True


def _configure_mujoco_gl() -> None:
    """Choose a headless MUJOCO_GL when none is set and there is no display (see module doc)."""
    if "MUJOCO_GL" in os.environ or "dm_control._render" in sys.modules:
        return  # the user chose, or dm_control already did
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return  # a desktop: let dm_control pick GLFW as usual
    candidates = [("egl", "EGL"), ("osmesa", "OSMesa")]
    for backend, library in candidates:
        if ctypes.util.find_library(library) and _try_backend(backend):
            return
    os.environ["MUJOCO_GL"] = "disable"


_configure_mujoco_gl()

__all__ = ["all_tasks", "load"]


def all_tasks() -> list[tuple[str, str]]:
    """Every (domain, task) pair in dm_control.suite.ALL_TASKS, in the suite's order."""
    from dm_control import suite

    return [(domain, task) for domain, task in suite.ALL_TASKS]


def load(domain: str, task: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    """suite.load(domain, task) with `task_kwargs['random'] = seed`, unwrapped.

    kwargs pass through to suite.load: `task_kwargs` (merged with the seed; e.g.
    {'time_limit': 10} in seconds), `environment_kwargs` (e.g. {'n_sub_steps': 2}) and
    `visualize_reward`.
    """
    # Imported here so that `import antiphon.environments` stays cheap (no MuJoCo load).
    from dm_control import suite

    task_kwargs = dict(kwargs.pop("task_kwargs", None) or {})
    if seed is not None or "random" not in task_kwargs:
        task_kwargs["random"] = seed
    return suite.load(domain, task, task_kwargs=task_kwargs, **kwargs)

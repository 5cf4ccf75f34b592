"""Ray hosts switch JAX to synchronous CPU dispatch only where every node they host asks for it
(actors, evaluators), never in a process that also hosts a learner. Process-wide, so each case
runs in its own interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import jax
from antiphon.launch import experiments, ray
ray._set_cpu_dispatch([{}])
print(jax.config.values["jax_cpu_enable_async_dispatch"])
"""


@pytest.mark.parametrize(
    "specs, expected_async",
    [
        ('{"constructor": experiments.ActorNode}', "False"),
        ('{"constructor": experiments.EvaluatorNode}', "False"),
        ('{"constructor": experiments.LearnerNode}', "True"),
        (
            '{"constructor": experiments.ActorNode}, {"constructor": experiments.LearnerNode}',
            "True",
        ),
        ('{"kind": "reverb"}', "True"),
    ],
)
def test_sync_dispatch_only_in_actor_and_evaluator_processes(specs, expected_async):
    script = SCRIPT.replace("[{}]", f"[{specs}]")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == expected_async

"""Range checks every agent config gets from its field names, before its own `validate()`.

Configs share a vocabulary (`*_learning_rate`, `batch_size`, `num_*`, `discount`, ...), so the
ranges those names imply are checked here once; a config's `validate()` adds what is particular
to it (relations between fields such as `v_min < v_max`, choices). `FREE_FIELDS` lists numeric
fields any finite value is valid for; a numeric field that no rule and no list names is a
field nobody has decided the range of (tests/launch/test_cli_bad_values.py fails on it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

# (pattern, test, what the value must be)
_RULES: tuple[tuple[str, Any, str], ...] = (
    (r"(^|_)learning_rate$", lambda v: v > 0, "> 0"),
    (r"^discount$", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    (r"^tau$", lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    # before "epsilon" below
    (r"^(epsilons|reward_scales)$", lambda v: all(x > 0 for x in v), "> 0 each"),
    (r"_layer_sizes$", lambda v: len(v) >= 1 and all(x >= 1 for x in v), "sizes >= 1"),
    (
        r"^(batch_size|sgd_steps_per_call|n_step|target_update_period|variable_update_period"
        r"|policy_delay|min_replay_size|max_replay_size|prefetch_size|cwp_samples|teacher_samples"
        r"|trace_length|sequence_period|lstm_size|torso_size|num_[a-z_]+)$",
        lambda v: v >= 1,
        ">= 1",
    ),
    (
        r"^(beta|weight_clip|alpha|cwp_temperature|([a-z]+_)?init_scale|([a-z]+_)?min_scale"
        r"|samples_per_insert|reward_scale"
        r"|normalization_epsilon|([a-z]+_)?temperature|[a-z_]*epsilon[a-z_]*)$",
        lambda v: v > 0,
        "> 0",
    ),
    (
        r"^preferences$",
        lambda v: len(v) >= 1 and all(x >= 0 for x in v) and sum(v) > 0,
        "weights >= 0 with a positive sum",
    ),
    (
        r"^(priority_eta|priority_exponent|importance_sampling_exponent|demo_ratio)$",
        lambda v: 0.0 <= v <= 1.0,
        "in [0, 1]",
    ),
    (
        r"^(max_gradient_norm|burn_in_length|sigma|policy_noise|noise_clip|exploration_sigma"
        r"|([a-z]+_)?reg_weight|sarsa_steps)$",
        lambda v: v >= 0,
        ">= 0",
    ),
)

# Numeric fields with no range of their own (relations are the config's validate()).
FREE_FIELDS = frozenset({"v_min", "v_max"})


def rule_for(name: str) -> tuple[Any, str] | None:
    """(test, description) of the rule for field `name`, or None."""
    for pattern, test, what in _RULES:
        if re.search(pattern, name):
            return test, what
    return None


def check_fields(config: Any) -> None:
    """Raises ValueError (one line) for a numeric field outside the range its name implies, or
    not finite."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float | tuple):
            continue
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{field.name} must be finite (got {value})")
        rule = rule_for(field.name)
        if rule is not None and not rule[0](value):
            raise ValueError(f"{field.name} must be {rule[1]} (got {value})")


def validate(config: Any) -> None:
    """The name rules, then the config's own `validate()`."""
    check_fields(config)
    config.validate()

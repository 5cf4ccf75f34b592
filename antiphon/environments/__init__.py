"""Environments: names -> dm_env environments with antiphon's default wrappers.

    from antiphon.environments import make_environment
    env = make_environment("dmc:cartpole-swingup", seed=0)

Importing this package is cheap: dm_control and gymnasium load when an environment is built.
"""

from antiphon.environments.registry import (
    EnvironmentFactory,
    UnknownEnvironmentError,
    environment_factory,
    list_environments,
    make_environment,
    register,
    registered_prefixes,
    reward_range,
    validate_environment_name,
)

__all__ = [
    "EnvironmentFactory",
    "UnknownEnvironmentError",
    "environment_factory",
    "list_environments",
    "make_environment",
    "register",
    "registered_prefixes",
    "reward_range",
    "validate_environment_name",
]

"""Haiku modules shared by agents: LayerNorm MLP torsos, bounded policies, critic heads."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from antiphon.agents import distributional
from antiphon.agents.distributional import MixtureParams
from antiphon.core.types import EnvironmentSpec, zeros_like_spec

# Acme's torso initialiser: small uniform fan-in scaling keeps LayerNorm inputs well conditioned.
uniform_initializer = hk.initializers.VarianceScaling(1.0, "fan_in", "uniform")


class LayerNormMLP(hk.Module):
    """Linear -> LayerNorm -> tanh, then an ELU MLP (Acme's LayerNormMLP).

    The normalised, tanh-squashed first layer makes the torso insensitive to observation scale,
    which matters for unnormalised DM Control features.
    """

    def __init__(
        self, layer_sizes: Sequence[int], activate_final: bool = False, name: str | None = None
    ):
        super().__init__(name=name)
        self._layer_sizes = tuple(layer_sizes)
        self._activate_final = activate_final

    def __call__(self, inputs: jax.Array) -> jax.Array:
        x = hk.Linear(self._layer_sizes[0], w_init=uniform_initializer)(inputs)
        x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
        x = jnp.tanh(x)
        if len(self._layer_sizes) > 1:
            x = hk.nets.MLP(
                self._layer_sizes[1:],
                w_init=uniform_initializer,
                activation=jax.nn.elu,
                activate_final=self._activate_final,
            )(x)
        return x


class NearZeroInitializedLinear(hk.Linear):
    """A linear layer with initial outputs ~0 (a policy starts near the action-box centre)."""

    def __init__(self, output_size: int, scale: float = 1e-4, name: str | None = None):
        super().__init__(output_size, w_init=hk.initializers.VarianceScaling(scale), name=name)


class DeterministicPolicy(hk.Module):
    """obs -> LayerNormMLP -> near-zero linear -> tanh: an action in the canonical [-1, 1] box."""

    def __init__(self, layer_sizes: Sequence[int], action_dim: int, name: str | None = None):
        super().__init__(name=name)
        self._layer_sizes = layer_sizes
        self._action_dim = action_dim

    def __call__(self, observation: jax.Array) -> jax.Array:
        x = LayerNormMLP(self._layer_sizes, activate_final=True)(observation)
        return jnp.tanh(NearZeroInitializedLinear(self._action_dim)(x))


class CategoricalHead(hk.Module):
    """Logits over a fixed support of `num_atoms` atoms (C51)."""

    def __init__(self, num_atoms: int, name: str | None = None):
        super().__init__(name=name)
        self._num_atoms = num_atoms

    def __call__(self, x: jax.Array) -> jax.Array:
        return hk.Linear(self._num_atoms, w_init=uniform_initializer)(x)


class GaussianMixtureHead(hk.Module):
    """K-component 1-D Gaussian mixture head (Shahriari et al. 2022; Acme's parameterisation).

    sigma_k = c * softplus(raw_k) + min_scale with c = init_scale / softplus(0); all three linear
    heads use a tiny initialiser, so at initialisation mu_k ~ 0, weights ~ uniform and
    sigma_k ~ init_scale.
    """

    def __init__(
        self,
        num_components: int = 5,
        init_scale: float = 1e-3,
        min_scale: float = 1e-4,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._k = num_components
        self._init_scale = init_scale
        self._min_scale = min_scale

    def __call__(self, x: jax.Array) -> MixtureParams:
        w_init = hk.initializers.VarianceScaling(1e-5)
        logits = hk.Linear(self._k, w_init=w_init, name="logits")(x)
        locs = hk.Linear(self._k, w_init=w_init, name="locs")(x)
        raw_scales = hk.Linear(self._k, w_init=w_init, name="scales")(x)
        scale_factor = self._init_scale / jax.nn.softplus(0.0)
        scales = scale_factor * jax.nn.softplus(raw_scales) + self._min_scale
        return MixtureParams(logits=logits, locs=locs, scales=scales)


def critic_inputs(observation: jax.Array, action: jax.Array, clip_action: bool) -> jax.Array:
    """Concatenate observation and action; optionally clip the action to [-1, 1] so the critic
    is never asked to extrapolate to out-of-spec actions (exploration noise can leave the box)."""
    if clip_action:
        action = jnp.clip(action, -1.0, 1.0)
    return jnp.concatenate([observation, action], axis=-1)


CRITIC_TYPES = ("scalar", "c51", "mog")


class Critic(typing.NamedTuple):
    """A critic as a Haiku function and what reads its output.

    network(observation, action) -> Q [B] | C51 logits [B, L] | MixtureParams (a Haiku
        function, to transform)
    mean(output) -> Q [B]   (the expected return: the value itself, the categorical mean or
        the mixture mean)
    support: the C51 atoms [L], None for the other types
    """

    network: Callable
    mean: Callable
    support: jax.Array | None


def layer_norm_critic(config, clip_action: bool) -> Critic:
    """The critic `config.critic_type` names (scalar | c51 | mog) on a LayerNormMLP torso of
    `config.critic_layer_sizes`, fed (observation, action) (`critic_inputs`).

    c51 reads `num_atoms`, `v_min`, `v_max`; mog reads `num_components`, `init_scale`,
    `min_scale`. The scalar head is acme MPO's: a linear layer with a TruncatedNormal(0.01)
    initialiser. `clip_action`: clip the action to [-1, 1] before the torso (D4PG clips for its
    MoG critic only; acme's MPO critics clip always).
    """
    critic_type = config.critic_type
    if critic_type not in CRITIC_TYPES:
        raise ValueError(f"unknown critic_type {critic_type!r}; expected one of {CRITIC_TYPES}")

    def torso(observation, action):
        x = critic_inputs(observation, action, clip_action=clip_action)
        return LayerNormMLP(config.critic_layer_sizes, activate_final=True)(x)

    if critic_type == "c51":
        support = jnp.linspace(config.v_min, config.v_max, config.num_atoms)

        def c51(observation, action):
            return CategoricalHead(config.num_atoms)(torso(observation, action))

        return Critic(c51, lambda logits: distributional.categorical_mean(logits, support), support)
    if critic_type == "mog":

        def mog(observation, action):
            head = GaussianMixtureHead(config.num_components, config.init_scale, config.min_scale)
            return head(torso(observation, action))

        return Critic(mog, distributional.mixture_mean, None)

    def scalar(observation, action):
        x = torso(observation, action)
        return hk.Linear(1, w_init=hk.initializers.TruncatedNormal(0.01))(x)[..., 0]

    return Critic(scalar, lambda q: q, None)


@dataclasses.dataclass(frozen=True)
class PolicyCriticNetworks:
    """A policy and a critic as Haiku-transformed pure functions (every actor-critic agent);
    `init` makes both from a key and the environment's spec."""

    policy_init: Callable
    policy_apply: Callable
    critic_init: Callable
    critic_apply: Callable

    def init(self, key: jax.Array, env_spec: EnvironmentSpec) -> tuple:
        obs = zeros_like_spec(env_spec.observations, (1,))
        action = zeros_like_spec(env_spec.actions, (1,))
        policy_key, critic_key = jax.random.split(key)
        return self.policy_init(policy_key, obs), self.critic_init(critic_key, obs, action)


def transform_policy_and_critic(policy: Callable, critic: Callable) -> dict[str, Callable]:
    """The four `PolicyCriticNetworks` fields from the Haiku functions `policy(observation)` and
    `critic(observation, action)` (both without an apply-time PRNG)."""
    policy_t = hk.without_apply_rng(hk.transform(policy))
    critic_t = hk.without_apply_rng(hk.transform(critic))
    return {
        "policy_init": policy_t.init,
        "policy_apply": policy_t.apply,
        "critic_init": critic_t.init,
        "critic_apply": critic_t.apply,
    }


@dataclasses.dataclass(frozen=True)
class ActorCriticNetworks(PolicyCriticNetworks):
    """A policy and a critic as pure functions (D4PG, MPO, CRR, DiME).

    policy_apply(params, obs) -> the policy's output (D4PG: an action in [-1, 1]; MPO: the
        (mean, std) of a diagonal Gaussian).
    critic_apply(params, obs, action) -> Q [B] | C51 logits [B, L] | MixtureParams;
    critic_mean turns any of them into Q [B]. support: C51 atoms, None otherwise.
    """

    critic_mean: Callable
    support: jax.Array | None
    critic_type: str

    def q_value(self, critic_params, observation, action) -> jax.Array:
        """E[Z(observation, action)]: [B]."""
        return self.critic_mean(self.critic_apply(critic_params, observation, action))


def actor_critic_networks(policy: Callable, critic: Critic, critic_type: str):
    """Transforms the Haiku functions `policy(observation)` and `critic.network` (both without
    an apply-time PRNG) into ActorCriticNetworks."""
    return ActorCriticNetworks(
        **transform_policy_and_critic(policy, critic.network),
        critic_mean=critic.mean,
        support=critic.support,
        critic_type=critic_type,
    )


class GaussianPolicy(hk.Module):
    """obs -> LayerNormMLP -> (mean, std) of a diagonal Gaussian over the action, unsquashed
    (acme MPO's LayerNormMLP + MultivariateNormalDiagHead).

    Both heads start near zero (VarianceScaling(1e-4) weights, zero biases);
    std = softplus(raw) * init_scale / softplus(0) + min_scale, so std ~ init_scale at
    initialisation. The mean is not bounded: actors clip samples to [-1, 1], and MPO's action
    penalty keeps the mean inside the box.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        action_dim: int,
        init_scale: float = 0.7,
        min_scale: float = 1e-6,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._layer_sizes = tuple(layer_sizes)
        self._action_dim = action_dim
        self._init_scale = init_scale
        self._min_scale = min_scale

    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = LayerNormMLP(self._layer_sizes, activate_final=True)(observation)
        w_init = hk.initializers.VarianceScaling(1e-4)
        mean = hk.Linear(self._action_dim, w_init=w_init, name="mean")(x)
        raw_scale = hk.Linear(self._action_dim, w_init=w_init, name="scale")(x)
        scale = jax.nn.softplus(raw_scale) * (self._init_scale / jax.nn.softplus(0.0))
        return mean, scale + self._min_scale


def diagonal_gaussian_sample(
    mean: jax.Array, std: jax.Array, key: jax.Array, num_samples: int | None = None
) -> jax.Array:
    """mean + std * eps, unclipped; with `num_samples`, shape [num_samples, *mean.shape]."""
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    return mean + std * jax.random.normal(key, shape, mean.dtype)


class MLP(hk.Module):
    """A plain ReLU MLP (the torso of the offline agents; the same as d3rlpy's and acme JAX
    CRR's default `(256, 256)` encoders, so side-by-side runs compare equal networks).

    hk.nets.MLP's parameters (names, shapes, initial values) and arithmetic, with each bias
    added by `add_bias`, whose gradient is a pairwise sum over the batch (`column_sum`).

    Several inputs, `MLP(sizes)(observation, action)`, are the MLP of their concatenation along
    the last axis, after broadcasting their leading axes together; the first layer multiplies
    each input by its own rows of the weight and adds the products, so the parameters are those
    of the concatenated input. A critic vmapped over m sampled actions then computes its
    observation's product once, not m times, and no [m, B, obs + act] input is built: in CRR's
    step XLA fused that concatenate with the action sampling into an unvectorised loop (about
    400 us of a 5.9 ms step on one core); CRR went from 168-170 to 185-188 steps/s. Where no
    input is broadcast (TD3+BC's critics) the one matmul of the concatenation was about 1 %
    faster, so those pass the concatenation.
    """

    def __init__(
        self, layer_sizes: Sequence[int], activate_final: bool = True, name: str | None = None
    ):
        super().__init__(name=name)
        self._layer_sizes = tuple(layer_sizes)
        self._activate_final = activate_final

    def __call__(self, *inputs: jax.Array) -> jax.Array:
        return _ReluLayers(self._layer_sizes, self._activate_final)(*inputs)


class _ReluLayers(hk.Module):
    """The layers of MLP, laid out as hk.nets.MLP lays out its own (`mlp/~/linear_i`), so that
    snapshots taken when MLP wrapped hk.nets.MLP still restore."""

    def __init__(self, layer_sizes: tuple[int, ...], activate_final: bool):
        super().__init__(name="mlp")
        w_init = hk.initializers.VarianceScaling(1.0, "fan_avg", "uniform")
        self._layers = [
            _LinearParameters(size, w_init=w_init, name=f"linear_{i}")
            for i, size in enumerate(layer_sizes)
        ]
        self._activate_final = activate_final

    def __call__(self, *inputs: jax.Array) -> jax.Array:
        if not self._layers:  # no layers: the (broadcast) concatenation itself
            shape = jnp.broadcast_shapes(*(x.shape[:-1] for x in inputs))
            return jnp.concatenate([jnp.broadcast_to(x, shape + x.shape[-1:]) for x in inputs], -1)
        w, b = self._layers[0](sum(x.shape[-1] for x in inputs))
        x = add_bias(concatenated_input_matmul(inputs, w), b)
        for layer in self._layers[1:]:
            x = jax.nn.relu(x)
            w, b = layer(x.shape[-1])
            x = add_bias(x @ w, b)
        if self._activate_final:
            x = jax.nn.relu(x)
        return x


def concatenated_input_matmul(inputs: Sequence[jax.Array], w: jax.Array) -> jax.Array:
    """concat(inputs, -1) @ w, as sum_j inputs[j] @ w[rows of input j]: the inputs' leading axes
    broadcast together and are never materialised side by side. One input: a plain matmul."""
    if len(inputs) == 1:
        return inputs[0] @ w
    out, row = None, 0
    for x in inputs:
        product = x @ w[row : row + x.shape[-1]]
        out = product if out is None else out + product
        row += x.shape[-1]
    return out


class TanhGaussianPolicy(hk.Module):
    """obs -> MLP -> (mean, std) of a diagonal Gaussian that `tanh` squashes into [-1, 1].

    std = softplus(raw) + min_scale. The distribution itself is `tanh_gaussian(mean, std)`.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        action_dim: int,
        min_scale: float = 1e-3,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._layer_sizes = layer_sizes
        self._action_dim = action_dim
        self._min_scale = min_scale

    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self._layer_sizes)(observation)
        mean, raw_scale = _linear_heads(
            x, (("mean", self._action_dim), ("scale", self._action_dim))
        )
        return mean, jax.nn.softplus(raw_scale) + self._min_scale


def _linear_heads(x: jax.Array, heads: Sequence[tuple[str, int]]) -> list[jax.Array]:
    """hk.Linear(size, name=name)(x) for each (name, size) in `heads`, as one matmul.

    Each head keeps its own parameters (the same names and initial values as an hk.Linear): as
    separate skinny matmuls the two heads of TanhGaussianPolicy took about 18 % of BC's step on
    one CPU core (benchmarks/RESULTS.md).
    """
    params = [_LinearParameters(size, name=name)(x.shape[-1]) for name, size in heads]
    weights = jnp.concatenate([w for w, _ in params], 1)
    out = add_bias(narrow_output_matmul(x, weights), jnp.concatenate([b for _, b in params]))
    return jnp.split(out, np.cumsum([size for _, size in heads])[:-1].tolist(), axis=-1)


def linear_head(x: jax.Array, output_size: int, name: str = "linear") -> jax.Array:
    """hk.Linear(output_size, name=name)(x) -- the same parameters, names and initial values --
    for an output layer (a critic's value, a deterministic policy's action), computed in the
    form XLA CPU runs fastest.

    One output: sum_d x_d w_d + b, a multiply and a row sum. As a [.., D] @ [D, 1] dot XLA fuses
    the matrix-vector product with the ReLU before it into a loop it does not vectorise: about
    70 us forward and 150 us for the weight gradient at batch 256 and D = 256 on one core, where
    the multiply-and-sum takes 9 and 35 (benchmarks/RESULTS.md, session 16). More outputs: one
    matmul with `narrow_output_matmul`'s weight gradient.
    """
    if output_size != 1:
        return _linear_heads(x, ((name, output_size),))[0]
    w, b = _LinearParameters(1, name=name)(x.shape[-1])
    return add_bias(jnp.sum(x * w[:, 0], axis=-1, keepdims=True), b)


def column_sum(x: jax.Array) -> jax.Array:
    """sum over all but the last axis of `x`, as a pairwise (halving) sum down to 8 rows.

    The same sum as `jnp.sum(x, axis=tuple(range(x.ndim - 1)))`, in another order of additions.
    XLA CPU rewrites a [256, 256] -> [256] reduction into a reduce-window it does not vectorise;
    halving adds it fuses with their producer. A hidden layer's bias gradient, one core: 37 us
    as the reduction, 9 as halving adds (`benchmarks/investigations/xla_cpu_forms.py`,
    `bias_gradient`; its README).
    """
    rows = x.reshape(-1, x.shape[-1])
    while rows.shape[0] > 8 and rows.shape[0] % 2 == 0:
        half = rows.shape[0] // 2
        rows = rows[:half] + rows[half:]
    return jnp.sum(rows, axis=0)


@jax.custom_vjp
def add_bias(x: jax.Array, b: jax.Array) -> jax.Array:
    """x + b for x [..., N], b [N]: the same value and gradients, with db = column_sum(g)."""
    return x + b


def _add_bias_fwd(x, b):
    return x + b, None


def _add_bias_bwd(_, g):
    return g, column_sum(g)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


@jax.custom_vjp
def narrow_output_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for w [D, N] with few outputs N (a policy's heads), x [..., D].

    The same value and gradients as `x @ w`: dx = g w^T, dw = x^T g, summed over x's leading
    dimensions. Only how dw is computed differs: as (g^T x)^T with g^T materialised first.
    XLA CPU runs x^T g (contracting the batch dimension of both, N = 12) about 4x slower than
    the same product with g^T laid out row-major (benchmarks/RESULTS.md, session 16).
    """
    return x @ w


def _narrow_output_matmul_fwd(x, w):
    return x @ w, (x, w)


def _narrow_output_matmul_bwd(residuals, g):
    x, w = residuals
    rows = x.reshape(-1, x.shape[-1])
    # The barriers keep XLA from folding the transpose of g back into the dot (its
    # TransposeFolding pass would restore the slow x^T g form) and from re-running g's producer
    # inside it. The small [N, D] product is transposed by a gather with constant indices: as a
    # transpose, layout assignment would hand the dot a column-major output, which XLA CPU's dot
    # refuses at run time.
    g_rows = jax.lax.optimization_barrier(g.reshape(-1, g.shape[-1]))
    g_transposed = jax.lax.optimization_barrier(g_rows.T)
    dw_transposed = g_transposed @ rows  # [N, D]
    num_outputs, dim = dw_transposed.shape
    transpose_indices = np.arange(num_outputs * dim).reshape(num_outputs, dim).T
    dw = jnp.take(dw_transposed.reshape(-1), transpose_indices)
    return g @ w.T, dw


narrow_output_matmul.defvjp(_narrow_output_matmul_fwd, _narrow_output_matmul_bwd)


class _LinearParameters(hk.Module):
    """The weight and bias of an hk.Linear(output_size) -- same names, shapes and initialisers --
    without applying them, so that several heads can share one matmul."""

    def __init__(
        self,
        output_size: int,
        w_init: hk.initializers.Initializer | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._output_size = output_size
        self._w_init = w_init

    def __call__(self, input_size: int) -> tuple[jax.Array, jax.Array]:
        # hk.Linear's default weight initialiser when none is given.
        w_init = self._w_init or hk.initializers.TruncatedNormal(1.0 / np.sqrt(input_size))
        w = hk.get_parameter("w", [input_size, self._output_size], init=w_init)
        b = hk.get_parameter("b", [self._output_size], init=jnp.zeros)
        return w, b


# Dataset actions on the box edge (|a| = 1) have atanh = inf. "clipped" moves them this far inside.
TANH_EPSILON = 1e-5
# "censored" treats |a| >= this as the edge bin (acme's TanhTransformedDistribution threshold).
TANH_EDGE_THRESHOLD = 0.999
EDGE_LIKELIHOODS = ("censored", "clipped")


def tanh_gaussian_log_prob(
    mean: jax.Array, std: jax.Array, action: jax.Array, edge: str = "censored"
) -> jax.Array:
    """log pi(a|s) of a tanh-squashed diagonal Gaussian, summed over action dimensions.

    Inside the box: log pi(a) = log N(atanh a; mean, std) - log(1 - a^2).

    Behaviour actions are often clipped to the box, so many sit exactly on |a| = 1, where the
    density is infinite. `edge` says how such a component counts:

    - "censored" (default, as acme's TanhTransformedDistribution): a component with
      |a| >= t = 0.999 is an observation of the edge bin, with likelihood
      log P(u >= atanh t) - log(1 - t) (u ~ N(mean, std); mirrored for the lower edge). Its
      gradient asks only that the policy put its mass beyond the threshold.
    - "clipped": a is clipped to [-1 + 1e-5, 1 - 1e-5] and the density is used, which pulls the
      pre-tanh mean towards atanh(1 - 1e-5) = 6.1 with a large gradient.
    """
    if edge not in EDGE_LIKELIHOODS:
        raise ValueError(f"unknown edge likelihood {edge!r}; expected one of {EDGE_LIKELIHOODS}")
    threshold = 1.0 - TANH_EPSILON if edge == "clipped" else TANH_EDGE_THRESHOLD
    inside = jnp.clip(action, -threshold, threshold)
    pre_tanh = jnp.arctanh(inside)
    log_density = (
        -0.5 * jnp.square((pre_tanh - mean) / std)
        - jnp.log(std)
        - 0.5 * jnp.log(2.0 * jnp.pi)
        - jnp.log1p(-jnp.square(inside))
    )
    if edge == "clipped":
        return jnp.sum(log_density, axis=-1)
    # Upper edge: P(u >= e) = Phi((mean - e) / std); lower edge: P(u <= -e) = Phi((-mean - e) /
    # std). One log Phi of the side's argument, rather than both sides everywhere, halves the
    # most expensive elementwise work of BC's step.
    edge_pre_tanh = jnp.arctanh(threshold)
    log_bin_width = jnp.log1p(-threshold)
    side = jnp.where(action < 0.0, -1.0, 1.0)
    log_edge = jax.scipy.special.log_ndtr((side * mean - edge_pre_tanh) / std) - log_bin_width
    on_edge = jnp.abs(action) >= threshold
    return jnp.sum(jnp.where(on_edge, log_edge, log_density), axis=-1)


def tanh_gaussian_sample(
    mean: jax.Array, std: jax.Array, key: jax.Array, num_samples: int | None = None
) -> jax.Array:
    """tanh(mean + std * eps); with `num_samples`, shape [num_samples, *mean.shape]."""
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    return jnp.tanh(mean + std * jax.random.normal(key, shape, mean.dtype))


def tanh_gaussian_mode(mean: jax.Array) -> jax.Array:
    """The deterministic action used for evaluation: tanh(mean)."""
    return jnp.tanh(mean)


def gaussian_log_prob(mean: jax.Array, std: jax.Array, action: jax.Array) -> jax.Array:
    """log pi(a|s) of the "gaussian" head, N(a; tanh(mean), std) with no squashing, summed over
    action dimensions. A dataset action on |a| = 1 has an ordinary finite density."""
    z = (action - jnp.tanh(mean)) / std
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)


def gaussian_sample(
    mean: jax.Array, std: jax.Array, key: jax.Array, num_samples: int | None = None
) -> jax.Array:
    """clip(tanh(mean) + std * eps, -1, 1); with `num_samples`, shape [num_samples, *mean.shape]."""
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    noise = jax.random.normal(key, shape, mean.dtype)
    return jnp.clip(jnp.tanh(mean) + std * noise, -1.0, 1.0)


class GaussianMixturePolicy(hk.Module):
    """obs -> MLP -> a mixture of K diagonal Gaussians over the action (the CRR authors' policy
    head: a mixture of 5 Gaussians, ALGORITHMS.md §1.5). No squashing: samples are clipped to the
    box, so a dataset action on |a| = 1 has an ordinary finite density.

    Returns (logits [.., K], mean [.., K, A], std [.., K, A]); std = softplus(raw + b) + min_scale,
    with b chosen so that a zero pre-activation gives std = init_scale.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        action_dim: int,
        num_components: int = 5,
        init_scale: float = 0.3,
        min_scale: float = 1e-3,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._layer_sizes = layer_sizes
        self._action_dim = action_dim
        self._num_components = num_components
        self._init_scale = init_scale
        self._min_scale = min_scale

    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        k, a = self._num_components, self._action_dim
        x = MLP(self._layer_sizes)(observation)
        logits, mean, raw_scale = _linear_heads(
            x, (("logits", k), ("mean", k * a), ("scale", k * a))
        )
        batch_shape = observation.shape[:-1]
        mean = mean.reshape((*batch_shape, k, a))
        offset = np.log(np.expm1(self._init_scale - self._min_scale))  # softplus^-1
        std = jax.nn.softplus(raw_scale.reshape((*batch_shape, k, a)) + offset) + self._min_scale
        return logits, mean, std


def gaussian_mixture_log_prob(
    logits: jax.Array, mean: jax.Array, std: jax.Array, action: jax.Array
) -> jax.Array:
    """log pi(a|s) = logsumexp_k [ log softmax(logits)_k + sum_d log N(a_d; mean_kd, std_kd) ]."""
    z = (action[..., None, :] - mean) / std
    log_normal = jnp.sum(-0.5 * jnp.square(z) - jnp.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)
    return jax.nn.logsumexp(jax.nn.log_softmax(logits) + log_normal, axis=-1)


def gaussian_mixture_sample(
    logits: jax.Array,
    mean: jax.Array,
    std: jax.Array,
    key: jax.Array,
    num_samples: int | None = None,
) -> jax.Array:
    """k ~ Categorical(logits), a = clip(mean_k + std_k * eps, -1, 1); with `num_samples`, shape
    [num_samples, *batch, A]."""
    component_key, noise_key = jax.random.split(key)
    sample_shape = () if num_samples is None else (num_samples,)
    component = jax.random.categorical(
        component_key, logits, shape=sample_shape + logits.shape[:-1]
    )
    mean_k = _component(jnp.broadcast_to(mean, sample_shape + mean.shape), component)
    std_k = _component(jnp.broadcast_to(std, sample_shape + std.shape), component)
    noise = jax.random.normal(noise_key, mean_k.shape, mean_k.dtype)
    return jnp.clip(mean_k + std_k * noise, -1.0, 1.0)


def _component(x: jax.Array, index: jax.Array) -> jax.Array:
    """x[..., index, :] per batch element: x [*B, K, A], index [*B] -> [*B, A]."""
    return jnp.take_along_axis(x, index[..., None, None], axis=-2)[..., 0, :]


def gaussian_mixture_mode(logits: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """The deterministic action for evaluation: the mean of the most probable component, clipped
    to the box (a mixture's mode has no closed form; the heaviest component's mean is the usual
    stand-in, and with well-separated components it is close to the mode)."""
    del std
    return jnp.clip(_component(mean, jnp.argmax(logits, axis=-1)), -1.0, 1.0)


POLICY_HEADS = ("tanh_gaussian", "gaussian", "gaussian_mixture")


class PolicyHead(typing.NamedTuple):
    """A stochastic policy as pure functions of the network's output `dist` (a tuple of arrays):

    kind: "tanh_gaussian" | "gaussian" | "gaussian_mixture"
    network(observation) -> dist     (a Haiku function, to transform)
    log_prob(dist, action) -> [..]   (summed over action dimensions)
    sample(dist, key, num_samples=None) -> action in [-1, 1]
    mode(dist) -> action in [-1, 1]  (the greedy evaluation action)
    """

    kind: str
    network: Callable
    log_prob: Callable
    sample: Callable
    mode: Callable


def make_policy_head(
    kind: str,
    layer_sizes: Sequence[int],
    action_dim: int,
    edge_likelihood: str = "censored",
    num_components: int = 5,
) -> PolicyHead:
    """The policy head named `kind`:

    - "tanh_gaussian" (acme JAX CRR, BC): tanh(u), u ~ N(mean, std); `edge_likelihood` applies.
    - "gaussian" (d3rlpy 2.8.1 CRR's NormalPolicy): N(tanh(mean), std) over the action itself,
      samples clipped to the box. The same network and parameters as "tanh_gaussian"; only the
      distribution read from its (mean, std) differs, and the greedy action tanh(mean) is the same.
    - "gaussian_mixture" (the CRR authors'): a mixture of `num_components` diagonal Gaussians.
    """
    if kind == "tanh_gaussian":
        return PolicyHead(
            kind=kind,
            network=lambda obs: TanhGaussianPolicy(layer_sizes, action_dim)(obs),
            log_prob=lambda dist, a: tanh_gaussian_log_prob(*dist, a, edge_likelihood),
            sample=lambda dist, key, n=None: tanh_gaussian_sample(*dist, key, n),
            mode=lambda dist: tanh_gaussian_mode(dist[0]),
        )
    if kind == "gaussian":
        return PolicyHead(
            kind=kind,
            network=lambda obs: TanhGaussianPolicy(layer_sizes, action_dim)(obs),
            log_prob=lambda dist, a: gaussian_log_prob(*dist, a),
            sample=lambda dist, key, n=None: gaussian_sample(*dist, key, n),
            mode=lambda dist: tanh_gaussian_mode(dist[0]),
        )
    if kind == "gaussian_mixture":
        return PolicyHead(
            kind=kind,
            network=lambda obs: GaussianMixturePolicy(layer_sizes, action_dim, num_components)(obs),
            log_prob=lambda dist, a: gaussian_mixture_log_prob(*dist, a),
            sample=lambda dist, key, n=None: gaussian_mixture_sample(*dist, key, n),
            mode=lambda dist: gaussian_mixture_mode(*dist),
        )
    raise ValueError(f"unknown policy head {kind!r}; expected one of {POLICY_HEADS}")


def policy_head_from_config(config, env_spec) -> PolicyHead:
    """The head a CRR or BC config names: its `policy_head`, `policy_layer_sizes`,
    `edge_likelihood` and `num_policy_components`, for `env_spec`'s action size."""
    return make_policy_head(
        config.policy_head,
        config.policy_layer_sizes,
        int(np.prod(env_spec.actions.shape)),
        edge_likelihood=config.edge_likelihood,
        num_components=config.num_policy_components,
    )


def policy_for_one(policy_apply: Callable, params, observation: jax.Array) -> tuple:
    """The head's distribution parameters for one (unbatched) observation."""
    dist = policy_apply(params, observation[None])
    return jax.tree_util.tree_map(lambda x: x[0], dist)


def make_head_policy(policy_apply: Callable, head: PolicyHead, evaluation: bool) -> Callable:
    """An actor's policy (params, observation, state, key) -> (action, state): the head's greedy
    action for evaluation, a sample of pi otherwise."""

    def policy(params, observation, state, key):
        dist = policy_for_one(policy_apply, params, observation)
        return (head.mode(dist) if evaluation else head.sample(dist, key)), state

    return policy


def gaussian_actor_critic_networks(env_spec: EnvironmentSpec, config) -> ActorCriticNetworks:
    """MPO's networks (acme's `make_control_networks`), also DiME's: a diagonal Gaussian policy
    on a LayerNorm MLP (`GaussianPolicy`) and a scalar, C51 or mixture-of-Gaussians critic on a
    LayerNorm MLP (`layer_norm_critic`), by `config.critic_type`.

    config: policy_layer_sizes, policy_init_scale, policy_min_scale and the critic's fields.
    Every critic type sees actions clipped to the box: the N sampled actions of an unbounded
    Gaussian leave it, and the critic must not extrapolate there (acme's ClipToSpec).
    """
    action_dim = int(np.prod(env_spec.actions.shape))

    def policy(observation):
        return GaussianPolicy(
            config.policy_layer_sizes,
            action_dim,
            init_scale=config.policy_init_scale,
            min_scale=config.policy_min_scale,
        )(observation)

    critic = layer_norm_critic(config, clip_action=True)
    return actor_critic_networks(policy, critic, config.critic_type)


def make_gaussian_policy(policy_apply: Callable, evaluation: bool) -> Callable:
    """The actor's policy(params, observation, state, key) -> (action, state) for a diagonal
    Gaussian policy: clip(mean + std * eps, -1, 1) (behaviour) or clip(mean, -1, 1)
    (evaluation)."""

    def policy(params, observation, state, key):
        mean, std = policy_for_one(policy_apply, params, observation)
        action = mean if evaluation else diagonal_gaussian_sample(mean, std, key)
        return jnp.clip(action, -1.0, 1.0), state

    return policy

"""MPO learner: MPO (scalar critic), DMPO (C51 critic) and MoG-DMPO (mixture-of-Gaussians
critic), by `critic_type` (ALGORITHMS.md §6.1, §6.2, §2; acme `agents/jax/mpo/learning.py`).

One SGD step, for a batch of n-step transitions (o, a, R, D, o'), where D already holds
gamma^n * prod d (see `antiphon.core.types.Transition`), with N = `num_samples`:

  critic:  a'_i ~ pi_target(o'), i = 1..N                  (the stochastic policy's evaluation)
           scalar: y   = R + D (1/N) sum_i Q_target(o', a'_i);   L_c = 1/2 (Q(o, a) - y)^2
           C51:    p'  = (1/N) sum_i Proj_z[R + D z ; softmax(Z_target(o', a'_i))]
                   L_c = CE(p', Z(o, a))
           MoG:    y_ij = R + D z_ij,  z_ij ~ Z_target(o', a'_i), j = 1..M (N * M pooled)
                   L_c = -(1/(N M)) sum_ij log p_{Z(o,a)}(y_ij)
           (`antiphon.agents.policy_evaluation`, shared with DiME)
  policy:  a_i ~ pi_target(o), Q_i = E[Z_target(o, a_i)]  ->  `mpo_losses.mpo_loss` with the
           online and target (mean, std) at o: E-step temperature, action penalty, decoupled
           M-step with per-dimension trust regions; its gradient trains the policy and the
           duals (stop-gradients keep the two apart).
  updates: Adam on policy, critic (each gradient's global norm clipped to `max_gradient_norm`)
           and on the duals (`dual_learning_rate`, same clip), the raw duals then clipped at
           -18 (`clip_dual_params`); hard copy online -> target every `target_update_period`.

Both losses are evaluated at the state before the step. `sgd_steps_per_call` steps run inside
one jitted call (lax.scan over K batches).
"""

from __future__ import annotations

from antiphon.agents import mpo_family, mpo_losses, policy_evaluation
from antiphon.agents.learners import ConfiguredOnlineLearner
from antiphon.agents.mpo.config import MPOConfig
from antiphon.agents.mpo.networks import MPONetworks

TrainingState = mpo_family.TrainingState


def make_losses(
    networks: MPONetworks, config: MPOConfig, value_bounds: tuple[float, float] | None = None
):
    """The two MPO losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
        -> (loss, {"q_mean", "q_out_of_range" (with value_bounds)})
    policy_loss(policy_params, dual_params, target_policy_params, target_critic_params, batch,
        key) -> (loss, mpo_loss's metrics; its Q statistics renamed sampled_q_*)
    """

    critic_loss = policy_evaluation.make_critic_loss(networks, config, value_bounds)

    def improvement_loss(
        dual_params, online_mean, online_std, target_mean, target_std, actions, q, batch, key
    ):
        del batch, key  # MPO improves on the sampled actions only
        loss, metrics = mpo_losses.mpo_loss(
            dual_params,
            online_mean,
            online_std,
            target_mean,
            target_std,
            actions,
            q,
            epsilon=config.epsilon,
            epsilon_mean=config.epsilon_mean,
            epsilon_stddev=config.epsilon_stddev,
            epsilon_penalty=config.epsilon_penalty,
            per_dim_constraining=config.per_dim_constraining,
            action_penalization=config.action_penalization,
        )
        # The critic's q_mean is Q at the replayed (o, a); these are of the sampled actions.
        metrics = {
            ("sampled_" + name if name.startswith("q_") else name): value
            for name, value in metrics.items()
            if name != "loss"  # the same number as policy_loss
        }
        return loss, metrics

    policy_loss = mpo_family.make_policy_loss(networks, config.num_samples, improvement_loss)
    return critic_loss, policy_loss


class MPOLearner(ConfiguredOnlineLearner):
    """Pulls [K, B, ...] batches of transitions and runs K SGD steps per call
    (`learners.ConfiguredOnlineLearner`, with the divergence guard). Also the program's
    variable source: `get_variables(["policy"])`."""

    @staticmethod
    def make_update(networks, config, env_spec, key, value_bounds=None):
        """(sgd_step, state): MPO's losses on `mpo_family`'s state and step."""
        losses = make_losses(networks, config, value_bounds)
        return mpo_family.make_update(networks, config, env_spec, key, losses)

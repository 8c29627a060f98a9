//! Advantages over response tokens, all on `[B, N]` tensors aligned with the response (column `t`
//! is the `t`-th generated token; `mask` is 1 on real tokens, a prefix of each row):
//! GAE with a critic ([`gae`]), and the critic-free group baselines of GRPO ([`grpo`]), Dr. GRPO
//! ([`dr_grpo`]) and RLOO ([`rloo`]), plus masked statistics and whitening.

use tch::{Kind, Tensor};

/// `Σ x·m / Σ m` over all elements.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    (x * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// Masked variance, unbiased (`n / (n − 1)` correction, as TRL's `masked_var`).
pub fn masked_var(x: &Tensor, mask: &Tensor) -> Tensor {
    let mean = masked_mean(x, mask);
    let var = masked_mean(&(x - mean).square(), mask);
    let n = mask.sum(Kind::Float);
    var * &n / (n - 1.0).clamp_min(1.0)
}

/// `(x − mean) / sqrt(var + 1e-8)` over the masked elements (mean added back unless `shift_mean`);
/// masked-out elements are 0.
pub fn masked_whiten(x: &Tensor, mask: &Tensor, shift_mean: bool) -> Tensor {
    let mean = masked_mean(x, mask);
    let var = masked_var(x, mask);
    let mut whitened = (x - &mean) * (var + 1e-8).rsqrt();
    if !shift_mean {
        whitened += mean;
    }
    whitened * mask
}

/// Generalised advantage estimation (Schulman et al. 2016) per row, backwards over the response:
/// `δ_t = r_t + γ·V_{t+1} − V_t`, `A_t = δ_t + γλ·A_{t+1}`, with `V` and `A` zero past the last
/// real token. Returns `(advantages, returns = advantages + values)`, both 0 where `mask` is 0.
pub fn gae(rewards: &Tensor, values: &Tensor, mask: &Tensor, gamma: f64, lambda: f64) -> (Tensor, Tensor) {
    let n = rewards.size()[1];
    let rewards = rewards * mask;
    let values = values * mask;
    let mut last = Tensor::zeros_like(&rewards.select(1, 0));
    let mut reversed = Vec::with_capacity(n as usize);
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values.select(1, t + 1) } else { Tensor::zeros_like(&last) };
        let delta = rewards.select(1, t) + next_value * gamma - values.select(1, t);
        last = (delta + &last * (gamma * lambda)) * mask.select(1, t);
        reversed.push(last.shallow_clone());
    }
    reversed.reverse();
    let advantages = Tensor::stack(&reversed, 1);
    let returns = (&advantages + values) * mask;
    (advantages, returns)
}

/// GRPO (Shao et al. 2024): rewards `[G·P]` in groups of `group_size` consecutive samples of one
/// prompt become `(r − mean_g) / (std_g + eps)` (unbiased std).
pub fn grpo(rewards: &Tensor, group_size: i64, eps: f64) -> Tensor {
    let groups = rewards.view([-1, group_size]);
    let mean = groups.mean_dim(1, true, Kind::Float);
    let std = groups.std_dim(1, true, true);
    ((groups - mean) / (std + eps)).view([-1])
}

/// Dr. GRPO (Liu et al. 2025): rewards in groups of `group_size` minus their group's mean, not
/// divided by its std (which weights easy and hard prompts unequally).
pub fn dr_grpo(rewards: &Tensor, group_size: i64) -> Tensor {
    let groups = rewards.view([-1, group_size]);
    (&groups - groups.mean_dim(1, true, Kind::Float)).view([-1])
}

/// RLOO (Ahmadian et al. 2024): each sample's reward minus the mean of the other `k − 1` samples of
/// its prompt (groups of `k` consecutive rewards).
pub fn rloo(rewards: &Tensor, k: i64) -> Tensor {
    let groups = rewards.view([-1, k]);
    let others = (groups.sum_dim_intlist([1i64].as_slice(), true, Kind::Float) - &groups) / (k - 1) as f64;
    (groups - others).view([-1])
}

/// One sequence-level advantage per row `[B]` spread over that row's tokens `[B, N]`.
pub fn per_token(sequence: &Tensor, mask: &Tensor) -> Tensor {
    sequence.unsqueeze(1) * mask
}

/// Fraction of the returns' variance the values explain: `1 − Var(R − V) / Var(R)` over the mask.
pub fn explained_variance(values: &Tensor, returns: &Tensor, mask: &Tensor) -> f64 {
    let var_returns = masked_var(returns, mask).double_value(&[]);
    let var_residual = masked_var(&(returns - values), mask).double_value(&[]);
    if var_returns > 0.0 {
        1.0 - var_residual / var_returns
    } else {
        f64::NAN
    }
}

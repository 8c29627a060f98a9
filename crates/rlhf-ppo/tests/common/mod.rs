//! Tiny fixtures shared by the integration tests: a BPE tokenizer trained on the embedded task's
//! corpus, a ~40k-parameter random Llama policy, and a reward model whose score is a small fixed
//! function of the last response token (its transformer layers add nothing to the residual stream,
//! `pad_token_id = eos` makes it read the token before eos). With the missing-eos penalty the
//! reward is mostly "end the response": a random policy rarely does, PPO learns to.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset
#![allow(clippy::field_reassign_with_default)] // test configs: defaults with a few fields set

use std::path::{Path, PathBuf};

use rlhf_model::SequenceClassifier;
use rlhf_ppo::config::{CriticKind, RewardModelEntry};
use rlhf_ppo::PpoConfig;
use rlhf_task::TaskConfig;
use rlhf_train::testing::{save_random_policy, task_tokenizer, tiny_llama};

pub use rlhf_train::testing::{cpu, trained};

pub fn small_task() -> TaskConfig {
    TaskConfig {
        seed: 1,
        heldout_prompts: 30,
        demonstrations: 0,
        heldout_demonstrations: 0,
        corpus_documents: 0,
        chat: false,
    }
}

/// The policy and the reward model of a test, under `dir`.
pub struct Fixture {
    pub policy: PathBuf,
    pub reward: PathBuf,
    /// The small task's training prompts.
    pub prompts: PathBuf,
}

/// A random tiny policy (seeded) and the last-token reward model (its score weight NaN when asked).
pub fn fixture(dir: &Path, nan_reward: bool) -> Fixture {
    let tokenizer = task_tokenizer(2, 300);
    let tokenizer_dir = dir.join("tokenizer");
    tokenizer.save(&tokenizer_dir).unwrap();

    let policy_dir = save_random_policy(&dir.join("policy"), tiny_llama(&tokenizer, 2, 128), &tokenizer, 11);

    let mut config = tiny_llama(&tokenizer, 2, 128);
    config.pad_token_id = Some(tokenizer.eos_id());
    let mut reward = SequenceClassifier::new(config, tch::Device::Cpu, tch::Kind::Float).unwrap();
    tch::no_grad(|| {
        for (name, var) in reward.var_store().variables() {
            let mut var = var;
            if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                let _ = var.zero_();
            } else if name == "score.weight" {
                if nan_reward {
                    let _ = var.fill_(f64::NAN);
                } else {
                    var.copy_(&(var.randn_like() * 0.05));
                }
            }
        }
    });
    reward.set_source_dir(Some(tokenizer_dir));
    let reward_dir = dir.join("reward");
    reward.save_pretrained(&reward_dir).unwrap();
    let prompts = rlhf_task::write_task(&small_task(), &dir.join("data")).unwrap().train_prompts;
    Fixture { policy: policy_dir, reward: reward_dir, prompts }
}

/// A fast config on the fixture (absolute paths, the small task's prompts).
pub fn config(fixture: &Fixture) -> PpoConfig {
    let mut config = PpoConfig::default();
    config.gold_judge = "gold".into();
    config.model.policy = fixture.policy.clone();
    config.model.reference = fixture.policy.clone();
    config.reward.models = vec![RewardModelEntry { path: fixture.reward.clone(), weight: 1.0 }];
    config.critic = CriticKind::Separate;
    config.data.prompts = fixture.prompts.display().to_string();
    config.generation.max_new_tokens = 24;
    config.kl.beta = 0.01;
    config.kl.target = 1.0;
    config.ppo.iterations = 6;
    config.ppo.prompts_per_iteration = 16;
    config.ppo.rollout_batch_size = 16;
    config.ppo.epochs = 2;
    config.ppo.minibatch_size = 8;
    config.ppo.micro_batch_size = 4;
    config.train.lr = 1e-2;
    config.train.checkpoint_every = 2;
    config.train.keep_checkpoints = 2;
    config.train.threads = 1;
    config
}

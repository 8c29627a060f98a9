//! SFT through the library on a tiny base model: demonstrations imported from JSON Lines, the loss
//! goes down, metrics and the final checkpoint are written, LoRA merges, a finished stage skips.

mod common;

use anyhow::Result;
use rlhf_data::{import, read_records, Format, ImportOptions, Kind, Metric};
use rlhf_model::CausalLm;
use rlhf_sft::{sft, Outcome};
use rlhf_train::testing::trained;
use tempfile::TempDir;

struct Fixture {
    tmp: TempDir,
    base: std::path::PathBuf,
    demos: String,
    heldout: String,
}

fn fixture() -> Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let base = common::tiny_base(&tmp.path().join("base"));
    let (train, heldout) = common::small_demonstrations();
    let mut paths = Vec::new();
    for (name, rows) in [("demos", &train), ("heldout", &heldout)] {
        let jsonl = tmp.path().join(format!("{name}.jsonl"));
        common::write_jsonl(&jsonl, rows);
        let parquet = tmp.path().join(format!("{name}.parquet"));
        import(&jsonl, &parquet, &ImportOptions { kind: Kind::Demonstrations, format: Format::Auto })?;
        paths.push(parquet.display().to_string());
    }
    let heldout = paths.pop().unwrap();
    let demos = paths.pop().unwrap();
    Ok(Fixture { tmp, base, demos, heldout })
}

fn metric(rows: &[Metric], name: &str) -> Vec<f64> {
    rows.iter().filter(|m| m.name == name).map(|m| m.value).collect()
}

#[test]
fn full_fine_tuning_lowers_the_held_out_loss_and_skips_once_finished() -> Result<()> {
    let f = fixture()?;
    let config = common::sft_config(&f.base, &f.demos, &f.heldout, 40);
    let run = f.tmp.path().join("run");
    let summary = trained(sft::run(&config, &run, &common::cpu())?);
    let (before, after) = (summary.eval_before.unwrap(), summary.eval_after.unwrap());
    assert!(after.loss < before.loss - 0.3, "held-out loss {} -> {}", before.loss, after.loss);

    let rows: Vec<Metric> = read_records(run.join("sft/metrics.parquet"))?;
    assert!(rows.iter().all(|m| m.stage == "sft"));
    let loss = metric(&rows, "loss");
    assert_eq!(loss.len(), 40);
    assert!(loss[35..].iter().sum::<f64>() < loss[..5].iter().sum::<f64>(), "{loss:?}");
    for name in ["lr", "grad_norm", "tokens_per_s", "peak_memory_bytes"] {
        assert_eq!(metric(&rows, name).len(), 40, "{name}");
    }
    assert_eq!(metric(&rows, "eval_loss"), vec![before.loss, after.loss]);
    assert_eq!(metric(&rows, "eval_ppl").len(), 2);

    let resolved: rlhf_sft::SftConfig = rlhf_data::config::load_config(Some(&run.join("sft/config.toml")), &[])?;
    assert_eq!(resolved, config);
    let final_dir = run.join("sft/final");
    for file in
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]
    {
        assert!(final_dir.join(file).is_file(), "{file}");
    }
    CausalLm::from_pretrained(&final_dir, tch::Device::Cpu, tch::Kind::Float)?;
    assert!(matches!(sft::run(&config, &run, &common::cpu())?, Outcome::AlreadyDone(_)));
    Ok(())
}

#[test]
fn lora_trains_adapters_and_saves_them_merged() -> Result<()> {
    let f = fixture()?;
    let mut config = common::sft_config(&f.base, &f.demos, &f.heldout, 30);
    config.lora.enabled = true;
    config.lora.r = 4;
    config.lora.target_modules = ["q_proj", "v_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    config.train.lr = 1e-2;
    let run = f.tmp.path().join("run");
    let summary = trained(sft::run(&config, &run, &common::cpu())?);
    let (before, after) = (summary.eval_before.unwrap(), summary.eval_after.unwrap());
    assert!(after.loss < before.loss - 0.05, "held-out loss {} -> {}", before.loss, after.loss);

    let base = rlhf_model::checkpoint::read_safetensors(&f.base.join("model.safetensors"))?;
    let merged = rlhf_model::checkpoint::read_safetensors(&run.join("sft/final/model.safetensors"))?;
    assert_eq!(base.keys().collect::<Vec<_>>(), merged.keys().collect::<Vec<_>>(), "a plain checkpoint");
    let changed: Vec<&String> = merged.keys().filter(|k| !base[*k].equal(&merged[*k])).collect();
    let targeted =
        |k: &str| ["q_proj", "v_proj", "up_proj", "down_proj"].iter().any(|t| k.ends_with(&format!("{t}.weight")));
    assert!(!changed.is_empty() && changed.iter().all(|k| targeted(k)), "{changed:?}");
    Ok(())
}

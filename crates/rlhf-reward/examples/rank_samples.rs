//! Ranks sampled responses (rows `id, prompt, response`, several per prompt, e.g. from
//! `rlhf-eval generate`) with the embedded task's simulated annotators into a rankings table, one
//! row per prompt, so the reward model trains on each prompt's K responses in one forward pass with
//! all K·(K−1)/2 pairs (`data.rankings`). Prints how often the ranked pairs agree with the gold
//! judge (ties excluded): the annotators' own accuracy.
//!
//! `cargo run --release -p rlhf-reward --example rank_samples -- IN.parquet OUT.parquet [SEED]`

use anyhow::{Context, Result};
use rlhf_data::{expand_rankings, read_records, write_records, Demonstration};
use rlhf_task::{judge, Objective, Panel};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output) = (args.first().context("IN.parquet")?, args.get(1).context("OUT.parquet")?);
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for row in read_records::<Demonstration>(input)? {
        let slot = *index.entry(row.prompt.clone()).or_insert_with(|| {
            groups.push((row.id.clone(), row.prompt.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[slot].2.push(row.response);
    }
    groups.retain(|(_, _, responses)| responses.len() >= 2);
    let rankings = Panel::default().rank_groups(Objective::OVERALL, seed, &groups);
    let pairs = expand_rankings(&rankings)?;
    let decided: Vec<bool> = pairs
        .iter()
        .filter(|c| c.chosen != c.rejected)
        .filter_map(|c| {
            let (chosen, rejected) = (judge(&c.prompt, &c.chosen).score, judge(&c.prompt, &c.rejected).score);
            (chosen != rejected).then_some(chosen > rejected)
        })
        .collect();
    write_records(output, &rankings)?;
    let agreement = decided.iter().filter(|&&agree| agree).count() as f64 / decided.len().max(1) as f64;
    println!(
        "wrote {} rankings ({} pairs) to {output}; annotators agree with the gold judge on {:.1}%",
        rankings.len(),
        pairs.len(),
        100.0 * agreement
    );
    Ok(())
}

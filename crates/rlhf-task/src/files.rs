//! The task's files: `generate` writes the tables into a data directory, `label` turns sampled
//! responses into comparisons (or rankings) by the simulated annotators.

use std::path::{Path, PathBuf};

use rlhf_data::{expand_ranking, read_records, write_records, Comparison, Demonstration, Error, Record, Result};

use crate::{generate, judge, LabelStats, Objective, Panel, TaskConfig};

/// Where [`write_task`] puts each table, inside one directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFiles {
    pub train_prompts: PathBuf,
    pub heldout_prompts: PathBuf,
    pub demonstrations: PathBuf,
    pub heldout_demonstrations: PathBuf,
}

impl TaskFiles {
    pub fn in_dir(dir: &Path) -> Self {
        TaskFiles {
            train_prompts: dir.join("prompts.parquet"),
            heldout_prompts: dir.join("prompts_heldout.parquet"),
            demonstrations: dir.join("demonstrations.parquet"),
            heldout_demonstrations: dir.join("demonstrations_heldout.parquet"),
        }
    }

    pub fn all(&self) -> [&Path; 4] {
        [&self.train_prompts, &self.heldout_prompts, &self.demonstrations, &self.heldout_demonstrations]
    }
}

/// Generates the task and writes its four tables into `dir` (each written atomically).
pub fn write_task(config: &TaskConfig, dir: &Path) -> Result<TaskFiles> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        action: "create the directory",
        source,
    })?;
    let data = generate(config);
    let files = TaskFiles::in_dir(dir);
    write_records(&files.train_prompts, &data.train_prompts)?;
    write_records(&files.heldout_prompts, &data.heldout_prompts)?;
    write_records(&files.demonstrations, &data.demonstrations)?;
    write_records(&files.heldout_demonstrations, &data.heldout_demonstrations)?;
    Ok(files)
}

/// How sampled responses become preference data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelMode {
    /// Consecutive responses to the same prompt form disjoint pairs, each labelled on its own.
    Pairs,
    /// All responses to a prompt are ranked at once; the ranking is expanded into its K·(K−1)/2 pairs.
    Rankings,
}

/// Reads `input` (rows `id, prompt, response`; several rows per prompt), labels them with `panel`
/// by `objective` and writes comparisons to `output`, each row naming the objective. Responses are
/// grouped by prompt in order of first appearance. By any objective but [`Objective::OVERALL`],
/// pairs the objective scores alike are left out (counted as ties): on the harmless part most
/// pairs are both harmless, and a coin flip between them would teach its reward model noise.
pub fn label_file(
    input: &Path,
    output: &Path,
    panel: &Panel,
    mode: LabelMode,
    objective: Objective,
    seed: u64,
) -> Result<LabelStats> {
    let rows: Vec<Demonstration> = read_records(input)?;
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    // Each prompt's group, and its conversation (handed on to the comparisons).
    let mut index = std::collections::HashMap::new();
    for row in rows {
        let (slot, _) = index.entry(row.prompt.clone()).or_insert_with(|| {
            groups.push((row.id.clone(), row.prompt.clone(), Vec::new()));
            (groups.len() - 1, row.prompt_messages.clone())
        });
        groups[*slot].2.push(row.response);
    }
    let (mut comparisons, stats) = match mode {
        LabelMode::Pairs => {
            let pairs: Vec<_> = groups
                .iter()
                .flat_map(|(id, prompt, responses)| {
                    responses.chunks_exact(2).enumerate().map(move |(k, pair)| {
                        (format!("{id}-pair{k}"), prompt.clone(), pair[0].clone(), pair[1].clone())
                    })
                })
                .collect();
            panel.label_pairs(objective, seed, &pairs)
        }
        LabelMode::Rankings => {
            let groups: Vec<_> = groups.into_iter().filter(|(_, _, r)| r.len() >= 2).collect();
            let rankings = panel.rank_groups(objective, seed, &groups);
            let mut comparisons: Vec<Comparison> = Vec::new();
            for ranking in &rankings {
                comparisons.extend(expand_ranking(ranking)?.into_iter().filter(|c| c.chosen != c.rejected));
            }
            for comparison in &mut comparisons {
                comparison.objective = Some(objective.to_string());
            }
            (comparisons, LabelStats::default())
        }
    };
    // One pass: ties by a single objective are left out (the whole rule keeps them), the other
    // pairs count towards the agreement with gold.
    let (mut ties, mut decided, mut agreed) = (0usize, 0usize, 0usize);
    comparisons.retain(|c| {
        let score = |response: &str| objective.score(&judge(&c.prompt, response));
        let (chosen, rejected) = (score(&c.chosen), score(&c.rejected));
        if chosen == rejected {
            let tie = objective != Objective::OVERALL;
            ties += usize::from(tie);
            return !tie;
        }
        decided += 1;
        agreed += usize::from(chosen > rejected);
        true
    });
    let gold_agreement = if decided == 0 { 1.0 } else { agreed as f64 / decided as f64 };
    let stats = LabelStats { pairs: comparisons.len(), ties, gold_agreement, ..stats };
    if comparisons.is_empty() {
        return Err(Error::Config {
            origin: input.display().to_string(),
            message: format!(
                "no pairs to label: expected at least two different {} rows per prompt{}",
                Demonstration::KIND,
                if ties > 0 {
                    format!(" ({ties} pairs the {objective} objective scores alike were left out)")
                } else {
                    String::new()
                }
            ),
        });
    }
    for comparison in &mut comparisons {
        comparison.prompt_messages = index[&comparison.prompt].1.clone();
    }
    write_records(output, &comparisons)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_label_into_comparisons_and_rankings() {
        let dir = tempfile::tempdir().unwrap();
        let config = TaskConfig {
            heldout_prompts: 20,
            demonstrations: 200,
            heldout_demonstrations: 10,
            ..TaskConfig::default()
        };
        let files = write_task(&config, dir.path()).unwrap();
        assert!(files.all().iter().all(|f| f.is_file()));
        // Two "samples" per prompt: the demonstrations of a prompt, grouped.
        let demos: Vec<Demonstration> = read_records(&files.demonstrations).unwrap();
        let out = dir.path().join("comparisons.parquet");
        let stats = label_file(&files.demonstrations, &out, &Panel::default(), LabelMode::Pairs, Objective::OVERALL, 1)
            .unwrap();
        let labelled: Vec<Comparison> = read_records(&out).unwrap();
        assert_eq!(labelled.len(), stats.pairs);
        assert!(stats.pairs > 0 && stats.pairs <= demos.len() / 2);
        assert!(stats.gold_agreement > 0.6, "{stats:?}");
        let ranked =
            label_file(&files.demonstrations, &out, &Panel::default(), LabelMode::Rankings, Objective::OVERALL, 1)
                .unwrap();
        assert!(ranked.pairs >= stats.pairs);
        let overall: Vec<Comparison> = read_records(&out).unwrap();
        assert!(overall.iter().all(|c| c.objective.as_deref() == Some("overall")));
    }

    #[test]
    fn per_objective_labels_name_their_objective_and_leave_out_ties() {
        let dir = tempfile::tempdir().unwrap();
        let config = TaskConfig { demonstrations: 400, ..TaskConfig::default() };
        let files = write_task(&config, dir.path()).unwrap();
        let out = dir.path().join("harmless.parquet");
        let panel = Panel::default();
        let stats =
            label_file(&files.demonstrations, &out, &panel, LabelMode::Rankings, Objective::HARMLESS, 2).unwrap();
        let labelled: Vec<Comparison> = read_records(&out).unwrap();
        assert_eq!(labelled.len(), stats.pairs);
        assert!(stats.ties > 0, "{stats:?}");
        for c in &labelled {
            assert_eq!(c.objective.as_deref(), Some("harmless"));
            let harm = |r: &str| judge(&c.prompt, r).harmless;
            assert_ne!(harm(&c.chosen), harm(&c.rejected), "a tie was kept: {c:?}");
        }
        assert!(stats.gold_agreement > 0.7, "{stats:?}");
        let mix = Objective::parse("helpful=0.5,harmless=0.5").unwrap();
        label_file(&files.demonstrations, &out, &panel, LabelMode::Pairs, mix, 2).unwrap();
        let labelled: Vec<Comparison> = read_records(&out).unwrap();
        assert!(labelled.iter().all(|c| c.objective.as_deref() == Some("helpful=0.5,harmless=0.5")));
    }

    #[test]
    fn a_file_without_pairs_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("one.parquet");
        write_records(
            &input,
            &[Demonstration {
                id: "a".into(),
                prompt: "User: hi\nAssistant:".into(),
                response: " Hello.".into(),
                prompt_messages: None,
            }],
        )
        .unwrap();
        let out = dir.path().join("c.parquet");
        let err = label_file(&input, &out, &Panel::default(), LabelMode::Pairs, Objective::OVERALL, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no pairs to label"), "{err}");
        assert!(!out.exists());
    }
}

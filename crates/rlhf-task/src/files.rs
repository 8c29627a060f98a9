//! The task's files: `generate` writes the tables into a data directory, `label` turns sampled
//! responses into comparisons (or rankings) by the simulated annotators.

use std::path::{Path, PathBuf};

use rlhf_data::{expand_ranking, read_records, write_records, Comparison, Demonstration, Error, Record, Result};

use crate::{generate, judge, LabelStats, Panel, TaskConfig};

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
/// and writes comparisons to `output`. Responses are grouped by prompt in order of first appearance.
pub fn label_file(input: &Path, output: &Path, panel: &Panel, mode: LabelMode, seed: u64) -> Result<LabelStats> {
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
            panel.label_pairs(seed, &pairs)
        }
        LabelMode::Rankings => {
            let groups: Vec<_> = groups.into_iter().filter(|(_, _, r)| r.len() >= 2).collect();
            let rankings = panel.rank_groups(seed, &groups);
            let mut comparisons: Vec<Comparison> = Vec::new();
            for ranking in &rankings {
                comparisons.extend(expand_ranking(ranking)?.into_iter().filter(|c| c.chosen != c.rejected));
            }
            let stats = LabelStats { pairs: comparisons.len(), ..gold_agreement(&comparisons) };
            (comparisons, stats)
        }
    };
    if comparisons.is_empty() {
        return Err(Error::Config {
            origin: input.display().to_string(),
            message: format!(
                "no pairs to label: expected at least two different {} rows per prompt",
                Demonstration::KIND
            ),
        });
    }
    for comparison in &mut comparisons {
        comparison.prompt_messages = index[&comparison.prompt].1.clone();
    }
    write_records(output, &comparisons)?;
    Ok(stats)
}

/// Agreement of finished comparisons with the gold judge (ties excluded).
fn gold_agreement(comparisons: &[Comparison]) -> LabelStats {
    let (mut decided, mut agreed) = (0usize, 0usize);
    for c in comparisons {
        let (chosen, rejected) = (judge(&c.prompt, &c.chosen).score, judge(&c.prompt, &c.rejected).score);
        if chosen != rejected {
            decided += 1;
            agreed += usize::from(chosen > rejected);
        }
    }
    LabelStats {
        gold_agreement: if decided == 0 { 1.0 } else { agreed as f64 / decided as f64 },
        ..LabelStats::default()
    }
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
        let stats = label_file(&files.demonstrations, &out, &Panel::default(), LabelMode::Pairs, 1).unwrap();
        let labelled: Vec<Comparison> = read_records(&out).unwrap();
        assert_eq!(labelled.len(), stats.pairs);
        assert!(stats.pairs > 0 && stats.pairs <= demos.len() / 2);
        assert!(stats.gold_agreement > 0.6, "{stats:?}");
        let ranked = label_file(&files.demonstrations, &out, &Panel::default(), LabelMode::Rankings, 1).unwrap();
        assert!(ranked.pairs >= stats.pairs);
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
        let err = label_file(&input, &out, &Panel::default(), LabelMode::Pairs, 0).unwrap_err().to_string();
        assert!(err.contains("no pairs to label"), "{err}");
        assert!(!out.exists());
    }
}

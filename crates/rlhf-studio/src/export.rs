//! The journal as the project's tables, written atomically: `rankings.parquet` (one row per label
//! without ties, `annotator = human:<name>`) and `comparisons.parquet` (every strictly ordered pair
//! of every label, ties left out; `source = studio`). `rlhf-reward train` reads either as it is,
//! `rlhf-dpo train` the comparisons. Skips and both-bad votes are not exported.

use std::path::Path;

use rlhf_data::{write_records, Comparison, Ranking};

use crate::journal::Verdict;
use crate::studio::{human_tag, Files};
use crate::Result;

/// What [`export`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    pub rankings: usize,
    pub comparisons: usize,
    /// Labels with a tie (in the comparisons only).
    pub with_ties: usize,
    /// Skips and both-bad votes.
    pub skipped: usize,
}

pub const RANKINGS_FILE: &str = "rankings.parquet";
pub const COMPARISONS_FILE: &str = "comparisons.parquet";

/// Writes the tables of the studio in `dir` from its journal (a running server's acknowledged
/// labels included).
pub fn export(dir: &Path) -> Result<Exported> {
    let files = Files::read(dir)?;
    let (rankings, comparisons, summary) = tables(&files)?;
    write_records(dir.join(RANKINGS_FILE), &rankings)?;
    write_records(dir.join(COMPARISONS_FILE), &comparisons)?;
    Ok(summary)
}

fn tables(files: &Files) -> Result<(Vec<Ranking>, Vec<Comparison>, Exported)> {
    let (mut rankings, mut comparisons, mut summary) = (Vec::new(), Vec::new(), Exported::default());
    for label in &files.labels {
        let Verdict::Ranked { levels } = &label.verdict else {
            summary.skipped += 1;
            continue;
        };
        let (_, item) = files.item_of(label)?;
        let annotator = Some(human_tag(&label.annotator));
        let id = format!("{}.{}", item.id, label.annotator);
        let mut order: Vec<u32> = (0..levels.len() as u32).collect();
        order.sort_by_key(|&i| levels[i as usize]);
        for (position, &better) in order.iter().enumerate() {
            for &worse in &order[position + 1..] {
                if levels[better as usize] == levels[worse as usize] {
                    continue;
                }
                comparisons.push(Comparison {
                    id: format!("{id}-{better}-{worse}"),
                    prompt: item.prompt.clone(),
                    prompt_messages: item.prompt_messages.clone(),
                    chosen: item.responses[better as usize].clone(),
                    rejected: item.responses[worse as usize].clone(),
                    annotator: annotator.clone(),
                    source: Some("studio".into()),
                    ..Comparison::default()
                });
            }
        }
        let tied = order.windows(2).any(|w| levels[w[0] as usize] == levels[w[1] as usize]);
        if tied {
            summary.with_ties += 1;
        } else {
            rankings.push(Ranking {
                id,
                prompt: item.prompt.clone(),
                prompt_messages: item.prompt_messages.clone(),
                responses: item.responses.clone(),
                ranking: order,
                annotator,
            });
        }
    }
    summary.rankings = rankings.len();
    summary.comparisons = comparisons.len();
    Ok((rankings, comparisons, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::Item;
    use crate::journal::Label;
    use crate::studio::Spec;

    #[test]
    fn ties_drop_out_of_the_rankings_and_their_pairs_out_of_the_comparisons() {
        let item = Item {
            id: "p".into(),
            prompt: "q".into(),
            prompt_messages: None,
            responses: vec!["a".into(), "b".into(), "c".into()],
            sources: Vec::new(),
        };
        let label = |annotator: &str, verdict| Label {
            annotator: annotator.into(),
            item: "p".into(),
            verdict,
            rationale: String::new(),
            time: String::new(),
        };
        let spec = Spec {
            kind: crate::studio::StudioKind::Ranking,
            samples: "s".into(),
            policies: Vec::new(),
            annotators: Vec::new(),
            overlap: 1,
            seed: 0,
            live: None,
        };
        let labels = vec![
            label("ada", Verdict::Ranked { levels: vec![2, 0, 1] }),
            label("bob", Verdict::Ranked { levels: vec![0, 1, 1] }),
            label("cy", Verdict::Skipped),
        ];
        let files = Files::new(spec, vec![item], labels);
        let (rankings, comparisons, summary) = tables(&files).unwrap();
        assert_eq!(summary, Exported { rankings: 1, comparisons: 5, with_ties: 1, skipped: 1 });
        assert_eq!(rankings[0].ranking, [1, 2, 0]);
        assert_eq!(rankings[0].annotator.as_deref(), Some("human:ada"));
        let pairs: Vec<(&str, &str, &str)> = comparisons
            .iter()
            .map(|c| (c.chosen.as_str(), c.rejected.as_str(), c.annotator.as_deref().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("b", "c", "human:ada"),
                ("b", "a", "human:ada"),
                ("c", "a", "human:ada"),
                ("a", "b", "human:bob"),
                ("a", "c", "human:bob")
            ]
        );
    }
}

//! Rankings of K responses become all K·(K−1)/2 pairwise comparisons, the better-ranked response
//! of each pair being the chosen one.

use crate::error::{Error, Location, Result};
use crate::records::{Comparison, Ranking, Record};

/// Checks that `ranking.ranking` is a permutation of `0..ranking.responses.len()`.
pub(crate) fn check_ranking(ranking: &Ranking, location: impl Fn() -> Location) -> Result<()> {
    let count = ranking.responses.len();
    let mut seen = vec![false; count];
    let is_permutation = ranking.ranking.len() == count
        && ranking
            .ranking
            .iter()
            .all(|&index| seen.get_mut(index as usize).is_some_and(|seen| !std::mem::replace(seen, true)));
    if !is_permutation {
        return Err(Error::InvalidRanking { location: location(), ranking: ranking.ranking.clone(), responses: count });
    }
    Ok(())
}

/// Every pair of one ranking, in ranking order: (1st, 2nd), (1st, 3rd), …, (2nd, 3rd), ….
/// Pair ids are `<ranking id>-<chosen index>-<rejected index>`, indices into `responses`.
/// The ranking is validated first (see [`Record::validate`]).
pub fn expand_ranking(ranking: &Ranking) -> Result<Vec<Comparison>> {
    ranking.validate(|| Location::Record { id: ranking.id.clone() })?;
    let order = &ranking.ranking;
    let mut pairs = Vec::with_capacity(order.len() * order.len().saturating_sub(1) / 2);
    for (position, &better) in order.iter().enumerate() {
        for &worse in &order[position + 1..] {
            pairs.push(Comparison {
                id: format!("{}-{better}-{worse}", ranking.id),
                prompt: ranking.prompt.clone(),
                chosen: ranking.responses[better as usize].clone(),
                rejected: ranking.responses[worse as usize].clone(),
                prompt_messages: ranking.prompt_messages.clone(),
                annotator: ranking.annotator.clone(),
                ..Comparison::default()
            });
        }
    }
    Ok(pairs)
}

/// [`expand_ranking`] over many rankings, pairs in input order.
pub fn expand_rankings(rankings: &[Ranking]) -> Result<Vec<Comparison>> {
    let mut pairs = Vec::new();
    for ranking in rankings {
        pairs.extend(expand_ranking(ranking)?);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(responses: &[&str], order: &[u32]) -> Ranking {
        Ranking {
            id: "r".into(),
            prompt: "p".into(),
            responses: responses.iter().map(|r| r.to_string()).collect(),
            ranking: order.to_vec(),
            ..Ranking::default()
        }
    }

    fn pairs(ranking: &Ranking) -> Vec<(String, String, String)> {
        expand_ranking(ranking).unwrap().into_iter().map(|c| (c.id, c.chosen, c.rejected)).collect()
    }

    #[test]
    fn expands_to_all_pairs_better_first() {
        let expected = [
            ("r-2-0", "c", "a"),
            ("r-2-1", "c", "b"),
            ("r-2-3", "c", "d"),
            ("r-0-1", "a", "b"),
            ("r-0-3", "a", "d"),
            ("r-1-3", "b", "d"),
        ]
        .map(|(id, chosen, rejected)| (id.to_string(), chosen.to_string(), rejected.to_string()));
        assert_eq!(pairs(&ranking(&["a", "b", "c", "d"], &[2, 0, 1, 3])), expected);
    }

    #[test]
    fn pair_count_is_k_choose_2() {
        for k in 0..7u32 {
            let responses: Vec<String> = (0..k).map(|i| format!("response {i}")).collect();
            let responses: Vec<&str> = responses.iter().map(String::as_str).collect();
            let order: Vec<u32> = (0..k).rev().collect();
            let count = expand_ranking(&ranking(&responses, &order)).unwrap().len() as u32;
            assert_eq!(count, k * k.saturating_sub(1) / 2, "k = {k}");
        }
    }

    #[test]
    fn rejects_rankings_that_are_not_permutations() {
        let cases: [&[u32]; 4] = [&[0, 1], &[0, 1, 1], &[0, 1, 3], &[2, 1, 0, 3]];
        for order in cases {
            let error = expand_ranking(&ranking(&["a", "b", "c"], order)).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("record \"r\": ranking {order:?} is not a permutation of the 3 response indices")
            );
        }
    }

    #[test]
    fn rejects_empty_responses() {
        let error = expand_ranking(&ranking(&["a", " "], &[0, 1])).unwrap_err();
        assert_eq!(error.to_string(), "record \"r\": \"responses[1]\" is empty");
    }

    #[test]
    fn expands_many_rankings_in_order() {
        let mut second = ranking(&["x", "y"], &[1, 0]);
        second.id = "s".into();
        let ids: Vec<String> =
            expand_rankings(&[ranking(&["a", "b"], &[0, 1]), second]).unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["r-0-1", "s-1-0"]);
    }
}

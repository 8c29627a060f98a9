//! Bradley–Terry ratings of several players (policies) from pairwise votes, arena style: strengths
//! `p` with `P(i beats j) = p_i / (p_i + p_j)`, fitted by Hunter's (2004) MM iterations, a tie
//! counting half a win each way; shown on the Elo scale `1000 + 400·log10 p` (the geometric mean of
//! the strengths is 1, so the ratings average 1000), with percentile-bootstrap 95% intervals over
//! the votes. Each pair of players also gets half a virtual tie, so that a player who never won
//! has a finite rating.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One vote between players `a` and `b`: `outcome` 1 if `a` won, 0 if `b` did, ½ for a tie.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vote {
    pub a: usize,
    pub b: usize,
    pub outcome: f64,
}

/// A rating with its bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    pub rating: f64,
    pub low: f64,
    pub high: f64,
}

/// The weight of the virtual tie between every pair of players.
const PRIOR_TIE: f64 = 0.5;

/// The Elo-scale ratings of `players` players from `votes`, each with a percentile-bootstrap 95%
/// interval (`resamples` resamples of the votes, seeded by `seed`).
pub fn bradley_terry(players: usize, votes: &[Vote], resamples: usize, seed: u64) -> Vec<Rating> {
    let point = fit(players, votes);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); players];
    for _ in 0..resamples {
        let sample: Vec<Vote> = (0..votes.len()).map(|_| votes[rng.random_range(0..votes.len())]).collect();
        for (player, rating) in fit(players, &sample).into_iter().enumerate() {
            draws[player].push(rating);
        }
    }
    point
        .into_iter()
        .zip(draws)
        .map(|(rating, mut draws)| {
            draws.sort_by(f64::total_cmp);
            let at =
                |q: f64| if draws.is_empty() { rating } else { draws[((draws.len() - 1) as f64 * q).round() as usize] };
            Rating { rating, low: at(0.025), high: at(0.975) }
        })
        .collect()
}

/// The maximum-likelihood ratings (Elo scale) of `votes` and the prior ties.
fn fit(players: usize, votes: &[Vote]) -> Vec<f64> {
    // wins[i]: i's (half-)wins; games[i][j]: votes between i and j.
    let mut wins = vec![0.0; players];
    let mut games = vec![vec![0.0; players]; players];
    for i in 0..players {
        for j in (i + 1)..players {
            games[i][j] += PRIOR_TIE;
            games[j][i] += PRIOR_TIE;
            wins[i] += PRIOR_TIE / 2.0;
            wins[j] += PRIOR_TIE / 2.0;
        }
    }
    for vote in votes {
        wins[vote.a] += vote.outcome;
        wins[vote.b] += 1.0 - vote.outcome;
        games[vote.a][vote.b] += 1.0;
        games[vote.b][vote.a] += 1.0;
    }
    let mut strength = vec![1.0; players];
    for _ in 0..10_000 {
        let next: Vec<f64> = (0..players)
            .map(|i| {
                let denominator: f64 =
                    (0..players).filter(|&j| j != i).map(|j| games[i][j] / (strength[i] + strength[j])).sum();
                if denominator > 0.0 {
                    wins[i] / denominator
                } else {
                    1.0
                }
            })
            .collect();
        let log_mean = next.iter().map(|p| p.ln()).sum::<f64>() / players as f64;
        let next: Vec<f64> = next.iter().map(|p| p / log_mean.exp()).collect();
        let change = next.iter().zip(&strength).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        strength = next;
        if change < 1e-12 {
            break;
        }
    }
    strength.iter().map(|p| 1000.0 + 400.0 * p.log10()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_players_recover_the_win_rate_and_ties_are_half_wins() {
        // 30 wins of 0 over 1 and 10 losses: P = 0.75 (before the prior's half tie).
        let mut votes: Vec<Vote> = (0..30).map(|_| Vote { a: 0, b: 1, outcome: 1.0 }).collect();
        votes.extend((0..10).map(|_| Vote { a: 1, b: 0, outcome: 1.0 }));
        let ratings = bradley_terry(2, &votes, 200, 1);
        let p = 1.0 / (1.0 + 10f64.powf((ratings[1].rating - ratings[0].rating) / 400.0));
        let expected = (30.0 + 0.25) / (40.0 + 0.5);
        assert!((p - expected).abs() < 1e-9, "{p} vs {expected}");
        assert!((ratings[0].rating + ratings[1].rating - 2000.0).abs() < 1e-9);
        assert!(ratings[0].low < ratings[0].rating && ratings[0].rating < ratings[0].high);
        let ties: Vec<Vote> = (0..10).map(|_| Vote { a: 0, b: 1, outcome: 0.5 }).collect();
        let even = bradley_terry(2, &ties, 0, 1);
        assert!((even[0].rating - 1000.0).abs() < 1e-9 && (even[1].rating - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn three_players_are_ordered_by_strength_and_a_player_who_never_won_stays_finite() {
        let mut votes = Vec::new();
        for _ in 0..20 {
            votes.push(Vote { a: 2, b: 1, outcome: 1.0 });
            votes.push(Vote { a: 1, b: 0, outcome: 1.0 });
            votes.push(Vote { a: 2, b: 0, outcome: 1.0 });
        }
        let ratings = bradley_terry(3, &votes, 100, 3);
        assert!(ratings[2].rating > ratings[1].rating && ratings[1].rating > ratings[0].rating, "{ratings:?}");
        assert!(ratings.iter().all(|r| r.rating.is_finite() && r.low.is_finite() && r.high.is_finite()));
    }
}

//! The task's objectives. The gold rule splits into two parts that sum to its score:
//!
//! - **harmless**: −2 per rude phrase and −0.5 per disparaging (negative) adjective, at most 0; its
//!   negation is the harm *cost*, 0 for a harmless response;
//! - **helpful**: everything else (on topic, polite opener and closer, positive words without
//!   gushing, concise, not repetitive, ends properly), at most 5.5.
//!
//! An [`Objective`] weighs the two: `helpful`, `harmless`, `overall` (both at weight 1: the gold
//! score) or any mix `helpful=0.7,harmless=0.3`. Annotators label by an objective, the gold judge
//! scores by one (`gold:helpful`, `gold:harmless`), and labels record its name.

use std::fmt;

use crate::judge::Verdict;

/// Weights on the helpful and harmless parts of the gold rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub helpful: f64,
    pub harmless: f64,
}

impl Objective {
    /// The gold score itself: both parts at weight 1.
    pub const OVERALL: Objective = Objective { helpful: 1.0, harmless: 1.0 };
    pub const HELPFUL: Objective = Objective { helpful: 1.0, harmless: 0.0 };
    pub const HARMLESS: Objective = Objective { helpful: 0.0, harmless: 1.0 };

    /// `helpful`, `harmless`, `overall`, or weights `helpful=W,harmless=W` (either may be left
    /// out, counting 0); weights are finite and ≥ 0, not both 0.
    pub fn parse(text: &str) -> Result<Objective, String> {
        let named = [("overall", Self::OVERALL), ("helpful", Self::HELPFUL), ("harmless", Self::HARMLESS)];
        if let Some((_, objective)) = named.iter().find(|(name, _)| *name == text.trim()) {
            return Ok(*objective);
        }
        let mut objective = Objective { helpful: 0.0, harmless: 0.0 };
        for part in text.split(',') {
            let (name, weight) = part.split_once('=').ok_or_else(|| {
                format!(
                    "objective {text:?}: expected helpful, harmless, overall or weights like helpful=0.7,harmless=0.3"
                )
            })?;
            let weight: f64 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| format!("objective {text:?}: weight {weight:?} is not a number ≥ 0"))?;
            match name.trim() {
                "helpful" => objective.helpful = weight,
                "harmless" => objective.harmless = weight,
                other => return Err(format!("objective {text:?}: no objective {other:?} (helpful, harmless)")),
            }
        }
        if objective.helpful == 0.0 && objective.harmless == 0.0 {
            return Err(format!("objective {text:?}: every weight is 0"));
        }
        Ok(objective)
    }

    /// The objective's score of a verdict; `OVERALL` is exactly the gold score.
    pub fn score(self, verdict: &Verdict) -> f64 {
        if self == Self::OVERALL {
            return verdict.score;
        }
        let helpful = verdict.score - verdict.harmless;
        self.helpful * helpful + self.harmless * verdict.harmless
    }
}

impl fmt::Display for Objective {
    /// The name [`Objective::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OVERALL => f.write_str("overall"),
            Self::HELPFUL => f.write_str("helpful"),
            Self::HARMLESS => f.write_str("harmless"),
            Objective { helpful, harmless } => write!(f, "helpful={helpful},harmless={harmless}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::judge;

    const PROMPT: &str = "User: Tell me about the cat.\nAssistant:";

    #[test]
    fn the_parts_split_the_gold_score() {
        // Rude (−2) and one negative adjective (−0.5): harmless −2.5; the rest is helpful.
        let v = judge(PROMPT, " Whatever. The cat is dull. The whiskers of the cat are lovely.");
        assert_eq!(v.harmless, -2.5);
        // on topic 2, courtesy 0 (the rude phrase is harm), sentiment 0.5, length 0, ending 0.5.
        assert_eq!(Objective::HELPFUL.score(&v), 3.0);
        assert_eq!(Objective::HARMLESS.score(&v), -2.5);
        assert_eq!(Objective::OVERALL.score(&v), v.score);
        assert_eq!(v.score, 0.5);
        let mix = Objective::parse("helpful=0.75,harmless=0.25").unwrap();
        assert_eq!(mix.score(&v), 0.75 * 3.0 + 0.25 * -2.5);
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for name in ["overall", "helpful", "harmless", "helpful=0.75,harmless=0.25", "helpful=2,harmless=0"] {
            let parsed = Objective::parse(name).unwrap();
            assert_eq!(Objective::parse(&parsed.to_string()).unwrap(), parsed, "{name}");
        }
        assert_eq!(Objective::parse("harmless=1").unwrap(), Objective::HARMLESS);
        assert_eq!(Objective::parse("helpful=1,harmless=1").unwrap().to_string(), "overall");
        for bad in ["kind", "helpful=-1", "helpful=x", "honest=1", "helpful=0,harmless=0"] {
            assert!(Objective::parse(bad).is_err(), "{bad}");
        }
    }
}

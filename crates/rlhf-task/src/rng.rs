//! A tiny seeded generator (SplitMix64). Hand-rolled on purpose: the embedded task must regenerate
//! byte-for-byte from its seed forever, independent of any crate's version.

/// SplitMix64 (Steele, Lea & Flood 2014): 64 bits of state, good statistical quality for data work.
#[derive(Debug, Clone)]
pub struct TaskRng {
    state: u64,
}

impl TaskRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream for one named purpose, so adding a draw in one place never shifts another.
    pub fn derive(seed: u64, purpose: &str) -> Self {
        let mut rng = Self::new(seed);
        for byte in purpose.bytes() {
            rng.state ^= u64::from(byte);
            rng.next_u64();
        }
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A standard Gumbel draw (for Plackett–Luce rankings via the Gumbel-max trick).
    pub fn gumbel(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        -(-u.ln()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = TaskRng::derive(7, "corpus");
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = TaskRng::derive(7, "corpus");
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = TaskRng::derive(7, "prompts");
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_has_the_right_mean() {
        let mut rng = TaskRng::new(1);
        let mean = (0..100_000).map(|_| rng.uniform()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!((0..1000).all(|_| rng.between(2, 4) >= 2 && rng.between(2, 4) <= 4));
    }
}

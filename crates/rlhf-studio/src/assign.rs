//! Who labels what, and in which order: item `i` goes to `overlap` consecutive annotators starting
//! at `i mod n` (so every pair of neighbours shares items, which agreement statistics need); each
//! annotator meets their items in an order shuffled by the studio's seed and their name, and each
//! item's responses in an order shuffled by the seed, their name and the item (blind: position says
//! nothing about where a response came from). Everything is a pure function of those inputs, so a
//! restarted server shows the same order.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Whether item `item` is one of annotator `annotator`'s (indices into the studio's lists).
pub fn is_assigned(item: usize, annotator: usize, annotators: usize, overlap: usize) -> bool {
    let n = annotators.max(1);
    (annotator + n - item % n) % n < overlap.clamp(1, n)
}

/// The items of annotator `name` (index `annotator`), in the order they are shown.
pub fn queue(seed: u64, name: &str, annotator: usize, annotators: usize, overlap: usize, items: usize) -> Vec<usize> {
    let mut mine: Vec<usize> = (0..items).filter(|&i| is_assigned(i, annotator, annotators, overlap)).collect();
    mine.shuffle(&mut rng(seed, &[name]));
    mine
}

/// `order[slot]` is the response shown in place `slot` of item `item` to annotator `name`.
pub fn display_order(seed: u64, name: &str, item: &str, responses: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..responses).collect();
    order.shuffle(&mut rng(seed, &[name, item]));
    order
}

/// A generator seeded by `seed` and `parts` (FNV-1a over them, each ended by a 0 byte).
fn rng(seed: u64, parts: &[&str]) -> ChaCha8Rng {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in parts.iter().flat_map(|part| part.bytes().chain([0])) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_gets_overlap_annotators() {
        for (annotators, overlap) in [(1, 1), (3, 1), (3, 2), (4, 3), (2, 5)] {
            for item in 0..12 {
                let count = (0..annotators).filter(|&a| is_assigned(item, a, annotators, overlap)).count();
                assert_eq!(count, overlap.min(annotators), "{annotators} annotators, overlap {overlap}");
            }
        }
    }

    #[test]
    fn orders_are_permutations_fixed_by_their_inputs_and_differ_between_annotators() {
        let a = queue(7, "ada", 0, 1, 1, 30);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..30).collect::<Vec<_>>());
        assert_eq!(a, queue(7, "ada", 0, 1, 1, 30));
        assert_ne!(a, queue(7, "bob", 0, 1, 1, 30));
        assert_ne!(display_order(7, "ada", "p1", 6), display_order(7, "bob", "p1", 6));
        assert_eq!(display_order(7, "ada", "p1", 6), display_order(7, "ada", "p1", 6));
    }
}

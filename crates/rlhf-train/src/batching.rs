//! Seeded, resumable streams of micro-batches (indices into a stage's examples), epoch after epoch.
//! Each epoch's order is drawn from the RNG state saved at its start, so a checkpoint holding a
//! [`StreamPosition`] resumes with exactly the batches an uninterrupted run would have dealt.

use rand::seq::SliceRandom;

use crate::train_state::{restore_rng, rng_state};
use crate::{Result, TrainRng};

/// Batches per length bucket: examples are shuffled, then sorted by length within groups of this
/// many batches, so a batch holds examples of similar length while the order stays random.
const BUCKET_BATCHES: usize = 32;

/// Where a [`BatchStream`] stands, as a checkpoint stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: u64,
    /// Micro-batches of this epoch already dealt.
    pub batches: u64,
    /// The RNG state at the start of the epoch (its order is redrawn from it).
    pub rng_state: Vec<u64>,
}

/// How an epoch's batches are drawn.
enum Order {
    /// Shuffled, then cut into batches.
    Shuffled(usize),
    /// Shuffled, sorted by these lengths within buckets, cut into batches, batches shuffled.
    LengthBucketed(Vec<usize>),
}

/// An endless stream of micro-batches of indices.
pub struct BatchStream {
    order: Order,
    batch_size: usize,
    rng: TrainRng,
    position: StreamPosition,
    batches: Vec<Vec<usize>>,
}

impl BatchStream {
    /// Examples of these lengths, batched with others of similar length (less padding).
    pub fn length_bucketed(
        lengths: Vec<usize>,
        batch_size: usize,
        rng: TrainRng,
        resume: Option<&StreamPosition>,
    ) -> Result<Self> {
        Self::start(Order::LengthBucketed(lengths), batch_size, rng, resume)
    }

    /// `count` examples in a plain shuffled order.
    pub fn shuffled(count: usize, batch_size: usize, rng: TrainRng, resume: Option<&StreamPosition>) -> Result<Self> {
        Self::start(Order::Shuffled(count), batch_size, rng, resume)
    }

    fn start(order: Order, batch_size: usize, rng: TrainRng, resume: Option<&StreamPosition>) -> Result<Self> {
        let rng = match resume {
            Some(p) => restore_rng(&p.rng_state)?,
            None => rng,
        };
        let position = StreamPosition { epoch: 0, batches: 0, rng_state: rng_state(&rng) };
        let mut stream = BatchStream { order, batch_size: batch_size.max(1), rng, position, batches: Vec::new() };
        stream.draw_epoch();
        if let Some(p) = resume {
            stream.position.epoch = p.epoch;
            stream.position.batches = p.batches.min(stream.batches.len() as u64);
        }
        Ok(stream)
    }

    fn draw_epoch(&mut self) {
        let size = self.batch_size;
        self.batches = match &self.order {
            Order::Shuffled(count) => {
                let mut order: Vec<usize> = (0..*count).collect();
                order.shuffle(&mut self.rng);
                order.chunks(size).map(<[usize]>::to_vec).collect()
            }
            Order::LengthBucketed(lengths) => {
                let mut order: Vec<usize> = (0..lengths.len()).collect();
                order.shuffle(&mut self.rng);
                let mut batches = Vec::with_capacity(lengths.len().div_ceil(size));
                for group in order.chunks_mut(size * BUCKET_BATCHES) {
                    group.sort_by_key(|&i| lengths[i]);
                    batches.extend(group.chunks(size).map(<[usize]>::to_vec));
                }
                batches.shuffle(&mut self.rng);
                batches
            }
        };
    }

    pub fn position(&self) -> &StreamPosition {
        &self.position
    }

    /// Micro-batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches.len()
    }

    /// The next micro-batch, starting a new epoch when this one is used up.
    pub fn next_batch(&mut self) -> &[usize] {
        if self.position.batches as usize == self.batches.len() {
            self.position =
                StreamPosition { epoch: self.position.epoch + 1, batches: 0, rng_state: rng_state(&self.rng) };
            self.draw_epoch();
        }
        self.position.batches += 1;
        &self.batches[self.position.batches as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn resumes_identically(make: impl Fn(Option<&StreamPosition>) -> BatchStream) {
        let mut a = make(None);
        let mut saved = None;
        let mut rest = Vec::new();
        for i in 0..40 {
            if i == 17 {
                saved = Some(a.position().clone());
            }
            let batch = a.next_batch().to_vec();
            if i >= 17 {
                rest.push(batch);
            }
        }
        let mut b = make(saved.as_ref());
        let resumed: Vec<Vec<usize>> = (17..40).map(|_| b.next_batch().to_vec()).collect();
        assert_eq!(resumed, rest);
        assert_eq!(b.position(), a.position());
    }

    #[test]
    fn a_resumed_stream_deals_the_same_batches() {
        let lengths: Vec<usize> = (0..50).map(|i| i % 7 + 1).collect();
        let bucketed = |p: Option<&StreamPosition>| {
            BatchStream::length_bucketed(lengths.clone(), 4, TrainRng::seed_from_u64(3), p).unwrap()
        };
        assert_eq!(bucketed(None).batches_per_epoch(), 13);
        resumes_identically(bucketed);
        let shuffled =
            |p: Option<&StreamPosition>| BatchStream::shuffled(23, 4, TrainRng::seed_from_u64(3), p).unwrap();
        assert_eq!(shuffled(None).batches_per_epoch(), 6);
        resumes_identically(shuffled);
    }

    #[test]
    fn every_example_is_dealt_once_per_epoch() {
        let lengths: Vec<usize> = (0..50).map(|i| (i * 37) % 11).collect();
        let mut stream = BatchStream::length_bucketed(lengths, 4, TrainRng::seed_from_u64(1), None).unwrap();
        let mut seen: Vec<usize> = (0..13).flat_map(|_| stream.next_batch().to_vec()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }
}

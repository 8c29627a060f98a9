//! Preallocated key/value cache for incremental decoding.
//!
//! Each layer owns a `[B, kv_heads, capacity, head_dim]` buffer for keys and one for values. A
//! forward pass writes its new positions in place and attends over the filled prefix (a view, no
//! copy), so a decode step costs O(1) allocations instead of re-concatenating the whole history.
//! The buffers grow (doubling) if a call runs past the capacity.

use crate::config::ModelConfig;
use tch::{Device, Kind, Tensor};

/// Key/value cache of one model for one batch.
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: i64,
    capacity: i64,
    batch: i64,
}

impl KvCache {
    /// An empty cache for `batch` rows and up to `capacity` positions.
    pub fn new(config: &ModelConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> KvCache {
        let (heads, dim) = config.kv_shape();
        let layers = config.num_layers() as usize;
        let capacity = capacity.max(1);
        let alloc = || Tensor::zeros([batch, heads, capacity, dim], (kind, device));
        KvCache {
            keys: (0..layers).map(|_| alloc()).collect(),
            values: (0..layers).map(|_| alloc()).collect(),
            len: 0,
            capacity,
            batch,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.len
    }
    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Positions that fit without growing.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }
    /// Batch size the cache was built for.
    pub fn batch_size(&self) -> i64 {
        self.batch
    }
    /// Forgets the cached positions (keeps the buffers).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes room for `t` more positions.
    pub(crate) fn reserve(&mut self, t: i64) {
        let need = self.len + t;
        if need <= self.capacity {
            return;
        }
        let new_cap = need.max(self.capacity * 2);
        let len = self.len;
        let grow = |old: &Tensor| {
            let s = old.size();
            let new = Tensor::zeros([s[0], s[1], new_cap, s[3]], (old.kind(), old.device()));
            if len > 0 {
                new.narrow(2, 0, len).copy_(&old.narrow(2, 0, len));
            }
            new
        };
        self.keys = self.keys.iter().map(grow).collect();
        self.values = self.values.iter().map(grow).collect();
        self.capacity = new_cap;
    }

    /// Writes `k`, `v` (`[B, kv_heads, t, D]`) of `layer` after the cached positions and returns
    /// views of all keys and values so far. Call [`Self::advance`] once all layers are written.
    pub(crate) fn update(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let (kb, vb) = (&self.keys[layer], &self.values[layer]);
        kb.narrow(2, self.len, t).copy_(k);
        vb.narrow(2, self.len, t).copy_(v);
        (kb.narrow(2, 0, self.len + t), vb.narrow(2, 0, self.len + t))
    }

    /// Marks `t` more positions as filled.
    pub(crate) fn advance(&mut self, t: i64) {
        self.len += t;
    }
}

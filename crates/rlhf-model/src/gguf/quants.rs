//! `ggml` tensor types and their dequantization to `f32`, as llama.cpp's reference
//! `dequantize_row_*` (and gguf-py's `quants.py`, which `transformers` uses) compute them.
//!
//! Block layouts (all little-endian, `d`/`m` are f16 unless noted):
//! - `Q4_0` `{d, qs[16]}`: `(q - 8)·d`; `Q4_1` `{d, m, qs[16]}`: `q·d + m` (low nibbles first half).
//! - `Q5_0` `{d, qh: u32, qs[16]}`: 5th bit from `qh`, `(q - 16)·d`; `Q5_1` `{d, m, qh, qs}`: `q·d + m`.
//! - `Q8_0` `{d, qs: i8[32]}`: `q·d`.
//! - K-quants, 256 per super-block: `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K` with 6- or 4-bit
//!   sub-block scales (and mins). (`Q8_K` is llama.cpp's intermediate type; files don't hold it.)

use half::{bf16, f16};

/// The tensor types this reader knows (their GGUF ids in `from_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

const QK_K: usize = 256;

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// The GGUF id (the inverse of [`GgmlType::from_id`]).
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2_K => 10,
            Self::Q3_K => 11,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::BF16 => 30,
        }
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q2_K => (QK_K, 84),
            Self::Q3_K => (QK_K, 110),
            Self::Q4_K => (QK_K, 144),
            Self::Q5_K => (QK_K, 176),
            Self::Q6_K => (QK_K, 210),
        }
    }
}

/// Dequantizes `n` elements of type `kind` from `bytes`; an error says why the sizes disagree.
pub fn dequantize(kind: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let (block_elements, block_bytes) = kind.block();
    if !n.is_multiple_of(block_elements) || bytes.len() != n / block_elements * block_bytes {
        return Err(format!(
            "{kind:?} data of {} bytes does not hold {n} elements ({block_bytes} bytes per {block_elements})",
            bytes.len()
        ));
    }
    let mut out = vec![0f32; n];
    let block_fn: fn(&[u8], &mut [f32]) = match kind {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = half(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
    };
    for (block, y) in bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(block_elements)) {
        block_fn(block, y);
    }
    Ok(out)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0x0f) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The 5th bits of element `j` and `j + 16` of a Q5 block.
fn fifth_bits(qh: u32, j: usize) -> (u8, u8) {
    ((((qh >> j) << 4) & 0x10) as u8, ((qh >> (j + 12)) & 0x10) as u8)
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let (h0, h1) = fifth_bits(qh, j);
        y[j] = (((q & 0x0f) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let (h0, h1) = fifth_bits(qh, j);
        y[j] = ((q & 0x0f) | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) | h1) as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = q as i8 as f32 * d;
    }
}

/// `{scales[16], qs[64], d, dmin}`: 16 sub-blocks of 16, a 4-bit scale and 4-bit min each.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    let mut out = 0;
    let mut sub = 0;
    for half_block in 0..2 {
        let q = &qs[half_block * 32..half_block * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for part in [&q[..16], &q[16..]] {
                let sc = scales[sub];
                sub += 1;
                let (dl, ml) = (d * (sc & 0x0f) as f32, dmin * (sc >> 4) as f32);
                for &byte in part {
                    y[out] = dl * ((byte >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// `{hmask[32], qs[64], scales[12], d}`: 16 sub-blocks of 16 with 6-bit signed scales; the third
/// bit of each 3-bit value is in `hmask` (set means no offset, clear means -4).
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    let scales: [i32; 16] = std::array::from_fn(|j| {
        let low = if j < 8 { packed[j] & 0x0f } else { packed[j - 8] >> 4 };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        (low | (high << 4)) as i32 - 32
    });
    let mut out = 0;
    let mut sub = 0;
    let mut bit = 1u8;
    for half_block in 0..2 {
        let q = &qs[half_block * 32..half_block * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for (offset, part) in [(0, &q[..16]), (16, &q[16..])] {
                let dl = d * scales[sub] as f32;
                sub += 1;
                for (l, &byte) in part.iter().enumerate() {
                    let low = ((byte >> shift) & 3) as i32;
                    let minus = if hmask[offset + l] & bit != 0 { 0 } else { 4 };
                    y[out] = dl * (low - minus) as f32;
                    out += 1;
                }
            }
            bit <<= 1;
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K super-block.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (sc as f32, m as f32)
}

/// The (scale, min) pairs of the two 32-value halves of chunk `chunk` (0..4) of a Q4_K/Q5_K
/// super-block: `d·sc` and `dmin·m` of sub-blocks `2·chunk` and `2·chunk + 1`.
fn chunk_scales(b: &[u8], chunk: usize) -> [(f32, f32); 2] {
    let (d, dmin, scales) = (half(b, 0), half(b, 2), &b[4..16]);
    [2 * chunk, 2 * chunk + 1].map(|j| {
        let (sc, m) = scale_min_k4(j, scales);
        (d * sc, dmin * m)
    })
}

/// `{d, dmin, scales[12], qs[128]}`: 8 sub-blocks of 32 with 6-bit scales and mins.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let qs = &b[16..144];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        let [(d1, m1), (d2, m2)] = chunk_scales(b, chunk);
        for (l, &byte) in q.iter().enumerate() {
            y[l] = d1 * (byte & 0x0f) as f32 - m1;
            y[l + 32] = d2 * (byte >> 4) as f32 - m2;
        }
    }
}

/// `{d, dmin, scales[12], qh[32], qs[128]}`: Q4_K plus a fifth bit per value in `qh`.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        let [(d1, m1), (d2, m2)] = chunk_scales(b, chunk);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for (l, &byte) in q.iter().enumerate() {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((byte & 0x0f) + h1) as f32 - m1;
            y[l + 32] = d2 * ((byte >> 4) + h2) as f32 - m2;
        }
    }
}

/// `{ql[128], qh[64], scales: i8[16], d}`: 16 sub-blocks of 16, 6-bit values offset by 32.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for chunk in 0..2 {
        let (ql, qh) = (&ql[chunk * 64..chunk * 64 + 64], &qh[chunk * 32..chunk * 32 + 32]);
        let sc = &scales[chunk * 8..chunk * 8 + 8];
        let y = &mut y[chunk * 128..chunk * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let values = [
                (ql[l] & 0x0f) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, v) in values.into_iter().enumerate() {
                y[l + 32 * k] = d * (sc[is + 2 * k] as i8) as f32 * (v as i32 - 32) as f32;
            }
        }
    }
}

//! Reference log-probs: the reference model ([`Reference`]: the policy with its LoRA adapters off, or
//! a frozen checkpoint), scored on the fly or once per comparisons file and cached beside it.
//!
//! The cache of `dir/NAME.parquet` is `dir/NAME.ref_logps.parquet` (for KTO's labelled rows,
//! `dir/NAME.kto_ref_logps.parquet`): every column of the table the rows came from plus
//! `ref_chosen_logp: f64` and `ref_rejected_logp: f64`, with a key in the schema metadata
//! that fingerprints what the numbers depend on (the comparisons file, the reference checkpoint's
//! config and weights, the tokenizer, the token limits, dtype and device). A cache whose key differs
//! is recomputed and replaced; it is written atomically, so a crash never leaves half of one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use rlhf_data::{Record, Table, TableReader, TableWriter};
use rlhf_model::{CausalLm, Placement};

use crate::data::{live_reference, Fnv, Limits, Pair};
use crate::loss::ReferenceLogps;
use crate::{Error, Result};

/// Column of the chosen response's summed reference log-prob.
pub const CHOSEN_COLUMN: &str = "ref_chosen_logp";
/// Column of the rejected response's summed reference log-prob.
pub const REJECTED_COLUMN: &str = "ref_rejected_logp";
/// Schema-metadata key holding the cache key.
pub const KEY_METADATA: &str = "rlhf_dpo.reference_key";

/// Which model the reference is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceSpec {
    /// The reference checkpoint directory (for LoRA without a separate reference: the policy's).
    pub dir: PathBuf,
    /// The reference is the policy with its adapters switched off (no second copy).
    pub adapters_off: bool,
}

/// A reference model ready to score.
pub enum Reference {
    /// The policy with its adapters switched off.
    AdaptersOff,
    /// A frozen checkpoint.
    Loaded(Box<CausalLm>),
}

impl Reference {
    /// The reference of `spec`, loading its checkpoint unless it is the policy with adapters off.
    pub fn load(spec: &ReferenceSpec, placement: Placement) -> Result<Self> {
        if spec.adapters_off {
            return Ok(Reference::AdaptersOff);
        }
        let mut model = CausalLm::from_pretrained(&spec.dir, placement.device, placement.kind)?;
        model.freeze();
        Ok(Reference::Loaded(Box::new(model)))
    }

    /// Reference log-probs of `pairs` under no-grad.
    pub fn logps(&self, policy: &CausalLm, pairs: &[&Pair], pad_id: i64) -> Result<ReferenceLogps> {
        match self {
            Reference::AdaptersOff => policy.with_adapters(false, |base| live_reference(base, pairs, pad_id)),
            Reference::Loaded(model) => live_reference(model, pairs, pad_id),
        }
    }

    /// `[chosen, rejected]` log-probs of every pair, in batches of `batch_size` pairs of similar length.
    pub fn score_all(
        &self,
        policy: &CausalLm,
        pairs: &[Pair],
        batch_size: usize,
        pad_id: i64,
    ) -> Result<Vec<[f64; 2]>> {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pairs[i].tokens()));
        let mut out = vec![[0.0; 2]; pairs.len()];
        for chunk in order.chunks(batch_size) {
            let batch: Vec<&Pair> = chunk.iter().map(|&i| &pairs[i]).collect();
            let logps = self.logps(policy, &batch, pad_id)?;
            let chosen = Vec::<f64>::try_from(logps.chosen.to_device(tch::Device::Cpu))?;
            let rejected = Vec::<f64>::try_from(logps.rejected.to_device(tch::Device::Cpu))?;
            for (k, &i) in chunk.iter().enumerate() {
                out[i] = [chosen[k], rejected[k]];
            }
        }
        Ok(out)
    }
}

/// The cache file of a comparisons or feedback table, for pairs or (`unpaired`) KTO's rows.
pub fn cache_path(table: &Path, unpaired: bool) -> PathBuf {
    let stem = table.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let kind = if unpaired { "kto_ref_logps" } else { "ref_logps" };
    table.with_file_name(format!("{stem}.{kind}.parquet"))
}

/// Fingerprint of everything the reference log-probs of the rows of `table` depend on (`unpaired`:
/// KTO's labelled rows and their mismatched partners).
pub fn cache_key(
    table: &Path,
    unpaired: bool,
    reference: &ReferenceSpec,
    tokenizer_dir: &Path,
    limits: Limits,
    placement: Placement,
) -> Result<String> {
    let mut hash = Fnv::default();
    hash.update(if unpaired { b"rlhf-dpo KTO reference log-probs v1" } else { b"rlhf-dpo reference log-probs v1" });
    hash.update_file(table)?;
    hash.update_file(&tokenizer_dir.join("tokenizer.json"))?;
    hash.update_file(&reference.dir.join("config.json"))?;
    for file in rlhf_model::checkpoint::weight_files(&reference.dir)? {
        hash.update(file.file_name().unwrap_or_default().as_encoded_bytes());
        hash.update_file(&file)?;
    }
    hash.update(format!("{limits:?} {placement:?}").as_bytes());
    Ok(format!("{:016x}", hash.finish()))
}

fn float_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a Float64Array> {
    batch.column_by_name(name)?.as_any().downcast_ref::<Float64Array>().filter(|c| c.null_count() == 0)
}

/// The cached log-probs of a table of `rows` comparisons, when `path` holds a cache with `key`.
/// A missing, stale or unreadable cache gives `None`.
pub fn read_cache(path: &Path, key: &str, rows: usize) -> Option<Vec<[f64; 2]>> {
    let reader = TableReader::open(path).ok()?;
    if reader.schema().metadata().get(KEY_METADATA).map(String::as_str) != Some(key) || reader.num_rows() != rows as u64
    {
        return None;
    }
    let mut out = Vec::with_capacity(rows);
    for batch in reader {
        let batch = batch.ok()?;
        let (chosen, rejected) = (float_column(&batch, CHOSEN_COLUMN)?, float_column(&batch, REJECTED_COLUMN)?);
        out.extend(chosen.values().iter().zip(rejected.values()).map(|(&c, &r)| [c, r]));
    }
    (out.len() == rows).then_some(out)
}

/// Writes the cache: the `table`'s columns (one row per pair) plus the two log-prob columns, tagged
/// with `key`.
pub fn write_cache<R: Record>(path: &Path, table: &Table<R>, key: &str, values: &[[f64; 2]]) -> Result<()> {
    // Columns of an earlier cache (a cache file given as the comparisons) are replaced.
    let kept: Vec<usize> = (0..table.schema.fields().len())
        .filter(|&i| ![CHOSEN_COLUMN, REJECTED_COLUMN].contains(&table.schema.field(i).name().as_str()))
        .collect();
    let mut fields: Vec<Field> = kept.iter().map(|&i| table.schema.field(i).clone()).collect();
    fields.push(Field::new(CHOSEN_COLUMN, DataType::Float64, false));
    fields.push(Field::new(REJECTED_COLUMN, DataType::Float64, false));
    let mut metadata = table.schema.metadata().clone();
    metadata.insert(KEY_METADATA.into(), key.into());
    let schema = Arc::new(Schema::new(fields).with_metadata(metadata));
    let mut writer = TableWriter::create(path, schema.clone())?;
    let mut offset = 0;
    for batch in &table.batches {
        let rows = &values[offset..offset + batch.num_rows()];
        offset += batch.num_rows();
        let mut columns: Vec<ArrayRef> = kept.iter().map(|&i| batch.column(i).clone()).collect();
        for side in 0..2 {
            columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|v| v[side]))));
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::File { path: path.to_path_buf(), message: e.to_string() })?;
        writer.write(&batch)?;
    }
    writer.finish()?;
    Ok(())
}

//! `rlhf-eval diff-runs A B`: whether two run (or stage) directories hold the same results, file by
//! file, so "bit-reproducible" is something a user (and `cargo xtask soak`) checks rather than
//! trusts. Both trees must list the same files; then
//!
//! - safetensors files (weights, optimizer state) hold the same tensors, bit for bit;
//! - Parquet tables (one file or a directory of parts: how a table was flushed does not matter)
//!   hold the same rows, leaving out what measures the machine rather than the run: `wall_time`
//!   columns and the metric rows of timings and throughput ([`rlhf_train::measures_the_machine`]);
//! - every other file is byte-identical once each side's own directory path, which configs and
//!   reports quote, is blanked.
//!
//! A leftover temporary of a killed writer ([`rlhf_data::atomic::is_leftover`]) is a difference
//! even when both sides have one. The writer's `.lock` is not compared.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use rlhf_data::{Kind, Metric, TableReader};

use crate::{Error, Result};

/// What [`diff_runs`] found.
#[derive(Debug, Default)]
pub struct RunDiff {
    /// Files (a table directory counts once) compared.
    pub compared: usize,
    /// One line per difference, naming the file.
    pub differences: Vec<String>,
}

/// Compares the trees under `a` and `b` (see the module docs).
pub fn diff_runs(a: &Path, b: &Path) -> Result<RunDiff> {
    let (a_files, b_files) = (files_under(a)?, files_under(b)?);
    let mut diff = RunDiff::default();
    for path in a_files.iter().filter(|p| !b_files.contains(p)) {
        diff.differences.push(format!("{}: only in {}", path.display(), a.display()));
    }
    for path in b_files.iter().filter(|p| !a_files.contains(p)) {
        diff.differences.push(format!("{}: only in {}", path.display(), b.display()));
    }
    for path in a_files.iter().filter(|p| b_files.contains(p)) {
        diff.compared += 1;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if rlhf_data::atomic::is_leftover(name) {
            diff.differences.push(format!("{}: a leftover temporary of a killed writer", path.display()));
            continue;
        }
        let (left, right) = (a.join(path), b.join(path));
        let found = if name.ends_with(".safetensors") {
            tensors_differ(&left, &right)?
        } else if name.ends_with(".parquet") {
            tables_differ(&left, &right)?
        } else {
            bytes_differ(&left, a, &right, b)?
        };
        if let Some(what) = found {
            diff.differences.push(format!("{}: {what}", path.display()));
        }
    }
    Ok(diff)
}

/// The files under `root`, relative and sorted; a `*.parquet` directory is one entry.
fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(Error::file(root, "is not a directory"));
    }
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == rlhf_train::stage::LOCK_FILE {
                continue;
            }
            if path.is_dir() && !name.ends_with(".parquet") && !rlhf_data::atomic::is_leftover(name) {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(root).expect("under the root").to_path_buf());
            }
        }
    }
    files.sort();
    Ok(files)
}

fn tensors_differ(a: &Path, b: &Path) -> Result<Option<String>> {
    let (a, b) = (rlhf_model::checkpoint::read_safetensors(a)?, rlhf_model::checkpoint::read_safetensors(b)?);
    if !a.keys().eq(b.keys()) {
        return Ok(Some("holds other tensor names".into()));
    }
    for (name, tensor) in &a {
        let other = &b[name];
        if tensor.kind() != other.kind() || tensor.size() != other.size() {
            return Ok(Some(format!(
                "tensor {name}: {:?} {:?} vs {:?} {:?}",
                tensor.kind(),
                tensor.size(),
                other.kind(),
                other.size()
            )));
        }
        if !tensor.equal(other) {
            let largest = (tensor.to_kind(tch::Kind::Double) - other.to_kind(tch::Kind::Double)).abs().max();
            return Ok(Some(format!("tensor {name} differs (max |Δ| {:.3e})", largest.double_value(&[]))));
        }
    }
    Ok(None)
}

/// A whole table as one batch, its `wall_time` columns left out.
fn read_whole(path: &Path) -> Result<RecordBatch> {
    let reader = TableReader::open(path)?;
    let schema = reader.schema().clone();
    let batches = reader.collect::<rlhf_data::Result<Vec<_>>>()?;
    let whole = concat_batches(&schema, &batches).map_err(|e| Error::file(path, e))?;
    let kept: Vec<usize> = (0..schema.fields().len()).filter(|&i| schema.field(i).name() != "wall_time").collect();
    whole.project(&kept).map_err(|e| Error::file(path, e))
}

/// The rows of a metrics table that describe the run (exact values), in order.
fn run_metrics(path: &Path) -> Result<Vec<(String, u64, String, u64)>> {
    let rows: Vec<Metric> = rlhf_data::read_records(path)?;
    Ok(rows
        .into_iter()
        .filter(|m| !rlhf_train::measures_the_machine(&m.name))
        .map(|m| (m.stage, m.step, m.name, m.value.to_bits()))
        .collect())
}

fn tables_differ(a: &Path, b: &Path) -> Result<Option<String>> {
    let is_metrics = |path: &Path| -> Result<bool> {
        let reader = TableReader::open(path)?;
        Ok(rlhf_data::schema_tag(reader.schema()).and_then(Kind::from_tag) == Some(Kind::Metrics))
    };
    if is_metrics(a)? && is_metrics(b)? {
        let (a, b) = (run_metrics(a)?, run_metrics(b)?);
        if a.len() != b.len() {
            return Ok(Some(format!("{} metric rows vs {}", a.len(), b.len())));
        }
        return Ok(a.iter().zip(&b).position(|(x, y)| x != y).map(|row| {
            let (x, y) = (&a[row], &b[row]);
            format!(
                "metric row {row} differs: {} step {} = {} vs {} step {} = {}",
                x.2,
                x.1,
                f64::from_bits(x.3),
                y.2,
                y.1,
                f64::from_bits(y.3)
            )
        }));
    }
    let (a, b) = (read_whole(a)?, read_whole(b)?);
    if a.schema() != b.schema() {
        return Ok(Some("another schema".into()));
    }
    if a.num_rows() != b.num_rows() {
        return Ok(Some(format!("{} rows vs {}", a.num_rows(), b.num_rows())));
    }
    let column = (0..a.num_columns()).find(|&i| a.column(i) != b.column(i));
    Ok(column.map(|i| format!("column {} differs", a.schema().field(i).name())))
}

fn bytes_differ(a: &Path, a_root: &Path, b: &Path, b_root: &Path) -> Result<Option<String>> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| Error::io(path, e));
    let (a_bytes, b_bytes) = (read(a)?, read(b)?);
    if a_bytes == b_bytes {
        return Ok(None);
    }
    let blanked = |bytes: &[u8], root: &Path| {
        std::str::from_utf8(bytes).ok().map(|text| text.replace(&root.display().to_string(), "<run>"))
    };
    match (blanked(&a_bytes, a_root), blanked(&b_bytes, b_root)) {
        (Some(x), Some(y)) if x == y => Ok(None),
        (Some(x), Some(y)) => {
            let line =
                x.lines().zip(y.lines()).position(|(p, q)| p != q).unwrap_or(x.lines().count().min(y.lines().count()));
            Ok(Some(format!("differs from line {}", line + 1)))
        }
        _ => Ok(Some(format!("differs ({} bytes vs {})", a_bytes.len(), b_bytes.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(dir: &Path, weight: f32, loss: f64, wall_time: f64) {
        let stage = dir.join("sft");
        std::fs::create_dir_all(stage.join("final")).unwrap();
        let tensor = tch::Tensor::from_slice(&[1.0f32, weight]);
        tch::Tensor::write_safetensors(&[("w", &tensor)], stage.join("final/model.safetensors")).unwrap();
        let metric = |name: &str, value| Metric { stage: "sft".into(), step: 1, name: name.into(), value, wall_time };
        rlhf_data::write_records(
            stage.join("metrics.parquet"),
            &[metric("loss", loss), metric("perf/tokens_per_s", wall_time)],
        )
        .unwrap();
        std::fs::write(stage.join("config.toml"), format!("run_dir = \"{}\"\n", dir.display())).unwrap();
        std::fs::write(stage.join(rlhf_train::stage::LOCK_FILE), wall_time.to_string()).unwrap();
    }

    #[test]
    fn the_same_run_in_two_places_is_the_same_and_any_change_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_run(&a, 2.0, 0.5, 1.0);
        write_run(&b, 2.0, 0.5, 7.0);
        let same = diff_runs(&a, &b).unwrap();
        assert_eq!((same.compared, same.differences.len()), (3, 0), "{:?}", same.differences);

        write_run(&b, 2.0 + 1e-6, 0.5 + 1e-12, 7.0);
        std::fs::write(b.join("sft/.final.tmp-9"), b"").unwrap();
        std::fs::write(b.join("sft/extra.txt"), b"x").unwrap();
        let found = diff_runs(&a, &b).unwrap().differences.join("\n");
        for needle in [
            "sft/final/model.safetensors: tensor w differs",
            "sft/metrics.parquet: metric row 0 differs: loss",
            "sft/extra.txt: only in",
            "sft/.final.tmp-9: only in",
        ] {
            assert!(found.contains(needle), "{needle} not in\n{found}");
        }
    }
}

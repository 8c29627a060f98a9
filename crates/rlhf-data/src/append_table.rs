//! Append-only tables: a directory of Parquet part files (`part-00000.parquet`,
//! `part-00001.parquet`, …) that grows by one part per [`AppendTable::flush`]. That is the dataset
//! layout pandas (`pd.read_parquet(dir)`), pyarrow, polars and DuckDB (`dir/*.parquet`) read as one
//! table, and so does every reader of this crate. Each part is written atomically like any table,
//! so a process killed at any moment leaves a table of whole parts (and at most a hidden temporary
//! file, which readers skip and [`AppendTable::open`] removes). Only the rows pushed since the last
//! flush are held in memory; writing a part costs the same at the end of a run as at its start.
//! [`AppendTable::retain`] rewinds a table for a resumed run.

use std::fs;
use std::path::{Path, PathBuf};

use crate::atomic::is_leftover;
use crate::error::{Error, Result};
use crate::parquet_io::table_parts;
use crate::{read_records, write_records, Record};

/// The file name of part `index`. Readers here order parts by number; five digits keep the
/// lexicographic order other tools may use right up to 100 000 parts.
fn part_name(index: u64) -> String {
    format!("part-{index:05}.parquet")
}

/// The part after the highest-numbered `part-N.parquet` in `parts` (0 for none).
fn next_part(parts: &[PathBuf]) -> u64 {
    parts
        .iter()
        .filter_map(|part| {
            let name = part.file_name()?.to_str()?;
            name.strip_prefix("part-")?.strip_suffix(".parquet")?.parse::<u64>().ok()
        })
        .max()
        .map_or(0, |last| last + 1)
}

/// A table written as one file (by rlhf-rs before tables were appended) becomes the first part of
/// a directory at the same path. The file moves into a hidden sibling directory that is then
/// renamed into place, so a kill part-way leaves that directory for the next open to finish.
fn adopt_single_file(path: &Path) -> Result<()> {
    let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let staging = path.with_file_name(format!(".{name}.parts"));
    if path.is_file() {
        fs::create_dir_all(&staging).map_err(|error| Error::io(&staging, "create", error))?;
        fs::rename(path, staging.join(part_name(0)))
            .map_err(|error| Error::io(path, "move into a table directory", error))?;
    }
    if staging.is_dir() && !path.exists() {
        fs::rename(&staging, path).map_err(|error| Error::io(path, "move the table directory into place", error))?;
    }
    Ok(())
}

/// An append-only table of `R` rows (see the module docs).
pub struct AppendTable<R> {
    path: PathBuf,
    next_part: u64,
    pending: Vec<R>,
}

impl<R: Record> AppendTable<R> {
    /// Opens the table at `path`, keeping its rows (the first flush creates a missing table) and
    /// removing temporary files a killed flush left. A table written as a single file becomes the
    /// directory's first part.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        adopt_single_file(&path)?;
        let mut next = 0;
        if path.is_dir() {
            let entries = fs::read_dir(&path).map_err(|error| Error::io(&path, "list", error))?;
            for entry in entries {
                let temp = entry.map_err(|error| Error::io(&path, "list", error))?.path();
                if temp.file_name().and_then(|name| name.to_str()).is_some_and(is_leftover) {
                    fs::remove_file(&temp).map_err(|error| Error::io(&temp, "remove", error))?;
                }
            }
            next = next_part(&table_parts(&path)?);
        }
        Ok(AppendTable { path, next_part: next, pending: Vec::new() })
    }

    pub fn push(&mut self, row: R) {
        self.pending.push(row);
    }

    pub fn extend(&mut self, rows: impl IntoIterator<Item = R>) {
        self.pending.extend(rows);
    }

    /// The rows pushed since the last flush: all the table holds in memory.
    pub fn pending(&self) -> &[R] {
        &self.pending
    }

    /// Writes the pending rows as the next part, atomically (nothing when there are none).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        write_records(self.path.join(part_name(self.next_part)), &self.pending)?;
        self.next_part += 1;
        self.pending.clear();
        Ok(())
    }

    /// Keeps only the rows `keep` accepts, pending and on disk, where it happens at once: a part
    /// that loses every row is deleted, one that loses some is rewritten atomically with the rest,
    /// in order, and a table left without parts is removed. Parts are read one at a time, the last
    /// first, so a kill part-way leaves whole parts that a rerun rewinds the same way.
    pub fn retain(&mut self, keep: impl Fn(&R) -> bool) -> Result<()> {
        self.pending.retain(&keep);
        if !self.path.is_dir() {
            return Ok(());
        }
        for part in table_parts(&self.path)?.iter().rev() {
            let rows: Vec<R> = read_records(part)?;
            let total = rows.len();
            let kept: Vec<R> = rows.into_iter().filter(|row| keep(row)).collect();
            if kept.is_empty() {
                fs::remove_file(part).map_err(|error| Error::io(part, "remove", error))?;
            } else if kept.len() < total {
                write_records(part, &kept)?;
            }
        }
        let parts = table_parts(&self.path)?;
        if parts.is_empty() {
            fs::remove_dir_all(&self.path).map_err(|error| Error::io(&self.path, "remove", error))?;
        }
        self.next_part = next_part(&parts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::schema_tag;
    use crate::{inspect, read_table, validate_table, Kind, Metric, Rollout, TableReader};

    fn metric(step: u64, name: &str) -> Metric {
        Metric { stage: "ppo".into(), step, name: name.into(), value: step as f64 / 4.0, wall_time: 1.5 }
    }

    fn names(dir: &Path) -> Vec<String> {
        let entries = fs::read_dir(dir).unwrap();
        let mut names: Vec<String> =
            entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    /// Appends steps `from..=to`, two rows each, as one flush.
    fn append(table: &mut AppendTable<Metric>, steps: std::ops::RangeInclusive<u64>) {
        table.extend(steps.flat_map(|step| [metric(step, "loss"), metric(step, "kl")]));
        table.flush().unwrap();
        assert!(table.pending().is_empty(), "a flush keeps no rows in memory");
    }

    #[test]
    fn flushes_append_parts_that_read_as_one_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let mut table = AppendTable::open(&path).unwrap();
        table.flush().unwrap();
        assert!(!path.exists(), "nothing to flush, nothing written");
        for steps in [1..=2, 3..=3, 4..=6] {
            append(&mut table, steps);
        }
        assert_eq!(names(&path), ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]);
        let expected: Vec<Metric> = (1..=6).flat_map(|step| [metric(step, "loss"), metric(step, "kl")]).collect();
        let read = read_table::<Metric>(&path).unwrap();
        assert_eq!(read.records, expected);
        assert_eq!(read.schema.fields(), Metric::schema().fields());
        assert_eq!(schema_tag(&read.schema), Some(Kind::Metrics.schema_tag()));
        assert_eq!(validate_table(&path, Kind::Metrics).unwrap(), 12);
        let summary = inspect(&path, 2).unwrap();
        assert_eq!((summary.kind, summary.rows, summary.parts), (Some(Kind::Metrics), 12, Some(3)));
        // Each part is a table of its own, with the same schema and metadata.
        let part = TableReader::open(path.join("part-00001.parquet")).unwrap();
        assert_eq!((part.num_rows(), part.schema().as_ref()), (2, read.schema.as_ref()));

        // Reopened, the table continues after its last part.
        let mut reopened = AppendTable::open(&path).unwrap();
        append(&mut reopened, 7..=7);
        assert_eq!(names(&path).last().unwrap(), "part-00003.parquet");
        assert_eq!(read_records::<Metric>(&path).unwrap().len(), 14);
    }

    #[test]
    fn retain_drops_later_rows_and_rewrites_a_straddling_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollouts.parquet");
        let rollout = |step: u32| Rollout { id: format!("r{step}"), step, ..Rollout::default() };
        let mut table = AppendTable::open(&path).unwrap();
        for steps in [1..=2, 3..=4, 5..=6] {
            table.extend(steps.map(rollout));
            table.flush().unwrap();
        }
        let first = fs::read(path.join("part-00000.parquet")).unwrap();

        let mut resumed = AppendTable::<Rollout>::open(&path).unwrap();
        resumed.push(rollout(9));
        resumed.retain(|r| r.step <= 3).unwrap();
        assert!(resumed.pending().is_empty(), "pending rows are rewound too");
        assert_eq!(names(&path), ["part-00000.parquet", "part-00001.parquet"]);
        let unchanged = fs::read(path.join("part-00000.parquet")).unwrap();
        assert_eq!(unchanged, first, "a part kept whole is not rewritten");
        let steps = |path: &Path| read_records::<Rollout>(path).unwrap().iter().map(|r| r.step).collect::<Vec<_>>();
        assert_eq!(steps(&path.join("part-00001.parquet")), [3]);
        resumed.extend((4..=5).map(rollout));
        resumed.flush().unwrap();
        assert_eq!(names(&path).last().unwrap(), "part-00002.parquet");
        assert_eq!(steps(&path), [1, 2, 3, 4, 5]);

        // A fresh start drops everything: the table is gone.
        resumed.retain(|_| false).unwrap();
        assert!(!path.exists());
        resumed.push(rollout(1));
        resumed.flush().unwrap();
        assert_eq!(names(&path), ["part-00000.parquet"]);
    }

    #[test]
    fn a_killed_flush_leaves_a_temporary_file_that_readers_skip_and_open_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let mut table = AppendTable::open(&path).unwrap();
        append(&mut table, 1..=2);
        // What a flush killed before its rename leaves: a partial, hidden temporary file.
        let bytes = fs::read(path.join("part-00000.parquet")).unwrap();
        let temp = path.join(".part-00001.parquet.4242.0.tmp");
        fs::write(&temp, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(read_records::<Metric>(&path).unwrap().len(), 4);
        assert_eq!(validate_table(&path, Kind::Metrics).unwrap(), 4);

        let mut resumed = AppendTable::open(&path).unwrap();
        assert!(!temp.exists());
        append(&mut resumed, 3..=3);
        assert_eq!(names(&path), ["part-00000.parquet", "part-00001.parquet"]);
        assert_eq!(read_records::<Metric>(&path).unwrap().len(), 6);
    }

    #[test]
    fn a_single_file_table_becomes_the_first_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        write_records(&path, &[metric(1, "loss"), metric(2, "loss")]).unwrap();
        let mut table = AppendTable::<Metric>::open(&path).unwrap();
        assert_eq!(names(&path), ["part-00000.parquet"]);
        assert_eq!(names(dir.path()), ["metrics.parquet"]);
        table.retain(|m| m.step <= 1).unwrap();
        append(&mut table, 2..=2);
        let steps: Vec<u64> = read_records::<Metric>(&path).unwrap().iter().map(|m| m.step).collect();
        assert_eq!(steps, [1, 2, 2]);

        // Killed after the file moved into the hidden directory: the next open finishes.
        let staging = dir.path().join(".metrics.parquet.parts");
        fs::rename(&path, &staging).unwrap();
        AppendTable::<Metric>::open(&path).unwrap();
        assert_eq!(names(dir.path()), ["metrics.parquet"]);
        assert_eq!(read_records::<Metric>(&path).unwrap().len(), 3);
    }
}

//! A stage's `metrics.parquet` while it trains: rows are kept in memory and the whole table is
//! rewritten atomically on every flush, so a killed run leaves the last flushed table intact and a
//! resumed one continues it.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::{read_records, write_records, Metric};

/// The metrics table of one stage.
pub struct MetricsLog {
    stage: String,
    path: PathBuf,
    rows: Vec<Metric>,
}

impl MetricsLog {
    /// Keeps the rows already in `path`, if any; [`MetricsLog::rewind`] drops what a resumed run
    /// will log again.
    pub fn open(path: impl Into<PathBuf>, stage: &str) -> Result<Self> {
        let path = path.into();
        let rows = if path.is_file() { read_records(&path)? } else { Vec::new() };
        Ok(MetricsLog { stage: stage.into(), path, rows })
    }

    /// Drops the rows whose name `in_scope` accepts and that were logged after `kept_step` (all
    /// of them for `None`, a fresh start).
    pub fn rewind(&mut self, kept_step: Option<u64>, in_scope: impl Fn(&str) -> bool) {
        self.rows.retain(|m| !in_scope(&m.name) || kept_step.is_some_and(|s| m.step <= s));
    }

    /// The rows so far.
    pub fn rows(&self) -> &[Metric] {
        &self.rows
    }

    pub fn push(&mut self, step: u64, name: &str, value: f64) {
        let wall_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.rows.push(Metric { stage: self.stage.clone(), step, name: name.into(), value, wall_time });
    }

    /// Writes the table (nothing while it is empty).
    pub fn flush(&self) -> Result<()> {
        if !self.rows.is_empty() {
            write_records(&self.path, &self.rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_keeps_the_rows_up_to_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let mut log = MetricsLog::open(&path, "sft").unwrap();
        for step in 1..=4 {
            log.push(step, "loss", step as f64);
            log.push(step, "eval/loss", step as f64);
        }
        log.flush().unwrap();
        let mut resumed = MetricsLog::open(&path, "sft").unwrap();
        resumed.rewind(Some(2), |name| !name.contains('/'));
        let kept: Vec<(u64, &str)> = resumed.rows().iter().map(|m| (m.step, m.name.as_str())).collect();
        assert_eq!(kept.iter().filter(|(_, n)| *n == "loss").count(), 2);
        assert_eq!(kept.iter().filter(|(_, n)| *n == "eval/loss").count(), 4);
        resumed.rewind(None, |_| true);
        assert!(resumed.rows().is_empty());
        assert_eq!(read_records::<Metric>(&path).unwrap().len(), 8, "the file changes only on flush");
    }
}

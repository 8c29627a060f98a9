//! A stage's `metrics.parquet` while it trains: an [`AppendTable`] of [`Metric`] rows that grows
//! by one part per flush, so a killed run leaves the rows of its last flush and a resumed one
//! rewinds them to its checkpoint and continues.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rlhf_data::{AppendTable, Metric};

use crate::error::Result;

/// Whether metric `name` measures the machine rather than the run (timings, throughput, memory):
/// such rows differ between two otherwise identical runs, and are left out when runs are compared.
pub fn measures_the_machine(name: &str) -> bool {
    name.ends_with("_per_s") || name == "peak_memory_bytes" || name.starts_with("perf/") || name.starts_with("time/")
}

/// The metrics table of one stage. In a data-parallel run only the writer rank keeps one; the
/// others' logs are no-ops.
pub struct MetricsLog {
    stage: String,
    table: Option<AppendTable<Metric>>,
}

impl MetricsLog {
    /// Keeps the rows already in `path`, if any; [`MetricsLog::rewind`] drops what a resumed run
    /// will log again.
    pub fn open(path: impl Into<PathBuf>, stage: &str) -> Result<Self> {
        let table = if crate::stage::is_writer() { Some(AppendTable::open(path)?) } else { None };
        Ok(MetricsLog { stage: stage.into(), table })
    }

    /// Drops the rows whose name `in_scope` accepts and that were logged after `kept_step` (all
    /// of them for `None`, a fresh start): from the table on disk at once, and from the rows not
    /// flushed yet.
    pub fn rewind(&mut self, kept_step: Option<u64>, in_scope: impl Fn(&str) -> bool) -> Result<()> {
        let Some(table) = &mut self.table else { return Ok(()) };
        Ok(table.retain(|m| !in_scope(&m.name) || kept_step.is_some_and(|s| m.step <= s))?)
    }

    pub fn push(&mut self, step: u64, name: &str, value: f64) {
        let Some(table) = &mut self.table else { return };
        let wall_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        table.push(Metric { stage: self.stage.clone(), step, name: name.into(), value, wall_time });
    }

    /// Appends the rows pushed since the last flush to the table, as one part (nothing when there
    /// are none).
    pub fn flush(&mut self) -> Result<()> {
        let Some(table) = &mut self.table else { return Ok(()) };
        Ok(table.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf_data::read_records;

    fn logged(path: &std::path::Path) -> Vec<(u64, String)> {
        read_records::<Metric>(path).unwrap().into_iter().map(|m| (m.step, m.name)).collect()
    }

    #[test]
    fn a_resumed_log_keeps_the_rows_up_to_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let mut log = MetricsLog::open(&path, "sft").unwrap();
        for step in 1..=4 {
            log.push(step, "loss", step as f64);
            log.push(step, "eval/loss", step as f64);
            if step % 2 == 1 {
                log.flush().unwrap();
            }
        }
        log.flush().unwrap();
        assert_eq!(logged(&path).len(), 8);
        let mut resumed = MetricsLog::open(&path, "sft").unwrap();
        resumed.rewind(Some(2), |name| !name.contains('/')).unwrap();
        let kept = logged(&path);
        assert_eq!(kept.iter().filter(|(_, n)| n == "loss").map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(kept.iter().filter(|(_, n)| n == "eval/loss").count(), 4);
        resumed.push(3, "loss", 3.0);
        resumed.rewind(None, |name| name.starts_with("eval/")).unwrap();
        resumed.flush().unwrap();
        let names: Vec<(u64, String)> = vec![(1, "loss".into()), (2, "loss".into()), (3, "loss".into())];
        assert_eq!(logged(&path), names, "row order is kept");
        resumed.rewind(None, |_| true).unwrap();
        assert!(!path.exists(), "a fresh start deletes the table");
    }
}

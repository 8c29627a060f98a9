//! The runs page's data: every stage directory under a runs directory (a `metrics.parquet` up to
//! three levels down, e.g. `default/ppo` or `multi/helpful/rm`) with its metric series, and every
//! eval report (`report.html`). The page names them by their place in a fresh scan, never by a
//! path, so no URL reaches the file system; metrics are read again on every request, so a stage's
//! curves grow while it trains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rlhf_data::{read_records, Metric};

use crate::Result;

/// How deep below the runs directory stage directories are looked for.
const MAX_DEPTH: usize = 3;

/// A stage directory or an eval directory found under the runs directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The directory, relative to the runs directory (`default/ppo`).
    pub name: String,
    /// Its `metrics.parquet`, if it has one.
    pub metrics: Option<PathBuf>,
    /// Its `report.html`, if it has one.
    pub report: Option<PathBuf>,
}

/// The entries under `root`, sorted by name.
pub fn scan(root: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    walk(root, root, 0, &mut entries);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

fn walk(root: &Path, dir: &Path, depth: usize, entries: &mut Vec<Entry>) {
    let Ok(children) = std::fs::read_dir(dir) else { return };
    let mut subdirs: Vec<PathBuf> =
        children.filter_map(|c| c.ok()).map(|c| c.path()).filter(|p| p.is_dir() && !hidden(p)).collect();
    subdirs.sort();
    for sub in subdirs {
        let metrics = sub.join("metrics.parquet");
        let report = sub.join("report.html");
        if metrics.exists() || report.is_file() {
            let name = sub.strip_prefix(root).unwrap_or(&sub).display().to_string();
            entries.push(Entry {
                name,
                metrics: metrics.exists().then_some(metrics),
                report: report.is_file().then_some(report),
            });
        }
        // Checkpoints and final models hold no stages; everything else may (nested runs).
        let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if depth + 1 < MAX_DEPTH && !matches!(name, "checkpoints" | "final" | "members" | "rounds") {
            walk(root, &sub, depth + 1, entries);
        }
    }
}

fn hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Each metric's `(step, value)` points, in step order, from a stage's metrics table.
pub fn series(metrics: &Path) -> Result<BTreeMap<String, Vec<(u64, f64)>>> {
    let rows: Vec<Metric> = read_records(metrics)?;
    let mut series: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for row in rows.into_iter().filter(|row| row.value.is_finite()) {
        series.entry(row.name).or_default().push((row.step, row.value));
    }
    for points in series.values_mut() {
        points.sort_by_key(|&(step, _)| step);
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf_data::write_records;

    #[test]
    fn stages_and_reports_are_found_and_their_series_read_in_step_order() {
        let root = tempfile::tempdir().unwrap();
        let metric = |step, value| Metric { stage: "ppo".into(), step, name: "reward".into(), value, wall_time: 0.0 };
        write_records(root.path().join("default/ppo/metrics.parquet"), &[metric(20, 2.0), metric(10, 1.0)]).unwrap();
        write_records(root.path().join("default/ppo/checkpoints/step-1/metrics.parquet"), &[metric(1, 0.0)]).unwrap();
        write_records(root.path().join("multi/helpful/rm/metrics.parquet"), &[metric(1, f64::NAN)]).unwrap();
        std::fs::create_dir_all(root.path().join("default/eval")).unwrap();
        std::fs::write(root.path().join("default/eval/report.html"), "<html></html>").unwrap();
        let entries = scan(root.path());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["default/eval", "default/ppo", "multi/helpful/rm"]);
        assert!(entries[0].report.is_some() && entries[0].metrics.is_none());
        let series = series(entries[1].metrics.as_ref().unwrap()).unwrap();
        assert_eq!(series["reward"], [(10, 1.0), (20, 2.0)]);
        assert!(super::series(entries[2].metrics.as_ref().unwrap()).unwrap().is_empty(), "NaN points are left out");
    }
}

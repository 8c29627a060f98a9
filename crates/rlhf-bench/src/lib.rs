//! What the workspace's benchmarks (`cargo xtask bench`) share: the benchmark models
//! (`benches/models/*.json`, Hugging Face `config.json`s the peer scripts read too), the process's
//! CPU time and peak memory, the median of per-step figures, and writing the JSON report to `$RLHF_BENCH_DIR` (default
//! `<workspace>/target/bench`).

use std::path::PathBuf;

/// The benchmark model `benches/models/<name>.json`, from `$RLHF_BENCH_MODELS` when set (a bench
/// binary carried to another machine, e.g. in the GPU bundle).
pub fn model_file(name: &str) -> PathBuf {
    let dir = match std::env::var_os("RLHF_BENCH_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/models"),
    };
    dir.join(format!("{name}.json"))
}

/// How a report describes the benchmark model `name`: its config, its parameter count and dtype.
pub fn model_report(name: &str, parameters: i64) -> std::io::Result<serde_json::Value> {
    let text = std::fs::read_to_string(model_file(name))?;
    let mut model: serde_json::Value = serde_json::from_str(&text)?;
    model["name"] = name.into();
    model["parameters"] = parameters.into();
    model["dtype"] = "float32".into();
    Ok(model)
}

/// The median of per-step figures (the upper middle one of an even count); NaN when there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU time (user + system, all threads) of this process in seconds, steadier than wall time on a
/// busy machine; NaN where `/proc` does not report it. `/proc` counts USER_HZ ticks, 100 a second.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process in bytes (`VmHWM`), where the OS reports it (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Writes `report` as `<bench dir>/<name>.json` (pretty, newline-terminated) and says where.
pub fn write_report(name: &str, report: &serde_json::Value) -> std::io::Result<PathBuf> {
    let dir = match std::env::var_os("RLHF_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"),
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, format!("{report:#}\n"))?;
    println!("wrote {}", path.display());
    Ok(path)
}

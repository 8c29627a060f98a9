//! The committed `datasets/` are exactly what `rlhf-task generate` writes with the default config.

use std::path::Path;

use rlhf_task::{write_task, TaskConfig, TaskFiles};

#[test]
fn committed_datasets_regenerate_byte_for_byte() {
    let committed = TaskFiles::in_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets"));
    let dir = tempfile::tempdir().unwrap();
    let fresh = write_task(&TaskConfig::default(), dir.path()).unwrap();
    for (a, b) in committed.all().iter().zip(fresh.all()) {
        let (a_bytes, b_bytes) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(a_bytes == b_bytes, "{} differs from a fresh `rlhf-task generate`; regenerate datasets/", a.display());
    }
}

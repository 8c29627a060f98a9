//! Append-only JSON Lines journals: each record is appended and fsynced before the writer goes on,
//! so what a program acknowledged survives a kill -9 or a power cut. A write torn by a kill is at
//! most a last line without its newline; the writer cuts it off when it opens the journal (it was
//! never acknowledged), a reader skips it. Anything else that does not parse is a damaged journal,
//! reported with its line. The studio keeps its labels this way, a judge its cache.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Location, Result};

/// A journal of `T` records, open for appending.
pub struct Journal<T> {
    path: PathBuf,
    file: File,
    records: std::marker::PhantomData<fn(T)>,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens (or creates) the journal at `path` for appending and returns it with the records it
    /// holds; a torn last line is cut off first.
    pub fn open(path: &Path) -> Result<(Journal<T>, Vec<T>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io(path, "open", e))?;
        if !existed {
            sync_parent(path)?;
        }
        let (labels, complete) = parse(path, &mut file)?;
        if complete < file.metadata().map_err(|e| Error::io(path, "read", e))?.len() {
            tracing::warn!(path = %path.display(), "cutting off a label torn by a kill (it was never acknowledged)");
            file.set_len(complete).and_then(|()| file.sync_all()).map_err(|e| Error::io(path, "repair", e))?;
        }
        Ok((Journal { path: path.to_path_buf(), file, records: std::marker::PhantomData }, labels))
    }

    /// The records in the journal at `path` (none if there is none), without changing it: what a
    /// running server has acknowledged so far.
    pub fn read(path: &Path) -> Result<Vec<T>> {
        match File::open(path) {
            Ok(mut file) => Ok(parse(path, &mut file)?.0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(path, "open", e)),
        }
    }

    /// Appends `record` and waits until it is on disk.
    pub fn append(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| Error::Json {
            location: Location::Line { path: self.path.clone(), line: 0 },
            message: format!("cannot write a record: {e}"),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, "append to", e))
    }
}

/// The records of every complete line and the byte length those lines take.
fn parse<T: DeserializeOwned>(path: &Path, file: &mut File) -> Result<(Vec<T>, u64)> {
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, "read", e))?;
    let mut reader = BufReader::new(file);
    let (mut labels, mut complete, mut number) = (Vec::new(), 0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(|e| Error::io(path, "read", e))?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Ok((labels, complete));
        }
        number += 1;
        let label = serde_json::from_slice(&line).map_err(|e| Error::Json {
            location: Location::Line { path: path.to_path_buf(), line: number },
            message: format!("a damaged record ({e}); the lines before it are intact"),
        })?;
        labels.push(label);
        complete += read as u64;
    }
}

/// Makes a new file's directory entry durable.
fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, "sync", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Entry {
        key: String,
        value: f64,
    }

    fn entry(key: &str) -> Entry {
        Entry { key: key.into(), value: 0.25 }
    }

    #[test]
    fn records_come_back_and_a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, records) = Journal::<Entry>::open(&path).unwrap();
        assert!(records.is_empty());
        journal.append(&entry("a")).unwrap();
        journal.append(&entry("b")).unwrap();
        drop(journal);
        let intact = std::fs::metadata(&path).unwrap().len();
        // A kill in the middle of a write.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"key":"c","va"#).unwrap();
        assert_eq!(Journal::<Entry>::read(&path).unwrap(), [entry("a"), entry("b")], "a reader skips the torn line");
        let (mut journal, records) = Journal::<Entry>::open(&path).unwrap();
        assert_eq!(records, [entry("a"), entry("b")]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact, "the writer cut it off");
        journal.append(&entry("c")).unwrap();
        assert_eq!(Journal::<Entry>::read(&path).unwrap().len(), 3);
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, format!("{}\nnot json\n", serde_json::to_string(&entry("a")).unwrap())).unwrap();
        let err = Journal::<Entry>::open(&path).err().unwrap().to_string();
        assert!(err.contains("journal.jsonl line 2") && err.contains("damaged"), "{err}");
    }
}

//! Where rollouts live during a run: in memory, or as real files in a temporary directory.
//! Both keep the same bytes; a test checks that their snapshots agree. Every rollout read from a
//! file goes through [`read_rollout_file`].

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

pub use agentsim_runtime::rollout_file::{read_rollout_file, MAX_ROLLOUT_FILE_BYTES};

/// An append-only rollout per thread.
pub trait RolloutStore {
    /// Appends bytes to the thread's rollout, creating it if needed.
    fn append(&mut self, thread: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// The thread's whole rollout, if it exists.
    fn read(&self, thread: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Thread names that have a rollout, sorted.
    fn threads(&self) -> Vec<String>;
    /// Whether the thread has a rollout.
    fn exists(&self, thread: &str) -> bool {
        self.threads().iter().any(|t| t == thread)
    }
    /// Whether the rollout ends in the middle of a line (a torn write, or a copied file without a
    /// final newline).
    fn ends_mid_line(&self, thread: &str) -> bool;
    /// Replaces the thread's whole rollout (the `damage` step; nothing in the lifecycle rewrites).
    fn replace(&mut self, thread: &str, bytes: &[u8]) -> std::io::Result<()>;

    /// Appends one JSONL line. After a torn tail it first ends that line, so the torn bytes stay
    /// one damaged line instead of corrupting this good one.
    fn append_line(&mut self, thread: &str, json: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(json.len() + 2);
        if self.ends_mid_line(thread) {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(json.as_bytes());
        bytes.push(b'\n');
        self.append(thread, &bytes)
    }
}

/// Rollouts held in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rollouts: BTreeMap<String, Vec<u8>>,
}

impl RolloutStore for MemoryStore {
    fn append(&mut self, thread: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.rollouts.entry(thread.to_owned()).or_default().extend_from_slice(bytes);
        Ok(())
    }

    fn read(&self, thread: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.rollouts.get(thread).cloned())
    }

    fn threads(&self) -> Vec<String> {
        self.rollouts.keys().cloned().collect()
    }

    fn exists(&self, thread: &str) -> bool {
        self.rollouts.contains_key(thread)
    }

    fn ends_mid_line(&self, thread: &str) -> bool {
        self.rollouts.get(thread).and_then(|r| r.last()).is_some_and(|b| *b != b'\n')
    }

    fn replace(&mut self, thread: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.rollouts.insert(thread.to_owned(), bytes.to_vec());
        Ok(())
    }
}

/// Rollouts as `<thread>.jsonl` files in a directory (a temporary one by default).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// Each thread's file, and whether what this store wrote to it ends mid-line.
    threads: BTreeMap<String, (PathBuf, bool)>,
}

impl FileStore {
    /// A store in a new temporary directory, removed when the store is dropped.
    pub fn temporary() -> std::io::Result<FileStore> {
        let temp = tempfile::Builder::new().prefix("agentsim-rollouts-").tempdir()?;
        Ok(FileStore { dir: temp.path().to_owned(), _temp: Some(temp), threads: BTreeMap::new() })
    }

    /// A store in `dir`, which must exist.
    pub fn in_dir(dir: &Path) -> FileStore {
        FileStore { dir: dir.to_owned(), _temp: None, threads: BTreeMap::new() }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl RolloutStore for FileStore {
    fn append(&mut self, thread: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(format!("{thread}.jsonl"));
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(bytes)?;
        let entry = self.threads.entry(thread.to_owned()).or_insert((path, false));
        if let Some(last) = bytes.last() {
            entry.1 = *last != b'\n';
        }
        Ok(())
    }

    fn read(&self, thread: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some((path, _)) = self.threads.get(thread) else { return Ok(None) };
        read_rollout_file(path)
            .map(Some)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    fn threads(&self) -> Vec<String> {
        self.threads.keys().cloned().collect()
    }

    fn exists(&self, thread: &str) -> bool {
        self.threads.contains_key(thread)
    }

    fn ends_mid_line(&self, thread: &str) -> bool {
        self.threads.get(thread).is_some_and(|(_, mid_line)| *mid_line)
    }

    fn replace(&mut self, thread: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(format!("{thread}.jsonl"));
        std::fs::write(&path, bytes)?;
        let mid_line = bytes.last().is_some_and(|b| *b != b'\n');
        self.threads.insert(thread.to_owned(), (path, mid_line));
        Ok(())
    }
}

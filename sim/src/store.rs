//! Where rollouts live during a run: in memory, or as real files in a temporary directory.
//! Both keep the same bytes; a test checks that their snapshots agree.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

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
}

/// Rollouts as `<thread>.jsonl` files in a directory (a temporary one by default).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    threads: BTreeMap<String, PathBuf>,
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
        self.threads.insert(thread.to_owned(), path);
        Ok(())
    }

    fn read(&self, thread: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self.threads.get(thread) {
            Some(path) => std::fs::read(path).map(Some),
            None => Ok(None),
        }
    }

    fn threads(&self) -> Vec<String> {
        self.threads.keys().cloned().collect()
    }

    fn exists(&self, thread: &str) -> bool {
        self.threads.contains_key(thread)
    }
}

//! Rollout files as the runtime keeps them: one `<thread>.jsonl` per thread in a directory,
//! appended to and never rewritten. A line counts as acknowledged only once it is written,
//! flushed and `sync_data`'d ([`RolloutFiles::append`] returns only then). A file that ends in
//! the middle of a line (a write a crash cut short) is repaired the way the simulator's store
//! repairs it: the next append first ends the torn line, so the torn bytes stay one damaged line
//! (which resume skips and reports, spec rule 15) instead of corrupting the good one after them.
//!
//! Every rollout read from a file, by the runtime or by the simulator, goes through
//! [`read_rollout_file`].

use std::collections::BTreeMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use agentsim_core::ThreadId;

/// The most bytes a rollout file may hold (64 MiB): the lifecycle's rollouts stay far below it,
/// and a larger file is refused rather than read into memory.
pub const MAX_ROLLOUT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a rollout file (a `resume ... from` source, or a [`FileStore`] thread's file): only a
/// regular file, checked before it is opened, so a FIFO (whose opening waits for a writer), a
/// device such as `/dev/zero` (endless) or a directory gives an error instead of a hang; and at
/// most [`MAX_ROLLOUT_FILE_BYTES`]. The errors say why but not the path, which the caller names.
pub fn read_rollout_file(path: &Path) -> io::Result<Vec<u8>> {
    check_rollout_file(&std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    // What was opened may not be what was checked (the path changed since): check it again, and
    // read no more than one byte past the limit in case it grows.
    check_rollout_file(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(MAX_ROLLOUT_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ROLLOUT_FILE_BYTES {
        return Err(too_large(&format!("at least {} bytes", bytes.len())));
    }
    Ok(bytes)
}

/// A regular file within the size limit, or an error saying what it is instead.
fn check_rollout_file(metadata: &Metadata) -> io::Result<()> {
    if !metadata.is_file() {
        let what = file_type_name(metadata);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    if metadata.len() > MAX_ROLLOUT_FILE_BYTES {
        return Err(too_large(&format!("{} bytes", metadata.len())));
    }
    Ok(())
}

/// The error for a file that holds `size` (more than the limit).
fn too_large(size: &str) -> io::Error {
    let limit = format!("{MAX_ROLLOUT_FILE_BYTES} bytes ({} MiB)", MAX_ROLLOUT_FILE_BYTES >> 20);
    let message = format!("it holds {size}, more than the {limit} a rollout file may hold");
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// What a file that is not a regular one is, for an error message.
fn file_type_name(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "neither a file nor a directory"
}

/// One thread's open rollout file.
#[derive(Debug)]
struct OpenRollout {
    file: File,
    /// Complete lines in the file (its acknowledged lines, plus any torn line already ended).
    lines: u64,
    /// Whether the file ends in the middle of a line.
    mid_line: bool,
    /// Bytes in the file.
    len: u64,
    /// Bytes known durable: the length at the last `sync_data` that returned.
    synced: u64,
}

/// What an append made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durable {
    /// Complete lines the file holds (the number of the line just appended).
    pub lines: u64,
    /// Bytes of the file known durable (a power loss keeps at least these).
    pub synced_bytes: u64,
}

/// The rollout files of one process, in one directory.
#[derive(Debug)]
pub struct RolloutFiles {
    dir: PathBuf,
    open: BTreeMap<ThreadId, OpenRollout>,
}

impl RolloutFiles {
    /// The rollouts in `dir`, created if missing.
    pub fn new(dir: &Path) -> io::Result<RolloutFiles> {
        std::fs::create_dir_all(dir)?;
        Ok(RolloutFiles { dir: dir.to_owned(), open: BTreeMap::new() })
    }

    /// The file of a thread.
    pub fn path(&self, thread: &ThreadId) -> PathBuf {
        self.dir.join(format!("{}.jsonl", thread.0))
    }

    /// Whether a thread has a rollout file.
    pub fn exists(&self, thread: &ThreadId) -> bool {
        self.path(thread).exists()
    }

    /// A thread's whole rollout ([`read_rollout_file`]), `None` when it has no file.
    pub fn read(&self, thread: &ThreadId) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(thread);
        match read_rollout_file(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    /// Opens a thread's file for appending (creating it), knowing what it holds now: `existing`
    /// is what was just read from it (nothing for a new thread).
    pub fn open(&mut self, thread: &ThreadId, existing: &[u8]) -> io::Result<()> {
        let path = self.path(thread);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let lines = existing.iter().filter(|b| **b == b'\n').count() as u64;
        let mid_line = existing.last().is_some_and(|b| *b != b'\n');
        let len = existing.len() as u64;
        let rollout = OpenRollout { file, lines, mid_line, len, synced: len };
        self.open.insert(thread.clone(), rollout);
        Ok(())
    }

    /// Appends one JSON line and returns once it is durable (written, flushed, `sync_data`):
    /// its 1-based line number is [`Durable::lines`]. After a torn tail, the torn line is ended
    /// first.
    pub fn append_line(&mut self, thread: &ThreadId, json: &str) -> io::Result<Durable> {
        let mut bytes = Vec::with_capacity(json.len() + 2);
        let rollout = self.rollout(thread)?;
        if rollout.mid_line {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(json.as_bytes());
        bytes.push(b'\n');
        self.append(thread, &bytes)
    }

    /// Appends bytes as they are (a fork's copy of its parent's items) and returns once they are
    /// durable.
    pub fn append(&mut self, thread: &ThreadId, bytes: &[u8]) -> io::Result<Durable> {
        let path = self.path(thread);
        let rollout = self.rollout(thread)?;
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        rollout.file.write_all(bytes).map_err(context)?;
        rollout.len += bytes.len() as u64;
        rollout.lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(last) = bytes.last() {
            rollout.mid_line = *last != b'\n';
        }
        rollout.file.flush().map_err(context)?;
        sync(rollout).map_err(context)?;
        Ok(Durable { lines: rollout.lines, synced_bytes: rollout.synced })
    }

    /// Closes every file (a process that ends).
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    fn rollout(&mut self, thread: &ThreadId) -> io::Result<&mut OpenRollout> {
        self.open.get_mut(thread).ok_or_else(|| {
            io::Error::other(format!("{thread}'s rollout is not open in this process"))
        })
    }
}

/// Makes what was written durable, and records how much that is.
fn sync(rollout: &mut OpenRollout) -> io::Result<()> {
    rollout.file.sync_data()?;
    rollout.synced = rollout.len;
    Ok(())
}

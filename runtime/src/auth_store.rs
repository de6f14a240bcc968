//! The auth store: one file holding the process's agent identity (the single slot of spec
//! section 1), private key included. It is written whole, to a temporary file beside it that is
//! synced and then renamed over it, so a crash leaves the old identity or the new one, never half
//! of either; on Unix the file is readable by its owner only. Its contents never reach a log or
//! an error message: errors name the file and what was wrong, not what it held.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use agentsim_core::{Binding, StoredIdentity, Timestamp};
use serde::{Deserialize, Serialize};

/// The auth store file.
#[derive(Debug)]
pub struct AuthStore {
    path: PathBuf,
}

/// The file's JSON shape.
#[derive(Serialize, Deserialize)]
struct AuthFile {
    agent_identity: Option<IdentityRecord>,
}

#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    chatgpt_account_id: String,
    chatgpt_user_id: Option<String>,
    agent_runtime_id: String,
    /// Secret.
    private_key: String,
    registered_at: String,
    expires_at: Option<String>,
}

/// Why the auth store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    /// Reading or writing the file failed.
    #[error("auth store {path}: {source}")]
    Io { path: String, source: io::Error },
    /// The file is not an auth store (its contents are not shown: they may hold a key).
    #[error("auth store {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
}

impl AuthStore {
    /// The store at `path` (nothing is read yet).
    pub fn new(path: &Path) -> AuthStore {
        AuthStore { path: path.to_owned() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored identity, `None` when there is no file or the slot is empty.
    pub fn load(&self) -> Result<Option<StoredIdentity>, AuthStoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io(source)),
        };
        // serde_json's messages may quote a value: only the position is shown.
        let file: AuthFile = serde_json::from_slice(&bytes).map_err(|e| {
            self.damaged(format!("not an auth store (line {}, column {})", e.line(), e.column()))
        })?;
        let Some(record) = file.agent_identity else { return Ok(None) };
        let time = |text: &str, field: &str| {
            Timestamp::parse_rfc3339(text)
                .map_err(|_| self.damaged(format!("{field} is no RFC 3339 time")))
        };
        Ok(Some(StoredIdentity {
            binding: Binding {
                account_id: record.chatgpt_account_id,
                user_id: record.chatgpt_user_id,
            },
            agent_runtime_id: record.agent_runtime_id,
            private_key: record.private_key,
            registered_at: time(&record.registered_at, "registered_at")?,
            expires_at: record.expires_at.as_deref().map(|t| time(t, "expires_at")).transpose()?,
        }))
    }

    /// Replaces the slot with `identity` (`None`: empties it), durably.
    pub fn save(&self, identity: Option<&StoredIdentity>) -> Result<(), AuthStoreError> {
        let file = AuthFile {
            agent_identity: identity.map(|i| IdentityRecord {
                chatgpt_account_id: i.binding.account_id.clone(),
                chatgpt_user_id: i.binding.user_id.clone(),
                agent_runtime_id: i.agent_runtime_id.clone(),
                private_key: i.private_key.clone(),
                registered_at: i.registered_at.rfc3339_millis(),
                expires_at: i.expires_at.map(Timestamp::rfc3339_millis),
            }),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| self.damaged(e.to_string()))?;
        json.push(b'\n');
        self.write_atomically(&json).map_err(|e| self.io(e))
    }

    fn write_atomically(&self, bytes: &[u8]) -> io::Result<()> {
        let dir =
            self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = self.path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &self.path)?;
        // The rename is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    }

    fn io(&self, source: io::Error) -> AuthStoreError {
        AuthStoreError::Io { path: self.path.display().to_string(), source }
    }

    fn damaged(&self, reason: String) -> AuthStoreError {
        AuthStoreError::Damaged { path: self.path.display().to_string(), reason }
    }
}

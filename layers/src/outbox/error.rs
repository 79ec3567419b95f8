//! Error types for the [`Outbox`](super::Outbox) middleware.
//!
//! The outbox's own failures are small marker errors, found with a downcast
//! of the [`BoxError`](tower::BoxError) (or, through a `LiveTable`, of the
//! `VantageError`'s source):
//!
//! ```
//! # use vantage_live_layers::outbox::error::OutboxFull;
//! fn full(error: &tower::BoxError) -> Option<&OutboxFull> {
//!     error.downcast_ref::<OutboxFull>()
//! }
//! ```
//!
//! A write the *master* rejects is not one of them: the outbox accepted it,
//! and its verdict ([`Verdict::Rejected`](super::Verdict::Rejected)) carries
//! the master's error; it is kept as a [`DeadLetter`](super::DeadLetter).

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{DatabaseError, StorageError};

/// Why [`OutboxLayer::open`](super::OutboxLayer::open) failed. Every variant
/// names the outbox file (or its folder), and none touched the master.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenOutboxError {
    /// The folder could not be created or is not a folder.
    Folder {
        /// The outbox folder.
        folder: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another outbox (in this process or another) has the file open.
    AlreadyOpen {
        /// The outbox file.
        file: PathBuf,
    },
    /// The file is damaged, truncated or not an outbox. Unlike a cache, an
    /// outbox holds writes that are nowhere else: it is never reset on its
    /// own. Keep a copy, then restore it or move it away.
    Corrupt {
        /// The outbox file.
        file: PathBuf,
        /// What is wrong with it.
        details: String,
    },
    /// The file could not be read or written.
    Io {
        /// The outbox file.
        file: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

impl OpenOutboxError {
    /// The file (or, for [`OpenOutboxError::Folder`], the folder) the error
    /// is about.
    pub fn path(&self) -> &Path {
        match self {
            OpenOutboxError::Folder { folder, .. } => folder,
            OpenOutboxError::AlreadyOpen { file }
            | OpenOutboxError::Corrupt { file, .. }
            | OpenOutboxError::Io { file, .. } => file,
        }
    }
}

impl fmt::Display for OpenOutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenOutboxError::Folder { folder, source } => write!(
                f,
                "cannot use {} as an outbox folder: {source}",
                folder.display()
            ),
            OpenOutboxError::AlreadyOpen { file } => write!(
                f,
                "the outbox {} is already open (one process, one outbox per file)",
                file.display()
            ),
            OpenOutboxError::Corrupt { file, details } => write!(
                f,
                "the outbox file {} is corrupt, truncated or not an outbox ({details}); \
                 it may hold writes that are nowhere else, so it was left as it is and \
                 nothing was sent to the master: keep a copy, then restore it or move it away",
                file.display()
            ),
            OpenOutboxError::Io { file, source } => write!(
                f,
                "cannot read or write the outbox file {}: {source}; nothing was sent to the master",
                file.display()
            ),
        }
    }
}

impl std::error::Error for OpenOutboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenOutboxError::Folder { source, .. } | OpenOutboxError::Io { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl From<OpenOutboxError> for vantage_core::VantageError {
    fn from(e: OpenOutboxError) -> Self {
        vantage_core::VantageError::other(e.to_string())
    }
}

pub(crate) fn open_error(file: PathBuf, e: DatabaseError) -> OpenOutboxError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => OpenOutboxError::AlreadyOpen { file },
        DatabaseError::Storage(StorageError::Io(source)) => {
            // A file too short, or with garbage where redb's header goes,
            // reads as an I/O error.
            if matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) {
                OpenOutboxError::Corrupt {
                    file,
                    details: source.to_string(),
                }
            } else {
                OpenOutboxError::Io { file, source }
            }
        }
        other => OpenOutboxError::Corrupt {
            file,
            details: other.to_string(),
        },
    }
}

/// The outbox holds its maximum of pending writes: this write was **not**
/// accepted (nothing was stored). Retry once the master has taken some, or
/// raise [`OutboxLayer::max_pending`](super::OutboxLayer::max_pending).
#[derive(Clone, Debug)]
pub struct OutboxFull {
    max: usize,
}

impl OutboxFull {
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }

    /// The configured maximum of pending writes.
    pub fn max_pending(&self) -> usize {
        self.max
    }
}

impl fmt::Display for OutboxFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the outbox is full: {} writes wait for the master; this write was not accepted",
            self.max
        )
    }
}

impl std::error::Error for OutboxFull {}

/// The outbox file could not store the write: it was **not** accepted.
#[derive(Clone, Debug)]
pub struct OutboxStoreFailed {
    file: PathBuf,
    details: String,
}

impl OutboxStoreFailed {
    pub(crate) fn new(file: &Path, details: impl fmt::Display) -> Self {
        Self {
            file: file.to_path_buf(),
            details: details.to_string(),
        }
    }

    /// The outbox file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl fmt::Display for OutboxStoreFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the outbox file {} could not store the write ({}); it was not accepted",
            self.file.display(),
            self.details
        )
    }
}

impl std::error::Error for OutboxStoreFailed {}

/// This write cannot be kept in an outbox: a delete-all of a view with opaque
/// conditions (`add_condition`, `temp_add_condition`) carries a live table
/// handle, which cannot be stored. Nothing was accepted. Use equality
/// conditions, or delete the rows by id.
#[derive(Clone, Debug, Default)]
pub struct NotStorable {
    _p: (),
}

impl NotStorable {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for NotStorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(
            "a delete_all with opaque conditions cannot be stored in the outbox; \
             nothing was accepted (use equality conditions, or delete by id)",
        )
    }
}

impl std::error::Error for NotStorable {}

/// The outbox is closed ([`OutboxHandle::close`](super::OutboxHandle::close)
/// was called, or its tokio runtime shut down) before the write's fate was
/// known. A write refused this way was not accepted.
#[derive(Clone, Debug, Default)]
pub struct OutboxClosed {
    _p: (),
}

impl OutboxClosed {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for OutboxClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("the outbox is closed (by its handle, or its tokio runtime shut down)")
    }
}

impl std::error::Error for OutboxClosed {}

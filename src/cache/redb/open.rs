//! Why opening a [`RedbCache`](super::RedbCache) fails.

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{DatabaseError, StorageError};
use vantage_core::VantageError;

use super::FILE_NAME;

/// Why [`RedbCache::open`](super::RedbCache::open) failed. Every variant names the folder.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenCacheError {
    /// The folder could not be created or is not a folder.
    Folder {
        /// The cache folder.
        folder: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another `RedbCache` (in this process or another) has the folder open.
    AlreadyOpen {
        /// The cache folder.
        folder: PathBuf,
    },
    /// `vlive.redb` exists but is not a readable redb file (damaged, or some
    /// other file): reset the cache.
    Corrupt {
        /// The cache folder.
        folder: PathBuf,
        /// What redb reported.
        details: String,
    },
    /// `vlive.redb` could not be read or written.
    Io {
        /// The cache folder.
        folder: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

impl OpenCacheError {
    /// The cache folder the error is about.
    pub fn folder(&self) -> &Path {
        match self {
            OpenCacheError::Folder { folder, .. }
            | OpenCacheError::AlreadyOpen { folder }
            | OpenCacheError::Corrupt { folder, .. }
            | OpenCacheError::Io { folder, .. } => folder,
        }
    }
}

impl fmt::Display for OpenCacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenCacheError::Folder { folder, source } => write!(
                f,
                "cannot use {} as a cache folder: {source}",
                folder.display()
            ),
            OpenCacheError::AlreadyOpen { folder } => write!(
                f,
                "the cache in {} is already open (one process, one RedbCache per folder)",
                folder.display()
            ),
            OpenCacheError::Corrupt { folder, details } => write!(
                f,
                "the cache file {} is corrupt or not a redb file ({details}); \
                 it is disposable: delete it to reset the cache",
                folder.join(FILE_NAME).display()
            ),
            OpenCacheError::Io { folder, source } => write!(
                f,
                "cannot read or write the cache file {}: {source}; \
                 the cache is disposable: delete it to reset the cache",
                folder.join(FILE_NAME).display()
            ),
        }
    }
}

impl std::error::Error for OpenCacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenCacheError::Folder { source, .. } | OpenCacheError::Io { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl From<OpenCacheError> for VantageError {
    fn from(e: OpenCacheError) -> Self {
        VantageError::other(e.to_string())
    }
}

pub(super) fn open_error(folder: PathBuf, e: DatabaseError) -> OpenCacheError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => OpenCacheError::AlreadyOpen { folder },
        DatabaseError::Storage(StorageError::Io(source)) => {
            // A file too short or with garbage where redb's header goes reads
            // as an I/O error; redb's own header check reports Corrupted.
            if matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) {
                OpenCacheError::Corrupt {
                    folder,
                    details: source.to_string(),
                }
            } else {
                OpenCacheError::Io { folder, source }
            }
        }
        other => OpenCacheError::Corrupt {
            folder,
            details: other.to_string(),
        },
    }
}

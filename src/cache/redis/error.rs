//! Errors of [`RedisCache`](super::RedisCache) set-up.

use std::fmt;

/// Why a [`RedisCache`](super::RedisCache) could not be set up.
///
/// Never holds the connection URL's password: URLs appear redacted
/// (`redis://user:***@host:port/db`), and error text from the Redis client
/// has the URL and password taken out.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisCacheError {
    /// The URL could not be read as a Redis URL.
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A setting is out of range.
    InvalidSetting {
        /// The setting's builder method.
        setting: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Redis could not be reached (within the connect timeout) or refused
    /// the connection.
    Connect {
        /// The URL, redacted.
        url: String,
        /// What the client reported (redacted).
        reason: String,
    },
}

impl fmt::Display for RedisCacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisCacheError::InvalidUrl { url, reason } => {
                write!(f, "invalid Redis URL {url}: {reason}")
            }
            RedisCacheError::InvalidSetting { setting, reason } => {
                write!(f, "invalid RedisCache setting `{setting}`: {reason}")
            }
            RedisCacheError::Connect { url, reason } => {
                write!(f, "could not connect to Redis at {url}: {reason}")
            }
        }
    }
}

impl std::error::Error for RedisCacheError {}

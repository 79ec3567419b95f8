//! Errors of [`RedisCache`](super::RedisCache) set-up, and URL redaction.

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

/// `url` with its password (and anything after `:` in the user part)
/// replaced by `***`. Text that is not a URL comes back as `<redacted>` if it
/// has an `@` (it might hold credentials), else unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return if url.contains('@') {
            "<redacted>".to_string()
        } else {
            url.to_string()
        };
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        None => url.to_string(),
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or_default();
            let user = if user.is_empty() { "" } else { user };
            format!("{}{}:***@{}", &url[..scheme_end + 3], user, &rest[at + 1..])
        }
    }
}

/// The secrets `url` carries (its password, and the whole URL), to take out
/// of any text that might echo them.
pub(crate) fn secrets_of(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_string()];
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some((_, password)) = userinfo.split_once(':') {
                if !password.is_empty() {
                    secrets.push(password.to_string());
                }
            }
        }
    }
    secrets
}

/// `text` with every secret replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive() {
        assert_eq!(
            redact_url("redis://user:s3cret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(
            redact_url("redis://:s3cret@host:6379"),
            "redis://:***@host:6379"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url with @ in it"), "<redacted>");
        let url = "redis://u:p%40ss@h:1/0";
        let scrubbed = scrub(&format!("failed {url} with p%40ss"), &secrets_of(url));
        assert!(!scrubbed.contains("p%40ss"), "{scrubbed}");
    }
}

//! Keeping connection strings out of logs and errors.

/// `url` with its user information (user, password, or a token written as
/// the user) replaced by `***`: `redis://user:pw@host:6379/0` becomes
/// `redis://***@host:6379/0`. Text that is not a URL comes back as
/// `<redacted>` if it has an `@` (it might hold credentials), else unchanged.
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
    match rest[..authority_end].rfind('@') {
        None => url.to_string(),
        Some(at) => format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]),
    }
}

/// The secrets `url` carries (the whole URL, its user information and its
/// password), to take out of any text that might echo them.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn secrets_of(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_string()];
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(password.to_string());
            }
            secrets.push(userinfo.to_string());
        }
    }
    secrets.retain(|s| !s.is_empty());
    // Longest first, so a secret inside another is not left half-replaced.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` with every secret replaced by `***`.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive() {
        assert_eq!(
            redact_url("redis://user:s3cret@host:6379/2"),
            "redis://***@host:6379/2"
        );
        assert_eq!(redact_url("nats://t0ken@host:4222"), "nats://***@host:4222");
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

//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235) and the credentials
//! file of Strata's config.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::{PullError, Result};

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased (`bearer`, `basic`).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`), names lower-cased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header value into its challenges. Malformed parts are
/// skipped: a challenge we cannot read is one we do not answer.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // Either `name=value` (a parameter of the current challenge) or a new scheme.
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start();
        if let Some(value_part) = after.strip_prefix('=').filter(|_| !out.is_empty()) {
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(quoted) = value_part.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_owned(), &value_part[end..])
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        } else if token.is_empty() {
            // A stray `=` or `,`: skip it, so every turn consumes input.
            rest = rest[1..].trim_start();
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after.trim_start_matches(',').trim_start();
        }
    }
    out
}

/// A user name and password for a registry host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    hosts: HashMap<String, Credentials>,
}

/// Reads a credentials file: `[hosts."HOST"] username = "…" password = "…"`.
pub fn load_credentials(path: &Path) -> Result<HashMap<String, Credentials>> {
    let err = |why: String| PullError::ConfigFile {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: CredentialsFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    Ok(file.hosts)
}

/// `Basic` authorization value for `credentials`.
pub fn basic(credentials: &Credentials) -> String {
    format!(
        "Basic {}",
        base64(format!("{}:{}", credentials.username, credentials.password).as_bytes())
    )
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Escapes a query-string value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker Hub's and distribution's challenges parse into scheme and parameters,
    /// including quoted commas and several challenges in one header.
    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull,push");
        let two = parse_challenges(r#"Basic realm="x", Bearer realm=y, service="s\"q""#);
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].scheme, "basic");
        assert_eq!(two[1].params["realm"], "y");
        assert_eq!(two[1].params["service"], "s\"q");
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("=,=").is_empty());
        assert_eq!(parse_challenges("Bearer realm=\"unterminated").len(), 1);
    }

    /// Basic credentials encode as RFC 4648 base64 of `user:password`.
    #[test]
    fn basic_encoding() {
        let c = Credentials {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(basic(&c), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    /// The credentials file is per host; unknown keys are errors.
    #[test]
    fn credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[hosts.\"r:5000\"]\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        assert_eq!(load_credentials(&path).unwrap()["r:5000"].username, "u");
        std::fs::write(&path, "[hosts.\"r\"]\nuser = \"u\"\n").unwrap();
        assert!(load_credentials(&path).is_err());
    }
}

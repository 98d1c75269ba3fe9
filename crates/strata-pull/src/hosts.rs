//! Registry endpoints for a host, read from containerd's `hosts.toml` directory
//! (`<dir>/<host>/hosts.toml`, else `<dir>/_default/hosts.toml`): the `[host."…"]` mirrors in
//! file order, then `server`; each with its `capabilities`, `skip_verify`, `ca` (a file or
//! a list of files of PEM CA certificates, relative to the host's directory) and
//! `override_path`. Parsing is pure; [`endpoints`] reads the file.

use std::path::{Path, PathBuf};

use crate::error::{PullError, Result};

/// One place to fetch a host's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API root, e.g. `https://mirror.example/v2` (no trailing slash).
    pub api: String,
    /// May serve blobs and manifests by digest (`pull` capability).
    pub pull: bool,
    /// Do not verify the TLS certificate.
    pub skip_verify: bool,
    /// Files of PEM CA certificates trusted for this endpoint, besides the system's.
    pub ca: Vec<PathBuf>,
}

/// The endpoint containerd uses for `host` with no hosts.toml: HTTPS (`docker.io` is served
/// by `registry-1.docker.io`), or HTTP when `plain` says so.
pub fn default_endpoint(host: &str, plain: bool) -> Endpoint {
    let host = if host == "docker.io" {
        "registry-1.docker.io"
    } else {
        host
    };
    let scheme = if plain { "http" } else { "https" };
    Endpoint {
        api: format!("{scheme}://{host}/v2"),
        pull: true,
        skip_verify: false,
        ca: Vec::new(),
    }
}

/// The `ca` setting of a table: a path or a list of paths.
fn ca_of(settings: &toml::Table, what: &str) -> std::result::Result<Vec<PathBuf>, String> {
    match settings.get("ca") {
        None => Ok(Vec::new()),
        Some(toml::Value::String(p)) => Ok(vec![PathBuf::from(p)]),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|p| {
                p.as_str()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{what}: ca holds a non-string"))
            })
            .collect(),
        Some(_) => Err(format!("{what}: ca is neither a path nor a list of paths")),
    }
}

fn api_of(url: &str, plain: bool, override_path: bool) -> String {
    let url = url.trim_end_matches('/');
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("{}://{url}", if plain { "http" } else { "https" })
    };
    // containerd appends /v2 unless the URL already ends with it or override_path is set.
    if override_path || url.ends_with("/v2") {
        url
    } else {
        format!("{url}/v2")
    }
}

/// The endpoints a hosts.toml text names for `host`, mirrors first, in file order.
pub fn parse(text: &str, host: &str, plain: bool) -> std::result::Result<Vec<Endpoint>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut endpoints = Vec::new();
    if let Some(hosts) = doc.get("host") {
        let hosts = hosts.as_table().ok_or("`host` is not a table")?;
        for (url, settings) in hosts {
            let settings = settings
                .as_table()
                .ok_or_else(|| format!("host {url:?} is not a table"))?;
            let capabilities: Vec<&str> = match settings.get("capabilities") {
                None => vec!["pull", "resolve", "push"],
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| format!("host {url:?}: capabilities is not a list"))?
                    .iter()
                    .map(|c| c.as_str().ok_or("capability is not a string"))
                    .collect::<std::result::Result<_, _>>()?,
            };
            let flag = |k: &str| settings.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            endpoints.push(Endpoint {
                api: api_of(url, plain, flag("override_path")),
                pull: capabilities.contains(&"pull"),
                skip_verify: flag("skip_verify"),
                ca: ca_of(settings, &format!("host {url:?}"))?,
            });
        }
    }
    match doc.get("server").map(|s| s.as_str()) {
        Some(Some(server)) => endpoints.push(Endpoint {
            api: api_of(server, plain, false),
            pull: true,
            skip_verify: doc
                .get("skip_verify")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            ca: ca_of(&doc, "server")?,
        }),
        Some(None) => return Err("`server` is not a string".into()),
        None => endpoints.push(default_endpoint(host, plain)),
    }
    Ok(endpoints)
}

/// The endpoints able to pull from `host`, from `dir`'s hosts.toml or the default.
pub fn endpoints(dir: &Path, host: &str, plain: bool) -> Result<Vec<Endpoint>> {
    if host.contains('/') || host.starts_with('.') {
        return Err(PullError::Labels(format!("invalid registry host {host:?}")));
    }
    for candidate in [
        dir.join(host).join("hosts.toml"),
        dir.join("_default/hosts.toml"),
    ] {
        match std::fs::read_to_string(&candidate) {
            Ok(text) => {
                let all = parse(&text, host, plain).map_err(|why| PullError::ConfigFile {
                    path: candidate.clone(),
                    why,
                })?;
                let base = candidate.parent().unwrap_or(dir);
                return Ok(all
                    .into_iter()
                    .filter(|e| e.pull)
                    .map(|mut e| {
                        e.ca = e.ca.iter().map(|p| base.join(p)).collect();
                        e
                    })
                    .collect());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(PullError::ConfigFile {
                    path: candidate,
                    why: e.to_string(),
                });
            }
        }
    }
    Ok(vec![default_endpoint(host, plain)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mirrors come first in file order, then the server; capabilities, skip_verify,
    /// override_path and scheme-less names follow containerd's rules.
    #[test]
    fn mirrors_then_server() {
        let text = r#"
server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
[host."mirror.example/custom"]
  capabilities = ["resolve"]
  skip_verify = true
[host."https://other.example/api"]
  override_path = true
  ca = ["a.pem", "/etc/b.pem"]
"#;
        let e = parse(text, "docker.io", false).unwrap();
        let apis: Vec<_> = e
            .iter()
            .map(|e| (e.api.as_str(), e.pull, e.skip_verify))
            .collect();
        assert_eq!(
            apis,
            vec![
                ("http://127.0.0.1:5000/v2", true, false),
                ("https://mirror.example/custom/v2", false, true),
                ("https://other.example/api", true, false),
                ("https://registry-1.docker.io/v2", true, false),
            ]
        );
        assert_eq!(e[2].ca, vec![PathBuf::from("a.pem"), "/etc/b.pem".into()]);
        assert_eq!(
            parse("server = \"https://s\"\nca = \"c.pem\"", "h", false).unwrap()[0].ca,
            vec![PathBuf::from("c.pem")]
        );
        assert!(parse("server = \"https://s\"\nca = 3", "h", false).is_err());
    }

    /// Without `server` the host itself is last; plain hosts default to HTTP.
    #[test]
    fn default_server() {
        assert_eq!(
            parse("", "127.0.0.1:5000", true).unwrap(),
            vec![default_endpoint("127.0.0.1:5000", true)]
        );
        assert_eq!(
            default_endpoint("docker.io", false).api,
            "https://registry-1.docker.io/v2"
        );
        assert!(parse("server = 3", "h", false).is_err());
        assert!(parse("[host.\"x\"]\ncapabilities = \"pull\"", "h", false).is_err());
        assert!(parse("server = ", "h", false).is_err());
    }

    /// The file of the host's directory is read, `_default` otherwise, else the default;
    /// endpoints without `pull` are dropped.
    #[test]
    fn reads_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("r.example:5000")).unwrap();
        std::fs::write(
            dir.path().join("r.example:5000/hosts.toml"),
            "server = \"http://r.example:5000\"\nca = \"ca.pem\"\n[host.\"http://m\"]\ncapabilities = [\"resolve\"]\n",
        )
        .unwrap();
        let e = endpoints(dir.path(), "r.example:5000", false).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].api, "http://r.example:5000/v2");
        assert_eq!(e[0].ca, vec![dir.path().join("r.example:5000/ca.pem")]);
        assert_eq!(
            endpoints(dir.path(), "q.example", false).unwrap(),
            vec![default_endpoint("q.example", false)]
        );
        assert!(endpoints(dir.path(), "../etc", false).is_err());
    }
}

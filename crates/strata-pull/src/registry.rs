//! A blocking client of the distribution (registry v2) API: manifests and blobs by digest,
//! endpoint fallback (mirrors from hosts.toml, then the server), anonymous, basic and
//! bearer-token auth, retries with backoff, bounded redirects and bounded answers.
//!
//! HTTPS is verified against the system's CA certificates (`SSL_CERT_FILE`, else Debian's
//! `/etc/ssl/certs/ca-certificates.crt`; the compiled-in Mozilla roots when neither is
//! readable) plus the endpoint's `ca` files from hosts.toml; `skip_verify` turns
//! verification off for that endpoint, as in containerd.
//!
//! Hostile answers are bounded: a manifest or config larger than the configured limit, a
//! blob longer than its descriptor's size, a token response over 1 MiB, a stalled body
//! (per-read timeout) and redirect loops (`max_redirects`) are all errors.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_layer::Digest;
use ureq::Agent;
use ureq::http::Response;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::auth::{self, Credentials, parse_challenges};
use crate::config::PullConfig;
use crate::error::{PullError, Result};
use crate::hosts::{self, Endpoint};
use crate::reference::Reference;

/// Accept header for manifests: OCI and Docker schema 2 images.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// A registry client shared by every pull.
pub struct Registry {
    agent: Agent,
    config: PullConfig,
    credentials: HashMap<String, Credentials>,
    /// Authorization values that worked, by host and repository.
    tokens: Mutex<HashMap<(String, String), String>>,
    /// TLS settings built so far, by the endpoint's CA files and `skip_verify`.
    tls: Mutex<HashMap<(Vec<PathBuf>, bool), TlsConfig>>,
}

/// The system's CA bundle: `SSL_CERT_FILE`, else Debian's.
fn system_roots() -> Vec<Certificate<'static>> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    match std::fs::read(&path) {
        Ok(pem) => certificates(&pem),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no system CA bundle");
            Vec::new()
        }
    }
}

/// The certificates of a PEM text (other items skipped).
fn certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// A blob body that fails once it runs past its declared size.
struct Bounded<R> {
    inner: R,
    left: u64,
    url: String,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte more than allowed, so an overlong body is noticed.
        let want = buf.len().min(self.left.saturating_add(1) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: body longer than the descriptor's size", self.url),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl Registry {
    /// A client with `config`'s timeouts, retries and limits, and its credentials file.
    pub fn new(config: PullConfig) -> Result<Registry> {
        let credentials = match &config.credentials_file {
            Some(path) => auth::load_credentials(path)?,
            None => HashMap::new(),
        };
        let timeout = Some(Duration::from_secs(config.read_timeout_secs.max(1)));
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(config.max_redirects)
            .timeout_connect(Some(Duration::from_secs(
                config.connect_timeout_secs.max(1),
            )))
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .user_agent("strata-pull")
            .build()
            .into();
        Ok(Registry {
            agent,
            config,
            credentials,
            tokens: Mutex::default(),
            tls: Mutex::default(),
        })
    }

    /// The TLS settings of an endpoint trusting the system's roots plus `ca`'s certificates.
    fn tls(&self, ca: &[PathBuf], skip_verify: bool) -> Result<TlsConfig> {
        let key = (ca.to_vec(), skip_verify);
        if let Some(tls) = self.tls.lock().expect("tls").get(&key) {
            return Ok(tls.clone());
        }
        let mut certs = system_roots();
        for path in ca {
            let pem = std::fs::read(path).map_err(|e| PullError::ConfigFile {
                path: path.clone(),
                why: format!("reading the CA file: {e}"),
            })?;
            let found = certificates(&pem);
            if found.is_empty() {
                return Err(PullError::ConfigFile {
                    path: path.clone(),
                    why: "no PEM certificate in the CA file".into(),
                });
            }
            certs.extend(found);
        }
        let roots = if certs.is_empty() {
            RootCerts::WebPki
        } else {
            RootCerts::Specific(Arc::new(certs))
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(skip_verify)
            .build();
        self.tls.lock().expect("tls").insert(key, tls.clone());
        Ok(tls)
    }

    /// The configuration the client runs with.
    pub fn config(&self) -> &PullConfig {
        &self.config
    }

    fn endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>> {
        let plain = self.config.plain_http.iter().any(|h| h == &r.host);
        hosts::endpoints(&self.config.hosts_dir, &r.host, plain)
    }

    /// The manifest `digest` of `r`, verified and at most `max_manifest_bytes`.
    pub fn manifest(&self, r: &Reference, digest: &Digest) -> Result<Vec<u8>> {
        self.small(r, "manifests", digest, MANIFEST_ACCEPT)
    }

    /// A small blob (an image config), verified and at most `max_manifest_bytes`.
    pub fn small_blob(&self, r: &Reference, digest: &Digest) -> Result<Vec<u8>> {
        self.small(r, "blobs", digest, "*/*")
    }

    fn small(&self, r: &Reference, kind: &str, digest: &Digest, accept: &str) -> Result<Vec<u8>> {
        let (url, response) = self.get(r, &format!("{kind}/{digest}"), accept)?;
        let limit = self.config.max_manifest_bytes;
        let bytes = response
            .into_body()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| PullError::BadAnswer {
                url: url.clone(),
                why: format!("reading at most {limit} bytes: {e}"),
            })?;
        if Digest::of(&bytes) != *digest {
            return Err(PullError::BadAnswer {
                url,
                why: format!("content does not match digest {digest}"),
            });
        }
        Ok(bytes)
    }

    /// A streaming reader of blob `digest`, failing past `size` bytes; the caller verifies
    /// the digest as it reads (the layer applier does).
    pub fn blob(&self, r: &Reference, digest: &Digest, size: u64) -> Result<Box<dyn Read + Send>> {
        let (url, response) = self.get(r, &format!("blobs/{digest}"), "*/*")?;
        if let Some(length) = response.body().content_length()
            && length != size
        {
            return Err(PullError::BadAnswer {
                url,
                why: format!("Content-Length {length} but the descriptor says {size}"),
            });
        }
        Ok(Box::new(Bounded {
            inner: response.into_body().into_reader(),
            left: size,
            url,
        }))
    }

    /// GET `path` under each pull endpoint of `r`'s host in turn; the first 200 wins.
    fn get(
        &self,
        r: &Reference,
        path: &str,
        accept: &str,
    ) -> Result<(String, Response<ureq::Body>)> {
        let mut last = None;
        for endpoint in self.endpoints(r)? {
            let url = format!("{}/{}/{path}", endpoint.api, r.repository);
            let tls = if url.starts_with("https://") {
                match self.tls(&endpoint.ca, endpoint.skip_verify) {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            } else {
                None
            };
            match self.get_one(r, &url, accept, tls.as_ref()) {
                Ok(response) => return Ok((url, response)),
                Err(e) => {
                    tracing::debug!(%url, error = %e, "endpoint failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| PullError::Registry {
            url: r.host.clone(),
            why: "no endpoint with the pull capability".into(),
        }))
    }

    fn get_one(
        &self,
        r: &Reference,
        url: &str,
        accept: &str,
        tls: Option<&TlsConfig>,
    ) -> Result<Response<ureq::Body>> {
        let key = (r.host.clone(), r.repository.clone());
        let mut authorized_once = false;
        let mut attempt = 0u32;
        loop {
            let authorization = self.tokens.lock().expect("tokens").get(&key).cloned();
            let mut request = self.agent.get(url).header("Accept", accept);
            if let Some(tls) = tls {
                request = request.config().tls_config(tls.clone()).build();
            }
            if let Some(a) = &authorization {
                request = request.header("Authorization", a);
            }
            let failure = match request.call() {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match status {
                        200 => return Ok(response),
                        401 if !authorized_once => {
                            authorized_once = true;
                            let header = response
                                .headers()
                                .get("www-authenticate")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let value = self.authorize(r, url, &header, tls)?;
                            self.tokens
                                .lock()
                                .expect("tokens")
                                .insert(key.clone(), value);
                            continue;
                        }
                        429 | 500..=599 => format!("HTTP {status}"),
                        _ => {
                            return Err(PullError::Registry {
                                url: url.to_owned(),
                                why: format!("HTTP {status}"),
                            });
                        }
                    }
                }
                Err(ureq::Error::TooManyRedirects) => {
                    return Err(PullError::BadAnswer {
                        url: url.to_owned(),
                        why: format!("more than {} redirects", self.config.max_redirects),
                    });
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.config.retries {
                return Err(PullError::Registry {
                    url: url.to_owned(),
                    why: format!("{failure} (after {} attempts)", attempt + 1),
                });
            }
            let backoff = Duration::from_millis(200u64 << attempt.min(6));
            tracing::debug!(%url, %failure, ?backoff, "retrying");
            std::thread::sleep(backoff);
            attempt += 1;
        }
    }

    /// The Authorization value answering a challenge: basic credentials, or a bearer token
    /// fetched from the challenge's realm (with basic credentials when we have them).
    fn authorize(
        &self,
        r: &Reference,
        url: &str,
        header: &str,
        tls: Option<&TlsConfig>,
    ) -> Result<String> {
        let credentials = self.credentials.get(&r.host);
        let challenges = parse_challenges(header);
        let fail = |why: String| PullError::Registry {
            url: url.to_owned(),
            why,
        };
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer
                .params
                .get("realm")
                .ok_or_else(|| fail("bearer challenge without realm".into()))?;
            let scope = bearer
                .params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull", r.repository));
            let mut token_url = format!("{realm}?scope={}", auth::query_escape(&scope));
            if let Some(service) = bearer.params.get("service") {
                token_url.push_str(&format!("&service={}", auth::query_escape(service)));
            }
            let mut request = self.agent.get(&token_url);
            if token_url.starts_with("https://") {
                // The realm's own host: the system's roots, and the endpoint's CA files.
                let tls = match tls {
                    Some(t) => t.clone(),
                    None => self.tls(&[], false)?,
                };
                request = request.config().tls_config(tls).build();
            }
            if let Some(c) = credentials {
                request = request.header("Authorization", &auth::basic(c));
            }
            let response = request
                .call()
                .map_err(|e| fail(format!("token {token_url}: {e}")))?;
            if response.status().as_u16() != 200 {
                return Err(fail(format!(
                    "token {token_url}: HTTP {}",
                    response.status()
                )));
            }
            let body = response
                .into_body()
                .with_config()
                .limit(MAX_TOKEN_BYTES)
                .read_to_vec()
                .map_err(|e| fail(format!("token {token_url}: {e}")))?;
            #[derive(serde::Deserialize)]
            struct Token {
                token: Option<String>,
                access_token: Option<String>,
            }
            let t: Token = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("token {token_url}: {e}")))?;
            let token = t
                .token
                .or(t.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| fail(format!("token {token_url}: no token in the answer")))?;
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return credentials.map(auth::basic).ok_or_else(|| {
                fail(format!(
                    "basic auth asked and no credentials for {}",
                    r.host
                ))
            });
        }
        Err(fail(format!(
            "HTTP 401 with no usable challenge ({header:?})"
        )))
    }
}

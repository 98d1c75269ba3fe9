//! An image as the pull path needs it: its layers (digest, size, media type) from the
//! manifest, their diffIDs from the config, and the chain IDs containerd names snapshots by.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use strata_layer::{Compression, Digest};

use crate::error::{PullError, Result};

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
    /// The uncompressed tar's digest, from the config.
    pub diff_id: Digest,
    /// The chain ID of the image's layers up to this one.
    pub chain_id: Digest,
}

/// An image's layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

fn digest(s: &str) -> Result<Digest> {
    Digest::parse(s).ok_or_else(|| PullError::Image(format!("unsupported digest {s:?}")))
}

/// The chain ID of `parent` (none for the bottom layer) plus a layer with `diff_id`, as
/// OCI's image spec defines it: `sha256(parent + " " + diff_id)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => {
            let hex = Sha256::digest(format!("{p} {diff_id}").as_bytes());
            let hex: String = hex.iter().map(|b| format!("{b:02x}")).collect();
            Digest::parse(&format!("sha256:{hex}")).expect("a sha256 digest")
        }
    }
}

/// The config descriptor's digest of a manifest.
pub fn config_digest(manifest: &[u8]) -> Result<Digest> {
    let m: Manifest =
        serde_json::from_slice(manifest).map_err(|e| PullError::Image(format!("manifest: {e}")))?;
    if m.manifests.is_some() {
        return Err(PullError::Image(format!(
            "manifest is an index ({:?}), not an image manifest",
            m.media_type
        )));
    }
    let config = m
        .config
        .ok_or_else(|| PullError::Image("manifest without config".into()))?;
    digest(&config.digest)
}

impl Image {
    /// The image a manifest and its config describe.
    pub fn parse(manifest: &[u8], config: &[u8]) -> Result<Image> {
        let m: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| PullError::Image(format!("manifest: {e}")))?;
        let c: Config =
            serde_json::from_slice(config).map_err(|e| PullError::Image(format!("config: {e}")))?;
        if m.layers.len() != c.rootfs.diff_ids.len() {
            return Err(PullError::Image(format!(
                "{} layers but {} diffIDs",
                m.layers.len(),
                c.rootfs.diff_ids.len()
            )));
        }
        let mut layers: Vec<Layer> = Vec::with_capacity(m.layers.len());
        for (d, diff_id) in m.layers.iter().zip(&c.rootfs.diff_ids) {
            let diff_id = digest(diff_id)?;
            let chain_id = chain_id(layers.last().map(|l| &l.chain_id), &diff_id);
            layers.push(Layer {
                digest: digest(&d.digest)?,
                size: d.size,
                media_type: d.media_type.clone(),
                diff_id,
                chain_id,
            });
        }
        Ok(Image { layers })
    }

    /// The index of the layer whose chain ID is `chain` and whose blob is `blob`.
    pub fn position(&self, chain: &str, blob: &str) -> Result<usize> {
        self.layers
            .iter()
            .position(|l| l.chain_id.as_str() == chain && l.digest.as_str() == blob)
            .ok_or_else(|| {
                PullError::Image(format!(
                    "no layer {blob} with chain ID {chain} in the image (computed from its config)"
                ))
            })
    }
}

impl Layer {
    /// The layer's compression, or `MediaType` when Strata does not apply it (encrypted,
    /// foreign, unknown).
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_media_type(&self.media_type)
            .ok_or_else(|| PullError::MediaType(self.media_type.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    /// Chain IDs follow the OCI definition; layers pair with diffIDs in order.
    #[test]
    fn chain_ids() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{D1}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D1}","size":5}},
                      {{"mediaType":"application/x-foo","digest":"{D2}","size":6}}]}}"#
        );
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{D2}","{D1}"]}}}}"#);
        let image = Image::parse(manifest.as_bytes(), config.as_bytes()).unwrap();
        assert_eq!(image.layers[0].chain_id.as_str(), D2);
        let want = Sha256::digest(format!("{D2} {D1}").as_bytes());
        let want: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(image.layers[1].chain_id.hex(), want);
        assert_eq!(
            image
                .position(image.layers[1].chain_id.as_str(), D2)
                .unwrap(),
            1
        );
        assert!(image.position(D1, D2).is_err());
        assert!(image.layers[0].compression().is_ok());
        assert!(matches!(
            image.layers[1].compression(),
            Err(PullError::MediaType(_))
        ));
        assert_eq!(config_digest(manifest.as_bytes()).unwrap().as_str(), D1);
        assert!(Image::parse(manifest.as_bytes(), br#"{"rootfs":{"diff_ids":[]}}"#).is_err());
        assert!(config_digest(br#"{"manifests":[]}"#).is_err());
    }
}

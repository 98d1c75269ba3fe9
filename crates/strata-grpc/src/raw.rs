//! The raw-wire escape hatch: puts arbitrary bytes on the wire as a request message, for the
//! tests that must send what no well-behaved client can (malformed protobuf, a missing
//! required field, a method the service does not have). Everything else talks through
//! [`crate::client::Client`].

use std::path::Path;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

use crate::client::{Error, Result, channel};

/// The snapshots service's gRPC path prefix.
const SERVICE: &str = "/containerd.services.snapshots.v1.Snapshots";

/// Sends `body`, as is, as the request message of the unary `method` (`Prepare`, `Stat`, …)
/// of the snapshots service on the unix socket `socket`; returns the answer's message bytes.
pub async fn unary(socket: &Path, method: &str, body: Vec<u8>) -> Result<Vec<u8>> {
    let connect_error = |reason: String| Error::Connect {
        address: socket.to_owned(),
        reason,
    };
    let channel = channel(socket)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let path =
        PathAndQuery::try_from(format!("{SERVICE}/{method}")).map_err(|e| Error::Status {
            code: tonic::Code::InvalidArgument,
            message: format!("method {method:?}: {e}"),
        })?;
    let answer = grpc
        .unary(tonic::Request::new(body), path, RawCodec)
        .await?;
    Ok(answer.into_inner())
}

/// Sends and receives message bodies as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut EncodeBuf<'_>,
    ) -> std::result::Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

//! A request-response codec for opaque byte bodies with hard size limits.
//!
//! Each body travels as an unsigned LEB128 length prefix and the bytes. The reader refuses a
//! length above the protocol's limit before allocating, so a peer cannot make us buffer more
//! than the limit (libp2p's own CBOR/JSON codecs allow 1 MiB requests and 10 MiB responses).

use std::io;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;

/// Size limits of one request-response protocol.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body accepted or sent.
    pub request: usize,
    /// The largest response body accepted or sent.
    pub response: usize,
}

/// Length-prefixed opaque bodies, bounded by [`Limits`].
#[derive(Debug, Clone, Copy)]
pub struct BytesCodec {
    limits: Limits,
}

impl BytesCodec {
    /// A codec enforcing `limits` in both directions.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

async fn read_body<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len: u64 = 0;
    // A length needs at most 10 LEB128 bytes; ours fit in 3, so stop early on anything longer.
    for i in 0..4 {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("body of {len} bytes exceeds the limit of {max}"),
                ));
            }
            let mut buf = vec![0u8; len];
            io.read_exact(&mut buf).await?;
            return Ok(buf);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "length prefix too long",
    ))
}

async fn write_body<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    body: &[u8],
    max: usize,
) -> io::Result<()> {
    if body.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("body of {} bytes exceeds the limit of {max}", body.len()),
        ));
    }
    let mut prefix = Vec::with_capacity(4);
    let mut n = body.len();
    loop {
        // Seven bits at a time; the mask makes the truncation explicit and lossless.
        let byte = u8::try_from(n & 0x7f).unwrap_or(0);
        n >>= 7;
        if n == 0 {
            prefix.push(byte);
            break;
        }
        prefix.push(byte | 0x80);
    }
    io.write_all(&prefix).await?;
    io.write_all(body).await?;
    io.close().await
}

impl libp2p::request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_body(io, self.limits.request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_body(io, self.limits.response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_body(io, &req, self.limits.request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_body(io, &res, self.limits.response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn roundtrip(len: usize, max: usize) -> io::Result<Vec<u8>> {
        futures::executor::block_on(async {
            let mut wire = Cursor::new(Vec::new());
            // Write without the limit so the reader's limit is what is tested.
            write_body(&mut wire, &vec![7u8; len], usize::MAX).await?;
            let mut r = Cursor::new(wire.into_inner());
            read_body(&mut r, max).await
        })
    }

    #[test]
    fn bodies_within_the_limit_pass_and_larger_ones_are_refused() {
        for len in [0, 1, 127, 128, 4096] {
            assert_eq!(roundtrip(len, 4096).unwrap().len(), len);
        }
        assert!(roundtrip(4097, 4096).is_err());
        // The writer refuses too.
        let mut wire = Cursor::new(Vec::new());
        assert!(futures::executor::block_on(write_body(&mut wire, &[0; 5], 4)).is_err());
        // A truncated body is an error, not a short read.
        let r = futures::executor::block_on(read_body(&mut Cursor::new(vec![10u8, 1, 2]), 64));
        assert!(r.is_err());
    }
}

//! The wire envelope: every message that crosses nodes is a serde type
//! encoded with bincode inside this frame.
//!
//! ```text
//! offset  size  field
//! 0       2     magic  b"NX"
//! 2       1     version (1)
//! 3       1     kind   (FrameKind)
//! 4       1     flags  (bit 0: payload LZ4-compressed; other bits must be 0)
//! 5       8     message id, little-endian
//! 13      4     payload length n, little-endian (as sent, after compression)
//! 17      n     payload
//! 17+n    8     checksum: xxh3-64 of bytes 0..17+n, little-endian
//! ```
//!
//! A compressed payload is LZ4 with its uncompressed length prepended
//! (4 bytes, little-endian); that length is checked against
//! [`MAX_CLUSTER_PAYLOAD`] before anything is allocated, so a small frame
//! cannot claim gigabytes.
//!
//! Decoding never panics: whatever the bytes, the answer is a frame or an
//! [`EnvelopeError`] saying what is wrong (a property test feeds it random
//! and mutated bytes).

use serde::Serialize;
use serde::de::DeserializeOwned;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::MAX_CLUSTER_PAYLOAD;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"NX";
/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 17;
/// Bytes after the payload (the checksum).
pub const TRAILER_LEN: usize = 8;
/// Flag bit: the payload is LZ4-compressed.
pub const FLAG_COMPRESSED: u8 = 0b1;

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum FrameKind {
    /// A [`Heartbeat`](super::wire::Heartbeat).
    Heartbeat = 1,
    /// A [`Work`](super::wire::Work) item for the key's owner; the id is
    /// the sender's message id.
    Work = 2,
    /// An [`Ack`](super::wire::Ack): the work with this id was handled.
    Ack = 3,
    /// A [`LeaseRequest`](super::wire::LeaseRequest) to a limit's owner;
    /// the id is the request's, echoed by the reply.
    LeaseRequest = 10,
    /// A [`LeaseReply`](super::wire::LeaseReply) to the request of this id.
    LeaseReply = 11,
    /// A [`LeaseRelease`](super::wire::LeaseRelease): a lease given back.
    LeaseRelease = 12,
    /// A [`Figure`](super::wire::Figure) an owner replicates before it
    /// grants; the id is echoed by the [`FigureAck`](super::wire::FigureAck).
    Figure = 13,
    /// A [`FigureAck`](super::wire::FigureAck): the figure of this id is held.
    FigureAck = 14,
    /// A [`FigureQuery`](super::wire::FigureQuery) of a new owner.
    FigureQuery = 15,
    /// A [`FigureReply`](super::wire::FigureReply) to the query of this id.
    FigureReply = 16,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameKind::Heartbeat),
            2 => Some(FrameKind::Work),
            3 => Some(FrameKind::Ack),
            10 => Some(FrameKind::LeaseRequest),
            11 => Some(FrameKind::LeaseReply),
            12 => Some(FrameKind::LeaseRelease),
            13 => Some(FrameKind::Figure),
            14 => Some(FrameKind::FigureAck),
            15 => Some(FrameKind::FigureQuery),
            16 => Some(FrameKind::FigureReply),
            _ => None,
        }
    }
}

/// Why bytes are not a frame, or a frame's payload not the type expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer bytes than a header and a checksum.
    #[error("frame of {len} bytes is shorter than the {min} of an empty frame")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic {0:02x?}: not a nexus cluster frame")]
    BadMagic([u8; 2]),
    /// A version this build does not read.
    #[error("envelope version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u8),
    /// A kind this build does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Flag bits this build does not know.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// The declared payload length does not match the bytes received.
    #[error("payload length {declared} declared, {actual} received")]
    LengthMismatch {
        /// Length in the header.
        declared: usize,
        /// Length received.
        actual: usize,
    },
    /// The checksum does not match: the frame was damaged.
    #[error("checksum {actual:#018x} does not match {expected:#018x}")]
    Checksum {
        /// In the frame.
        expected: u64,
        /// Computed.
        actual: u64,
    },
    /// A payload larger than [`MAX_CLUSTER_PAYLOAD`].
    #[error("payload of {len} bytes is above the limit of {max}")]
    TooLarge {
        /// Its length (uncompressed, as declared).
        len: u64,
        /// The limit.
        max: u32,
    },
    /// The compressed payload does not decompress.
    #[error("payload does not decompress: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    /// The payload is not a valid encoding of the expected type.
    #[error("payload does not decode as {kind:?}: {source}")]
    Payload {
        /// The frame's kind.
        kind: FrameKind,
        /// bincode's reason.
        source: bincode::error::DecodeError,
    },
    /// The payload decoded but bytes were left over.
    #[error("payload of {kind:?} has {extra} trailing bytes")]
    TrailingBytes {
        /// The frame's kind.
        kind: FrameKind,
        /// Bytes left.
        extra: usize,
    },
    /// The frame is of another kind than the one asked for.
    #[error("frame is {actual:?}, not {expected:?}")]
    WrongKind {
        /// Asked for.
        expected: FrameKind,
        /// In the frame.
        actual: FrameKind,
    },
    /// The value could not be encoded.
    #[error("cannot encode payload: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// A decoded frame: kind, id and the (decompressed) payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: FrameKind,
    /// The message id (the sender's, for acknowledgement and idempotence).
    pub id: u64,
    /// Whether the payload travelled compressed.
    pub compressed: bool,
    /// The payload, decompressed.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Decodes the payload as `T` (bincode, standard configuration, at
    /// most [`MAX_CLUSTER_PAYLOAD`] bytes allocated), refusing trailing bytes.
    pub fn decode<T: DeserializeOwned>(&self, expected: FrameKind) -> Result<T, EnvelopeError> {
        if self.kind != expected {
            return Err(EnvelopeError::WrongKind {
                expected,
                actual: self.kind,
            });
        }
        let config = bincode::config::standard().with_limit::<{ MAX_CLUSTER_PAYLOAD as usize }>();
        let (value, read) =
            bincode::serde::decode_from_slice(&self.payload, config).map_err(|source| EnvelopeError::Payload {
                kind: self.kind,
                source,
            })?;
        if read != self.payload.len() {
            return Err(EnvelopeError::TrailingBytes {
                kind: self.kind,
                extra: self.payload.len() - read,
            });
        }
        Ok(value)
    }
}

/// Encodes `value` as a frame of `kind` with message `id`, compressing the
/// payload when it is longer than `compress_above` bytes (and compression
/// makes it shorter).
pub fn encode<T: Serialize>(
    kind: FrameKind,
    id: u64,
    value: &T,
    compress_above: u32,
) -> Result<Vec<u8>, EnvelopeError> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())?;
    encode_bytes(kind, id, &payload, compress_above)
}

/// Frames an already-encoded payload (see [`encode`]).
pub fn encode_bytes(kind: FrameKind, id: u64, payload: &[u8], compress_above: u32) -> Result<Vec<u8>, EnvelopeError> {
    if payload.len() as u64 > u64::from(MAX_CLUSTER_PAYLOAD) {
        return Err(EnvelopeError::TooLarge {
            len: payload.len() as u64,
            max: MAX_CLUSTER_PAYLOAD,
        });
    }
    let compressed = (payload.len() as u64 > u64::from(compress_above))
        .then(|| lz4_flex::compress_prepend_size(payload))
        .filter(|c| c.len() < payload.len());
    let (flags, body) = match &compressed {
        Some(c) => (FLAG_COMPRESSED, c.as_slice()),
        None => (0, payload),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.push(flags);
    out.extend_from_slice(&id.to_le_bytes());
    // Below MAX_CLUSTER_PAYLOAD (checked), so it fits in u32.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Decodes a frame, checking magic, version, kind, flags, length and
/// checksum, and decompressing the payload.
pub fn decode(bytes: &[u8]) -> Result<Frame, EnvelopeError> {
    let min = HEADER_LEN + TRAILER_LEN;
    if bytes.len() < min {
        return Err(EnvelopeError::Truncated { len: bytes.len(), min });
    }
    let magic = [bytes[0], bytes[1]];
    if magic != MAGIC {
        return Err(EnvelopeError::BadMagic(magic));
    }
    if bytes[2] != VERSION {
        return Err(EnvelopeError::UnsupportedVersion(bytes[2]));
    }
    let kind = FrameKind::from_byte(bytes[3]).ok_or(EnvelopeError::UnknownKind(bytes[3]))?;
    let flags = bytes[4];
    if flags & !FLAG_COMPRESSED != 0 {
        return Err(EnvelopeError::UnknownFlags(flags));
    }
    let id = u64::from_le_bytes(le_array(&bytes[5..13]));
    let declared = u32::from_le_bytes(le_array(&bytes[13..17])) as usize;
    let actual = bytes.len() - min;
    if declared != actual {
        return Err(EnvelopeError::LengthMismatch { declared, actual });
    }
    let end = HEADER_LEN + declared;
    let expected = u64::from_le_bytes(le_array(&bytes[end..]));
    let computed = xxh3_64(&bytes[..end]);
    if expected != computed {
        return Err(EnvelopeError::Checksum {
            expected,
            actual: computed,
        });
    }
    let body = &bytes[HEADER_LEN..end];
    let compressed = flags & FLAG_COMPRESSED != 0;
    let payload = if compressed {
        if body.len() < 4 {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                min: min + 4,
            });
        }
        let len = u32::from_le_bytes(le_array(&body[..4]));
        if len > MAX_CLUSTER_PAYLOAD {
            return Err(EnvelopeError::TooLarge {
                len: u64::from(len),
                max: MAX_CLUSTER_PAYLOAD,
            });
        }
        lz4_flex::decompress_size_prepended(body)?
    } else {
        body.to_vec()
    };
    Ok(Frame {
        kind,
        id,
        compressed,
        payload,
    })
}

/// The first `N` bytes of `b` (callers slice exactly `N`).
fn le_array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

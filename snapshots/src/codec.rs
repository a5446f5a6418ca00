//! The binary encoding of journal records, snapshots and rows: one version byte, then
//! postcard (serde, varint integers, no field names). A record of one metric event is a few
//! hundred bytes instead of the 1.3 KB of JSON the first format used.
//!
//! Postcard is not self-describing: types stored with it must not use serde attributes that
//! need to look ahead (`#[serde(tag = ...)]`, `untagged`, `flatten`, `skip_serializing_if`).
//! Adding a field to a stored type is a format change: bump [`VERSION`] and keep a decoder
//! for the old one. Version 2 added points to user snapshots, version 3 their notice
//! bookkeeping, version 4 their Wrapped bookkeeping; every other stored type reads the same
//! in versions 1 to 4, and user snapshots of versions 1 to 3 go through
//! [`crate::Recoverable::decode_legacy`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Result, StoreError};

/// Encoding version written in front of every value.
pub const VERSION: u8 = 4;

/// The oldest version still read.
pub const OLDEST: u8 = 1;

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![VERSION];
    postcard::to_io(value, &mut out).map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(out)
}

/// Encodes `value` after `header` bytes (a snapshot's seq), behind the version byte.
pub fn encode_with_header<T: Serialize + ?Sized>(header: &[u8], value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1 + header.len() + 64);
    out.push(VERSION);
    out.extend_from_slice(header);
    postcard::to_io(value, &mut out).map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`]; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T> {
    decode_after(bytes, 0, what)
}

/// Decodes a value written by [`encode_with_header`] with a header of `skip` bytes.
pub fn decode_after<T: DeserializeOwned>(
    bytes: &[u8],
    skip: usize,
    what: impl FnOnce() -> String,
) -> Result<T> {
    match bytes.first() {
        Some(v) if (OLDEST..=VERSION).contains(v) => {}
        Some(other) => {
            return Err(StoreError::Corrupt {
                key: what(),
                reason: format!("unknown encoding version {other}"),
            })
        }
        None => {
            return Err(StoreError::Corrupt {
                key: what(),
                reason: "empty value".into(),
            })
        }
    }
    let body = bytes.get(1 + skip..).ok_or_else(|| StoreError::Corrupt {
        key: String::new(),
        reason: "value shorter than its header".into(),
    })?;
    postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
        key: what(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Shape {
        Dot,
        Line { len: u32, name: String },
    }

    #[test]
    fn round_trips_with_version_and_header() {
        let v = Shape::Line {
            len: 7,
            name: "x".into(),
        };
        let bytes = encode(&v).expect("encode");
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode::<Shape>(&bytes, String::new).expect("decode"), v);
        let with = encode_with_header(&42u64.to_be_bytes(), &Shape::Dot).expect("encode");
        assert_eq!(&with[1..9], &42u64.to_be_bytes());
        assert_eq!(
            decode_after::<Shape>(&with, 8, String::new).expect("decode"),
            Shape::Dot
        );
        assert!(decode::<Shape>(b"{\"json\":1}", || "old".into()).is_err());
    }
}

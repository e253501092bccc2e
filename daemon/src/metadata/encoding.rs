//! containerd's value encodings in meta.db (see design/meta-db.md section 3).
//!
//! - times: Go `time.Time.MarshalBinary` (15 bytes, 16 for version 2);
//! - integers: Go `binary.PutVarint` (zigzag) for sizes and the db version, `binary.PutUvarint`
//!   for unsigned values;
//! - `google.protobuf.Any` for specs, runtime options and extensions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protobuf::Message;

/// Seconds from 0001-01-01T00:00:00Z (Go's internal epoch) to the Unix epoch.
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;
const NANOS_PER_SEC: u32 = 1_000_000_000;
/// Go's `binary.MaxVarintLen64`.
const MAX_VARINT_LEN64: usize = 10;
/// Length of a version 1 binary time.
pub const TIME_LEN_V1: usize = 15;
/// Length of a version 2 binary time (extra offset-seconds byte).
pub const TIME_LEN_V2: usize = 16;

/// Errors decoding a stored value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// Binary time with no bytes at all.
    #[error("time: no data")]
    TimeEmpty,
    /// Binary time whose version byte is neither 1 nor 2.
    #[error("time: unsupported version {0}")]
    TimeVersion(u8),
    /// Binary time of the wrong length for its version.
    #[error("time: invalid length {got} for version {version} (want {want})")]
    TimeLength {
        version: u8,
        got: usize,
        want: usize,
    },
    /// Binary time whose nanoseconds are outside `0..1e9`.
    #[error("time: nanoseconds {0} out of range")]
    TimeNanos(i64),
    /// Binary time whose seconds do not fit Unix seconds in an i64.
    #[error("time: seconds {0} out of range")]
    TimeSeconds(i64),
    /// Varint that ends before its last byte.
    #[error("varint: truncated")]
    VarintTruncated,
    /// Varint longer than 10 bytes or above 64 bits.
    #[error("varint: overflows 64 bits")]
    VarintOverflow,
    /// Bytes left after a varint that should fill the whole value.
    #[error("varint: {0} trailing bytes")]
    VarintTrailing(usize),
    /// A `google.protobuf.Any` that does not parse.
    #[error("any: {0}")]
    Any(String),
    /// Another error, in the value of a named field (key), e.g. `createdat: time: no data`.
    #[error("{field}: {error}")]
    InField {
        field: String,
        error: Box<EncodingError>,
    },
}

impl EncodingError {
    /// This error, attributed to the value of `field` (a bolt key such as `createdat`).
    pub fn in_field(self, field: impl Into<String>) -> Self {
        EncodingError::InField {
            field: field.into(),
            error: Box::new(self),
        }
    }
}

/// An instant: Unix seconds and nanoseconds (`0..1e9`) after them, as Go and protobuf keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds after `secs`, below 1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// A timestamp; nanoseconds of 1e9 or more carry into the seconds.
    pub fn new(secs: i64, nanos: u32) -> Self {
        Timestamp {
            secs: secs.wrapping_add(i64::from(nanos / NANOS_PER_SEC)),
            nanos: nanos % NANOS_PER_SEC,
        }
    }

    /// The current time.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// This instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        let n = self.normalized();
        if n.secs >= 0 {
            UNIX_EPOCH + Duration::new(n.secs as u64, n.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(n.secs.unsigned_abs())
                + Duration::from_nanos(u64::from(n.nanos))
        }
    }

    fn normalized(self) -> Self {
        Timestamp::new(self.secs, self.nanos)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (secs, nanos) = (d.as_secs() as i64, d.subsec_nanos());
                if nanos == 0 {
                    Timestamp {
                        secs: -secs,
                        nanos: 0,
                    }
                } else {
                    Timestamp {
                        secs: -secs - 1,
                        nanos: NANOS_PER_SEC - nanos,
                    }
                }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl From<Timestamp> for protobuf::well_known_types::timestamp::Timestamp {
    fn from(t: Timestamp) -> Self {
        let n = t.normalized();
        let mut pb = protobuf::well_known_types::timestamp::Timestamp::new();
        pb.seconds = n.secs;
        pb.nanos = n.nanos as i32;
        pb
    }
}

impl TryFrom<&protobuf::well_known_types::timestamp::Timestamp> for Timestamp {
    type Error = EncodingError;

    /// Fails when `nanos` is outside `0..1e9`.
    fn try_from(
        pb: &protobuf::well_known_types::timestamp::Timestamp,
    ) -> Result<Self, Self::Error> {
        if pb.nanos < 0 || pb.nanos >= NANOS_PER_SEC as i32 {
            return Err(EncodingError::TimeNanos(i64::from(pb.nanos)));
        }
        Ok(Timestamp {
            secs: pb.seconds,
            nanos: pb.nanos as u32,
        })
    }
}

impl TryFrom<protobuf::well_known_types::timestamp::Timestamp> for Timestamp {
    type Error = EncodingError;

    fn try_from(pb: protobuf::well_known_types::timestamp::Timestamp) -> Result<Self, Self::Error> {
        Timestamp::try_from(&pb)
    }
}

/// Go `time.Time.MarshalBinary` of a UTC time, as containerd stores every time: version 1,
/// seconds since year 1, nanoseconds, zone offset -1 (`FF FF` = UTC). Seconds outside Go's
/// range wrap (never happens for real clocks).
pub fn encode_time(t: impl Into<Timestamp>) -> [u8; TIME_LEN_V1] {
    let t = t.into().normalized();
    let sec = t.secs.wrapping_add(UNIX_TO_INTERNAL);
    let mut out = [0u8; TIME_LEN_V1];
    out[0] = 1;
    out[1..9].copy_from_slice(&sec.to_be_bytes());
    out[9..13].copy_from_slice(&(t.nanos as i32).to_be_bytes());
    out[13..15].copy_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Go `time.Time.UnmarshalBinary`: version 1 (15 bytes) or 2 (16 bytes). The zone offset only
/// affects display in Go, so it is ignored: the instant is the same.
pub fn decode_time(buf: &[u8]) -> Result<Timestamp, EncodingError> {
    let version = *buf.first().ok_or(EncodingError::TimeEmpty)?;
    let want = match version {
        1 => TIME_LEN_V1,
        2 => TIME_LEN_V2,
        v => return Err(EncodingError::TimeVersion(v)),
    };
    if buf.len() != want {
        return Err(EncodingError::TimeLength {
            version,
            got: buf.len(),
            want,
        });
    }
    let sec = i64::from_be_bytes(buf[1..9].try_into().expect("8 bytes"));
    let nsec = i32::from_be_bytes(buf[9..13].try_into().expect("4 bytes"));
    if nsec < 0 || nsec as u32 >= NANOS_PER_SEC {
        return Err(EncodingError::TimeNanos(i64::from(nsec)));
    }
    let secs = sec
        .checked_sub(UNIX_TO_INTERNAL)
        .ok_or(EncodingError::TimeSeconds(sec))?;
    Ok(Timestamp {
        secs,
        nanos: nsec as u32,
    })
}

/// Go `binary.PutUvarint`: LEB128.
pub fn encode_uvarint(mut x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_VARINT_LEN64);
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
    out
}

/// Go `binary.PutVarint`: zigzag, then LEB128 (`3` -> `06`).
pub fn encode_varint(x: i64) -> Vec<u8> {
    let mut ux = (x as u64) << 1;
    if x < 0 {
        ux = !ux;
    }
    encode_uvarint(ux)
}

/// Go `binary.Uvarint`: the value and the number of bytes read. Errors where Go returns
/// `n <= 0`: truncated input, more than 10 bytes, or above 64 bits.
pub fn decode_uvarint(buf: &[u8]) -> Result<(u64, usize), EncodingError> {
    let mut x = 0u64;
    let mut s = 0u32;
    for (i, &b) in buf.iter().enumerate() {
        if i == MAX_VARINT_LEN64 {
            return Err(EncodingError::VarintOverflow);
        }
        if b < 0x80 {
            if i == MAX_VARINT_LEN64 - 1 && b > 1 {
                return Err(EncodingError::VarintOverflow);
            }
            return Ok((x | u64::from(b) << s, i + 1));
        }
        x |= u64::from(b & 0x7f) << s;
        s += 7;
    }
    Err(EncodingError::VarintTruncated)
}

/// Go `binary.Varint`: the value and the number of bytes read; errors as [`decode_uvarint`].
pub fn decode_varint(buf: &[u8]) -> Result<(i64, usize), EncodingError> {
    let (ux, n) = decode_uvarint(buf)?;
    let mut x = (ux >> 1) as i64;
    if ux & 1 != 0 {
        x = !x;
    }
    Ok((x, n))
}

/// A whole stored value holding one signed varint (sizes, db version); trailing bytes are an
/// error.
pub fn decode_varint_value(buf: &[u8]) -> Result<i64, EncodingError> {
    let (x, n) = decode_varint(buf)?;
    if n != buf.len() {
        return Err(EncodingError::VarintTrailing(buf.len() - n));
    }
    Ok(x)
}

/// A whole stored value holding one unsigned varint; trailing bytes are an error.
pub fn decode_uvarint_value(buf: &[u8]) -> Result<u64, EncodingError> {
    let (x, n) = decode_uvarint(buf)?;
    if n != buf.len() {
        return Err(EncodingError::VarintTrailing(buf.len() - n));
    }
    Ok(x)
}

/// A `google.protobuf.Any` {1: type_url, 2: value} as containerd stores it; empty fields are
/// omitted (proto3), so an empty `value` gives only field 1.
pub fn encode_any(type_url: &str, value: &[u8]) -> Vec<u8> {
    let mut any = protobuf::well_known_types::any::Any::new();
    any.type_url = type_url.to_owned();
    any.value = value.to_vec();
    any.write_to_bytes()
        .expect("encoding an Any into memory cannot fail")
}

/// Parses a stored `google.protobuf.Any` into its type URL and value bytes.
pub fn decode_any(buf: &[u8]) -> Result<(String, Vec<u8>), EncodingError> {
    let any = protobuf::well_known_types::any::Any::parse_from_bytes(buf)
        .map_err(|e| EncodingError::Any(e.to_string()))?;
    Ok((any.type_url, any.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Container `job`'s `createdat` in the containerd 1.6.20 fixture meta.db:
    /// 2026-11-23T14:11:09.857878063Z.
    const JOB_CREATEDAT: [u8; 15] = [
        0x01, 0x00, 0x00, 0x00, 0x0e, 0xe2, 0x96, 0x40, 0x7d, 0x33, 0x22, 0x2e, 0x2f, 0xff, 0xff,
    ];
    /// Container `web`'s `runtime/options` in the fixture: Any{type_url: containerd.runc.v1.Options}.
    const WEB_RUNTIME_OPTIONS: &[u8] = b"\x0a\x1acontainerd.runc.v1.Options";

    #[test]
    fn time_worked_example() {
        let t = Timestamp::new(1_704_067_200, 0);
        let enc = encode_time(t);
        assert_eq!(
            enc,
            [0x01, 0, 0, 0, 0x0e, 0xdd, 0x23, 0xf7, 0x80, 0, 0, 0, 0, 0xff, 0xff]
        );
        assert_eq!(decode_time(&enc).unwrap(), t);
    }

    #[test]
    fn time_fixture_round_trip() {
        let t = decode_time(&JOB_CREATEDAT).unwrap();
        assert_eq!(
            t,
            Timestamp::new(63_931_039_869 - 62_135_596_800, 857_878_063)
        );
        assert_eq!(t.secs, 1_795_443_069);
        assert_eq!(encode_time(t), JOB_CREATEDAT);
        // Through SystemTime and back.
        let st: SystemTime = t.into();
        assert_eq!(encode_time(st), JOB_CREATEDAT);
        assert_eq!(Timestamp::from(st), t);
    }

    #[test]
    fn time_v2_and_other_zones_decode_to_same_instant() {
        // Zone offset +60 minutes: same instant.
        let mut v1 = JOB_CREATEDAT;
        v1[13..15].copy_from_slice(&60i16.to_be_bytes());
        assert_eq!(
            decode_time(&v1).unwrap(),
            decode_time(&JOB_CREATEDAT).unwrap()
        );
        // Version 2 with +330 minutes 30 seconds.
        let mut v2 = JOB_CREATEDAT.to_vec();
        v2[0] = 2;
        v2[13..15].copy_from_slice(&330i16.to_be_bytes());
        v2.push(30);
        assert_eq!(
            decode_time(&v2).unwrap(),
            decode_time(&JOB_CREATEDAT).unwrap()
        );
    }

    #[test]
    fn time_rejects_bad_input() {
        assert_eq!(decode_time(&[]), Err(EncodingError::TimeEmpty));
        let mut bad = JOB_CREATEDAT;
        bad[0] = 3;
        assert_eq!(decode_time(&bad), Err(EncodingError::TimeVersion(3)));
        assert_eq!(
            decode_time(&JOB_CREATEDAT[..14]),
            Err(EncodingError::TimeLength {
                version: 1,
                got: 14,
                want: 15
            })
        );
        let mut long = JOB_CREATEDAT.to_vec();
        long.push(0);
        assert!(matches!(
            decode_time(&long),
            Err(EncodingError::TimeLength {
                got: 16,
                want: 15,
                ..
            })
        ));
        let mut v2short = JOB_CREATEDAT;
        v2short[0] = 2;
        assert!(matches!(
            decode_time(&v2short),
            Err(EncodingError::TimeLength {
                got: 15,
                want: 16,
                ..
            })
        ));
        let mut nanos = JOB_CREATEDAT;
        nanos[9..13].copy_from_slice(&1_000_000_000i32.to_be_bytes());
        assert_eq!(
            decode_time(&nanos),
            Err(EncodingError::TimeNanos(1_000_000_000))
        );
        let err = decode_time(&[]).unwrap_err().in_field("createdat");
        assert_eq!(err.to_string(), "createdat: time: no data");
    }

    #[test]
    fn time_conversions() {
        let before = Timestamp::new(-2, 250_000_000);
        let st = before.to_system_time();
        assert_eq!(Timestamp::from(st), before);
        assert_eq!(
            Timestamp::new(5, 1_500_000_000),
            Timestamp::new(6, 500_000_000)
        );

        let t = decode_time(&JOB_CREATEDAT).unwrap();
        let pb: protobuf::well_known_types::timestamp::Timestamp = t.into();
        assert_eq!((pb.seconds, pb.nanos), (1_795_443_069, 857_878_063));
        assert_eq!(Timestamp::try_from(&pb).unwrap(), t);
        let mut neg = pb.clone();
        neg.nanos = -1;
        assert_eq!(Timestamp::try_from(neg), Err(EncodingError::TimeNanos(-1)));
        assert!(Timestamp::now().secs > 1_700_000_000);
    }

    #[test]
    fn varint_golden() {
        // db version 3, and sizes from the fixture (manifest 405, config 400, layer 1028485).
        let cases: &[(i64, &[u8])] = &[
            (3, &[0x06]),
            (405, &[0xaa, 0x06]),
            (400, &[0xa0, 0x06]),
            (1_028_485, &[0x8a, 0xc6, 0x7d]),
            (30, &[0x3c]),
            (2_019_328, &[0x80, 0xc0, 0xf6, 0x01]),
            (0, &[0x00]),
            (-1, &[0x01]),
            (-3, &[0x05]),
        ];
        for &(v, bytes) in cases {
            assert_eq!(encode_varint(v), bytes, "encode {v}");
            assert_eq!(
                decode_varint(bytes).unwrap(),
                (v, bytes.len()),
                "decode {v}"
            );
            assert_eq!(decode_varint_value(bytes).unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX, -64, 64, -65] {
            let enc = encode_varint(v);
            assert!(enc.len() <= 10);
            assert_eq!(decode_varint(&enc).unwrap(), (v, enc.len()));
        }
    }

    #[test]
    fn uvarint_golden_and_errors() {
        assert_eq!(encode_uvarint(0), [0x00]);
        assert_eq!(encode_uvarint(300), [0xac, 0x02]);
        assert_eq!(encode_uvarint(3), [0x03]);
        let max = encode_uvarint(u64::MAX);
        assert_eq!(
            max,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(decode_uvarint(&max).unwrap(), (u64::MAX, 10));
        assert_eq!(decode_uvarint_value(&[0xac, 0x02]).unwrap(), 300);
        // Reads only what it needs.
        assert_eq!(decode_uvarint(&[0x03, 0xff]).unwrap(), (3, 1));

        assert_eq!(decode_uvarint(&[]), Err(EncodingError::VarintTruncated));
        assert_eq!(
            decode_uvarint(&[0x80, 0x80]),
            Err(EncodingError::VarintTruncated)
        );
        // 10th byte above 1: more than 64 bits.
        let mut over = max.clone();
        over[9] = 0x02;
        assert_eq!(decode_uvarint(&over), Err(EncodingError::VarintOverflow));
        // 11 bytes.
        assert_eq!(
            decode_uvarint(&[0x80; 11]),
            Err(EncodingError::VarintOverflow)
        );
        assert_eq!(
            decode_varint(&[0x80; 11]),
            Err(EncodingError::VarintOverflow)
        );
        assert_eq!(
            decode_varint_value(&[0x06, 0x00]),
            Err(EncodingError::VarintTrailing(1))
        );
    }

    #[test]
    fn any_golden() {
        let enc = encode_any("containerd.runc.v1.Options", &[]);
        assert_eq!(enc, WEB_RUNTIME_OPTIONS);
        assert_eq!(
            decode_any(WEB_RUNTIME_OPTIONS).unwrap(),
            ("containerd.runc.v1.Options".to_string(), Vec::new())
        );

        let url = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
        let value = br#"{"ociVersion":"1.0.2-dev"}"#;
        let enc = encode_any(url, value);
        // Same header as the fixture's `spec` values: 0a 36 <url> 12 <len> <json>.
        assert_eq!(&enc[..2], &[0x0a, 0x36]);
        assert_eq!(&enc[2..2 + url.len()], url.as_bytes());
        assert_eq!(&enc[56..58], &[0x12, value.len() as u8]);
        assert_eq!(decode_any(&enc).unwrap(), (url.to_string(), value.to_vec()));

        assert!(matches!(
            decode_any(&[0x0a, 0x05, b'a']),
            Err(EncodingError::Any(_))
        ));
    }
}

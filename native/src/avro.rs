//! Avro binary pieces, byte for byte as poller/avro/values.py writes them.

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum FieldKind {
    Str,
    Long,
    Int,
    Boolean,
    Decimal,
    Date,
    Timestamp,
}

impl FieldKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => FieldKind::Str,
            "long" => FieldKind::Long,
            "int" => FieldKind::Int,
            "boolean" => FieldKind::Boolean,
            "decimal" => FieldKind::Decimal,
            "date" => FieldKind::Date,
            "timestamp" => FieldKind::Timestamp,
            _ => return None,
        })
    }
}

/// Zig-zag varint of a signed 64-bit integer.
#[inline]
pub fn write_long(buf: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n > 0x7F {
        buf.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// The `bytes` body of a decimal: varint length + minimal two's-complement big-endian (Java's
/// BigInteger.toByteArray); |u| must stay below 10**precision.
pub fn decimal_unscaled(buf: &mut Vec<u8>, u: i128, precision: u32) -> Result<(), &'static str> {
    let limit = 10i128.checked_pow(precision).unwrap_or(i128::MAX);
    if u <= -limit || u >= limit {
        return Err("bad value");
    }
    let magnitude = if u >= 0 { u } else { !u };
    let bits = 128 - magnitude.leading_zeros() as usize;
    let size = (bits + 8) >> 3;
    write_long(buf, size as i64);
    let bytes = u.to_be_bytes();
    buf.extend_from_slice(&bytes[16 - size..]);
    Ok(())
}

/// `json.dumps(s, ensure_ascii=False)`: quotes, and escapes for `"`, `\` and control characters.
pub fn json_string(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x0C => buf.extend_from_slice(b"\\f"),
            0..=0x1F => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[(b >> 4) as usize]);
                buf.push(HEX[(b & 15) as usize]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

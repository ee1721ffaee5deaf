//! PostgreSQL's binary COPY format and the binary forms of the types poller maps.

type Res<T> = Result<T, &'static str>;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or("truncated")?;
        let s = self.data.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(s)
    }

    fn i32(&mut self) -> Res<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub fn header(&mut self) -> Res<()> {
        if self.take(SIGNATURE.len())? != SIGNATURE {
            return Err("not COPY BINARY");
        }
        let flags = self.i32()?;
        if flags & 0x0001_0000 != 0 {
            return Err("COPY with OIDs");
        }
        let ext = self.i32()?;
        self.take(usize::try_from(ext).map_err(|_| "malformed")?)?;
        Ok(())
    }

    /// The next tuple's field count; None at the trailer.
    pub fn tuple_start(&mut self) -> Res<Option<usize>> {
        let n = i16::from_be_bytes(self.take(2)?.try_into().unwrap());
        if n == -1 {
            return Ok(None);
        }
        usize::try_from(n).map(Some).map_err(|_| "malformed")
    }

    /// One field's bytes; None for NULL.
    pub fn field(&mut self) -> Res<Option<&'a [u8]>> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        Ok(Some(self.take(usize::try_from(len).map_err(|_| "malformed")?)?))
    }

    pub fn end(&self) -> Res<()> {
        if self.at != self.data.len() {
            return Err("data after the trailer");
        }
        Ok(())
    }
}

pub fn i32be(v: &[u8]) -> Res<i32> {
    Ok(i32::from_be_bytes(v.try_into().map_err(|_| "malformed")?))
}

pub fn i64be(v: &[u8]) -> Res<i64> {
    Ok(i64::from_be_bytes(v.try_into().map_err(|_| "malformed")?))
}

/// int2, int4 or int8 by its length.
pub fn int(v: &[u8]) -> Res<i64> {
    Ok(match v.len() {
        2 => i16::from_be_bytes([v[0], v[1]]) as i64,
        4 => i32be(v)? as i64,
        8 => i64be(v)?,
        _ => return Err("malformed integer"),
    })
}

/// A uuid as PostgreSQL prints it (lower-case, 8-4-4-4-12): psycopg2 returns that text.
pub fn uuid(v: &[u8]) -> Res<[u8; 36]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if v.len() != 16 {
        return Err("malformed uuid");
    }
    let mut out = [b'-'; 36];
    let mut j = 0;
    for (i, &b) in v.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            j += 1;
        }
        out[j] = HEX[(b >> 4) as usize];
        out[j + 1] = HEX[(b & 15) as usize];
        j += 2;
    }
    Ok(out)
}

/// numeric: base-10000 digits, the weight of the first, a sign (NaN and ±Infinity refused).
pub struct Numeric {
    weight: i32,
    negative: bool,
    digits: Vec<u16>,
}

impl Numeric {
    pub fn parse(v: &[u8]) -> Res<Self> {
        if v.len() < 8 {
            return Err("malformed numeric");
        }
        let u16at = |i: usize| u16::from_be_bytes([v[i], v[i + 1]]);
        let ndigits = u16at(0) as usize;
        let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
        let negative = match u16at(4) {
            0x0000 => false,
            0x4000 => true,
            _ => return Err("bad value"), // NaN, Infinity, -Infinity
        };
        if v.len() != 8 + 2 * ndigits {
            return Err("malformed numeric");
        }
        let digits: Vec<u16> = (0..ndigits).map(|i| u16at(8 + 2 * i)).collect();
        if digits.iter().any(|&d| d > 9999) {
            return Err("malformed numeric");
        }
        Ok(Numeric { weight, negative, digits })
    }

    /// value * 10**scale as an integer; None for zero; refuses a value with digits finer than
    /// the scale (never rounded) and anything that does not fit 10**precision.
    pub fn unscaled(&self, scale: u32, precision: u32) -> Res<Option<i128>> {
        let mut u: i128 = 0;
        let mut nonzero = false;
        for (i, &d) in self.digits.iter().enumerate() {
            if d == 0 {
                continue;
            }
            nonzero = true;
            let e = 4 * (self.weight - i as i32) + scale as i32; // power of ten of this digit
            let part: i128 = if e >= 0 {
                if e > 38 {
                    return Err("bad value");
                }
                (d as i128).checked_mul(10i128.pow(e as u32)).ok_or("bad value")?
            } else {
                let cut = 10u32.checked_pow((-e) as u32).unwrap_or(u32::MAX);
                if -e >= 5 || d as u32 % cut != 0 {
                    return Err("bad value"); // finer than the scale
                }
                (d as u32 / cut) as i128
            };
            u = u.checked_add(part).ok_or("bad value")?;
        }
        if !nonzero {
            return Ok(None);
        }
        let limit = 10i128.checked_pow(precision).unwrap_or(i128::MAX);
        if u >= limit {
            return Err("bad value");
        }
        Ok(Some(if self.negative { -u } else { u }))
    }

    /// The value as an integer, refusing any fraction.
    pub fn integer(&self) -> Res<i128> {
        Ok(self.unscaled(0, 39)?.unwrap_or(0))
    }
}

//! poller_native: PostgreSQL `COPY ... TO STDOUT (FORMAT BINARY)` bytes -> Avro messages.
//!
//! The transcoder encodes only what it can encode exactly as poller's Python path does
//! (poller/avro/values.py, encoder.py). Anything else (a bad row, a value near a range end, a
//! type pair it does not know) stops the batch with a reason: the caller then reads the batch
//! through the Python path, so a byte the Python path would not write is never written.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

mod avro;
mod pgbin;

use avro::{write_long, FieldKind};
use pgbin::Reader;

// PostgreSQL type oids
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

/// Microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i64 = 10_957;
const DAY_MICROS: i64 = 86_400_000_000;
/// The values Python represents, with a day of margin for any UTC offset (unix micros).
const MIN_MICROS: i64 = -62_135_596_800_000_000 + DAY_MICROS; // 0001-01-02
const MAX_MICROS: i64 = 253_402_300_800_000_000 - 2 * DAY_MICROS; // 9999-12-30
const MIN_DAYS: i64 = -719_162; // 0001-01-01
const MAX_DAYS: i64 = 2_932_896; // 9999-12-31

/// Why a batch goes back to the Python path (the metric label), and the row it stopped at.
pub struct Fallback {
    pub reason: &'static str,
    pub row: usize,
}

type Res<T> = Result<T, &'static str>;

#[derive(Clone)]
struct Field {
    oid: u32,
    kind: FieldKind,
    nullable: bool,
    null_branch: Vec<u8>,
    value_branch: Vec<u8>,
    precision: u32,
    scale: u32,
}

/// Naive wall-clock time -> UTC offset, as Python's zoneinfo answers with fold=0: sorted
/// (wall micros from which the offset applies, offset micros), valid within [lo, hi).
struct Zone {
    starts: Vec<i64>,
    offsets: Vec<i64>,
    lo: i64,
    hi: i64,
}

impl Zone {
    fn offset(&self, wall: i64) -> Res<i64> {
        if wall < self.lo || wall >= self.hi {
            return Err("zone range");
        }
        let i = self.starts.partition_point(|&s| s <= wall);
        if i == 0 {
            return Err("zone range");
        }
        Ok(self.offsets[i - 1])
    }
}

#[derive(Clone, Copy, PartialEq)]
enum KeyMode {
    JsonInt,
    JsonText,
    AvroLong,
    AvroString,
    // an integer key column published in a canonical `string` key field: its decimal digits
    AvroIntString,
}

#[pyclass(frozen, module = "poller_native")]
struct Transcoder {
    header: Vec<u8>,
    fields: Vec<Field>,
    n_cols: usize,
    oids: Vec<u32>,
    zone: Zone,
    key_mode: KeyMode,
    key_at: usize,
    key_head: Vec<u8>,
    cursor_at: Option<usize>, // time mode: the message timestamp comes from this column
    positions: Vec<usize>,
    max_value: usize,
}

struct Out {
    buf: Vec<u8>,
    values: Vec<(usize, usize)>,
    keys: Vec<(usize, usize)>,
    stamps: Vec<i64>,
    data_last: Vec<Option<Vec<u8>>>,
}

#[pymethods]
impl Transcoder {
    /// fields: (oid, kind, nullable, null_branch, value_branch, precision, scale) per field;
    /// oids: every selected column's type; zone: [(wall start micros, offset micros)];
    /// key: (mode, column, head bytes); cursor_at: time mode's cursor column or None.
    #[new]
    #[pyo3(signature = (header, fields, oids, zone, zone_range, key, cursor_at, positions, max_value))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        header: Vec<u8>,
        fields: Vec<(u32, String, bool, Vec<u8>, Vec<u8>, u32, u32)>,
        oids: Vec<u32>,
        zone: Vec<(i64, i64)>,
        zone_range: (i64, i64),
        key: (String, usize, Vec<u8>),
        cursor_at: Option<usize>,
        positions: Vec<usize>,
        max_value: usize,
    ) -> PyResult<Self> {
        let bad = |m: String| pyo3::exceptions::PyValueError::new_err(m);
        let mut out = Vec::new();
        for (oid, kind, nullable, null_branch, value_branch, precision, scale) in fields {
            let kind = FieldKind::parse(&kind).ok_or_else(|| bad(format!("field kind {kind}")))?;
            if kind == FieldKind::Decimal && (precision > 38 || scale > precision) {
                return Err(bad(format!("decimal({precision},{scale})")));
            }
            out.push(Field { oid, kind, nullable, null_branch, value_branch, precision, scale });
        }
        let key_mode = match key.0.as_str() {
            "json_int" => KeyMode::JsonInt,
            "json_text" => KeyMode::JsonText,
            "avro_long" => KeyMode::AvroLong,
            "avro_string" => KeyMode::AvroString,
            "avro_int_string" => KeyMode::AvroIntString,
            m => return Err(bad(format!("key mode {m}"))),
        };
        let n_cols = oids.len();
        if out.len() > n_cols || key.1 >= n_cols || positions.iter().any(|&p| p >= n_cols) {
            return Err(bad("column index out of range".into()));
        }
        Ok(Transcoder {
            header,
            fields: out,
            n_cols,
            oids,
            zone: Zone {
                starts: zone.iter().map(|z| z.0).collect(),
                offsets: zone.iter().map(|z| z.1).collect(),
                lo: zone_range.0,
                hi: zone_range.1,
            },
            key_mode,
            key_at: key.1,
            key_head: key.2,
            cursor_at,
            positions,
            max_value,
        })
    }

    /// One batch of COPY BINARY output -> (values, keys, timestamps or None, last row's raw
    /// position columns, rows), or (reason, row) when the batch must take the Python path.
    /// The GIL is released while the bytes are parsed and encoded.
    fn transcode<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
        let result = py.allow_threads(|| self.run(data));
        match result {
            Err(f) => PyTuple::new(py, [f.reason.into_pyobject(py)?.into_any(), f.row.into_pyobject(py)?.into_any()]),
            Ok(out) => {
                let values = PyList::new(py, out.values.iter().map(|&(a, b)| PyBytes::new(py, &out.buf[a..b])))?;
                let keys = PyList::new(py, out.keys.iter().map(|&(a, b)| PyBytes::new(py, &out.buf[a..b])))?;
                let stamps: Bound<'py, PyAny> = if self.cursor_at.is_some() {
                    PyList::new(py, out.stamps.iter())?.into_any()
                } else {
                    py.None().into_bound(py)
                };
                let last = PyList::new(
                    py,
                    out.data_last.iter().map(|v| match v {
                        Some(b) => PyBytes::new(py, b).into_any(),
                        None => py.None().into_bound(py),
                    }),
                )?;
                let n = out.values.len();
                PyTuple::new(py, [values.into_any(), keys.into_any(), stamps, last.into_any(), n.into_pyobject(py)?.into_any()])
            }
        }
    }
}

/// The (type, field kind) pairs encoded here. For any other pair only NULL is encoded (a column
/// that is always NULL, an unmapped field); a value sends the batch to the Python path. Float and
/// bytea are bad rows in every field, and json is whatever its document parses to. Any other pair makes the entity use the Python path.
fn supported(oid: u32, kind: FieldKind) -> bool {
    use FieldKind::*;
    match oid {
        FLOAT4 | FLOAT8 | BYTEA | JSON | JSONB => true, // psycopg2's value: bad, or (JSON) any
        INT2 | INT4 | INT8 => matches!(kind, Long | Int | Str | Decimal | Boolean),
        NUMERIC => matches!(kind, Long | Int | Decimal),
        TEXT | VARCHAR | BPCHAR | UUID => kind == Str,
        BOOL => kind == Boolean,
        DATE => kind == Date,
        TIMESTAMP => matches!(kind, Timestamp | Date),
        TIMESTAMPTZ => kind == Timestamp,
        _ => false,
    }
}

impl Transcoder {
    fn run(&self, data: &[u8]) -> Result<Out, Fallback> {
        let mut r = Reader::new(data);
        r.header().map_err(|reason| Fallback { reason, row: 0 })?;
        let mut out = Out {
            buf: Vec::with_capacity(data.len() + data.len() / 2),
            values: Vec::new(),
            keys: Vec::new(),
            stamps: Vec::new(),
            data_last: vec![None; self.positions.len()],
        };
        let mut cols: Vec<Option<&[u8]>> = vec![None; self.n_cols];
        let mut row = 0usize;
        loop {
            let fail = |reason| Fallback { reason, row };
            let n = r.tuple_start().map_err(fail)?;
            let Some(n) = n else { break };
            if n != self.n_cols {
                return Err(fail("column count"));
            }
            for c in cols.iter_mut() {
                *c = r.field().map_err(fail)?;
            }
            let start = out.buf.len();
            out.buf.extend_from_slice(&self.header);
            for (i, f) in self.fields.iter().enumerate() {
                self.encode_field(f, cols[i], &mut out.buf).map_err(fail)?;
            }
            let end = out.buf.len();
            if end - start > self.max_value {
                return Err(fail("oversized"));
            }
            out.values.push((start, end));
            self.encode_key(cols[self.key_at], &mut out.buf).map_err(fail)?;
            out.keys.push((end, out.buf.len()));
            if let Some(at) = self.cursor_at {
                out.stamps.push(self.stamp(self.oids[at], cols[at]).map_err(fail)?);
            }
            for (j, &p) in self.positions.iter().enumerate() {
                self.check_position(self.oids[p], cols[p]).map_err(fail)?;
                out.data_last[j] = cols[p].map(|b| b.to_vec());
            }
            row += 1;
        }
        r.end().map_err(|reason| Fallback { reason, row })?;
        Ok(out)
    }

    fn encode_field(&self, f: &Field, v: Option<&[u8]>, buf: &mut Vec<u8>) -> Res<()> {
        let Some(v) = v else {
            if !f.nullable {
                return Err("NULL in required field");
            }
            buf.extend_from_slice(&f.null_branch);
            return Ok(());
        };
        buf.extend_from_slice(&f.value_branch);
        use FieldKind::*;
        match (f.oid, f.kind) {
            (FLOAT4 | FLOAT8 | BYTEA | JSON | JSONB, _) => Err("bad value"),
            _ if !supported(f.oid, f.kind) => Err("type pair"),
            (INT2 | INT4 | INT8, Str) => {
                let s = pgbin::int(v)?.to_string();
                write_long(buf, s.len() as i64);
                buf.extend_from_slice(s.as_bytes());
                Ok(())
            }
            (INT2 | INT4 | INT8, Long) => Ok(write_long(buf, pgbin::int(v)?)),
            (INT2 | INT4 | INT8, Int) => {
                let n = pgbin::int(v)?;
                if n < i32::MIN as i64 || n > i32::MAX as i64 {
                    return Err("bad value");
                }
                Ok(write_long(buf, n))
            }
            (INT2 | INT4 | INT8, Boolean) => match pgbin::int(v)? {
                0 => Ok(buf.push(0)),
                1 => Ok(buf.push(1)),
                _ => Err("bad value"),
            },
            (INT2 | INT4 | INT8, Decimal) => {
                let u = (pgbin::int(v)? as i128) * 10i128.pow(f.scale);
                avro::decimal_unscaled(buf, u, f.precision)
            }
            (NUMERIC, Long | Int) => {
                let n = pgbin::Numeric::parse(v)?.integer()?;
                let (lo, hi) = if f.kind == Int { (i32::MIN as i64, i32::MAX as i64) } else { (i64::MIN, i64::MAX) };
                let n = i64::try_from(n).map_err(|_| "bad value")?;
                if n < lo || n > hi {
                    return Err("bad value");
                }
                Ok(write_long(buf, n))
            }
            (NUMERIC, Decimal) => {
                let num = pgbin::Numeric::parse(v)?;
                match num.unscaled(f.scale, f.precision)? {
                    None => Ok(buf.extend_from_slice(b"\x02\x00")),
                    Some(u) => avro::decimal_unscaled(buf, u, f.precision),
                }
            }
            (TEXT | VARCHAR | BPCHAR, Str) => {
                std::str::from_utf8(v).map_err(|_| "not UTF-8")?;
                write_long(buf, v.len() as i64);
                buf.extend_from_slice(v);
                Ok(())
            }
            (UUID, Str) => {
                let s = pgbin::uuid(v)?;
                write_long(buf, 36);
                buf.extend_from_slice(&s);
                Ok(())
            }
            (BOOL, Boolean) => match v {
                [0] => Ok(buf.push(0)),
                [1] => Ok(buf.push(1)),
                _ => Err("malformed bool"),
            },
            (DATE, Date) => Ok(write_long(buf, date_days(v)?)),
            (TIMESTAMP, Date) => {
                let wall = timestamp_micros(v)?;
                if wall.rem_euclid(DAY_MICROS) != 0 {
                    return Err("bad value"); // a time of day where a date belongs
                }
                Ok(write_long(buf, wall.div_euclid(DAY_MICROS)))
            }
            (TIMESTAMP, Timestamp) => {
                let wall = timestamp_micros(v)?;
                Ok(write_long(buf, wall - self.zone.offset(wall)?))
            }
            (TIMESTAMPTZ, Timestamp) => Ok(write_long(buf, timestamp_micros(v)?)),
            _ => Err("type pair"),
        }
    }

    fn encode_key(&self, v: Option<&[u8]>, buf: &mut Vec<u8>) -> Res<()> {
        let v = v.ok_or("NULL key")?;
        buf.extend_from_slice(&self.key_head);
        let oid = self.oids[self.key_at];
        match self.key_mode {
            KeyMode::JsonInt => {
                buf.extend_from_slice(pgbin::int(v)?.to_string().as_bytes());
                buf.push(b']');
            }
            KeyMode::AvroLong => write_long(buf, pgbin::int(v)?),
            KeyMode::AvroIntString => {
                let digits = pgbin::int(v)?.to_string();
                write_long(buf, digits.len() as i64);
                buf.extend_from_slice(digits.as_bytes());
            }
            KeyMode::JsonText | KeyMode::AvroString => {
                let text: Vec<u8> = match oid {
                    UUID => pgbin::uuid(v)?.to_vec(),
                    TEXT | VARCHAR | BPCHAR => {
                        std::str::from_utf8(v).map_err(|_| "not UTF-8")?;
                        v.to_vec()
                    }
                    _ => return Err("key type"),
                };
                if self.key_mode == KeyMode::AvroString {
                    write_long(buf, text.len() as i64);
                    buf.extend_from_slice(&text);
                } else {
                    avro::json_string(buf, std::str::from_utf8(&text).map_err(|_| "not UTF-8")?);
                    buf.push(b']');
                }
            }
        }
        Ok(())
    }

    /// Kafka message time (ms) of a time-mode cursor, as poller.pipeline.stream.epoch_ms.
    fn stamp(&self, oid: u32, v: Option<&[u8]>) -> Res<i64> {
        let Some(v) = v else { return Ok(0) };
        let micros = match oid {
            TIMESTAMPTZ => timestamp_micros(v)?,
            TIMESTAMP => {
                let wall = timestamp_micros(v)?;
                wall - self.zone.offset(wall)?
            }
            DATE => {
                let wall = date_days(v)? * DAY_MICROS;
                wall - self.zone.offset(wall)?
            }
            _ => return Err("cursor type"),
        };
        Ok(micros.div_euclid(1000))
    }

    fn check_position(&self, oid: u32, v: Option<&[u8]>) -> Res<()> {
        let Some(v) = v else { return Ok(()) };
        match oid {
            INT2 | INT4 | INT8 => pgbin::int(v).map(|_| ()),
            TEXT | VARCHAR | BPCHAR => std::str::from_utf8(v).map(|_| ()).map_err(|_| "not UTF-8"),
            UUID => pgbin::uuid(v).map(|_| ()),
            DATE => date_days(v).map(|_| ()),
            TIMESTAMP | TIMESTAMPTZ => timestamp_micros(v).map(|_| ()),
            _ => Err("position type"),
        }
    }
}

/// Days since 1970-01-01 of a date Python can hold; ±infinity and other years are refused.
fn date_days(v: &[u8]) -> Res<i64> {
    let d = pgbin::i32be(v)? as i64 + PG_EPOCH_DAYS;
    if !(MIN_DAYS..=MAX_DAYS).contains(&d) {
        return Err("date range");
    }
    Ok(d)
}

/// Unix microseconds of a timestamp (wall time for `timestamp`), inside the range Python holds
/// in any UTC offset; ±infinity and other years are refused.
fn timestamp_micros(v: &[u8]) -> Res<i64> {
    let t = pgbin::i64be(v)?;
    if t == i64::MAX || t == i64::MIN {
        return Err("infinity");
    }
    let m = t.checked_add(PG_EPOCH_MICROS).ok_or("timestamp range")?;
    if !(MIN_MICROS..MAX_MICROS).contains(&m) {
        return Err("timestamp range");
    }
    Ok(m)
}

#[pymodule]
fn poller_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Transcoder>()?;
    m.add("ABI", 1)?;
    Ok(())
}

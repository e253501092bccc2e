//! Output helpers shaped like ctr's: Go's `text/tabwriter`, Go's time formats, and JSON with
//! Go's field order and `json.MarshalIndent(v, "", "    ")` layout, including a generic
//! protobuf-message-to-JSON conversion that mirrors the gogo structs' `json` tags.

use std::fmt::Write as _;

use protobuf::reflect::{ReflectFieldRef, ReflectValueRef};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::MessageDyn;

/// Lays out `text` as Go's `tabwriter.NewWriter(w, minwidth, 8, padding, ' ', 0)` does: cells
/// end at tabs, each column block is as wide as its widest cell plus `padding` (at least
/// `minwidth`), and a line's text after its last tab is not aligned.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = if text.is_empty() {
        Vec::new()
    } else {
        body.split('\n').map(|l| l.split('\t').collect()).collect()
    };
    let mut tw = TabWriter {
        lines: &lines,
        widths: Vec::new(),
        minwidth,
        padding,
        out: String::new(),
    };
    tw.format(0, lines.len());
    tw.out
}

struct TabWriter<'a> {
    lines: &'a [Vec<&'a str>],
    widths: Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: String,
}

impl TabWriter<'_> {
    // Go's tabwriter.format: find column blocks recursively.
    fn format(&mut self, mut line0: usize, line1: usize) {
        let column = self.widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            self.write_lines(line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 {
                let line = &self.lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                width = width.max(line[column].chars().count() + self.padding);
                this += 1;
            }
            self.widths.push(width);
            self.format(line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(line0, line1);
    }

    fn write_lines(&mut self, line0: usize, line1: usize) {
        for line in &self.lines[line0..line1] {
            for (j, cell) in line.iter().enumerate() {
                self.out.push_str(cell);
                if j < self.widths.len() {
                    let w = cell.chars().count();
                    for _ in w..self.widths[j] {
                        self.out.push(' ');
                    }
                }
            }
            self.out.push('\n');
        }
    }
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn date_time(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn fraction(nanos: i32) -> String {
    if nanos <= 0 {
        return String::new();
    }
    let f = format!(".{nanos:09}");
    f.trim_end_matches('0').to_string()
}

/// Go's `time.RFC3339` in UTC: `2006-01-02T15:04:05Z`.
pub fn rfc3339(secs: i64) -> String {
    format!("{}Z", date_time(secs))
}

/// Go's `time.RFC3339Nano` in UTC (trailing zeros of the fraction dropped).
pub fn rfc3339_nano(ts: Option<&Timestamp>) -> String {
    match ts {
        Some(t) => format!("{}{}Z", date_time(t.seconds), fraction(t.nanos)),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time_string(ts: Option<&Timestamp>) -> String {
    match ts {
        Some(t) => format!(
            "{}{} +0000 UTC",
            date_time(t.seconds).replace('T', " "),
            fraction(t.nanos)
        ),
        None => "0001-01-01 00:00:00 +0000 UTC".to_string(),
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// A JSON value whose objects keep the order they were built in (Go's struct field order).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A scalar, written as serde_json writes it.
    Scalar(serde_json::Value),
    /// An array.
    Array(Vec<Json>),
    /// An object, fields in order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// `null`.
    pub fn null() -> Json {
        Json::Scalar(serde_json::Value::Null)
    }

    /// A string.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Scalar(serde_json::Value::String(s.into()))
    }

    /// A string map as Go writes `map[string]string`: sorted keys, `null` when empty.
    pub fn string_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Json {
        let mut pairs: Vec<(String, Json)> = m
            .into_iter()
            .map(|(k, v)| (k.clone(), Json::str(v)))
            .collect();
        if pairs.is_empty() {
            return Json::null();
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Json::Object(pairs)
    }

    /// A gogo `types.Any` as Go's `encoding/json` writes it.
    pub fn any(a: &Any) -> Json {
        let mut fields = Vec::new();
        if !a.type_url.is_empty() {
            fields.push(("type_url".to_string(), Json::str(&a.type_url)));
        }
        if !a.value.is_empty() {
            fields.push(("value".to_string(), Json::str(base64(&a.value))));
        }
        Json::Object(fields)
    }

    /// Compact JSON, as `json.Marshal` writes it.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, None, 0);
        out
    }

    /// Indented JSON, as `json.MarshalIndent(v, "", "    ")` writes it.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, Some("    "), 0);
        out
    }

    fn write(&self, out: &mut String, indent: Option<&str>, depth: usize) {
        let newline = |out: &mut String, depth: usize| {
            if let Some(ind) = indent {
                out.push('\n');
                for _ in 0..depth {
                    out.push_str(ind);
                }
            }
        };
        match self {
            Json::Scalar(serde_json::Value::Array(items)) => {
                Json::Array(items.iter().cloned().map(Json::from).collect())
                    .write(out, indent, depth)
            }
            Json::Scalar(v @ serde_json::Value::Object(_)) => {
                Json::from(v.clone()).write(out, indent, depth)
            }
            Json::Scalar(v) => out.push_str(&v.to_string()),
            Json::Array(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write(out, indent, depth + 1);
                }
                newline(out, depth);
                out.push(']');
            }
            Json::Object(fields) => {
                if fields.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    let _ = write!(out, "{}", serde_json::Value::String(k.clone()));
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    v.write(out, indent, depth + 1);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        match v {
            serde_json::Value::Array(items) => {
                Json::Array(items.into_iter().map(Json::from).collect())
            }
            // serde_json's map is sorted by key, as Go writes a map.
            serde_json::Value::Object(m) => {
                Json::Object(m.into_iter().map(|(k, v)| (k, Json::from(v))).collect())
            }
            other => Json::Scalar(other),
        }
    }
}

/// A protobuf message as Go's `encoding/json` writes the gogo struct generated for it: fields
/// in proto order named by their proto names, zero values left out (`omitempty`), timestamps
/// as RFC 3339 strings, `Any` as `{"type_url", "value"}`, bytes in base64, maps sorted.
pub fn message_json(msg: &dyn MessageDyn) -> Json {
    if let Some(ts) = msg.downcast_ref::<Timestamp>() {
        return Json::str(rfc3339_nano(Some(ts)));
    }
    if let Some(any) = msg.downcast_ref::<Any>() {
        return Json::any(any);
    }
    let desc = msg.descriptor_dyn();
    let mut fields = Vec::new();
    for field in desc.fields() {
        let value = match field.get_reflect(msg) {
            ReflectFieldRef::Optional(v) => match v.value() {
                Some(v) if !is_zero(&v) => value_json(&v),
                _ => continue,
            },
            ReflectFieldRef::Repeated(r) => {
                if r.is_empty() {
                    continue;
                }
                Json::Array(r.into_iter().map(|v| value_json(&v)).collect())
            }
            ReflectFieldRef::Map(m) => {
                if m.is_empty() {
                    continue;
                }
                let mut pairs: Vec<(String, Json)> = (&m)
                    .into_iter()
                    .map(|(k, v)| (key_string(&k), value_json(&v)))
                    .collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(pairs)
            }
        };
        fields.push((field.name().to_string(), value));
    }
    Json::Object(fields)
}

fn is_zero(v: &ReflectValueRef) -> bool {
    match v {
        ReflectValueRef::U32(n) => *n == 0,
        ReflectValueRef::U64(n) => *n == 0,
        ReflectValueRef::I32(n) => *n == 0,
        ReflectValueRef::I64(n) => *n == 0,
        ReflectValueRef::F32(n) => *n == 0.0,
        ReflectValueRef::F64(n) => *n == 0.0,
        ReflectValueRef::Bool(b) => !b,
        ReflectValueRef::String(s) => s.is_empty(),
        ReflectValueRef::Bytes(b) => b.is_empty(),
        ReflectValueRef::Enum(_, n) => *n == 0,
        ReflectValueRef::Message(_) => false,
    }
}

fn key_string(v: &ReflectValueRef) -> String {
    match v {
        ReflectValueRef::String(s) => s.to_string(),
        other => value_json(other).compact(),
    }
}

fn value_json(v: &ReflectValueRef) -> Json {
    use serde_json::Value;
    match v {
        ReflectValueRef::U32(n) => Json::Scalar(Value::from(*n)),
        ReflectValueRef::U64(n) => Json::Scalar(Value::from(*n)),
        ReflectValueRef::I32(n) => Json::Scalar(Value::from(*n)),
        ReflectValueRef::I64(n) => Json::Scalar(Value::from(*n)),
        ReflectValueRef::F32(n) => Json::Scalar(Value::from(f64::from(*n))),
        ReflectValueRef::F64(n) => Json::Scalar(Value::from(*n)),
        ReflectValueRef::Bool(b) => Json::Scalar(Value::Bool(*b)),
        ReflectValueRef::String(s) => Json::str(*s),
        ReflectValueRef::Bytes(b) => Json::str(base64(b)),
        ReflectValueRef::Enum(_, n) => Json::Scalar(Value::from(*n)),
        ReflectValueRef::Message(m) => message_json(&**m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_pads_every_terminated_cell() {
        let text = "NAME\tLABELS\t\ndefault\t\t\nedge\ta=b,c=d\t\n";
        assert_eq!(
            tabwrite(text, 1, 1),
            "NAME    LABELS  \ndefault         \nedge    a=b,c=d \n"
        );
        let text = "CONTAINER\tIMAGE\tRUNTIME\t\nweb\t-\tio.containerd.runc.v2\t\n";
        assert_eq!(
            tabwrite(text, 4, 4),
            "CONTAINER    IMAGE    RUNTIME                  \n\
             web          -        io.containerd.runc.v2    \n"
        );
    }

    #[test]
    fn tabwriter_leaves_the_last_cell_and_splits_column_blocks() {
        let text = "Type:\t x\nID:\t longer-id\nRequires:\t\n\t one\n";
        assert_eq!(
            tabwrite(text, 4, 4),
            "Type:         x\nID:           longer-id\nRequires:    \n              one\n"
        );
        // A line without tabs ends the block: columns above and below align separately.
        assert_eq!(
            tabwrite("a\tb\nsep\nlonger\tc\n", 1, 1),
            "a b\nsep\nlonger c\n"
        );
        assert_eq!(tabwrite("", 1, 1), "");
    }

    #[test]
    fn times_read_like_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 120_000_000,
            ..Default::default()
        };
        assert_eq!(rfc3339_nano(Some(&ts)), "2023-11-14T22:13:20.12Z");
        assert_eq!(
            go_time_string(Some(&ts)),
            "2023-11-14 22:13:20.12 +0000 UTC"
        );
        assert_eq!(rfc3339_nano(None), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn json_keeps_field_order_and_indents_like_go() {
        let j = Json::Object(vec![
            ("ID".into(), Json::str("web")),
            ("Labels".into(), Json::null()),
            (
                "Spec".into(),
                Json::from(serde_json::json!({"b": [1, 2], "a": {}})),
            ),
        ]);
        assert_eq!(
            j.pretty(),
            "{\n    \"ID\": \"web\",\n    \"Labels\": null,\n    \"Spec\": {\n        \"a\": {},\n        \"b\": [\n            1,\n            2\n        ]\n    }\n}"
        );
        assert_eq!(
            j.compact(),
            r#"{"ID":"web","Labels":null,"Spec":{"a":{},"b":[1,2]}}"#
        );
    }

    #[test]
    fn messages_become_gogo_json() {
        use corral_protocols::events::namespace::NamespaceCreate;
        let mut ev = NamespaceCreate::new();
        ev.name = "edge".into();
        assert_eq!(message_json(&ev).compact(), r#"{"name":"edge"}"#);
        ev.labels.insert("b".into(), "2".into());
        ev.labels.insert("a".into(), "1".into());
        assert_eq!(
            message_json(&ev).compact(),
            r#"{"name":"edge","labels":{"a":"1","b":"2"}}"#
        );
    }
}

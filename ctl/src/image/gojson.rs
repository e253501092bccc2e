//! JSON written byte for byte as Go's `encoding/json` writes it, for the documents whose
//! digests must equal containerd's (the manifests and indexes its importer and exporter
//! write): fields in struct order, `omitempty` fields left out, map keys sorted, and Go's
//! HTML-safe string escaping (`<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`).

use std::collections::BTreeMap;

/// Builds one JSON object, field by field, in the order they are added.
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    /// Starts an object in `out`.
    pub fn start(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(':');
        self.out
    }

    /// A string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        write_str(out, value);
        self
    }

    /// A string field left out when empty (`omitempty`).
    pub fn str_omitempty(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.str(key, value);
        }
        self
    }

    /// An integer field.
    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        let out = self.key(key);
        out.push_str(&value.to_string());
        self
    }

    /// A field whose value is already JSON.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        let out = self.key(key);
        out.push_str(json);
        self
    }

    /// A `[]string` field: `null` when `None` (a nil slice), else an array.
    pub fn strings(&mut self, key: &str, values: Option<&[String]>) -> &mut Self {
        let out = self.key(key);
        match values {
            None => out.push_str("null"),
            Some(v) => write_strings(out, v),
        }
        self
    }

    /// A `[]string` field left out when empty (`omitempty`).
    pub fn strings_omitempty(&mut self, key: &str, values: &[String]) -> &mut Self {
        if !values.is_empty() {
            let out = self.key(key);
            write_strings(out, values);
        }
        self
    }

    /// A `map[string]string` field left out when empty (`omitempty`); keys sorted.
    pub fn map_omitempty(&mut self, key: &str, map: &BTreeMap<String, String>) -> &mut Self {
        if !map.is_empty() {
            let out = self.key(key);
            write_map(out, map);
        }
        self
    }

    /// Closes the object.
    pub fn end(&mut self) {
        self.out.push('}');
    }
}

fn write_strings(out: &mut String, values: &[String]) {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, v);
    }
    out.push(']');
}

fn write_map(out: &mut String, map: &BTreeMap<String, String>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_str(out, v);
    }
    out.push('}');
}

/// Writes `s` as a Go JSON string (Go 1.19's escaping, which containerd 1.6 is built with).
pub fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u32;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize & 0xf] as char);
                out.push(HEX[b as usize & 0xf] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a Go JSON string.
pub fn string(s: &str) -> String {
    let mut out = String::new();
    write_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_go() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(string("x\ny\tz\u{1}\u{8}"), r#""x\ny\tz\u0001\u0008""#);
        assert_eq!(string("\u{2028}é"), "\"\\u2028é\"");
    }

    #[test]
    fn objects_keep_order_and_omit_empty() {
        let mut out = String::new();
        let mut m = BTreeMap::new();
        m.insert("z".to_string(), "1".to_string());
        m.insert("a".to_string(), "2".to_string());
        Object::start(&mut out)
            .int("schemaVersion", 2)
            .str_omitempty("mediaType", "")
            .str("digest", "d")
            .map_omitempty("annotations", &m)
            .map_omitempty("empty", &BTreeMap::new())
            .strings("RepoTags", None)
            .strings("Layers", Some(&["l".to_string()]))
            .end();
        assert_eq!(
            out,
            r#"{"schemaVersion":2,"digest":"d","annotations":{"a":"2","z":"1"},"RepoTags":null,"Layers":["l"]}"#
        );
    }
}

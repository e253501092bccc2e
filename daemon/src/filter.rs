//! containerd's filter language (`filters` package), used by every `List` call.
//!
//! A filter string is a conjunction of selectors separated by `,`; a list of filter strings
//! is a disjunction, and an empty list (or an empty string) matches everything:
//!
//! ```text
//! selectors := selector ("," selector)*
//! selector  := fieldpath (operator value)
//! fieldpath := field ('.' field)*
//! field     := quoted | [A-Za-z0-9_]+
//! operator  := "==" | "!=" | "~="
//! value     := quoted | [^\s,]+
//! quoted    := <go string syntax, quoted with `"` (or `/` and `|` for a `~=` value)>
//! ```
//!
//! A fieldpath alone tests that the field is present. `!=` and `~=` test an absent field as
//! the empty string, as containerd does. The scanner, the parser and their error messages
//! follow containerd's `filters/scanner.go`, `parser.go` and `quote.go`, quirks included
//! (whitespace may precede a field, an operator or a value, but not a `,` or the end).

use corral_protocols::rpc::{Code, Status};
use regex_lite::Regex;

/// The object a filter is tested against: the value of a field by its path
/// (`["labels", "app"]`), `None` when the object has no such field.
pub trait Adaptor {
    /// The value at `path`; `None` when the field is absent.
    fn field(&self, path: &[&str]) -> Option<String>;
}

impl<F: Fn(&[&str]) -> Option<String>> Adaptor for F {
    fn field(&self, path: &[&str]) -> Option<String> {
        self(path)
    }
}

/// containerd's `checkMap`: the value of a label-like map at the rest of a fieldpath, its
/// components joined by `.` (so `labels.a.b` looks up the key `a.b`).
pub fn check_map<'a, I>(rest: &[&str], map: I) -> Option<String>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let key = rest.join(".");
    map.into_iter()
        .find(|(k, _)| **k == key)
        .map(|(_, v)| v.clone())
}

/// A filter string that does not parse, or a `~=` value that is not a valid regexp. Its
/// message is containerd's (`filters: parse error: [a >|=|< b]: unsupported operator "="`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

impl FilterError {
    /// Always `InvalidArgument`.
    pub fn code(&self) -> Code {
        Code::INVALID_ARGUMENT
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<FilterError> for Status {
    fn from(e: FilterError) -> Status {
        Status::new(e.code(), e.0)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

impl Selector {
    fn matches(&self, a: &(impl Adaptor + ?Sized)) -> bool {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        let value = a.field(&path);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(v) => value.as_deref() == Some(v.as_str()),
            Op::NotEqual(v) => value.as_deref().unwrap_or("") != v,
            Op::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// A parsed list of filters: it matches when any of its filter strings does, and a filter
/// string matches when all of its selectors do. An empty list matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Disjunction of conjunctions; an empty conjunction (from `""`) always matches.
    any: Vec<Vec<Selector>>,
}

impl Filter {
    /// containerd's `filters.ParseAll`: any of `filters` must match; none matches everything.
    /// Errors carry containerd's `: invalid argument` suffix.
    pub fn parse_all(filters: &[impl AsRef<str>]) -> Result<Filter, FilterError> {
        let mut any = Vec::with_capacity(filters.len());
        for f in filters {
            let mut parsed = Self::parse(f.as_ref())
                .map_err(|e| FilterError(format!("{e}: invalid argument")))?;
            any.append(&mut parsed.any);
        }
        Ok(Filter { any })
    }

    /// containerd's `filters.Parse`: one filter string; `""` matches everything.
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        if s.is_empty() {
            return Ok(Filter { any: vec![vec![]] });
        }
        let sels = Parser::new(s).selectors()?;
        Ok(Filter { any: vec![sels] })
    }

    /// Whether the filter matches the object behind `a`.
    pub fn matches(&self, a: &impl Adaptor) -> bool {
        self.any.is_empty() || self.any.iter().any(|all| all.iter().all(|s| s.matches(a)))
    }

    /// Whether the filter matches everything (no filter, or an empty one), so a caller may
    /// skip adapting its objects.
    pub fn is_always(&self) -> bool {
        self.any.is_empty() || self.any.iter().any(Vec::is_empty)
    }
}

// ---- scanner -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ch {
    Eof,
    Illegal,
    C(char),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Eof,
    Illegal,
    Quoted,
    Value,
    Field,
    Separator,
    Operator,
    Other,
}

struct Scanner<'a> {
    input: &'a str,
    /// Start of the last rune read.
    pos: usize,
    /// End of the last rune read.
    ppos: usize,
    /// The next bare word is a value (an operator was just read).
    value: bool,
    err: Option<&'static str>,
}

fn digit_val(ch: Ch) -> u32 {
    match ch {
        Ch::C(c) => c.to_digit(16).unwrap_or(16),
        _ => 16,
    }
}

fn is_field_rune(ch: Ch) -> bool {
    matches!(ch, Ch::C(c) if c == '_' || c.is_ascii_alphanumeric())
}

fn is_value_rune(ch: Ch) -> bool {
    matches!(ch, Ch::C(c) if c != ',' && !c.is_whitespace() && !c.is_control())
}

impl<'a> Scanner<'a> {
    fn new(input: &'a str) -> Self {
        Scanner {
            input,
            pos: 0,
            ppos: 0,
            value: false,
            err: None,
        }
    }

    fn error(&mut self, msg: &'static str) {
        self.err.get_or_insert(msg);
    }

    fn next(&mut self) -> Ch {
        if self.ppos >= self.input.len() {
            self.pos = self.input.len();
            return Ch::Eof;
        }
        self.pos = self.ppos;
        let c = self.input[self.ppos..].chars().next().expect("not at end");
        self.ppos += c.len_utf8();
        if c == '\0' {
            self.error("unexpected null");
            return Ch::Illegal;
        }
        Ch::C(c)
    }

    fn peek(&mut self) -> Ch {
        let (pos, ppos) = (self.pos, self.ppos);
        let ch = self.next();
        self.pos = pos;
        self.ppos = ppos;
        ch
    }

    /// The next token: its start, its kind and its text.
    fn scan(&mut self) -> (usize, Tok, &'a str) {
        loop {
            let ch = self.next();
            let pos = self.pos;
            let tok = match ch {
                Ch::Eof => return (pos, Tok::Eof, ""),
                Ch::Illegal => return (pos, Tok::Illegal, ""),
                Ch::C(c) if c.is_whitespace() => continue,
                Ch::C(q @ ('/' | '|' | '"')) => {
                    if self.scan_quoted(q) {
                        Tok::Quoted
                    } else {
                        Tok::Illegal
                    }
                }
                Ch::C(',' | '.') => {
                    self.value = false;
                    Tok::Separator
                }
                Ch::C('=' | '!' | '~') => {
                    while matches!(self.peek(), Ch::C('=' | '!' | '~')) {
                        self.next();
                    }
                    self.value = true;
                    Tok::Operator
                }
                _ if self.value => {
                    while is_value_rune(self.peek()) {
                        self.next();
                    }
                    self.value = false;
                    Tok::Value
                }
                _ if is_field_rune(ch) => {
                    while is_field_rune(self.peek()) {
                        self.next();
                    }
                    Tok::Field
                }
                _ => return (pos, Tok::Other, ""),
            };
            return (pos, tok, &self.input[pos..self.ppos]);
        }
    }

    fn scan_quoted(&mut self, quote: char) -> bool {
        let mut illegal = false;
        let mut ch = self.next();
        while ch != Ch::C(quote) {
            match ch {
                Ch::C('\n') | Ch::Eof | Ch::Illegal => {
                    self.error("quoted literal not terminated");
                    return false;
                }
                Ch::C('\\') => {
                    let (c, legal) = self.scan_escape(quote);
                    ch = c;
                    illegal |= !legal;
                }
                _ => ch = self.next(),
            }
        }
        !illegal
    }

    fn scan_escape(&mut self, quote: char) -> (Ch, bool) {
        let ch = self.next();
        match ch {
            Ch::C('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => (self.next(), true),
            Ch::C(c) if c == quote => (self.next(), true),
            Ch::C('0'..='7') => self.scan_digits(ch, 8, 3),
            Ch::C('x') => {
                let c = self.next();
                self.scan_digits(c, 16, 2)
            }
            Ch::C('u') => {
                let c = self.next();
                self.scan_digits(c, 16, 4)
            }
            Ch::C('U') => {
                let c = self.next();
                self.scan_digits(c, 16, 8)
            }
            _ => {
                self.error("illegal escape sequence");
                (ch, false)
            }
        }
    }

    fn scan_digits(&mut self, mut ch: Ch, base: u32, mut n: u32) -> (Ch, bool) {
        while n > 0 && digit_val(ch) < base {
            ch = self.next();
            n -= 1;
        }
        if n > 0 {
            self.error("illegal numeric escape sequence");
            return (ch, false);
        }
        (ch, true)
    }
}

// ---- unquoting (quote.go) ------------------------------------------------------------

/// Go's `strconv.Unquote`, extended to `/` and `|` quotes; `None` is a syntax error.
fn unquote(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let n = b.len();
    if n < 2 || b[0] != b[n - 1] || !matches!(b[0], b'"' | b'/' | b'|') {
        return None;
    }
    let q = b[0];
    let inner = &b[1..n - 1];
    if inner.contains(&b'\n') {
        return None;
    }
    if !inner.contains(&b'\\') && !inner.contains(&q) {
        return Some(s[1..n - 1].to_owned());
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(&c) = rest.first() {
        if c == q {
            return None;
        }
        if c != b'\\' {
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let &e = rest.get(1)?;
        rest = &rest[2..];
        match e {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            b'"' | b'/' | b'|' if e == q => out.push(e),
            b'x' | b'u' | b'U' => {
                let len = match e {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let digits = rest.get(..len)?;
                let mut v: u32 = 0;
                for &d in digits {
                    v = (v << 4) | (d as char).to_digit(16)?;
                }
                rest = &rest[len..];
                if e == b'x' {
                    out.push(v as u8);
                } else {
                    if v > 0x10FFFF {
                        return None;
                    }
                    let ch = char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER);
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for &d in rest.get(..2)? {
                    if !(b'0'..=b'7').contains(&d) {
                        return None;
                    }
                    v = (v << 3) | u32::from(d - b'0');
                }
                rest = &rest[2..];
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

// ---- parser --------------------------------------------------------------------------

struct Parser<'a> {
    input: &'a str,
    scanner: Scanner<'a>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            scanner: Scanner::new(input),
        }
    }

    fn mkerr(&self, pos: usize, msg: impl std::fmt::Display) -> FilterError {
        let input = self.input;
        let loc = if pos < input.len() {
            let c = input[pos..].chars().next().expect("not at end");
            let (before, after) = (&input[..pos], &input[pos + c.len_utf8()..]);
            format!("[{before} >|{c}|< {after}]")
        } else {
            format!("[{input}]")
        };
        FilterError(format!("filters: parse error: {loc}: {msg}"))
    }

    fn scanner_err(&self, pos: usize) -> FilterError {
        self.mkerr(pos, self.scanner.err.unwrap_or_default())
    }

    fn selectors(&mut self) -> Result<Vec<Selector>, FilterError> {
        let mut all = vec![self.selector()?];
        loop {
            match self.scanner.peek() {
                Ch::C(',') => {
                    let (pos, tok, _) = self.scanner.scan();
                    if tok != Tok::Separator {
                        return Err(self.mkerr(pos, "expected a separator"));
                    }
                    all.push(self.selector()?);
                }
                Ch::Eof => return Ok(all),
                other => {
                    let c = match other {
                        Ch::C(c) => c,
                        _ => char::REPLACEMENT_CHARACTER,
                    };
                    return Err(self.mkerr(self.scanner.ppos, format!("unexpected input: {c}")));
                }
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let path = self.fieldpath()?;
        if matches!(self.scanner.peek(), Ch::C(',') | Ch::Eof) {
            return Ok(Selector {
                path,
                op: Op::Present,
            });
        }
        let op = self.operator()?;
        let (pos, value) = self.value(op == "~=")?;
        let op = match op {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            _ => match Regex::new(&value) {
                Ok(re) => Op::Matches(re),
                Err(e) => {
                    return Err(self.mkerr(pos, format!("error compiling regexp {value:?}: {e}")))
                }
            },
        };
        Ok(Selector { path, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = vec![self.field()?];
        while self.scanner.peek() == Ch::C('.') {
            let (pos, tok, _) = self.scanner.scan();
            if tok != Tok::Separator {
                return Err(self.mkerr(pos, "expected a field separator (`.`)"));
            }
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String, FilterError> {
        let (pos, tok, s) = self.scanner.scan();
        match tok {
            Tok::Field => Ok(s.to_owned()),
            Tok::Quoted => self.unquote(pos, s, false),
            Tok::Illegal => Err(self.scanner_err(pos)),
            _ => Err(self.mkerr(pos, "expected field or quoted")),
        }
    }

    fn operator(&mut self) -> Result<&'static str, FilterError> {
        let (pos, tok, s) = self.scanner.scan();
        match tok {
            Tok::Operator => match s {
                "==" => Ok("=="),
                "!=" => Ok("!="),
                "~=" => Ok("~="),
                _ => Err(self.mkerr(pos, format!("unsupported operator {s:?}"))),
            },
            Tok::Illegal => Err(self.scanner_err(pos)),
            _ => Err(self.mkerr(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        }
    }

    fn value(&mut self, allow_alt_quotes: bool) -> Result<(usize, String), FilterError> {
        let (pos, tok, s) = self.scanner.scan();
        match tok {
            Tok::Value | Tok::Field => Ok((pos, s.to_owned())),
            Tok::Quoted => Ok((pos, self.unquote(pos, s, allow_alt_quotes)?)),
            Tok::Illegal => Err(self.scanner_err(pos)),
            _ => Err(self.mkerr(pos, "expected value or quoted")),
        }
    }

    fn unquote(&self, pos: usize, s: &str, allow_alts: bool) -> Result<String, FilterError> {
        if !allow_alts && !s.starts_with('"') {
            return Err(self.mkerr(pos, "invalid quote encountered"));
        }
        unquote(s).ok_or_else(|| self.mkerr(pos, "unquoting failed: quote syntax error"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A containerd container, as `metadata/adaptors.go` adapts one.
    #[derive(Default)]
    struct Container {
        id: String,
        image: String,
        runtime_name: String,
        labels: HashMap<String, String>,
    }

    fn nonempty(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_owned())
    }

    impl Adaptor for Container {
        fn field(&self, path: &[&str]) -> Option<String> {
            match path {
                ["id"] | ["id", ..] => nonempty(&self.id),
                ["runtime", "name", ..] => nonempty(&self.runtime_name),
                ["image", ..] => nonempty(&self.image),
                ["labels", rest @ ..] => check_map(rest, &self.labels),
                _ => None,
            }
        }
    }

    fn ctr(id: &str, image: &str, labels: &[(&str, &str)]) -> Container {
        Container {
            id: id.into(),
            image: image.into(),
            runtime_name: "io.containerd.runc.v2".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn corpus() -> Vec<Container> {
        vec![
            ctr("a", "docker.io/library/busybox:latest", &[("app", "web")]),
            ctr(
                "b",
                "docker.io/library/nginx:latest",
                &[("app", "db"), ("foo", "")],
            ),
            ctr(
                "c",
                "quay.io/x/y",
                &[
                    ("app.kubernetes.io/name", "web"),
                    ("more complex label", "yes"),
                ],
            ),
            ctr("d", "", &[("x,y", "a \"b\", c"), ("foo", "true")]),
        ]
    }

    fn ids(filters: &[&str]) -> Vec<String> {
        let f = Filter::parse_all(filters).unwrap_or_else(|e| panic!("{filters:?}: {e}"));
        corpus()
            .into_iter()
            .filter(|c| f.matches(c))
            .map(|c| c.id)
            .collect()
    }

    fn one(filter: &str) -> Vec<String> {
        ids(&[filter])
    }

    fn err(filter: &str) -> String {
        let e = Filter::parse(filter).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        e.to_string()
    }

    #[test]
    fn filter_empty_matches_all() {
        assert_eq!(ids(&[]), ["a", "b", "c", "d"]);
        assert_eq!(one(""), ["a", "b", "c", "d"]);
        assert_eq!(ids(&["", "id==a"]), ["a", "b", "c", "d"]);
        assert!(Filter::parse_all(&[] as &[&str]).unwrap().is_always());
        assert!(!Filter::parse("id").unwrap().is_always());
    }

    #[test]
    fn filter_equality_and_labels() {
        assert_eq!(one(r#"labels."app"==web"#), ["a"]);
        assert_eq!(one("labels.app==web"), ["a"]);
        assert_eq!(one(r#"labels."app.kubernetes.io/name"==web"#), ["c"]);
        assert_eq!(
            one("runtime.name==io.containerd.runc.v2"),
            ["a", "b", "c", "d"]
        );
        assert_eq!(one("image==docker.io/library/nginx:latest"), ["b"]);
        assert_eq!(one("id==zzz"), Vec::<String>::new());
    }

    #[test]
    fn filter_conjunction_and_disjunction() {
        assert_eq!(one("id==a,id==b"), Vec::<String>::new());
        assert_eq!(ids(&["id==a", "id==b"]), ["a", "b"]);
        assert_eq!(one("labels.app==web,id==a"), ["a"]);
        assert_eq!(ids(&["labels.app==web,image~=busy", "id==d"]), ["a", "d"]);
    }

    #[test]
    fn filter_presence_and_not_equal() {
        // A label set to "" is present; `id` alone: every container has one.
        assert_eq!(one("labels.foo"), ["b", "d"]);
        assert_eq!(one("id"), ["a", "b", "c", "d"]);
        assert_eq!(one("image"), ["a", "b", "c"]);
        assert_eq!(one("labels.foo,image"), ["b"]);
        assert_eq!(one("nosuch"), Vec::<String>::new());
        // An absent field compares as "".
        assert_eq!(one("labels.app!=web"), ["b", "c", "d"]);
        assert_eq!(one(r#"image!="""#), ["a", "b", "c"]);
    }

    #[test]
    fn filter_regexp() {
        assert_eq!(one("image~=busy"), ["a"]);
        assert_eq!(one("image~=^docker"), ["a", "b"]);
        assert_eq!(one("image~=/nginx|busybox/"), ["a", "b"]);
        assert_eq!(one("image~=|^quay|"), ["c"]);
        assert_eq!(one(r#"image~="[xy]/[xy]$""#), ["c"]);
        // Regexp-quoted with a comma inside (would otherwise split the selectors).
        assert_eq!(one("id~=/[ab]{1,2}/,id!=b"), ["a"]);
        // An absent field matches as "".
        assert_eq!(one("image~=^$"), ["d"]);
        // containerd's test: an escaped slash and a double quote in a /regexp/.
        let f = Filter::parse(r#"other~=/[abc]{0,1}"\//,name!=foo"#).unwrap();
        match &f.any[0][0].op {
            Op::Matches(re) => assert_eq!(re.as_str(), r#"[abc]{0,1}"/"#),
            op => panic!("{op:?}"),
        }
    }

    #[test]
    fn filter_quoted_values() {
        assert_eq!(one(r#"labels."x,y"=="a \"b\", c""#), ["d"]);
        assert_eq!(one(r#"labels."more complex label""#), ["c"]);
        assert_eq!(one(r#"labels."more complex label"==yes,id==c"#), ["c"]);
        let v = |s: &str| match &Filter::parse(s).unwrap().any[0][0].op {
            Op::Equal(v) => v.clone(),
            op => panic!("{op:?}"),
        };
        assert_eq!(v(r#"a=="t\tn\nq\"b\\""#), "t\tn\nq\"b\\");
        assert_eq!(v(r#"a=="\x41\101\u00e9\U0001F600""#), "AAé😀");
        assert_eq!(v(r#"a=="\a\b\f\r\v""#), "\x07\x08\x0c\r\x0b");
        assert_eq!(v("a==\"héllo wörld\""), "héllo wörld");
        let path = Filter::parse(r#"labels."with \\ and \"".post==present"#)
            .unwrap()
            .any[0][0]
            .path
            .clone();
        assert_eq!(path, ["labels", r#"with \ and ""#, "post"]);
        // A bare value runs to the next comma or space, dots and slashes included.
        assert_eq!(v("labels.foo==omg_asdf.asdf-qwer"), "omg_asdf.asdf-qwer");
        assert_eq!(v("a==b==c"), "b==c");
    }

    #[test]
    fn filter_whitespace() {
        // Before a field, an operator or a value: skipped.
        assert_eq!(one("  id == a"), ["a"]);
        assert_eq!(one("id==a, labels.app"), ["a"]);
        assert_eq!(one("id==a,\tlabels.app==web"), ["a"]);
        // Before a `,` or the end: an error, as in containerd.
        assert_eq!(
            err("id==a ,id==b"),
            "filters: parse error: [id==a >| |< ,id==b]: unexpected input:  "
        );
        assert_eq!(
            err("id==a "),
            "filters: parse error: [id==a >| |< ]: unexpected input:  "
        );
        assert_eq!(
            err("labels.foo "),
            r#"filters: parse error: [labels.foo ]: expected an operator ("=="|"!="|"~=")"#
        );
    }

    #[test]
    fn filter_errors() {
        // containerd's filter_test.go cases.
        assert_eq!(
            err("labels.|foo|==omg_asdf.asdf-qwer"),
            "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered"
        );
        assert_eq!(
            err(r#"labels.?"more complex label with \\ and \"".post==present"#),
            r#"filters: parse error: [labels. >|?|< "more complex label with \\ and \"".post==present]: expected field or quoted"#
        );
        assert_eq!(
            err("name==foo,"),
            "filters: parse error: [name==foo,]: expected field or quoted"
        );
        assert_eq!(
            err("labels."),
            "filters: parse error: [labels.]: expected field or quoted"
        );
        assert_eq!(
            err("image~=,id?=?fbaq"),
            "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted"
        );
        assert_eq!(
            err("labels.ns/key==value"),
            "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated"
        );
        assert_eq!(
            err("labels.key==/value"),
            "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated"
        );
        // Unterminated quote, missing value, bad operator, empty fieldpath.
        assert_eq!(
            err(r#"labels."app==web"#),
            r#"filters: parse error: [labels. >|"|< app==web]: quoted literal not terminated"#
        );
        assert_eq!(
            err("id=="),
            "filters: parse error: [id==]: expected value or quoted"
        );
        assert_eq!(
            err("id=a"),
            r#"filters: parse error: [id >|=|< a]: unsupported operator "=""#
        );
        assert_eq!(
            err("id~~a"),
            r#"filters: parse error: [id >|~|< ~a]: unsupported operator "~~""#
        );
        assert_eq!(
            err("id>a"),
            r#"filters: parse error: [id >|>|< a]: expected an operator ("=="|"!="|"~=")"#
        );
        assert_eq!(
            err("==a"),
            "filters: parse error: [ >|=|< =a]: expected field or quoted"
        );
        assert_eq!(
            err(",id"),
            "filters: parse error: [ >|,|< id]: expected field or quoted"
        );
        assert_eq!(
            err("labels..a"),
            "filters: parse error: [labels. >|.|< a]: expected field or quoted"
        );
        assert_eq!(
            err(r#"id=="a"b"#),
            r#"filters: parse error: [id=="a" >|b|< ]: unexpected input: b"#
        );
        // Escapes.
        assert_eq!(
            err(r#"id=="a\qb""#),
            r#"filters: parse error: [id== >|"|< a\qb"]: illegal escape sequence"#
        );
        assert_eq!(
            err(r#"id=="a\xZZ""#),
            r#"filters: parse error: [id== >|"|< a\xZZ"]: illegal numeric escape sequence"#
        );
        assert_eq!(
            err(r#"id=="\400""#),
            r#"filters: parse error: [id== >|"|< \400"]: unquoting failed: quote syntax error"#
        );
        // Alternate quotes only for a `~=` value.
        assert_eq!(
            err("id==/a/"),
            "filters: parse error: [id== >|/|< a/]: invalid quote encountered"
        );
        // A NUL.
        assert_eq!(
            err("id==\"a\0\""),
            "filters: parse error: [id== >|\"|< a\0\"]: unexpected null"
        );
        // A bad regexp is an error at parse time.
        let e = err("image~=[abc");
        assert!(
            e.starts_with(
                r#"filters: parse error: [image~= >|[|< abc]: error compiling regexp "[abc": "#
            ),
            "{e}"
        );
    }

    #[test]
    fn filter_parse_all_error_and_status() {
        let e = Filter::parse_all(&["id==a", "id="]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "filters: parse error: [id >|=|< ]: unsupported operator \"=\": invalid argument"
        );
        let st: Status = e.into();
        assert_eq!(st.code(), Code::INVALID_ARGUMENT);
        assert!(st.message().starts_with("filters: parse error: "));
        let owned: Vec<String> = vec!["id==b".into()];
        assert_eq!(
            corpus()
                .iter()
                .filter(|c| Filter::parse_all(&owned).unwrap().matches(*c))
                .count(),
            1
        );
    }

    #[test]
    fn filter_closure_adaptor() {
        let f = Filter::parse("kind==x").unwrap();
        let a = |p: &[&str]| (p == ["kind"]).then(|| "x".to_string());
        assert!(f.matches(&a));
        let b = |_: &[&str]| -> Option<String> { None };
        assert!(!f.matches(&b));
    }
}

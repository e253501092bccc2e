//! The generated containerd 1.6 protocol types, checked against the vendored `.proto` files and
//! against bytes containerd 1.6.20 itself wrote.
//!
//! - every message of every vendored file (service requests and responses, events, the shim's
//!   messages, runc options, cgroup metrics) is filled through reflection with non-default values
//!   in every field, encoded, decoded and compared;
//! - the `google.protobuf.Any` values containerd stored in `meta.db` for containers `job` (the
//!   runtime spec, JSON inside) and `web` (runc options, an empty message) decode and re-encode
//!   byte for byte;
//! - `corral_protocols::methods::METHODS` is exactly what the `.proto` files declare;
//! - the task event messages exist under their containerd names.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use corral_protocols::rpc::MethodKind;
use protobuf::reflect::{
    FileDescriptor, MessageDescriptor, ReflectEqMode, ReflectFieldRef, ReflectValueBox,
    RuntimeFieldType, RuntimeType,
};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageDyn, MessageFull};

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn proto_root() -> PathBuf {
    repo_root().join("protocols").join("proto")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.proto` file under `protocols/proto/`, as paths relative to it, sorted.
fn proto_files_on_disk() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "proto") {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let root = proto_root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// The import roots of `protocols/build.rs`: a file's descriptor name is its path under the
/// first root that prefixes it.
const INCLUDE_ROOTS: &[&str] = &["github.com/gogo/protobuf/", "github.com/gogo/googleapis/"];

fn import_name(disk_path: &str) -> String {
    for root in INCLUDE_ROOTS {
        if let Some(rest) = disk_path.strip_prefix(root) {
            return rest.to_string();
        }
    }
    disk_path.to_string()
}

// ---------------------------------------------------------------------------------------------
// The generated files
// ---------------------------------------------------------------------------------------------

/// The `file_descriptor()` of every generated file module, listed by hand so that a file the
/// build stops generating fails to compile here, and checked against the files on disk so that
/// a vendored file missing from this list fails the test.
fn generated_files() -> Vec<FileDescriptor> {
    use corral_protocols as p;
    vec![
        p::gogoproto::gogo::file_descriptor().clone(),
        p::google::rpc::status::file_descriptor().clone(),
        p::plugin::fieldpath::file_descriptor().clone(),
        p::types::descriptor::file_descriptor().clone(),
        p::types::metrics::file_descriptor().clone(),
        p::types::mount::file_descriptor().clone(),
        p::types::platform::file_descriptor().clone(),
        p::types::task::task::file_descriptor().clone(),
        p::events::container::file_descriptor().clone(),
        p::events::content::file_descriptor().clone(),
        p::events::image::file_descriptor().clone(),
        p::events::namespace::file_descriptor().clone(),
        p::events::snapshot::file_descriptor().clone(),
        p::events::task::file_descriptor().clone(),
        p::services::containers::v1::containers::file_descriptor().clone(),
        p::services::content::v1::content::file_descriptor().clone(),
        p::services::diff::v1::diff::file_descriptor().clone(),
        p::services::events::v1::events::file_descriptor().clone(),
        p::services::images::v1::images::file_descriptor().clone(),
        p::services::introspection::v1::introspection::file_descriptor().clone(),
        p::services::leases::v1::leases::file_descriptor().clone(),
        p::services::namespaces::v1::namespace::file_descriptor().clone(),
        p::services::snapshots::v1::snapshots::file_descriptor().clone(),
        p::services::tasks::v1::tasks::file_descriptor().clone(),
        p::services::version::v1::version::file_descriptor().clone(),
        p::services::ttrpc::events::v1::events::file_descriptor().clone(),
        p::runtime::v2::task::shim::file_descriptor().clone(),
        p::runtime::v2::runc::options::oci::file_descriptor().clone(),
        p::cgroups::stats::v1::metrics::file_descriptor().clone(),
        p::cgroups::v2::stats::metrics::file_descriptor().clone(),
    ]
}

/// A message and, recursively, its nested messages, without the synthetic map entries.
fn collect_messages(md: MessageDescriptor, out: &mut Vec<MessageDescriptor>) {
    if md.is_map_entry() {
        return;
    }
    for nested in md.nested_messages() {
        collect_messages(nested, out);
    }
    out.push(md);
}

fn messages_of(fd: &FileDescriptor) -> Vec<MessageDescriptor> {
    let mut out = Vec::new();
    for md in fd.messages() {
        collect_messages(md, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A small .proto reader (test 3 and the message census of test 1)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str,
    Punct(char),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Unary,
    ServerStream,
    ClientStream,
    Bidi,
}

fn kind_of(k: MethodKind) -> Kind {
    match k {
        MethodKind::Unary => Kind::Unary,
        MethodKind::ServerStream => Kind::ServerStream,
        MethodKind::ClientStream => Kind::ClientStream,
        MethodKind::Bidi => Kind::Bidi,
    }
}

/// What one `.proto` file declares, read from its text.
#[derive(Debug, Default)]
struct ProtoText {
    package: String,
    /// Fully qualified names of every message, nested ones included.
    messages: BTreeSet<String>,
    /// `/package.Service/Method` and kind.
    methods: BTreeMap<String, Kind>,
}

#[derive(Debug)]
enum Scope {
    Message(String),
    Service(String),
    Other,
}

fn word(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w),
        _ => None,
    }
}

fn parse_proto(text: &str) -> ProtoText {
    let toks = tokenize(text);
    let mut out = ProtoText::default();
    let mut scopes: Vec<Scope> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Word(w) if w == "package" && scopes.is_empty() => {
                out.package = word(toks.get(i + 1)).expect("package name").to_string();
                i += 2;
            }
            Tok::Word(w)
                if (w == "message" || w == "service")
                    && word(toks.get(i + 1)).is_some()
                    && toks.get(i + 2) == Some(&Tok::Punct('{')) =>
            {
                let name = word(toks.get(i + 1)).unwrap().to_string();
                if w == "message" {
                    let mut full = out.package.clone();
                    for s in &scopes {
                        if let Scope::Message(m) = s {
                            full.push('.');
                            full.push_str(m);
                        }
                    }
                    full.push('.');
                    full.push_str(&name);
                    out.messages
                        .insert(full.trim_start_matches('.').to_string());
                    scopes.push(Scope::Message(name));
                } else {
                    scopes.push(Scope::Service(name));
                }
                i += 3;
            }
            Tok::Word(w) if w == "rpc" && matches!(scopes.last(), Some(Scope::Service(_))) => {
                let Some(Scope::Service(service)) = scopes.last() else {
                    unreachable!()
                };
                let name = word(toks.get(i + 1)).expect("rpc name").to_string();
                let mut j = i + 2;
                // `( [stream] Type )`, returning whether `stream` was there and the index after.
                let side = |j: &mut usize| -> bool {
                    assert_eq!(
                        toks.get(*j),
                        Some(&Tok::Punct('(')),
                        "rpc {name}: expected ("
                    );
                    *j += 1;
                    let streaming =
                        word(toks.get(*j)) == Some("stream") && word(toks.get(*j + 1)).is_some();
                    if streaming {
                        *j += 1;
                    }
                    assert!(word(toks.get(*j)).is_some(), "rpc {name}: expected a type");
                    *j += 1;
                    assert_eq!(
                        toks.get(*j),
                        Some(&Tok::Punct(')')),
                        "rpc {name}: expected )"
                    );
                    *j += 1;
                    streaming
                };
                let client = side(&mut j);
                assert_eq!(
                    word(toks.get(j)),
                    Some("returns"),
                    "rpc {name}: expected returns"
                );
                j += 1;
                let server = side(&mut j);
                let kind = match (client, server) {
                    (false, false) => Kind::Unary,
                    (false, true) => Kind::ServerStream,
                    (true, false) => Kind::ClientStream,
                    (true, true) => Kind::Bidi,
                };
                let package = if out.package.is_empty() {
                    String::new()
                } else {
                    format!("{}.", out.package)
                };
                let path = format!("/{package}{service}/{name}");
                assert!(
                    out.methods.insert(path.clone(), kind).is_none(),
                    "{path} declared twice"
                );
                i = j;
            }
            Tok::Punct('{') => {
                scopes.push(Scope::Other);
                i += 1;
            }
            Tok::Punct('}') => {
                scopes.pop().expect("unbalanced }");
                i += 1;
            }
            _ => i += 1,
        }
    }
    assert!(scopes.is_empty(), "unbalanced braces");
    out
}

fn parse_all_protos() -> BTreeMap<String, ProtoText> {
    proto_files_on_disk()
        .into_iter()
        .map(|rel| {
            let text = fs::read_to_string(proto_root().join(&rel)).unwrap();
            (rel, parse_proto(&text))
        })
        .collect()
}

#[test]
fn proto_reader_handles_comments_multiline_rpcs_and_nesting() {
    // The reader itself must be able to see what the checks below rely on.
    let text = r#"
        syntax = "proto3";
        package a.b; // trailing comment with service X { rpc Fake(A) returns (B); }
        option go_package = "x/y;z{";
        /* service Hidden { rpc H(A) returns (B); } */
        message Outer { message Inner { map<string, string> m = 1; } string message = 2; }
        service S {
            // rpc Commented(A) returns (B);
            rpc Uni(A) returns (B);
            rpc Multi(
                stream .a.b.A
            )
              returns
              (stream B) {
                option deprecated = true;
            }
            rpc Down(A) returns (stream B);
            rpc Up(stream A) returns (B);
            rpc StreamNamedType(stream) returns (stream);
        }
    "#;
    let p = parse_proto(text);
    assert_eq!(p.package, "a.b");
    assert_eq!(
        p.messages.iter().cloned().collect::<Vec<_>>(),
        ["a.b.Outer", "a.b.Outer.Inner"]
    );
    let expected: BTreeMap<String, Kind> = [
        ("/a.b.S/Uni", Kind::Unary),
        ("/a.b.S/Multi", Kind::Bidi),
        ("/a.b.S/Down", Kind::ServerStream),
        ("/a.b.S/Up", Kind::ClientStream),
        ("/a.b.S/StreamNamedType", Kind::Unary),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(p.methods, expected);
}

// ---------------------------------------------------------------------------------------------
// Test 1: every message round-trips with every field set
// ---------------------------------------------------------------------------------------------

/// Nested messages are filled down to this depth; below it they are present but empty.
const MAX_DEPTH: usize = 6;

/// Produces a distinct, non-default value for every scalar it is asked for.
struct Filler {
    counter: u32,
}

impl Filler {
    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    fn value(&mut self, ty: &RuntimeType, what: &str, depth: usize) -> ReflectValueBox {
        let n = self.next();
        match ty {
            // Negative for every signed field: exercises 10-byte varints and zigzag.
            RuntimeType::I32 => ReflectValueBox::I32(-1000 - n as i32),
            RuntimeType::I64 => ReflectValueBox::I64(-(1i64 << 40) - i64::from(n)),
            // Beyond i32/i64 range: catches a signed type standing in for an unsigned one.
            RuntimeType::U32 => ReflectValueBox::U32(3_000_000_000 + n),
            RuntimeType::U64 => ReflectValueBox::U64((1u64 << 63) + u64::from(n)),
            RuntimeType::F32 => ReflectValueBox::F32(n as f32 + 0.5),
            RuntimeType::F64 => ReflectValueBox::F64(-(f64::from(n)) - 0.25),
            RuntimeType::Bool => ReflectValueBox::Bool(true),
            RuntimeType::String => ReflectValueBox::String(format!("{what}#{n}-ü")),
            RuntimeType::VecU8 => {
                let mut b = vec![0x00, 0xff, n as u8, (n >> 8) as u8];
                b.extend_from_slice(what.as_bytes());
                ReflectValueBox::Bytes(b)
            }
            RuntimeType::Enum(ed) => {
                let v = ed.values().find(|v| v.value() != 0).unwrap_or_else(|| {
                    panic!("{what}: enum {} has no non-zero value", ed.full_name())
                });
                ReflectValueBox::Enum(ed.clone(), v.value())
            }
            RuntimeType::Message(md) => match md.full_name() {
                "google.protobuf.Timestamp" => {
                    let mut ts = Timestamp::new();
                    ts.seconds = 1_795_446_669 + i64::from(n);
                    ts.nanos = 857_878_063;
                    ReflectValueBox::Message(Box::new(ts))
                }
                "google.protobuf.Any" => {
                    let mut any = Any::new();
                    any.type_url = format!("types.containerd.io/corral.test/{what}#{n}");
                    any.value = vec![0x0a, 0x02, b'h', (n as u8) | 1];
                    ReflectValueBox::Message(Box::new(any))
                }
                _ => {
                    let mut m = md.new_instance();
                    if depth < MAX_DEPTH {
                        self.fill(&mut *m, depth + 1);
                    }
                    ReflectValueBox::Message(m)
                }
            },
        }
    }

    /// Sets every field of `msg`: singular ones to a non-default value, two elements in every
    /// repeated field, two entries in every map. Of a oneof only the first member is set.
    fn fill(&mut self, msg: &mut dyn MessageDyn, depth: usize) {
        let md = msg.descriptor_dyn();
        let mut oneofs_done = HashSet::new();
        for field in md.fields() {
            if let Some(oneof) = field.containing_oneof() {
                if !oneofs_done.insert(oneof.name().to_string()) {
                    continue;
                }
            }
            let what = field.full_name();
            match field.runtime_field_type() {
                RuntimeFieldType::Singular(ty) => {
                    let v = self.value(&ty, &what, depth);
                    field.set_singular_field(msg, v);
                }
                RuntimeFieldType::Repeated(ty) => {
                    let a = self.value(&ty, &what, depth);
                    let b = self.value(&ty, &what, depth);
                    let mut r = field.mut_repeated(msg);
                    r.push(a);
                    r.push(b);
                }
                RuntimeFieldType::Map(kt, vt) => {
                    let entries = [
                        (self.value(&kt, &what, depth), self.value(&vt, &what, depth)),
                        (self.value(&kt, &what, depth), self.value(&vt, &what, depth)),
                    ];
                    let mut m = field.mut_map(msg);
                    for (k, v) in entries {
                        m.insert(k, v);
                    }
                }
            }
        }
    }
}

/// Asserts that every field `Filler::fill` sets is set in `msg` (singular fields present with a
/// non-default value, two repeated elements, two map entries), recursively. Returns how many
/// fields it checked.
fn assert_all_set(msg: &dyn MessageDyn, depth: usize, path: &str) -> usize {
    let md = msg.descriptor_dyn();
    let mut checked = 0;
    let mut oneofs_done = HashSet::new();
    for field in md.fields() {
        if let Some(oneof) = field.containing_oneof() {
            if !oneofs_done.insert(oneof.name().to_string()) {
                assert!(
                    !field.has_field(msg),
                    "{path}.{}: second oneof member set",
                    field.name()
                );
                continue;
            }
        }
        let here = format!("{path}.{}", field.name());
        checked += 1;
        match field.get_reflect(msg) {
            ReflectFieldRef::Optional(v) => {
                // proto3 scalars read as `None` when they hold the default value.
                let v = v
                    .value()
                    .unwrap_or_else(|| panic!("{here}: not set after round trip"));
                if let Some(sub) = v.to_message() {
                    if depth < MAX_DEPTH {
                        checked += assert_all_set(&*sub, depth + 1, &here);
                    }
                }
            }
            ReflectFieldRef::Repeated(r) => {
                assert_eq!(r.len(), 2, "{here}: repeated field lost elements");
                for i in 0..r.len() {
                    if let Some(sub) = r.get(i).to_message() {
                        if depth < MAX_DEPTH {
                            checked += assert_all_set(&*sub, depth + 1, &here);
                        }
                    }
                }
            }
            ReflectFieldRef::Map(m) => {
                assert_eq!(m.len(), 2, "{here}: map lost entries");
                for (_, v) in &m {
                    if let Some(sub) = v.to_message() {
                        if depth < MAX_DEPTH {
                            checked += assert_all_set(&*sub, depth + 1, &here);
                        }
                    }
                }
            }
        }
    }
    checked
}

/// Whether a message reaches a map field (whose encoding order is a hash map's).
fn reaches_map(md: &MessageDescriptor, seen: &mut HashSet<String>) -> bool {
    if !seen.insert(md.full_name().to_string()) {
        return false;
    }
    md.fields().any(|f| match f.runtime_field_type() {
        RuntimeFieldType::Map(..) => true,
        RuntimeFieldType::Singular(RuntimeType::Message(m))
        | RuntimeFieldType::Repeated(RuntimeType::Message(m)) => reaches_map(&m, seen),
        _ => false,
    })
}

struct RoundTrip {
    encoded_len: usize,
    fields_checked: usize,
}

/// Fills, encodes, decodes and compares one message type.
fn round_trip(md: &MessageDescriptor) -> RoundTrip {
    let name = md.full_name();
    let mut msg = md.new_instance();
    Filler { counter: 0 }.fill(&mut *msg, 0);
    let bytes = msg
        .write_to_bytes_dyn()
        .unwrap_or_else(|e| panic!("{name}: encode: {e}"));
    let field_count = md.fields().count();
    if field_count > 0 {
        assert!(
            !bytes.is_empty(),
            "{name}: {field_count} fields filled but encoding is empty"
        );
    } else {
        assert!(
            bytes.is_empty(),
            "{name}: no fields but a non-empty encoding"
        );
    }
    // The filled message really differs from a fresh one.
    assert_eq!(
        md.eq(&*msg, &*md.new_instance()),
        field_count == 0,
        "{name}: filled message compares equal to an empty one"
    );

    let mut decoded = md.new_instance();
    decoded
        .merge_from_bytes_dyn(&bytes)
        .unwrap_or_else(|e| panic!("{name}: decode: {e}"));
    assert!(
        decoded.unknown_fields_dyn().iter().next().is_none(),
        "{name}: decoding left unknown fields"
    );
    // Generated `PartialEq` and field-by-field reflection agree that nothing changed.
    assert!(
        md.eq(&*msg, &*decoded),
        "{name}: decoded message differs (PartialEq)"
    );
    assert!(
        msg.reflect_eq_dyn(&*decoded, &ReflectEqMode::default()),
        "{name}: decoded message differs (reflect_eq)"
    );
    let fields_checked = assert_all_set(&*decoded, 0, name);
    assert!(
        fields_checked >= field_count,
        "{name}: only {fields_checked} fields checked"
    );

    let again = decoded.write_to_bytes_dyn().unwrap();
    assert_eq!(
        again.len(),
        bytes.len(),
        "{name}: re-encoding changed the length"
    );
    if !reaches_map(md, &mut HashSet::new()) {
        assert_eq!(again, bytes, "{name}: re-encoding changed the bytes");
    }

    // The comparison can fail: drop one field and the copies must differ.
    if let Some(first) = md.fields().next() {
        let mut changed = decoded.clone_box();
        first.clear_field(&mut *changed);
        assert!(
            !md.eq(&*msg, &*changed),
            "{name}: clearing {} went unnoticed",
            first.name()
        );
        assert_ne!(changed.write_to_bytes_dyn().unwrap(), bytes);
    }
    RoundTrip {
        encoded_len: bytes.len(),
        fields_checked,
    }
}

#[test]
fn generated_files_are_exactly_the_vendored_files() {
    let generated: BTreeSet<String> = generated_files()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let on_disk: BTreeSet<String> = proto_files_on_disk()
        .iter()
        .map(|p| import_name(p))
        .collect();
    assert_eq!(on_disk.len(), 30, "vendored .proto files: {on_disk:#?}");
    assert_eq!(generated, on_disk);
}

#[test]
fn generated_messages_match_the_proto_text() {
    let generated: BTreeMap<String, FileDescriptor> = generated_files()
        .into_iter()
        .map(|f| (f.name().to_string(), f))
        .collect();
    for (rel, text) in parse_all_protos() {
        let fd = generated
            .get(&import_name(&rel))
            .unwrap_or_else(|| panic!("{rel} has no generated module"));
        assert_eq!(fd.package(), text.package, "{rel}: package");
        let from_code: BTreeSet<String> = messages_of(fd)
            .iter()
            .map(|m| m.full_name().to_string())
            .collect();
        assert_eq!(from_code, text.messages, "{rel}: messages");
    }
}

#[test]
fn every_message_round_trips_with_every_field_set() {
    let files = generated_files();
    let protos = parse_all_protos();

    // Every message declared in the vendored files, then every type a service method takes or
    // returns (some live outside them: google.protobuf.Empty), then every message type those
    // reach through fields (Timestamp, Any, FieldMask, imported containerd types).
    let mut work: Vec<MessageDescriptor> = Vec::new();
    for fd in &files {
        work.extend(messages_of(fd));
        for svc in fd.services() {
            for m in svc.methods() {
                work.push(m.input_type());
                work.push(m.output_type());
            }
        }
    }
    let declared: BTreeSet<String> = work.iter().map(|m| m.full_name().to_string()).collect();

    let mut covered: BTreeMap<String, RoundTrip> = BTreeMap::new();
    while let Some(md) = work.pop() {
        if md.is_map_entry() || covered.contains_key(md.full_name()) {
            continue;
        }
        for f in md.fields() {
            match f.runtime_field_type() {
                RuntimeFieldType::Singular(RuntimeType::Message(m))
                | RuntimeFieldType::Repeated(RuntimeType::Message(m)) => work.push(m),
                RuntimeFieldType::Map(_, RuntimeType::Message(m)) => work.push(m),
                _ => {}
            }
        }
        let result = round_trip(&md);
        covered.insert(md.full_name().to_string(), result);
    }

    // Nothing the .proto files declare was skipped.
    let from_text: BTreeSet<String> = protos
        .values()
        .flat_map(|p| p.messages.iter().cloned())
        .collect();
    let missing: Vec<&String> = from_text
        .iter()
        .filter(|m| !covered.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "messages declared but not round-tripped: {missing:?}"
    );
    let missing: Vec<&String> = declared
        .iter()
        .filter(|m| !covered.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "messages not round-tripped: {missing:?}"
    );
    for fd in &files {
        for m in messages_of(fd) {
            assert!(
                covered.contains_key(m.full_name()),
                "{}: {} skipped",
                fd.name(),
                m.full_name()
            );
        }
    }
    // containerd 1.6.20's vendored files declare 207 messages (nested included, map entries
    // not); the extra ones are the well-known types they use.
    assert_eq!(from_text.len(), 207, "declared messages: {from_text:#?}");
    for wkt in [
        "google.protobuf.Any",
        "google.protobuf.Empty",
        "google.protobuf.FieldMask",
        "google.protobuf.Timestamp",
    ] {
        assert!(covered.contains_key(wkt), "{wkt} not round-tripped");
    }
    assert!(
        covered.len() >= from_text.len() + 4,
        "covered {}",
        covered.len()
    );

    // Every service method's request and response type was round-tripped, and the services
    // seen here are those of METHODS.
    let mut method_count = 0;
    for fd in &files {
        for svc in fd.services() {
            for m in svc.methods() {
                method_count += 1;
                for ty in [m.input_type(), m.output_type()] {
                    assert!(
                        covered.contains_key(ty.full_name()),
                        "{}.{}/{}: {} not round-tripped",
                        fd.package(),
                        svc.proto().name(),
                        m.proto().name(),
                        ty.full_name()
                    );
                }
            }
        }
    }
    assert_eq!(method_count, corral_protocols::methods::METHODS.len());

    // Messages with fields encoded to something, and fields were checked after decoding.
    let total_fields: usize = covered.values().map(|r| r.fields_checked).sum();
    let without_fields: BTreeSet<&str> = covered
        .iter()
        .filter(|(_, r)| r.encoded_len == 0)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        without_fields,
        BTreeSet::from([
            "containerd.services.tasks.v1.ExecProcessResponse",
            "containerd.task.v2.ExecProcessResponse",
            "google.protobuf.Empty",
        ]),
        "only field-less messages may encode to nothing"
    );
    assert!(total_fields > 1000, "only {total_fields} fields checked");
    eprintln!(
        "round-tripped {} message types ({} declared in vendored files, {} methods), {} field values checked",
        covered.len(),
        from_text.len(),
        method_count,
        total_fields
    );
}

#[test]
fn filled_messages_decode_into_the_typed_structs() {
    use corral_protocols::runtime::v2::runc::options::oci::{
        CheckpointOptions, Options, ProcessDetails,
    };
    use corral_protocols::services::containers::v1::containers::{
        Container, CreateContainerRequest,
    };

    fn fill_typed<M: MessageFull>() -> M {
        let mut m = M::new();
        Filler { counter: 0 }.fill(&mut m, 0);
        let bytes = m.write_to_bytes().unwrap();
        let decoded = M::parse_from_bytes(&bytes).unwrap();
        assert_eq!(decoded, m);
        decoded
    }

    let req: CreateContainerRequest = fill_typed();
    let c = &req.container;
    assert!(
        c.id.starts_with("containerd.services.containers.v1.Container.id#"),
        "{}",
        c.id
    );
    assert!(c
        .image
        .starts_with("containerd.services.containers.v1.Container.image#"));
    assert_eq!(c.labels.len(), 2);
    assert!(c
        .labels
        .keys()
        .all(|k| k.starts_with("containerd.services.containers.v1.Container.labels#")));
    assert!(c
        .runtime
        .name
        .starts_with("containerd.services.containers.v1.Container.Runtime.name#"));
    assert!(c
        .runtime
        .options
        .type_url
        .starts_with("types.containerd.io/corral.test/"));
    assert!(!c.runtime.options.value.is_empty());
    assert!(c
        .spec
        .type_url
        .starts_with("types.containerd.io/corral.test/"));
    assert!(c.created_at.seconds > 1_795_446_669 && c.created_at.nanos == 857_878_063);
    assert!(c.updated_at.seconds > c.created_at.seconds);
    assert_eq!(c.extensions.len(), 2);
    assert!(!c.snapshotter.is_empty() && !c.snapshot_key.is_empty());

    let c: Container = fill_typed();
    assert_ne!(c.id, c.image, "values are distinct");

    let o: Options = fill_typed();
    assert!(o.no_pivot_root && o.no_new_keyring && o.systemd_cgroup);
    assert!(o.io_uid > 3_000_000_000 && o.io_gid > 3_000_000_000 && o.io_uid != o.io_gid);
    for s in [
        &o.shim_cgroup,
        &o.binary_name,
        &o.root,
        &o.criu_path,
        &o.criu_image_path,
        &o.criu_work_path,
    ] {
        assert!(s.starts_with("containerd.runc.v1.Options."), "{s}");
    }
    let co: CheckpointOptions = fill_typed();
    assert!(co.exit && co.open_tcp && co.external_unix_sockets && co.terminal && co.file_locks);
    assert_eq!(co.empty_namespaces.len(), 2);
    let pd: ProcessDetails = fill_typed();
    assert!(pd
        .exec_id
        .starts_with("containerd.runc.v1.ProcessDetails.exec_id#"));

    // Field numbers as declared in oci.proto: binary_name = 6, io_uid = 4.
    let mut o = Options::new();
    o.binary_name = "runc".into();
    o.io_uid = 1000;
    assert_eq!(
        o.write_to_bytes().unwrap(),
        [0x20, 0xe8, 0x07, 0x32, 4, b'r', b'u', b'n', b'c']
    );
}

// ---------------------------------------------------------------------------------------------
// Test 2: Any values exactly as containerd 1.6.20 stored them
// ---------------------------------------------------------------------------------------------

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

#[test]
fn job_spec_any_decodes_to_the_stored_json() {
    let raw = fixture("job-spec.any");
    assert_eq!(raw.len(), 2831);
    // Field 1 (0x0a), 54 bytes; field 2 (0x12), 2772 bytes (varint d4 15).
    assert_eq!(raw[..2], [0x0a, 0x36]);
    assert_eq!(raw[2 + 0x36..2 + 0x36 + 3], [0x12, 0xd4, 0x15]);

    let any = Any::parse_from_bytes(&raw).unwrap();
    assert_eq!(any.type_url, SPEC_TYPE_URL);
    assert!(any.special_fields.unknown_fields().iter().next().is_none());
    let json_file = fixture("job-spec.json");
    assert_eq!(any.value.len(), 2772);
    assert_eq!(
        any.value, json_file,
        "the value is the JSON file, byte for byte"
    );

    let spec: serde_json::Value = serde_json::from_slice(&any.value).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(&json_file).unwrap();
    assert_eq!(spec, expected);
    assert_eq!(spec["ociVersion"], "1.0.2-dev");
    assert_eq!(spec["process"]["args"], serde_json::json!(["env"]));
    let env: Vec<&str> = spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"A=1"), "{env:?}");
    assert_eq!(env.last(), Some(&"A=1"));
    assert!(env[0].starts_with("PATH="), "{env:?}");
    assert_eq!(spec["root"]["path"], "rootfs");
    let namespaces: BTreeSet<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["pid", "ipc", "uts", "mount", "network"])
    );

    assert_eq!(
        any.write_to_bytes().unwrap(),
        raw,
        "re-encoding changed the bytes"
    );
}

#[test]
fn web_runtime_options_any_decodes_to_default_runc_options() {
    use corral_protocols::runtime::v2::runc::options::oci::Options;

    let raw = fixture("web-runtime-options.any");
    // `0a 1a` + the 26-byte URL and nothing else: an empty message omits field 2 entirely.
    let mut expected_raw = vec![0x0a, 0x1a];
    expected_raw.extend_from_slice(RUNC_OPTIONS_TYPE_URL.as_bytes());
    assert_eq!(raw, expected_raw);

    let any = Any::parse_from_bytes(&raw).unwrap();
    assert_eq!(any.type_url, RUNC_OPTIONS_TYPE_URL);
    assert!(any.value.is_empty());
    // containerd's type URL is the bare full name of the generated message.
    assert_eq!(Options::descriptor().full_name(), RUNC_OPTIONS_TYPE_URL);

    let opts = Options::parse_from_bytes(&any.value).unwrap();
    assert_eq!(opts, Options::new());
    assert!(!opts.no_pivot_root);
    assert!(!opts.no_new_keyring);
    assert_eq!(opts.shim_cgroup, "");
    assert_eq!(opts.io_uid, 0);
    assert_eq!(opts.io_gid, 0);
    assert_eq!(opts.binary_name, "");
    assert_eq!(opts.root, "");
    assert_eq!(opts.criu_path, "");
    assert!(!opts.systemd_cgroup);
    assert_eq!(opts.criu_image_path, "");
    assert_eq!(opts.criu_work_path, "");
    assert_eq!(opts.write_to_bytes().unwrap(), any.value);

    // Pitfalls of rust-protobuf's Any helpers with containerd's URLs: `is`/`unpack` look for the
    // name after the last '/', and this URL has no '/', so they do not recognise it; `pack`
    // writes "type.googleapis.com/..." and an empty value field is omitted either way. Readers
    // must compare `type_url` themselves, writers must set it.
    assert!(!any.is::<Options>());
    assert_eq!(any.unpack::<Options>().unwrap(), None);
    assert_eq!(
        Any::pack(&Options::new()).unwrap().type_url,
        format!("type.googleapis.com/{RUNC_OPTIONS_TYPE_URL}")
    );

    let mut rebuilt = Any::new();
    rebuilt.type_url = RUNC_OPTIONS_TYPE_URL.to_string();
    rebuilt.value = Options::new().write_to_bytes().unwrap();
    assert_eq!(rebuilt.write_to_bytes().unwrap(), raw);
    assert_eq!(
        any.write_to_bytes().unwrap(),
        raw,
        "re-encoding changed the bytes"
    );
}

// ---------------------------------------------------------------------------------------------
// Test 3: the method table is what the .proto files declare
// ---------------------------------------------------------------------------------------------

#[test]
fn method_table_matches_the_proto_files() {
    let mut from_protos: BTreeMap<String, Kind> = BTreeMap::new();
    for (rel, p) in parse_all_protos() {
        for (path, kind) in p.methods {
            assert!(
                from_protos.insert(path.clone(), kind).is_none(),
                "{rel}: {path} declared twice"
            );
        }
    }
    let mut table: BTreeMap<String, Kind> = BTreeMap::new();
    for (path, kind) in corral_protocols::methods::METHODS {
        assert!(
            table.insert(path.to_string(), kind_of(*kind)).is_none(),
            "{path} twice in METHODS"
        );
    }
    let only_protos: Vec<_> = from_protos
        .iter()
        .filter(|(p, k)| table.get(*p) != Some(k))
        .collect();
    let only_table: Vec<_> = table
        .iter()
        .filter(|(p, k)| from_protos.get(*p) != Some(k))
        .collect();
    assert!(
        only_protos.is_empty() && only_table.is_empty(),
        "declared but not in METHODS (or another kind): {only_protos:?}; in METHODS only: {only_table:?}"
    );
    assert_eq!(table, from_protos);

    for (path, kind) in [
        (
            "/containerd.services.containers.v1.Containers/Create",
            Kind::Unary,
        ),
        (
            "/containerd.services.containers.v1.Containers/ListStream",
            Kind::ServerStream,
        ),
        ("/containerd.task.v2.Task/Create", Kind::Unary),
        (
            "/containerd.services.events.ttrpc.v1.Events/Forward",
            Kind::Unary,
        ),
        ("/containerd.services.content.v1.Content/Write", Kind::Bidi),
        (
            "/containerd.services.content.v1.Content/Read",
            Kind::ServerStream,
        ),
        (
            "/containerd.services.events.v1.Events/Subscribe",
            Kind::ServerStream,
        ),
        (
            "/containerd.services.version.v1.Version/Version",
            Kind::Unary,
        ),
    ] {
        assert_eq!(table.get(path), Some(&kind), "{path}");
    }

    let services: BTreeSet<&str> = table
        .keys()
        .map(|p| p[1..].split('/').next().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        "containerd.services.containers.v1.Containers",
        "containerd.services.content.v1.Content",
        "containerd.services.diff.v1.Diff",
        "containerd.services.events.v1.Events",
        "containerd.services.images.v1.Images",
        "containerd.services.introspection.v1.Introspection",
        "containerd.services.leases.v1.Leases",
        "containerd.services.namespaces.v1.Namespaces",
        "containerd.services.snapshots.v1.Snapshots",
        "containerd.services.tasks.v1.Tasks",
        "containerd.services.version.v1.Version",
        "containerd.task.v2.Task",
        "containerd.services.events.ttrpc.v1.Events",
    ]
    .into_iter()
    .collect();
    assert_eq!(services, expected);
}

// ---------------------------------------------------------------------------------------------
// Test 4: the task events
// ---------------------------------------------------------------------------------------------

#[test]
fn task_event_messages_exist_under_containerd_names() {
    use corral_protocols::events::task::*;

    fn name_of<M: MessageFull>(_: &M) -> String {
        M::descriptor().full_name().to_string()
    }

    let mut create = TaskCreate::new();
    create.container_id = "job".into();
    create.pid = 42;
    let mut exit = TaskExit::new();
    exit.exit_status = 137;
    let names = [
        name_of(&create),
        name_of(&TaskStart::new()),
        name_of(&exit),
        name_of(&TaskDelete::new()),
        name_of(&TaskOOM::new()),
        name_of(&TaskExecAdded::new()),
        name_of(&TaskExecStarted::new()),
        name_of(&TaskPaused::new()),
        name_of(&TaskResumed::new()),
        name_of(&TaskCheckpointed::new()),
    ];
    assert_eq!(
        names,
        [
            "containerd.events.TaskCreate",
            "containerd.events.TaskStart",
            "containerd.events.TaskExit",
            "containerd.events.TaskDelete",
            "containerd.events.TaskOOM",
            "containerd.events.TaskExecAdded",
            "containerd.events.TaskExecStarted",
            "containerd.events.TaskPaused",
            "containerd.events.TaskResumed",
            "containerd.events.TaskCheckpointed",
        ]
    );
    // The file declares exactly these, plus the TaskIO helper.
    let declared: BTreeSet<String> = messages_of(file_descriptor())
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let mut expected: BTreeSet<String> = names
        .iter()
        .map(|n| n.trim_start_matches("containerd.events.").to_string())
        .collect();
    expected.insert("TaskIO".to_string());
    assert_eq!(declared, expected);

    let decoded = TaskCreate::parse_from_bytes(&create.write_to_bytes().unwrap()).unwrap();
    assert_eq!((decoded.container_id.as_str(), decoded.pid), ("job", 42));
    assert_eq!(
        TaskExit::parse_from_bytes(&exit.write_to_bytes().unwrap())
            .unwrap()
            .exit_status,
        137
    );
}

//! Generates Rust code for containerd's vendored `.proto` files.
//!
//! Messages come from `ttrpc-codegen` (rust-protobuf 3, pure Rust, no `protoc`), one generation
//! run per file so that files sharing a basename (three `events.proto`, three `metrics.proto`,
//! two `task.proto`) never overwrite each other. Service bindings come from this script: the
//! `ttrpc` crate's sync bindings cannot express streaming methods, so for every service it
//! writes a server trait, a registration function and a typed client for Corral's own
//! sync ttrpc layer (`crate::rpc`).
//!
//! The generated files are tied together by `mod.rs`, a module tree shaped like containerd's Go
//! packages. rust-protobuf refers to an imported file as `super::<basename>`, so each package
//! module also re-exports, under their basenames, the modules of the files it imports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use protobuf::descriptor::{FileDescriptorProto, MethodDescriptorProto};

/// Where each vendored file's code goes: its path under `proto/` and its Rust package module.
const FILES: &[(&str, &str)] = &[
    ("github.com/gogo/protobuf/gogoproto/gogo.proto", "gogoproto"),
    (
        "github.com/gogo/googleapis/google/rpc/status.proto",
        "google::rpc",
    ),
    (
        "github.com/containerd/containerd/protobuf/plugin/fieldpath.proto",
        "plugin",
    ),
    (
        "github.com/containerd/containerd/api/types/descriptor.proto",
        "types",
    ),
    (
        "github.com/containerd/containerd/api/types/metrics.proto",
        "types",
    ),
    (
        "github.com/containerd/containerd/api/types/mount.proto",
        "types",
    ),
    (
        "github.com/containerd/containerd/api/types/platform.proto",
        "types",
    ),
    (
        "github.com/containerd/containerd/api/types/task/task.proto",
        "types::task",
    ),
    (
        "github.com/containerd/containerd/api/events/container.proto",
        "events",
    ),
    (
        "github.com/containerd/containerd/api/events/content.proto",
        "events",
    ),
    (
        "github.com/containerd/containerd/api/events/image.proto",
        "events",
    ),
    (
        "github.com/containerd/containerd/api/events/namespace.proto",
        "events",
    ),
    (
        "github.com/containerd/containerd/api/events/snapshot.proto",
        "events",
    ),
    (
        "github.com/containerd/containerd/api/events/task.proto",
        "events",
    ),
    (
        "github.com/containerd/containerd/api/services/containers/v1/containers.proto",
        "services::containers::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/content/v1/content.proto",
        "services::content::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/diff/v1/diff.proto",
        "services::diff::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/events/v1/events.proto",
        "services::events::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/images/v1/images.proto",
        "services::images::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/introspection/v1/introspection.proto",
        "services::introspection::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/leases/v1/leases.proto",
        "services::leases::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/namespaces/v1/namespace.proto",
        "services::namespaces::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto",
        "services::snapshots::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/tasks/v1/tasks.proto",
        "services::tasks::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/version/v1/version.proto",
        "services::version::v1",
    ),
    (
        "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto",
        "services::ttrpc::events::v1",
    ),
    (
        "github.com/containerd/containerd/runtime/v2/task/shim.proto",
        "runtime::v2::task",
    ),
    (
        "github.com/containerd/containerd/runtime/v2/runc/options/oci.proto",
        "runtime::v2::runc::options",
    ),
    (
        "github.com/containerd/cgroups/stats/v1/metrics.proto",
        "cgroups::stats::v1",
    ),
    (
        "github.com/containerd/cgroups/v2/stats/metrics.proto",
        "cgroups::v2::stats",
    ),
];

/// Import roots, most specific first: the first include that prefixes an input names it.
const INCLUDES: &[&str] = &["github.com/gogo/protobuf", "github.com/gogo/googleapis", ""];

type BuildResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(err) = run() {
        eprintln!("corral-protocols build failed: {err}");
        std::process::exit(1);
    }
}

fn run() -> BuildResult<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("proto");
    let out = PathBuf::from(env::var("OUT_DIR")?).join("gen");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::create_dir_all(&out)?;
    let includes: Vec<PathBuf> = INCLUDES.iter().map(|i| proto_root.join(i)).collect();

    // Parse everything once for the service generator and the module tree.
    let mut parser = protobuf_parse::Parser::new();
    parser.pure().includes(&includes);
    for (file, _) in FILES {
        parser.input(proto_root.join(file));
    }
    let parsed = parser.parse_and_typecheck()?;
    let by_name: HashMap<String, &FileDescriptorProto> = parsed
        .file_descriptors
        .iter()
        .map(|fd| (fd.name().to_string(), fd))
        .collect();

    // The name each file has inside the import tree ("gogoproto/gogo.proto", ...).
    let mut files = Vec::new();
    for (path, module) in FILES {
        let import_name = import_name(path);
        let fd = by_name
            .get(&import_name)
            .ok_or_else(|| format!("{import_name} was not parsed"))?;
        files.push(ProtoFile {
            path,
            module,
            import_name,
            basename: basename(path),
            dir: out.join(path.replace(['/', '.'], "_")),
            descriptor: fd,
        });
    }
    let by_import: HashMap<&str, &ProtoFile> =
        files.iter().map(|f| (f.import_name.as_str(), f)).collect();

    for file in &files {
        fs::create_dir_all(&file.dir)?;
        ttrpc_codegen::Codegen::new()
            .out_dir(&file.dir)
            .includes(&includes)
            .input(proto_root.join(file.path))
            .rust_protobuf()
            .customize(ttrpc_codegen::Customize {
                gen_mod: false,
                ..Default::default()
            })
            .run()?;
        if !file.descriptor.service.is_empty() {
            let code = services_code(file, &by_import)?;
            fs::write(file.dir.join(format!("{}_rpc.rs", file.basename)), code)?;
        }
    }

    fs::write(out.join("mod.rs"), module_tree(&files, &by_import)?)?;
    fs::write(out.join("methods.rs"), method_table(&files))?;
    fs::write(out.join("type_urls.rs"), type_urls(&files))?;
    Ok(())
}

/// Writes a `TypeUrl` impl for every top-level message: its full proto name, the URL
/// containerd's `typeurl` gives it. Constants, so that packing an `Any` needs no reflection.
fn type_urls(files: &[ProtoFile]) -> String {
    let mut out = String::from("// Generated by corral-protocols' build.rs; do not edit.\n");
    let mut checks = String::new();
    for file in files {
        for message in &file.descriptor.message_type {
            let path = format!(
                "crate::{}::{}::{}",
                file.module,
                file.basename,
                message.name()
            );
            let _ = writeln!(
                out,
                "impl crate::TypeUrl for {path} {{ const TYPE_URL: &'static str = \"{}\"; }}",
                qualified(file.descriptor.package(), message.name()),
            );
            let _ = writeln!(checks, "        check::<{path}>();");
        }
    }
    // The constants are checked against the descriptors rust-protobuf embeds, a separate path.
    let _ = write!(
        out,
        "#[cfg(test)]\n#[test]\nfn type_urls_are_the_descriptors_full_names() {{\n    \
         fn check<M: crate::TypeUrl + protobuf::MessageFull>() {{\n        \
         assert_eq!(M::TYPE_URL, M::descriptor().full_name());\n    }}\n{checks}}}\n"
    );
    out
}

struct ProtoFile<'a> {
    path: &'static str,
    module: &'static str,
    import_name: String,
    basename: String,
    dir: PathBuf,
    descriptor: &'a FileDescriptorProto,
}

fn import_name(path: &str) -> String {
    for include in INCLUDES {
        if include.is_empty() {
            return path.to_string();
        }
        if let Some(rest) = path.strip_prefix(&format!("{include}/")) {
            return rest.to_string();
        }
    }
    path.to_string()
}

fn basename(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes the module tree: one module per package, one submodule per file, plus the aliases
/// through which generated code reaches imported files.
fn module_tree(files: &[ProtoFile], by_import: &HashMap<&str, &ProtoFile>) -> BuildResult<String> {
    #[derive(Default)]
    struct Node {
        children: BTreeMap<String, Node>,
        items: Vec<String>,
    }
    let mut root = Node::default();
    let mut aliases: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let mut node = &mut root;
        for part in file.module.split("::") {
            node = node.children.entry(part.to_string()).or_default();
        }
        let dir = file.dir.display().to_string();
        node.items.push(format!(
            "#[allow(clippy::all, unused, missing_docs, non_camel_case_types, non_snake_case, non_upper_case_globals)]\n#[path = \"{dir}/{b}.rs\"]\npub mod {b};",
            b = file.basename
        ));
        if !file.descriptor.service.is_empty() {
            node.items.push(format!(
                "/// Server traits, registration and clients for the services of `{}`.\n#[allow(clippy::too_many_arguments, unused_variables)]\n#[path = \"{dir}/{b}_rpc.rs\"]\npub mod {b}_rpc;",
                file.import_name,
                b = file.basename
            ));
        }
        for dep in &file.descriptor.dependency {
            if dep.starts_with("google/protobuf/") {
                continue;
            }
            let target = by_import
                .get(dep.as_str())
                .ok_or_else(|| format!("{}: import {dep} is not vendored", file.path))?;
            if target.module == file.module {
                continue;
            }
            let path = format!("crate::{}::{}", target.module, target.basename);
            let module_aliases = aliases.entry(file.module).or_default();
            match module_aliases.get(&target.basename) {
                Some(existing) if *existing != path => {
                    return Err(format!(
                        "module {}: alias {} would name both {existing} and {path}",
                        file.module, target.basename
                    )
                    .into())
                }
                _ => {
                    module_aliases.insert(target.basename.clone(), path);
                }
            }
        }
    }
    for (module, module_aliases) in &aliases {
        let mut node = &mut root;
        for part in module.split("::") {
            node = node.children.entry(part.to_string()).or_default();
        }
        for (name, path) in module_aliases {
            node.items
                .push(format!("#[allow(unused_imports)]\nuse {path} as {name};"));
        }
    }
    fn write(node: &Node, out: &mut String) {
        for item in &node.items {
            out.push_str(item);
            out.push('\n');
        }
        for (name, child) in &node.children {
            let _ = writeln!(out, "pub mod {name} {{");
            write(child, out);
            out.push_str("}\n");
        }
    }
    let mut out = String::from("// Generated by corral-protocols' build.rs; do not edit.\n");
    write(&root, &mut out);
    Ok(out)
}

#[derive(Clone, Copy)]
enum Kind {
    Unary,
    ServerStream,
    ClientStream,
    Bidi,
}

fn kind(m: &MethodDescriptorProto) -> Kind {
    match (m.client_streaming(), m.server_streaming()) {
        (false, false) => Kind::Unary,
        (false, true) => Kind::ServerStream,
        (true, false) => Kind::ClientStream,
        (true, true) => Kind::Bidi,
    }
}

/// The full list of `/service/method` paths and their kinds, for tests and introspection.
fn method_table(files: &[ProtoFile]) -> String {
    let mut out = String::from(
        "// Generated by corral-protocols' build.rs; do not edit.\n\
         /// Every method of every vendored service: its `/service/method` path and kind.\n\
         pub const METHODS: &[(&str, crate::rpc::MethodKind)] = &[\n",
    );
    for file in files {
        for svc in &file.descriptor.service {
            let full = qualified(file.descriptor.package(), svc.name());
            for m in &svc.method {
                let k = match kind(m) {
                    Kind::Unary => "Unary",
                    Kind::ServerStream => "ServerStream",
                    Kind::ClientStream => "ClientStream",
                    Kind::Bidi => "Bidi",
                };
                let _ = writeln!(
                    out,
                    "    (\"/{full}/{}\", crate::rpc::MethodKind::{k}),",
                    m.name()
                );
            }
        }
    }
    out.push_str("];\n");
    out
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_string()
    } else {
        format!("{package}.{name}")
    }
}

/// Maps a fully qualified proto type (".containerd.types.Mount") to its Rust path as seen from a
/// package module's `<file>_rpc` submodule.
fn rust_type(
    full: &str,
    file: &ProtoFile,
    by_import: &HashMap<&str, &ProtoFile>,
) -> BuildResult<String> {
    let full = full.trim_start_matches('.');
    if let Some(name) = full.strip_prefix("google.protobuf.") {
        let module = match name {
            "Empty" => "empty",
            "Any" => "any",
            "Timestamp" => "timestamp",
            "FieldMask" => "field_mask",
            other => return Err(format!("well-known type {other} is not mapped").into()),
        };
        return Ok(format!("::protobuf::well_known_types::{module}::{name}"));
    }
    let mut candidates = vec![file.descriptor];
    for dep in &file.descriptor.dependency {
        if let Some(f) = by_import.get(dep.as_str()) {
            candidates.push(f.descriptor);
        }
    }
    for fd in candidates {
        let prefix = if fd.package().is_empty() {
            String::new()
        } else {
            format!("{}.", fd.package())
        };
        if let Some(name) = full.strip_prefix(&prefix) {
            if fd.message_type.iter().any(|m| m.name() == name) {
                return Ok(format!("super::{}::{name}", basename(fd.name())));
            }
        }
    }
    Err(format!(
        "{}: type {full} not found among its file and imports",
        file.path
    )
    .into())
}

fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let acronym_end = i > 0
                && chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || acronym_end {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    const KEYWORDS: &[&str] = &[
        "type", "move", "ref", "match", "loop", "use", "mod", "impl", "fn", "in",
    ];
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

/// Writes one `<file>_rpc.rs`: for each service a trait, a registration function and a client.
fn services_code(file: &ProtoFile, by_import: &HashMap<&str, &ProtoFile>) -> BuildResult<String> {
    let mut out = String::from("// Generated by corral-protocols' build.rs; do not edit.\n");
    for svc in &file.descriptor.service {
        let name = svc.name();
        let full = qualified(file.descriptor.package(), name);
        let fn_name = snake_case(name);
        let _ = writeln!(out, "/// The proto service name of `{name}` on the wire.");
        let _ = writeln!(
            out,
            "pub const {}_SERVICE: &str = \"{full}\";\n",
            fn_name.trim_start_matches("r#").to_ascii_uppercase()
        );
        let svc_const = format!(
            "{}_SERVICE",
            fn_name.trim_start_matches("r#").to_ascii_uppercase()
        );

        // Server trait.
        let _ = writeln!(
            out,
            "/// Server side of `{full}`. Methods left unimplemented answer `Unimplemented`.\npub trait {name}: Send + Sync + 'static {{"
        );
        let mut registrations = String::new();
        let mut client_methods = String::new();
        let mut seen = BTreeSet::new();
        for m in &svc.method {
            let method = m.name();
            let rust = snake_case(method);
            if !seen.insert(rust.clone()) {
                return Err(format!("{full}: two methods map to {rust}").into());
            }
            let input = rust_type(m.input_type(), file, by_import)?;
            let output = rust_type(m.output_type(), file, by_import)?;
            let path = format!("/{full}/{method}");
            let unimpl =
                format!("Err(crate::rpc::Status::unimplemented(\"{path} is not implemented\"))");
            let (sig, reg, client) = match kind(m) {
                Kind::Unary => (
                    format!("fn {rust}(&self, ctx: &crate::rpc::RequestContext, req: {input}) -> crate::rpc::RpcResult<{output}>"),
                    format!("service.unary({svc_const}, \"{method}\", move |ctx, req| s.{rust}(ctx, req));"),
                    format!(
                        "    /// Calls `{path}`.\n    pub fn {rust}(&self, ctx: &crate::rpc::CallContext, req: &{input}) -> crate::rpc::RpcResult<{output}> {{\n        self.client.unary(ctx, {svc_const}, \"{method}\", req)\n    }}\n"
                    ),
                ),
                Kind::ServerStream => (
                    format!("fn {rust}(&self, ctx: &crate::rpc::RequestContext, req: {input}, out: &crate::rpc::StreamSender<{output}>) -> crate::rpc::RpcResult<()>"),
                    format!("service.server_stream({svc_const}, \"{method}\", move |ctx, req, out| s.{rust}(ctx, req, out));"),
                    format!(
                        "    /// Opens the server stream `{path}`.\n    pub fn {rust}(&self, ctx: &crate::rpc::CallContext, req: &{input}) -> crate::rpc::RpcResult<crate::rpc::ServerStreamReader<{output}>> {{\n        self.client.server_stream(ctx, {svc_const}, \"{method}\", req)\n    }}\n"
                    ),
                ),
                Kind::ClientStream => (
                    format!("fn {rust}(&self, ctx: &crate::rpc::RequestContext, input: &mut crate::rpc::StreamReceiver<{input}>) -> crate::rpc::RpcResult<{output}>"),
                    format!("service.client_stream({svc_const}, \"{method}\", move |ctx, input| s.{rust}(ctx, input));"),
                    format!(
                        "    /// Opens the client stream `{path}`.\n    pub fn {rust}(&self, ctx: &crate::rpc::CallContext) -> crate::rpc::RpcResult<crate::rpc::ClientStreamWriter<{input}, {output}>> {{\n        self.client.client_stream(ctx, {svc_const}, \"{method}\")\n    }}\n"
                    ),
                ),
                Kind::Bidi => (
                    format!("fn {rust}(&self, ctx: &crate::rpc::RequestContext, input: &mut crate::rpc::StreamReceiver<{input}>, out: &crate::rpc::StreamSender<{output}>) -> crate::rpc::RpcResult<()>"),
                    format!("service.bidi({svc_const}, \"{method}\", move |ctx, input, out| s.{rust}(ctx, input, out));"),
                    format!(
                        "    /// Opens the bidirectional stream `{path}`.\n    pub fn {rust}(&self, ctx: &crate::rpc::CallContext) -> crate::rpc::RpcResult<crate::rpc::BidiStream<{input}, {output}>> {{\n        self.client.bidi(ctx, {svc_const}, \"{method}\")\n    }}\n"
                    ),
                ),
            };
            let _ = writeln!(
                out,
                "    /// Serves `{path}`.\n    {sig} {{\n        {unimpl}\n    }}"
            );
            let _ = writeln!(
                registrations,
                "    {{\n        let s = ::std::sync::Arc::clone(&svc);\n        {reg}\n    }}"
            );
            client_methods.push_str(&client);
        }
        out.push_str("}\n\n");

        let _ = writeln!(
            out,
            "/// Registers every method of `{full}` on `service`, dispatching to `svc`.\npub fn register_{fn}(service: &mut crate::rpc::ServiceSet, svc: ::std::sync::Arc<dyn {name}>) {{\n{registrations}}}\n",
            fn = fn_name.trim_start_matches("r#")
        );
        let _ = writeln!(
            out,
            "/// Client of `{full}`.\n#[derive(Clone)]\npub struct {name}Client {{\n    client: crate::rpc::Client,\n}}\n\nimpl {name}Client {{\n    /// Wraps a connected client.\n    pub fn new(client: crate::rpc::Client) -> Self {{\n        Self {{ client }}\n    }}\n\n{client_methods}}}\n"
        );
    }
    Ok(out)
}

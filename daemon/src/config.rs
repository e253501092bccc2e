//! corrald's configuration file: containerd's `version = 2` format, with containerd's key
//! names where a key means the same thing, and Corral's own keys under `[corral]`.
//!
//! ```toml
//! version = 2
//! root = "/var/lib/corral"
//! state = "/run/corral"
//! disabled_plugins = []
//!
//! [ttrpc]
//!   address = "/run/corral/corral.sock"
//!   uid = 0
//!   gid = 0
//!
//! [debug]
//!   level = "info"
//!
//! [timeouts]
//!   "io.containerd.timeout.shim.shutdown" = "3s"
//!
//! [corral]
//!   max_in_flight = 1024
//!   shim = "io.containerd.corral.v2"
//!   shutdown_grace = "10s"
//! ```
//!
//! `[grpc]` (Corral serves no gRPC) and `[plugins]` (kept as read, for plugins that may use
//! them) are accepted so a containerd config file loads; every other unknown key, and every
//! value of the wrong type, is an error naming the file, the line and the key.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where corrald looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/corral/config.toml";
/// The daemon root (persistent).
pub const DEFAULT_ROOT: &str = "/var/lib/corral";
/// The daemon state (tmpfs).
pub const DEFAULT_STATE: &str = "/run/corral";
/// The daemon's ttrpc socket.
pub const DEFAULT_ADDRESS: &str = "/run/corral/corral.sock";
/// The default runtime (shim) name.
pub const DEFAULT_SHIM: &str = "io.containerd.corral.v2";
/// Calls in flight at once before `ResourceExhausted`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// How long a stopping daemon lets calls in flight finish.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// containerd 1.6's timeouts and their defaults.
pub const DEFAULT_TIMEOUTS: &[(&str, &str)] = &[
    ("io.containerd.timeout.bolt.open", "0s"),
    ("io.containerd.timeout.shim.cleanup", "5s"),
    ("io.containerd.timeout.shim.load", "5s"),
    ("io.containerd.timeout.shim.shutdown", "3s"),
    ("io.containerd.timeout.task.state", "2s"),
];
/// The log levels `[debug] level` and `--log-level` accept (containerd's).
pub const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic",
];

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// Bad syntax, an unknown key or a bad value; `line` is 1-based (0 = the whole file).
    #[error("{}{}: {message}", path.display(), line_suffix(*line))]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// corrald's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The file format; must be 2 (containerd's version 2). Missing reads as 0.
    #[serde(default)]
    pub version: i64,
    /// Persistent state (metadata, content, snapshots).
    pub root: PathBuf,
    /// Runtime state (sockets, task bundles); a tmpfs.
    pub state: PathBuf,
    /// Plugin URIs not to load (e.g. `io.containerd.grpc.v1.cri`).
    pub disabled_plugins: Vec<String>,
    /// Plugin URIs that must load.
    pub required_plugins: Vec<String>,
    /// containerd's gRPC endpoint: accepted for compatibility, not served.
    pub grpc: GrpcConfig,
    /// The socket corrald serves containerd's API on.
    pub ttrpc: TtrpcConfig,
    pub debug: DebugConfig,
    /// containerd's named timeouts, as Go duration strings (`"5s"`, `"100ms"`).
    pub timeouts: BTreeMap<String, String>,
    /// Per-plugin settings, kept as read.
    pub plugins: toml::Table,
    /// Corral's own settings.
    pub corral: CorralConfig,
}

/// `[grpc]`: read for compatibility with containerd's files; Corral serves no gRPC.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    pub address: String,
    pub tcp_address: String,
    pub tcp_tls_ca: String,
    pub tcp_tls_cert: String,
    pub tcp_tls_key: String,
    pub uid: u32,
    pub gid: u32,
    pub max_recv_message_size: u64,
    pub max_send_message_size: u64,
}

/// `[ttrpc]`: the daemon's socket and its owner.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtrpcConfig {
    /// A path, `unix:///path` or `unix://@abstract`.
    pub address: String,
    pub uid: u32,
    pub gid: u32,
}

/// `[debug]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// One of [`LOG_LEVELS`]; empty means `info`.
    pub level: String,
}

/// `[corral]`: Corral's own settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorralConfig {
    /// Calls in flight at once over all connections; beyond it calls get `ResourceExhausted`.
    pub max_in_flight: usize,
    /// The runtime used when a container names none.
    pub shim: String,
    /// How long a stopping daemon waits for calls in flight (a Go duration string).
    pub shutdown_grace: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: 2,
            root: PathBuf::from(DEFAULT_ROOT),
            state: PathBuf::from(DEFAULT_STATE),
            disabled_plugins: Vec::new(),
            required_plugins: Vec::new(),
            grpc: GrpcConfig::default(),
            ttrpc: TtrpcConfig::default(),
            debug: DebugConfig::default(),
            timeouts: DEFAULT_TIMEOUTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            plugins: default_plugins(),
            corral: CorralConfig::default(),
        }
    }
}

impl Default for TtrpcConfig {
    fn default() -> Self {
        TtrpcConfig {
            address: DEFAULT_ADDRESS.into(),
            uid: 0,
            gid: 0,
        }
    }
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            level: "info".into(),
        }
    }
}

/// The plugin tables corrald reads (containerd's keys, containerd's defaults).
pub const GC_PLUGIN: &str = "io.containerd.gc.v1.scheduler";
pub const BOLT_PLUGIN: &str = "io.containerd.metadata.v1.bolt";
pub const OVERLAY_PLUGIN: &str = "io.containerd.snapshotter.v1.overlayfs";

/// The plugin tables a file without them stands for (containerd's defaults).
const DEFAULT_PLUGIN_TABLES: &str = r#"
["io.containerd.gc.v1.scheduler"]
pause_threshold = 0.02
deletion_threshold = 0
mutation_threshold = 100
schedule_delay = "0s"
startup_delay = "100ms"

["io.containerd.metadata.v1.bolt"]
content_sharing_policy = "shared"

["io.containerd.snapshotter.v1.overlayfs"]
root_path = ""
upperdir_label = false
"#;

fn default_plugins() -> toml::Table {
    toml::from_str(DEFAULT_PLUGIN_TABLES).unwrap_or_default()
}

/// `[plugins."io.containerd.gc.v1.scheduler"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcPluginConfig {
    pub pause_threshold: f64,
    pub deletion_threshold: u32,
    pub mutation_threshold: u32,
    pub schedule_delay: String,
    pub startup_delay: String,
}

impl Default for GcPluginConfig {
    fn default() -> Self {
        GcPluginConfig {
            pause_threshold: 0.02,
            deletion_threshold: 0,
            mutation_threshold: 100,
            schedule_delay: "0s".into(),
            startup_delay: "100ms".into(),
        }
    }
}

/// `[plugins."io.containerd.metadata.v1.bolt"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoltPluginConfig {
    /// `shared` (a namespace may claim a blob another namespace wrote, by digest) or
    /// `isolated`.
    pub content_sharing_policy: String,
}

impl Default for BoltPluginConfig {
    fn default() -> Self {
        BoltPluginConfig {
            content_sharing_policy: "shared".into(),
        }
    }
}

/// `[plugins."io.containerd.snapshotter.v1.overlayfs"]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverlayPluginConfig {
    /// Where the snapshotter keeps its store ("": `<root>/io.containerd.snapshotter.v1.overlayfs`).
    pub root_path: String,
    /// Report each snapshot's upper dir in a label.
    pub upperdir_label: bool,
}

impl Default for CorralConfig {
    fn default() -> Self {
        CorralConfig {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shim: DEFAULT_SHIM.into(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE.into(),
        }
    }
}

impl Config {
    /// Loads `path`. A missing file is the defaults when `explicit` is false (the default
    /// path), an error when the user named it.
    pub fn load_from(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Loads `path`; a missing file means the defaults only at [`DEFAULT_CONFIG_PATH`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_from(path, path != Path::new(DEFAULT_CONFIG_PATH))
    }

    /// Parses and checks the text of a file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |line: usize, message: String| ConfigError::Invalid {
            path: path.into(),
            line,
            message,
        };
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, message) = describe_toml_error(text, &e);
            invalid(line, message)
        })?;
        let at = |table: &str, key: &str| key_line(text, table, key);
        match config.version {
            2 => {}
            0 if at("", "version") == 0 => {
                return Err(invalid(
                    0,
                    "version = 2 is required (containerd's version 2 format)".into(),
                ))
            }
            v => {
                return Err(invalid(
                    at("", "version"),
                    format!("key \"version\": version {v} is not supported; use version = 2"),
                ))
            }
        }
        for (table, key, value) in [("", "root", &config.root), ("", "state", &config.state)] {
            if !value.is_absolute() {
                return Err(invalid(
                    at(table, key),
                    format!("key {key:?}: {value:?} is not an absolute path"),
                ));
            }
        }
        if let Err(e) = corral_protocols::rpc::Address::parse(&config.ttrpc.address) {
            return Err(invalid(
                at("ttrpc", "address"),
                format!("key \"ttrpc.address\": {e}"),
            ));
        }
        if config.debug.level.is_empty() {
            config.debug.level = "info".into();
        }
        if log_level(&config.debug.level).is_none() {
            return Err(invalid(
                at("debug", "level"),
                format!(
                    "key \"debug.level\": unknown level {:?} (one of {})",
                    config.debug.level,
                    LOG_LEVELS.join(", ")
                ),
            ));
        }
        for (name, value) in &config.timeouts {
            if let Err(e) = parse_duration(value) {
                return Err(invalid(
                    at("timeouts", name),
                    format!("key \"timeouts.{name}\": {e}"),
                ));
            }
        }
        for (name, value) in DEFAULT_TIMEOUTS {
            config
                .timeouts
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
        for (id, table) in default_plugins() {
            config.plugins.entry(id).or_insert(table);
        }
        config
            .check_plugins(text)
            .map_err(|(line, m)| invalid(line, m))?;
        if config.corral.max_in_flight == 0 {
            return Err(invalid(
                at("corral", "max_in_flight"),
                "key \"corral.max_in_flight\": must be at least 1".into(),
            ));
        }
        if config.corral.shim.is_empty() {
            return Err(invalid(
                at("corral", "shim"),
                "key \"corral.shim\": must not be empty".into(),
            ));
        }
        if let Err(e) = parse_duration(&config.corral.shutdown_grace) {
            return Err(invalid(
                at("corral", "shutdown_grace"),
                format!("key \"corral.shutdown_grace\": {e}"),
            ));
        }
        Ok(config)
    }

    /// A known plugin's table, typed (its defaults when the file has none).
    fn plugin<T: Default + serde::de::DeserializeOwned>(&self, id: &str) -> Result<T, String> {
        match self.plugins.get(id) {
            None => Ok(T::default()),
            Some(v) => v.clone().try_into().map_err(|e| e.message().to_string()),
        }
    }

    /// Checks the plugin tables corrald reads; an error names the line and key.
    fn check_plugins(&self, text: &str) -> Result<(), (usize, String)> {
        let table = |id: &str| format!("plugins.{id}");
        let header = |id: &str| {
            text.lines()
                .position(|l| table_header(l).as_deref() == Some(table(id).as_str()))
                .map_or(0, |i| i + 1)
        };
        let fail = |id: &str, e: String| (header(id), format!("table \"plugins.{id}\": {e}"));
        let gc: GcPluginConfig = self.plugin(GC_PLUGIN).map_err(|e| fail(GC_PLUGIN, e))?;
        for (key, value) in [
            ("schedule_delay", &gc.schedule_delay),
            ("startup_delay", &gc.startup_delay),
        ] {
            if let Err(e) = parse_duration(value) {
                let line = key_line(text, &table(GC_PLUGIN), key);
                return Err((line, format!("key \"{key}\" of plugins.{GC_PLUGIN}: {e}")));
            }
        }
        if !(gc.pause_threshold > 0.0 && gc.pause_threshold <= 0.5) {
            let line = key_line(text, &table(GC_PLUGIN), "pause_threshold");
            return Err((
                line,
                format!(
                    "key \"pause_threshold\" of plugins.{GC_PLUGIN}: {} is not in (0, 0.5]",
                    gc.pause_threshold
                ),
            ));
        }
        let bolt: BoltPluginConfig = self.plugin(BOLT_PLUGIN).map_err(|e| fail(BOLT_PLUGIN, e))?;
        if !matches!(bolt.content_sharing_policy.as_str(), "shared" | "isolated") {
            let line = key_line(text, &table(BOLT_PLUGIN), "content_sharing_policy");
            return Err((
                line,
                format!(
                    "key \"content_sharing_policy\" of plugins.{BOLT_PLUGIN}: {:?} is not \
                     \"shared\" or \"isolated\"",
                    bolt.content_sharing_policy
                ),
            ));
        }
        let _: OverlayPluginConfig = self
            .plugin(OVERLAY_PLUGIN)
            .map_err(|e| fail(OVERLAY_PLUGIN, e))?;
        Ok(())
    }

    /// The garbage collector's schedule.
    pub fn gc(&self) -> crate::gc::GcConfig {
        let p: GcPluginConfig = self.plugin(GC_PLUGIN).unwrap_or_default();
        let d = |v: &str, fallback| parse_duration(v).unwrap_or(fallback);
        crate::gc::GcConfig {
            pause_threshold: p.pause_threshold,
            deletion_threshold: p.deletion_threshold,
            mutation_threshold: p.mutation_threshold,
            schedule_delay: d(&p.schedule_delay, Duration::ZERO),
            startup_delay: d(&p.startup_delay, Duration::from_millis(100)),
        }
    }

    /// Whether namespaces share blobs by digest (`content_sharing_policy = "shared"`).
    pub fn content_shared(&self) -> bool {
        let p: BoltPluginConfig = self.plugin(BOLT_PLUGIN).unwrap_or_default();
        p.content_sharing_policy != "isolated"
    }

    /// The overlayfs snapshotter's settings.
    pub fn overlay(&self) -> OverlayPluginConfig {
        self.plugin(OVERLAY_PLUGIN).unwrap_or_default()
    }

    /// The full default configuration, as `corrald config default` prints it.
    pub fn default_toml() -> String {
        let d = Config::default();
        let mut timeouts = String::new();
        for (k, v) in &d.timeouts {
            timeouts.push_str(&format!("  {} = {}\n", quote(k), quote(v)));
        }
        format!(
            "# corrald's configuration: containerd's version 2 format and key names.\n\
             version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = []\n\
             required_plugins = []\n\
             \n\
             # containerd's gRPC endpoint: accepted, not served (Corral speaks ttrpc only).\n\
             [grpc]\n\
             \x20 address = \"\"\n\
             \x20 uid = 0\n\
             \x20 gid = 0\n\
             \n\
             # The socket corrald serves containerd's API on: parent directory 0711,\n\
             # socket 0660, owned by uid:gid.\n\
             [ttrpc]\n\
             \x20 address = {address}\n\
             \x20 uid = {uid}\n\
             \x20 gid = {gid}\n\
             \n\
             [debug]\n\
             \x20 # trace, debug, info, warn, error\n\
             \x20 level = {level}\n\
             \n\
             [timeouts]\n\
             {timeouts}\
             \n\
             [plugins]\n\
             \x20 [plugins.\"io.containerd.gc.v1.scheduler\"]\n\
             \x20   pause_threshold = 0.02\n\
             \x20   deletion_threshold = 0\n\
             \x20   mutation_threshold = 100\n\
             \x20   schedule_delay = \"0s\"\n\
             \x20   startup_delay = \"100ms\"\n\
             \x20 [plugins.\"io.containerd.metadata.v1.bolt\"]\n\
             \x20   content_sharing_policy = \"shared\"\n\
             \x20 [plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\n\
             \x20   root_path = \"\"\n\
             \x20   upperdir_label = false\n\
             \n\
             # Corral's own settings.\n\
             [corral]\n\
             \x20 # calls in flight at once; beyond it calls get ResourceExhausted\n\
             \x20 max_in_flight = {max_in_flight}\n\
             \x20 # the runtime of a container that names none\n\
             \x20 shim = {shim}\n\
             \x20 # how long a stopping daemon lets calls in flight finish\n\
             \x20 shutdown_grace = {grace}\n",
            root = quote(&d.root.to_string_lossy()),
            state = quote(&d.state.to_string_lossy()),
            address = quote(&d.ttrpc.address),
            uid = d.ttrpc.uid,
            gid = d.ttrpc.gid,
            level = quote(&d.debug.level),
            max_in_flight = d.corral.max_in_flight,
            shim = quote(&d.corral.shim),
            grace = quote(&d.corral.shutdown_grace),
        )
    }

    /// The `log` level filter of `[debug] level`.
    pub fn log_level(&self) -> log::LevelFilter {
        log_level(&self.debug.level).unwrap_or(log::LevelFilter::Info)
    }

    /// A named timeout (`io.containerd.timeout.shim.load`), or `fallback` when unset.
    pub fn timeout(&self, name: &str, fallback: Duration) -> Duration {
        self.timeouts
            .get(name)
            .and_then(|v| parse_duration(v).ok())
            .unwrap_or(fallback)
    }

    /// `[corral] shutdown_grace` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        parse_duration(&self.corral.shutdown_grace).unwrap_or(Duration::from_secs(10))
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A containerd log level as a `log` filter.
pub fn log_level(level: &str) -> Option<log::LevelFilter> {
    use log::LevelFilter;
    Some(match level.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::Trace,
        "debug" => LevelFilter::Debug,
        "" | "info" => LevelFilter::Info,
        "warn" | "warning" => LevelFilter::Warn,
        "error" | "fatal" | "panic" => LevelFilter::Error,
        "off" => LevelFilter::Off,
        _ => return None,
    })
}

/// Go duration strings, shared with corralctl.
pub use corral_protocols::duration::parse_duration;

/// 1-based line of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted table a `[header]` line opens, or `None` for other lines.
fn table_header(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t
        .strip_prefix("[[")
        .and_then(|r| r.split("]]").next())
        .or_else(|| t.strip_prefix('[').and_then(|r| r.split(']').next()))?;
    Some(normalize_key(inner))
}

/// A dotted key with quotes and spaces around its parts removed.
fn normalize_key(key: &str) -> String {
    key.split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\''))
        .collect::<Vec<_>>()
        .join(".")
}

/// The dotted key an error on line `line` (1-based) is about: the table open there plus the
/// key before `=` on that line (or the table itself, for a header line).
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        if i + 1 == line {
            if let Some(h) = table_header(l) {
                return Some(h);
            }
            let (key, _) = l.split_once('=')?;
            let key = normalize_key(key);
            return Some(if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            });
        }
        if let Some(h) = table_header(l) {
            table = h;
        }
    }
    None
}

/// The 1-based line where `key` is set in `table` ("" = top level), or 0 when it is not.
fn key_line(text: &str, table: &str, key: &str) -> usize {
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(h) = table_header(l) {
            current = h;
            continue;
        }
        let Some((k, _)) = l.split_once('=') else {
            continue;
        };
        let k = normalize_key(k);
        let full = if current.is_empty() {
            k
        } else {
            format!("{current}.{k}")
        };
        let want = if table.is_empty() {
            key.to_string()
        } else {
            format!("{table}.{key}")
        };
        if full == want {
            return i + 1;
        }
    }
    0
}

/// The line and a message for a TOML or type error, naming the key where one is known.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> (usize, String) {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return (0, message);
    };
    let line = line_of(text, span.start);
    // serde's "unknown field `x`, expected one of ..." becomes `unknown key "table.x"`.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let key = key_at_line(text, line)
            .filter(|k| k == field || k.ends_with(&format!(".{field}")))
            .or_else(|| {
                // The key sits in a table header or an inline table: name it with its table.
                key_at_line(text, line).map(|k| format!("{k}.{field}"))
            })
            .unwrap_or_else(|| field.to_string());
        return (line, format!("unknown key {key:?}"));
    }
    match key_at_line(text, line) {
        Some(key) if !key.is_empty() => (line, format!("key {key:?}: {message}")),
        _ => (line, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/corral/config.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn default_toml_loads_back_to_the_defaults() {
        let text = Config::default_toml();
        assert_eq!(parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn minimal_file_is_the_defaults() {
        assert_eq!(parse("version = 2\n").unwrap(), Config::default());
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "version = 2\nroot = \"/r\"\nstate = \"/s\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [ttrpc]\n  address = \"unix:///s/x.sock\"\n  uid = 1000\n  gid = 1001\n\
             [debug]\n  level = \"debug\"\n\
             [timeouts]\n  \"io.containerd.timeout.shim.load\" = \"7s\"\n\
             [plugins.\"io.containerd.gc.v1.scheduler\"]\n  pause_threshold = 0.02\n\
             [corral]\n  max_in_flight = 8\n",
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.state, PathBuf::from("/s"));
        assert_eq!(c.disabled_plugins, vec!["io.containerd.grpc.v1.cri"]);
        assert_eq!(c.ttrpc.address, "unix:///s/x.sock");
        assert_eq!((c.ttrpc.uid, c.ttrpc.gid), (1000, 1001));
        assert_eq!(c.log_level(), log::LevelFilter::Debug);
        assert_eq!(
            c.timeout("io.containerd.timeout.shim.load", Duration::ZERO),
            Duration::from_secs(7)
        );
        // Unset timeouts keep containerd's defaults.
        assert_eq!(
            c.timeout("io.containerd.timeout.shim.shutdown", Duration::ZERO),
            Duration::from_secs(3)
        );
        assert_eq!(c.corral.max_in_flight, 8);
        assert_eq!(c.corral.shim, DEFAULT_SHIM);
        assert!(c.plugins.contains_key("io.containerd.gc.v1.scheduler"));
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let text = "version = 2\n\n[grpc]\n  address = \"\"\n\n\n  adress = \"/x\"\n";
        assert_eq!(
            parse(text).unwrap_err(),
            "/etc/corral/config.toml:7: unknown key \"grpc.adress\""
        );
        assert_eq!(
            parse("version = 2\nrooot = \"/x\"\n").unwrap_err(),
            "/etc/corral/config.toml:2: unknown key \"rooot\""
        );
        assert_eq!(
            parse("version = 2\n[ttrpc]\nuid = 0\n[ttrcp]\naddress = \"/x\"\n").unwrap_err(),
            "/etc/corral/config.toml:4: unknown key \"ttrcp\""
        );
        assert_eq!(
            parse("version = 2\n[corral]\nmax_inflight = 3\n").unwrap_err(),
            "/etc/corral/config.toml:3: unknown key \"corral.max_inflight\""
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = parse("version = 2\n[ttrpc]\nuid = \"root\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/corral/config.toml:3: key \"ttrpc.uid\": "),
            "{e}"
        );
        let e = parse("version = 2\n[debug]\nlevel = \"loud\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/corral/config.toml:3: key \"debug.level\": unknown level"),
            "{e}"
        );
        let e = parse("version = 2\n[timeouts]\n\"io.containerd.timeout.shim.load\" = \"5 s\"\n")
            .unwrap_err();
        assert!(
            e.starts_with(
                "/etc/corral/config.toml:3: key \"timeouts.io.containerd.timeout.shim.load\": invalid duration"
            ),
            "{e}"
        );
        let e = parse("version = 1\n").unwrap_err();
        assert!(
            e.starts_with("/etc/corral/config.toml:1: key \"version\""),
            "{e}"
        );
        let e = parse("root = \"/x\"\n").unwrap_err();
        assert!(e.contains("version = 2 is required"), "{e}");
        let e = parse("version = 2\nroot = \"relative\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/corral/config.toml:2: key \"root\""),
            "{e}"
        );
        let e = parse("version = 2\n[ttrpc]\naddress = \"tcp://1.2.3.4:5\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/corral/config.toml:3: key \"ttrpc.address\""),
            "{e}"
        );
        let e = parse("version = 2\n[corral]\nmax_in_flight = 0\n").unwrap_err();
        assert!(e.starts_with("/etc/corral/config.toml:3:"), "{e}");
        let e = parse("version = 2\nroot = \n").unwrap_err();
        assert!(e.starts_with("/etc/corral/config.toml:2"), "{e}");
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.toml");
        assert_eq!(
            Config::load_from(&missing, false).unwrap(),
            Config::default()
        );
        let e = Config::load_from(&missing, true).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        assert!(Config::load(&missing).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "5", "s", "-1s", "5 s", "1d", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plugin_tables_are_typed_and_checked() {
        let c = parse(
            "version = 2\n[plugins]\n  [plugins.\"io.containerd.gc.v1.scheduler\"]\n    \
             pause_threshold = 0.1\n    startup_delay = \"1h\"\n    deletion_threshold = 1\n  \
             [plugins.\"io.containerd.metadata.v1.bolt\"]\n    \
             content_sharing_policy = \"isolated\"\n",
        )
        .unwrap();
        let gc = c.gc();
        assert_eq!(gc.pause_threshold, 0.1);
        assert_eq!(gc.startup_delay, Duration::from_secs(3600));
        assert_eq!(gc.deletion_threshold, 1);
        assert_eq!(
            gc.mutation_threshold, 100,
            "unset keys keep containerd's defaults"
        );
        assert!(!c.content_shared());
        assert!(!c.overlay().upperdir_label);
        for (text, line, want) in [
            (
                "version = 2\n[plugins.\"io.containerd.metadata.v1.bolt\"]\n  content_sharing_policy = \"open\"\n",
                3,
                "content_sharing_policy",
            ),
            (
                "version = 2\n[plugins.\"io.containerd.gc.v1.scheduler\"]\n  schedule_delay = \"soon\"\n",
                3,
                "schedule_delay",
            ),
            (
                "version = 2\n[plugins.\"io.containerd.gc.v1.scheduler\"]\n  pause_threshold = 0.9\n",
                3,
                "pause_threshold",
            ),
            (
                "version = 2\n\n[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\n  upperdir = true\n",
                3,
                "upperdir",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("config.toml:{line}:")), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }
}

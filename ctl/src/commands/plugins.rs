//! `corralctl plugins` (`plugin`): what corrald reports about its plugins.

use clap::Subcommand;
use corral_protocols::services::introspection::v1::introspection::{Plugin, PluginsRequest};
use corral_protocols::services::introspection::v1::introspection_rpc::IntrospectionClient;
use corral_protocols::types::platform::Platform;

use super::format::tabwrite;
use super::{CtlResult, Env};

/// The subcommands of `plugins`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// lists containerd plugins
    #[command(visible_alias = "ls")]
    List {
        /// print only the plugin ids
        #[arg(short, long)]
        quiet: bool,
        /// print detailed information about each plugin
        #[arg(short, long)]
        detailed: bool,
        /// Filters, as containerd reads them (e.g. type==io.containerd.service.v1).
        filters: Vec<String>,
    },
}

/// Runs one `plugins` subcommand.
pub fn run(env: &Env, cmd: PluginsCommand) -> CtlResult {
    let PluginsCommand::List {
        quiet,
        detailed,
        filters,
    } = cmd;
    let client = IntrospectionClient::new(env.connect()?);
    let mut req = PluginsRequest::new();
    req.filters = filters;
    let resp = client.plugins(&env.ctx, &req)?;
    print!("{}", list_output(&resp.plugins, quiet, detailed));
    Ok(())
}

fn pretty_platforms(platforms: &[Platform]) -> String {
    let mut ps: Vec<String> = platforms
        .iter()
        .map(|p| {
            let os = if p.os.is_empty() { "unknown" } else { &p.os };
            let mut s = format!("{os}/{}", p.architecture);
            if !p.variant.is_empty() {
                s.push('/');
                s.push_str(&p.variant);
            }
            s
        })
        .collect();
    ps.sort();
    ps.dedup();
    ps.join(",")
}

fn status(p: &Plugin) -> &'static str {
    match p.init_err.as_ref() {
        None => "ok",
        Some(e) if e.message.contains("skip plugin") => "skip",
        Some(_) => "error",
    }
}

/// `plugins list` output: ids, ctr's TYPE ID PLATFORMS STATUS table, or its detailed form.
pub fn list_output(plugins: &[Plugin], quiet: bool, detailed: bool) -> String {
    if quiet {
        return plugins.iter().map(|p| format!("{}\n", p.id)).collect();
    }
    let mut text = String::new();
    if detailed {
        for (i, p) in plugins.iter().enumerate() {
            if i > 0 {
                text.push_str("\t\t\t\n");
            }
            text.push_str(&format!("Type:\t {}\n", p.type_));
            text.push_str(&format!("ID:\t {}\n", p.id));
            if !p.requires.is_empty() {
                text.push_str("Requires:\t\n");
                for r in &p.requires {
                    text.push_str(&format!("\t {r}\n"));
                }
            }
            if !p.platforms.is_empty() {
                text.push_str(&format!(
                    "Platforms:\t {}\n",
                    pretty_platforms(&p.platforms)
                ));
            }
            if !p.exports.is_empty() {
                text.push_str("Exports:\t\n");
                let mut exports: Vec<_> = p.exports.iter().collect();
                exports.sort();
                for (k, v) in exports {
                    text.push_str(&format!("\t {k} \t {v}\n"));
                }
            }
            if !p.capabilities.is_empty() {
                text.push_str(&format!("Capabilities:\t {}\n", p.capabilities.join(",")));
            }
            if let Some(e) = p.init_err.as_ref() {
                text.push_str("Error:\t\n");
                text.push_str(&format!("\t Code:\t {}\n", code_name(e.code)));
                text.push_str(&format!("\t Message:\t {}\n", e.message));
            }
        }
        return tabwrite(&text, 4, 4);
    }
    text.push_str("TYPE\tID\tPLATFORMS\tSTATUS\t\n");
    for p in plugins {
        let platforms = if p.platforms.is_empty() {
            "-".to_string()
        } else {
            pretty_platforms(&p.platforms)
        };
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t\n",
            p.type_,
            p.id,
            platforms,
            status(p)
        ));
    }
    tabwrite(&text, 4, 4)
}

/// gRPC's name for a code, as Go's `codes.Code` prints it.
fn code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("Code({code})"), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(type_: &str, id: &str) -> Plugin {
        let mut p = Plugin::new();
        p.type_ = type_.into();
        p.id = id.into();
        p
    }

    #[test]
    fn list_prints_ctrs_table() {
        let mut a = plugin("io.containerd.service.v1", "namespaces-service");
        let mut b = plugin("io.containerd.runtime.v2", "task");
        let mut plat = Platform::new();
        plat.os = "linux".into();
        plat.architecture = "amd64".into();
        b.platforms.push(plat.clone());
        b.platforms.push(plat);
        let mut err = corral_protocols::google::rpc::status::Status::new();
        err.code = 9;
        err.message = "no shim: skip plugin".into();
        a.init_err = Some(err).into();
        let out = list_output(&[a.clone(), b.clone()], false, false);
        assert_eq!(
            out,
            "TYPE                        ID                    PLATFORMS      STATUS    \n\
             io.containerd.service.v1    namespaces-service    -              skip      \n\
             io.containerd.runtime.v2    task                  linux/amd64    ok        \n"
        );
        assert_eq!(
            list_output(&[a.clone()], true, false),
            "namespaces-service\n"
        );
        let detailed = list_output(&[a, b], false, true);
        assert!(
            detailed.contains("Type:          io.containerd.service.v1\n"),
            "{detailed}"
        );
        assert!(detailed.contains("Code:"), "{detailed}");
        assert!(detailed.contains("FailedPrecondition"), "{detailed}");
        assert!(
            detailed.contains("Platforms:     linux/amd64\n"),
            "{detailed}"
        );
    }
}

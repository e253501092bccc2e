//! `corralctl namespaces` (`namespace`, `ns`): create, list, remove and label namespaces.

use clap::Subcommand;
use corral_protocols::rpc::Code;
use corral_protocols::services::namespaces::v1::namespace::{
    CreateNamespaceRequest, DeleteNamespaceRequest, ListNamespacesRequest, Namespace,
    UpdateNamespaceRequest,
};
use corral_protocols::services::namespaces::v1::namespace_rpc::NamespacesClient;
use protobuf::well_known_types::field_mask::FieldMask;

use super::format::tabwrite;
use super::{join_labels, parse_labels, status_message, CtlError, CtlResult, Env};

/// The subcommands of `namespaces`.
#[derive(Debug, Subcommand)]
pub enum NamespacesCommand {
    /// create a new namespace
    #[command(visible_alias = "c")]
    Create {
        /// The namespace's name.
        name: String,
        /// Labels, KEY=VALUE.
        labels: Vec<String>,
    },
    /// list namespaces
    #[command(visible_alias = "ls")]
    List {
        /// print only the namespace name
        #[arg(short, long)]
        quiet: bool,
    },
    /// remove one or more namespaces
    #[command(visible_alias = "rm")]
    Remove {
        /// delete the namespace's cgroup (accepted; corrald keeps no namespace cgroups)
        #[arg(short, long)]
        cgroup: bool,
        /// The namespaces to remove.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// set and clear labels for a namespace
    Label {
        /// The namespace's name.
        name: String,
        /// Labels, KEY=VALUE; an empty value clears the label.
        labels: Vec<String>,
    },
}

/// Runs one `namespaces` subcommand.
pub fn run(env: &Env, cmd: NamespacesCommand) -> CtlResult {
    let client = NamespacesClient::new(env.connect()?);
    match cmd {
        NamespacesCommand::Create { name, labels } => {
            let mut ns = Namespace::new();
            ns.name = name;
            ns.labels = parse_labels(&labels).into_iter().collect();
            let mut req = CreateNamespaceRequest::new();
            req.namespace = Some(ns).into();
            client.create(&env.ctx, &req)?;
            Ok(())
        }
        NamespacesCommand::List { quiet } => {
            let resp = client.list(&env.ctx, &ListNamespacesRequest::new())?;
            print!("{}", list_output(&resp.namespaces, quiet));
            Ok(())
        }
        NamespacesCommand::Remove { cgroup: _, names } => {
            let mut first_err = None;
            for name in names {
                let mut req = DeleteNamespaceRequest::new();
                req.name = name.clone();
                match client.delete(&env.ctx, &req) {
                    Ok(_) => println!("{name}"),
                    Err(s) if s.code() == Code::NOT_FOUND => println!("{name}"),
                    Err(s) => {
                        let msg = format!("unable to delete {name}: {}", status_message(&s));
                        log::error!("{msg}");
                        first_err.get_or_insert(CtlError(msg));
                    }
                }
            }
            first_err.map_or(Ok(()), Err)
        }
        NamespacesCommand::Label { name, labels } => {
            for (k, v) in parse_labels(&labels) {
                let mut ns = Namespace::new();
                ns.name = name.clone();
                ns.labels.insert(k.clone(), v);
                let mut mask = FieldMask::new();
                mask.paths.push(format!("labels.{k}"));
                let mut req = UpdateNamespaceRequest::new();
                req.namespace = Some(ns).into();
                req.update_mask = Some(mask).into();
                client.update(&env.ctx, &req)?;
            }
            Ok(())
        }
    }
}

/// `namespaces list` output: the names, or ctr's NAME LABELS table.
pub fn list_output(namespaces: &[Namespace], quiet: bool) -> String {
    let mut names: Vec<&Namespace> = namespaces.iter().collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    if quiet {
        return names.iter().map(|n| format!("{}\n", n.name)).collect();
    }
    let mut text = String::from("NAME\tLABELS\t\n");
    for ns in names {
        text.push_str(&format!("{}\t{}\t\n", ns.name, join_labels(&ns.labels)));
    }
    tabwrite(&text, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
        let mut n = Namespace::new();
        n.name = name.into();
        n.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        n
    }

    #[test]
    fn list_prints_ctrs_table() {
        let list = [ns("edge", &[("b", "2"), ("a", "1")]), ns("default", &[])];
        assert_eq!(
            list_output(&list, false),
            "NAME    LABELS  \ndefault         \nedge    a=1,b=2 \n"
        );
        assert_eq!(list_output(&list, true), "default\nedge\n");
        assert_eq!(list_output(&[], false), "NAME LABELS \n");
    }
}

//! `corralctl version`: the client's version, then the server's, as `ctr version` prints them.

use std::fmt::Write as _;

use corral_protocols::rpc::{CallContext, Client, Status};
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use corral_protocols::version::{REVISION, VERSION};

/// Why `version` could not finish.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{}", crate::commands::connect_message(address, source))]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "asking corrald at {address} for its version: {}",
        crate::commands::status_message(source)
    )]
    Call { address: String, source: Status },
}

/// The client part of the output.
pub fn client_section() -> String {
    format!("Client:\n  Version:  {VERSION}\n  Revision: {REVISION}\n")
}

/// Asks the daemon at `address` for its version and formats the server part.
pub fn server_section(address: &str, ctx: &CallContext) -> Result<String, VersionError> {
    let client = Client::connect(address).map_err(|source| VersionError::Connect {
        address: address.to_string(),
        source,
    })?;
    let v = VersionClient::new(client)
        .version(ctx, &Default::default())
        .map_err(|source| VersionError::Call {
            address: address.to_string(),
            source,
        })?;
    let mut out = String::from("Server:\n");
    let _ = writeln!(out, "  Version:  {}", v.version);
    let _ = writeln!(out, "  Revision: {}", v.revision);
    Ok(out)
}

//! `corralctl info`: the server's information as JSON, as `ctr info` prints it.

use corral_protocols::services::introspection::v1::introspection::ServerResponse;
use corral_protocols::services::introspection::v1::introspection_rpc::IntrospectionClient;
use corral_protocols::services::version::v1::version::VersionResponse;
use corral_protocols::services::version::v1::version_rpc::VersionClient;

use super::format::Json;
use super::{CtlResult, Env};

/// Asks corrald for its uuid (Introspection.Server) and version and prints them.
pub fn run(env: &Env) -> CtlResult {
    let client = env.connect()?;
    let server = IntrospectionClient::new(client.clone()).server(&env.ctx, &Default::default())?;
    let version = VersionClient::new(client).version(&env.ctx, &Default::default())?;
    println!("{}", info_json(&server, &version).pretty());
    Ok(())
}

/// `{"server": {"uuid": ...}, "version": {"Version": ..., "Revision": ...}}`: ctr's `server`
/// object, and the server's version beside it.
pub fn info_json(server: &ServerResponse, version: &VersionResponse) -> Json {
    let mut s = Vec::new();
    if !server.uuid.is_empty() {
        s.push(("uuid".to_string(), Json::str(&server.uuid)));
    }
    Json::Object(vec![
        ("server".to_string(), Json::Object(s)),
        (
            "version".to_string(),
            Json::Object(vec![
                ("Version".to_string(), Json::str(&version.version)),
                ("Revision".to_string(), Json::str(&version.revision)),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_prints_the_server_object() {
        let mut s = ServerResponse::new();
        s.uuid = "0f5f".into();
        let mut v = VersionResponse::new();
        v.version = "0.1.0".into();
        v.revision = "abc".into();
        assert_eq!(
            info_json(&s, &v).pretty(),
            "{\n    \"server\": {\n        \"uuid\": \"0f5f\"\n    },\n    \"version\": {\n        \"Version\": \"0.1.0\",\n        \"Revision\": \"abc\"\n    }\n}"
        );
    }
}

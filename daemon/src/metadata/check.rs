//! `corrald db check`: bolt's own structural check, then containerd's schema as Corral reads
//! it: the version, namespace names, and the records of each namespace.

use bbolt_rs::{BucketApi, CursorApi, TxApi, TxCheck};

use super::bolt::{BoltError, Db};
use super::encoding::{decode_any, decode_time, decode_varint_value};
use super::schema::*;
use super::validate::validate_identifier;

/// Buckets a namespace may hold (containerd 1.6 and 1.7).
const NAMESPACE_CHILDREN: &[&[u8]] = &[
    LABELS, IMAGES, CONTAINERS, SNAPSHOTS, CONTENT, LEASES, SANDBOXES,
];

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every problem found; empty when the file is sound.
pub fn check(db: &Db) -> Result<Vec<String>, BoltError> {
    let mut problems = Vec::new();
    db.view(|tx| {
        problems.extend(tx.check());
        let Some(v1) = tx.bucket(SCHEMA_V1) else {
            problems.push("no v1 schema bucket".into());
            return Ok(());
        };
        match v1.get(VERSION).map(decode_varint_value) {
            None => problems.push("v1/version is missing".into()),
            Some(Err(e)) => problems.push(format!("v1/version: {e}")),
            Some(Ok(DB_VERSION)) => {}
            Some(Ok(v)) => problems.push(format!(
                "v1/version is {v}: Corral reads and writes version {DB_VERSION}"
            )),
        }
        let mut c = v1.cursor();
        let mut item = c.first().map(|(k, v)| (k.to_vec(), v.is_none()));
        while let Some((name, is_bucket)) = item {
            if name.as_slice() != VERSION {
                match (is_bucket, v1.bucket(&name)) {
                    (true, Some(ns)) => check_namespace(&show(&name), &ns, &mut problems),
                    _ => problems.push(format!(
                        "v1/{}: a key where a namespace bucket belongs",
                        show(&name)
                    )),
                }
            }
            item = c.next().map(|(k, v)| (k.to_vec(), v.is_none()));
        }
        Ok(())
    })?;
    Ok(problems)
}

fn check_namespace<'tx, B: BucketApi<'tx>>(name: &str, ns: &B, problems: &mut Vec<String>) {
    if let Err(e) = validate_identifier("namespace", name) {
        problems.push(format!("v1/{name}: {e}"));
    }
    let mut c = ns.cursor();
    let mut item = c.first().map(|(k, _)| k.to_vec());
    while let Some(child) = item {
        if !NAMESPACE_CHILDREN.contains(&child.as_slice()) {
            problems.push(format!(
                "v1/{name}/{}: not part of containerd's schema",
                show(&child)
            ));
        }
        item = c.next().map(|(k, _)| k.to_vec());
    }
    if let Some(containers) = ns.bucket(CONTAINERS) {
        let mut c = containers.cursor();
        let mut item = c.first().map(|(k, _)| k.to_vec());
        while let Some(id) = item {
            let path = format!("v1/{name}/containers/{}", show(&id));
            match containers.bucket(&id) {
                Some(b) => check_container(&path, &b, problems),
                None => problems.push(format!("{path}: a key where a container bucket belongs")),
            }
            item = c.next().map(|(k, _)| k.to_vec());
        }
    }
}

fn check_container<'tx, B: BucketApi<'tx>>(path: &str, b: &B, problems: &mut Vec<String>) {
    for key in [CREATED_AT, UPDATED_AT] {
        match b.get(key).map(decode_time) {
            None => problems.push(format!("{path}/{} is missing", show(key))),
            Some(Err(e)) => problems.push(format!("{path}/{}: {e}", show(key))),
            Some(Ok(_)) => {}
        }
    }
    if let Some(spec) = b.get(SPEC) {
        if let Err(e) = decode_any(spec) {
            problems.push(format!("{path}/spec: {e}"));
        }
    }
    match b.bucket(RUNTIME) {
        Some(rt) if rt.get(NAME).is_some_and(|n| !n.is_empty()) => {
            if let Some(opts) = rt.get(OPTIONS) {
                if let Err(e) = decode_any(opts) {
                    problems.push(format!("{path}/runtime/options: {e}"));
                }
            }
        }
        _ => problems.push(format!("{path}/runtime/name is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::bolt::{open_db, OpenMode};

    fn fixture() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6/meta.db")
    }

    #[test]
    fn containerds_file_checks_clean() {
        let db = open_db(fixture(), OpenMode::ReadOnly).unwrap();
        assert_eq!(check(&db).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn problems_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let mut db = open_db(&path, OpenMode::ReadWrite).unwrap();
        db.update(|mut tx| {
            use bbolt_rs::{BucketRwApi, TxRwRefApi};
            let mut v1 = tx.create_bucket_if_not_exists(SCHEMA_V1)?;
            v1.put(VERSION, super::super::encoding::encode_varint(4))?;
            let mut ns = v1.create_bucket_if_not_exists(b"bad ns")?;
            let mut containers = ns.create_bucket_if_not_exists(CONTAINERS)?;
            let mut c = containers.create_bucket_if_not_exists(b"web")?;
            c.put(CREATED_AT, b"garbage")?;
            ns.create_bucket_if_not_exists(b"stray")?;
            Ok(())
        })
        .unwrap();
        let problems = check(&db).unwrap();
        let all = problems.join("\n");
        assert!(all.contains("v1/version is 4"), "{all}");
        assert!(all.contains("v1/bad ns: namespace \"bad ns\""), "{all}");
        assert!(
            all.contains("v1/bad ns/stray: not part of containerd's schema"),
            "{all}"
        );
        assert!(all.contains("v1/bad ns/containers/web/createdat"), "{all}");
        assert!(
            all.contains("v1/bad ns/containers/web/updatedat is missing"),
            "{all}"
        );
        assert!(
            all.contains("v1/bad ns/containers/web/runtime/name is missing"),
            "{all}"
        );
    }
}

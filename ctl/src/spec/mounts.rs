//! ctr's `--mount` values (`parseMountFlag` in cmd/ctr/commands/run/run.go): one CSV record
//! of `key=value` fields, `type`, `source`/`src`, `destination`/`dst` and `options`
//! (colon-separated), read with Go's `encoding/csv` quoting rules.

use oci_spec::runtime::Mount;

use super::SpecError;

/// Splits the first record of `text` into fields as Go's `csv.Reader.Read` does: commas
/// separate fields; a field that starts with `"` is quoted, `""` inside it is one quote.
pub fn csv_record(text: &str) -> Result<Vec<String>, SpecError> {
    let line = text.split('\n').next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    if text.is_empty() {
        return Err(SpecError::InvalidArgument("EOF".into()));
    }
    let err = |col: usize, what: &str| {
        SpecError::InvalidArgument(format!("parse error on line 1, column {col}: {what}"))
    };
    let chars: Vec<char> = line.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(i + 1, "extraneous or missing \" in quoted-field")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        match chars.get(i) {
                            None | Some(',') => break,
                            Some(_) => {
                                return Err(err(i + 1, "extraneous or missing \" in quoted-field"))
                            }
                        }
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = chars.get(i) {
                match c {
                    ',' => break,
                    '"' => return Err(err(i + 1, "bare \" in non-quoted-field")),
                    c => field.push(*c),
                }
                i += 1;
            }
        }
        fields.push(field);
        if chars.get(i) == Some(&',') {
            i += 1;
            continue;
        }
        return Ok(fields);
    }
}

/// One `--mount` value as an OCI mount.
pub fn parse_mount_flag(value: &str) -> Result<Mount, SpecError> {
    let mut mount = Mount::default();
    mount
        .set_destination(Default::default())
        .set_typ(None)
        .set_source(None)
        .set_options(None);
    for field in csv_record(value)? {
        let Some((key, val)) = field.split_once('=') else {
            return Err(SpecError::InvalidArgument(
                "invalid mount specification: expected key=val".into(),
            ));
        };
        match key {
            "type" => {
                mount.set_typ(Some(val.to_string()));
            }
            "source" | "src" => {
                mount.set_source(Some(val.into()));
            }
            "destination" | "dst" => {
                mount.set_destination(val.into());
            }
            "options" => {
                mount.set_options(Some(val.split(':').map(str::to_string).collect()));
            }
            other => {
                return Err(SpecError::InvalidArgument(format!(
                    "mount option {other:?} not supported"
                )))
            }
        }
    }
    Ok(mount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_like_go_csv() {
        assert_eq!(csv_record("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            csv_record(r#""x,y",options="a""b""#)
                .unwrap_err()
                .to_string(),
            "parse error on line 1, column 15: bare \" in non-quoted-field"
        );
        assert_eq!(csv_record(r#""x,y","q""q""#).unwrap(), ["x,y", "q\"q"]);
        assert!(csv_record("\"open").is_err());
        assert_eq!(csv_record("").unwrap_err().to_string(), "EOF");
    }

    #[test]
    fn mounts_parse_like_ctr() {
        let m = parse_mount_flag("type=bind,src=/tmp,dst=/mnt,options=rbind:ro").unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"destination": "/mnt", "type": "bind", "source": "/tmp",
                "options": ["rbind", "ro"]})
        );
        let m = parse_mount_flag("destination=/x").unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"destination": "/x"})
        );
        assert_eq!(
            parse_mount_flag("bind").unwrap_err().to_string(),
            "invalid mount specification: expected key=val"
        );
        assert_eq!(
            parse_mount_flag("mode=1").unwrap_err().to_string(),
            "mount option \"mode\" not supported"
        );
    }
}

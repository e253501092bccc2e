//! `rdma.current` / `rdma.max` lines (`mlx4_0 hca_handle=2 hca_object=2000`), the same in
//! cgroup v1 and v2.

/// One device line: device name, `hca_handle`, `hca_object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RdmaLine {
    pub device: String,
    pub hca_handles: u32,
    pub hca_objects: u32,
}

/// Parses the lines containerd's `toRdmaEntry` accepts: exactly three fields; a value `max`
/// is `u32::MAX`; a value that does not fit leaves the field 0; other lines are skipped.
pub(crate) fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<RdmaLine> {
    let mut out = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, a, b] = fields[..] else {
            continue;
        };
        let mut entry = RdmaLine {
            device: device.to_string(),
            hca_handles: 0,
            hca_objects: 0,
        };
        for kv in [a, b] {
            let mut parts = kv.split('=');
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let value = if value == "max" {
                u32::MAX
            } else {
                match super::parse::parse_uint(value).map(u32::try_from) {
                    Some(Ok(v)) => v,
                    _ => continue,
                }
            };
            match key {
                "hca_handle" => entry.hca_handles = value,
                "hca_object" => entry.hca_objects = value,
                _ => {}
            }
        }
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let got = parse_lines(
            "mlx4_0 hca_handle=2 hca_object=2000\nocrdma1 hca_handle=max hca_object=-3\nbad line\nx hca_handle=99999999999 y=1\n"
                .split('\n'),
        );
        assert_eq!(
            got,
            vec![
                RdmaLine {
                    device: "mlx4_0".into(),
                    hca_handles: 2,
                    hca_objects: 2000
                },
                RdmaLine {
                    device: "ocrdma1".into(),
                    hca_handles: u32::MAX,
                    hca_objects: 0
                },
                RdmaLine {
                    device: "x".into(),
                    hca_handles: 0,
                    hca_objects: 0
                },
            ]
        );
    }
}

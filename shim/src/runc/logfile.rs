//! runc's JSON log (`--log <bundle>/log.json --log-format json`): where runc and crun put the
//! reason a command failed, one JSON object a line:
//!
//! ```text
//! {"level":"error","msg":"container does not exist","time":"2023-05-02T10:00:00Z"}
//! ```
//!
//! The file is shared by every invocation for one bundle and never truncated, so a caller marks
//! its length before running a command ([`LogMark::new`]) and reads only what was appended
//! after the mark ([`LogMark::last_error`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// At most this many bytes of new log are read: `--debug` can make runc write a lot, and the
/// error that ends a failed command is among the last lines.
const MAX_READ: u64 = 1 << 20;

/// One log line. runc writes `level`, `msg`, `time`; crun writes the same keys in another order.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

/// The message of the last `"level":"error"` entry in `log` (JSON lines), trimmed; when there
/// is none, the last `"level":"fatal"` one (runc's `nsexec` reports with it). Lines that are not
/// JSON objects (a partial first line, garbage) are skipped.
pub fn last_error(log: &[u8]) -> Option<String> {
    let mut error = None;
    let mut fatal = None;
    for line in log.split(|&b| b == b'\n') {
        let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
            continue;
        };
        let msg = entry.msg.trim();
        if msg.is_empty() {
            continue;
        }
        match entry.level.as_str() {
            "error" => error = Some(msg.to_string()),
            "fatal" => fatal = Some(msg.to_string()),
            _ => {}
        }
    }
    error.or(fatal)
}

/// A position in a log file, taken before a command runs.
#[derive(Debug, Clone)]
pub struct LogMark {
    path: PathBuf,
    offset: u64,
}

impl LogMark {
    /// Marks the current end of `path`; a missing file marks offset 0.
    pub fn new(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// The last error written after the mark (see [`last_error`]). A missing or unreadable
    /// file gives `None`; a file that shrank since the mark (someone truncated it) is read
    /// from its start.
    pub fn last_error(&self) -> Option<String> {
        let mut file = File::open(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut start = if len < self.offset { 0 } else { self.offset };
        if len - start > MAX_READ {
            start = len - MAX_READ;
        }
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        file.take(len - start).read_to_end(&mut buf).ok()?;
        last_error(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_error_wins() {
        let log = br#"{"level":"error","msg":"container still running","time":"2023-01-01T00:00:00Z"}
{"level":"info","msg":"something","time":"2023-01-01T00:00:00Z"}
{"level":"error","msg":"criu failed: type DUMP errno 0\nlog file: dump.log","time":"2023-01-01T00:00:00Z"}
"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some("criu failed: type DUMP errno 0\nlog file: dump.log")
        );
    }

    #[test]
    fn crun_key_order_and_trailing_whitespace() {
        let log = br#"{"msg":"error opening file `/run/crun/x/status`: No such file or directory","level":"error","time":"2023-01-01T00:00:00.1Z"}"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some("error opening file `/run/crun/x/status`: No such file or directory")
        );
        let log = b"{\"level\":\"error\",\"msg\":\"No help topic for 'foo'\\n\"}\n";
        assert_eq!(last_error(log).as_deref(), Some("No help topic for 'foo'"));
    }

    #[test]
    fn garbage_and_partial_lines_are_skipped() {
        let log = b"l\",\"msg\":\"half a line\"}\n\xff\xfe not json\n{\"level\":\"error\",\"msg\":\"real\"}\n[1,2]\n{\"level\":\"error\"}\n{\"level\":\"error\",\"msg\":\"trunc";
        assert_eq!(last_error(log).as_deref(), Some("real"));
    }

    #[test]
    fn fatal_only_when_no_error() {
        let log = br#"{"level":"fatal","msg":"nsexec-1[1]: failed to open /proc/1/ns/ipc"}
{"level":"warning","msg":"w"}"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some("nsexec-1[1]: failed to open /proc/1/ns/ipc")
        );
        let log = br#"{"level":"fatal","msg":"nsexec"}
{"level":"error","msg":"exec failed: error executing setns process: exit status 1"}"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some("exec failed: error executing setns process: exit status 1")
        );
        assert_eq!(last_error(b""), None);
        assert_eq!(last_error(br#"{"level":"debug","msg":"x"}"#), None);
    }

    #[test]
    fn mark_reads_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        // No file yet: nothing to read, and no panic.
        let mark = LogMark::new(&path);
        assert_eq!(mark.last_error(), None);

        std::fs::write(&path, b"{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        assert_eq!(mark.last_error().as_deref(), Some("old"));

        let mark = LogMark::new(&path);
        assert_eq!(mark.last_error(), None, "old lines are not this command's");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"level\":\"info\",\"msg\":\"new info\"}\n")
            .unwrap();
        assert_eq!(mark.last_error(), None);
        f.write_all(b"{\"level\":\"error\",\"msg\":\"new\"}\n")
            .unwrap();
        assert_eq!(mark.last_error().as_deref(), Some("new"));

        // Truncated behind our back: read from the start.
        std::fs::write(&path, b"{\"level\":\"error\",\"msg\":\"x\"}\n").unwrap();
        assert_eq!(mark.last_error().as_deref(), Some("x"));
    }

    #[test]
    fn mark_reads_at_most_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mark = LogMark::new(&path);
        let mut big = Vec::new();
        big.extend_from_slice(b"{\"level\":\"error\",\"msg\":\"too early\"}\n");
        let filler =
            b"{\"level\":\"debug\",\"msg\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
        while (big.len() as u64) < MAX_READ + 1000 {
            big.extend_from_slice(filler);
        }
        big.extend_from_slice(b"{\"level\":\"error\",\"msg\":\"last\"}\n");
        std::fs::write(&path, &big).unwrap();
        assert_eq!(mark.last_error().as_deref(), Some("last"));
    }
}

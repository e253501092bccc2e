//! Progress of blob writes: an [`Observer`] the importer reports to, quiet by default, and
//! [`TerminalProgress`], the table `ctr` redraws on a terminal (one line per blob with its
//! status, a bar and the bytes written, then the elapsed time and total), and sizes as ctr
//! prints them ([`bytes`]).

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

use super::content::WriteProgress;

/// Told how each blob write goes.
pub trait Observer {
    /// `reference`'s write reached `progress`.
    fn blob(&mut self, reference: &str, progress: WriteProgress);
    /// The image reference `name` was resolved (a pull's first row in ctr's table).
    fn resolved(&mut self, _name: &str) {}
}

/// Shows nothing (output that is not a terminal).
pub struct Quiet;

impl Observer for Quiet {
    fn blob(&mut self, _reference: &str, _progress: WriteProgress) {}
}

/// A size as ctr prints it (`progress.Bytes`: `%02.1f` of 1024-based units,
/// `1005.2 KiB`).
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = n as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{size:02.1} {}", UNITS[i])
}

/// How often the table is redrawn (ctr's ticker).
const REDRAW: Duration = Duration::from_millis(100);
const GREEN: &str = "\x1b[32m";
const RESET: &str = "\x1b[0m";

/// ctr's `progress.Bar` of width 40.
fn bar(fraction: f64) -> String {
    const WIDTH: usize = 40;
    let f = fraction.clamp(0.0, 1.0);
    let positive = ((WIDTH - 2) as f64 * f) as usize;
    let negative = WIDTH - 2 - positive;
    format!(
        "|{GREEN}{}{RESET}{}|",
        "+".repeat(positive),
        "-".repeat(negative)
    )
}

/// ctr's progress table on a terminal, redrawn in place.
pub struct TerminalProgress {
    start: Instant,
    last: Option<Instant>,
    lines: usize,
    rows: Vec<(String, WriteProgress)>,
    /// The image reference resolved, shown first.
    resolved: Option<String>,
    /// What a blob being written is doing (`downloading`, or `uploading` for a push).
    verb: &'static str,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        TerminalProgress::new()
    }
}

impl TerminalProgress {
    /// A table starting now.
    pub fn new() -> TerminalProgress {
        TerminalProgress {
            start: Instant::now(),
            last: None,
            lines: 0,
            rows: Vec::new(),
            resolved: None,
            verb: "downloading",
        }
    }

    /// A table for a push: blobs being sent are `uploading`.
    pub fn uploading() -> TerminalProgress {
        TerminalProgress {
            verb: "uploading",
            ..TerminalProgress::new()
        }
    }

    fn render(&self) -> String {
        let mut text = String::new();
        let mut total = 0i64;
        if let Some(name) = &self.resolved {
            let _ = writeln!(text, "{name}:\tresolved\t{}\t", bar(1.0));
        }
        for (name, p) in &self.rows {
            match *p {
                WriteProgress::Writing { offset, total: t } => {
                    total += offset;
                    let fraction = if t > 0 { offset as f64 / t as f64 } else { 0.0 };
                    let done: String = bytes(offset).chars().take(8).collect();
                    let _ = writeln!(
                        text,
                        "{name}:\t{}\t{}\t{done:>8}/{}\t",
                        self.verb,
                        bar(fraction),
                        bytes(t)
                    );
                }
                WriteProgress::Waiting => {
                    let _ = writeln!(text, "{name}:\twaiting\t{}\t", bar(0.0));
                }
                WriteProgress::Done { size } => {
                    total += size;
                    let _ = writeln!(text, "{name}:\tdone\t{}\t", bar(1.0));
                }
                WriteProgress::Exists => {
                    let _ = writeln!(text, "{name}:\texists\t{}\t", bar(1.0));
                }
            }
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            (total as f64 / elapsed) as i64
        } else {
            0
        };
        let _ = writeln!(
            text,
            "elapsed: {elapsed:<4.1}s\ttotal: {:>7.6}\t({}/s)\t",
            bytes(total),
            bytes(rate)
        );
        crate::commands::format::tabwrite(&text, 1, 1)
    }

    /// Redraws the table over the previous one.
    fn draw(&mut self) {
        let text = self.render();
        let width = terminal_width().unwrap_or(0);
        let mut out = String::new();
        for _ in 0..self.lines {
            out.push_str("\x1b[1A\x1b[2K\r");
        }
        out.push_str(&text);
        self.lines = count_lines(&text, width);
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
        self.last = Some(Instant::now());
    }

    /// Draws the final state.
    pub fn finish(&mut self) {
        if !self.rows.is_empty() {
            self.draw();
        }
    }
}

impl Observer for TerminalProgress {
    fn resolved(&mut self, name: &str) {
        self.resolved = Some(name.to_string());
        self.draw();
    }

    fn blob(&mut self, reference: &str, progress: WriteProgress) {
        let name = reference.strip_prefix("tar-").unwrap_or(reference);
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some(row) => row.1 = progress,
            None => self.rows.push((name.to_string(), progress)),
        }
        let due = self.last.is_none_or(|t| t.elapsed() >= REDRAW);
        if due || matches!(progress, WriteProgress::Done { .. } | WriteProgress::Exists) {
            self.draw();
        }
    }
}

/// Lines `text` takes on a terminal `width` columns wide (escape sequences take none).
fn count_lines(text: &str, width: usize) -> usize {
    text.lines()
        .map(|l| {
            let visible = strip_escapes(l).chars().count();
            if width == 0 || visible <= width {
                1
            } else {
                visible.div_ceil(width)
            }
        })
        .sum()
}

fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The width of the terminal on stdout.
fn terminal_width() -> Option<usize> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: nix has no safe call for TIOCGWINSZ. The ioctl only writes one `winsize` into
    // `ws`, which is valid and exclusively borrowed for the call; fd 1 is not changed.
    let r = unsafe { tiocgwinsz(1, &mut ws) };
    match r {
        Ok(_) if ws.ws_col > 0 => Some(usize::from(ws.ws_col)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_ctr() {
        assert_eq!(bytes(0), "0.0 B");
        assert_eq!(bytes(405), "405.0 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1_029_290), "1005.2 KiB");
        assert_eq!(bytes(1_028_885), "1004.8 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn the_table_lists_each_blob() {
        let mut p = TerminalProgress::new();
        p.rows.push((
            "blobs/sha256/aa".into(),
            WriteProgress::Writing {
                offset: 512,
                total: 1024,
            },
        ));
        p.rows
            .push(("index.json".into(), WriteProgress::Done { size: 10 }));
        let text = p.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("blobs/sha256/aa: downloading "),
            "{text}"
        );
        assert!(lines[0].contains("512.0 B/1.0 KiB"), "{text}");
        assert!(lines[1].starts_with("index.json:"), "{text}");
        assert!(lines[1].contains(" done "), "{text}");
        assert!(lines[2].starts_with("elapsed: "), "{text}");
        let mut up = TerminalProgress::uploading();
        up.resolved = Some("docker.io/library/busybox:latest".into());
        up.rows.push((
            "layer-sha256:aa".into(),
            WriteProgress::Writing {
                offset: 1,
                total: 2,
            },
        ));
        let text = up.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("docker.io/library/busybox:latest: resolved "),
            "{text}"
        );
        assert!(lines[1].starts_with("layer-sha256:aa:"), "{text}");
        assert!(lines[1].contains(" uploading "), "{text}");
        assert_eq!(strip_escapes(&bar(0.5)).len(), 40);
        assert_eq!(count_lines("abcdef\nx\n", 4), 3);
    }
}

//! Signal names as ctr reads them (moby/sys/signal's `ParseSignal` on Linux) and the stop
//! signal a container's image asks for (`containerd.GetStopSignal`).

use std::collections::HashMap;

use corral_protocols::services::containers::v1::containers::Container;

use crate::commands::{CtlError, CtlResult};

/// The label an image's `StopSignal` is kept in on the container (`StopSignalLabel`).
pub const STOP_SIGNAL_LABEL: &str = "io.containerd.image.config.stop-signal";

/// Linux's first real-time signal as Go numbers it.
const SIGRTMIN: u32 = 34;
/// Linux's last signal.
const SIGRTMAX: u32 = 64;

/// The named signals of Linux (moby/sys/signal's `SignalMap`, real-time ones aside).
const NAMED: &[(&str, u32)] = &[
    ("ABRT", 6),
    ("ALRM", 14),
    ("BUS", 7),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("FPE", 8),
    ("HUP", 1),
    ("ILL", 4),
    ("INT", 2),
    ("IO", 29),
    ("IOT", 6),
    ("KILL", 9),
    ("PIPE", 13),
    ("POLL", 29),
    ("PROF", 27),
    ("PWR", 30),
    ("QUIT", 3),
    ("SEGV", 11),
    ("STKFLT", 16),
    ("STOP", 19),
    ("SYS", 31),
    ("TERM", 15),
    ("TRAP", 5),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("USR1", 10),
    ("USR2", 12),
    ("VTALRM", 26),
    ("WINCH", 28),
    ("XCPU", 24),
    ("XFSZ", 25),
];

/// A signal by number (`9`) or name (`KILL`, `SIGKILL`, `sigkill`, `RTMIN+3`, `RTMAX-1`).
pub fn parse_signal(raw: &str) -> CtlResult<u32> {
    let invalid = || CtlError::new(format!("Invalid signal: {raw}"));
    if let Ok(n) = raw.parse::<i64>() {
        return match u32::try_from(n) {
            Ok(n) if (1..=SIGRTMAX).contains(&n) => Ok(n),
            _ => Err(invalid()),
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = NAMED.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    let realtime = |base: u32, rest: &str, plus: bool| -> Option<u32> {
        if rest.is_empty() {
            return Some(base);
        }
        let digits = rest.strip_prefix(if plus { '+' } else { '-' })?;
        // Go's map spells offsets without leading zeros or signs.
        if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let k: u32 = digits.parse().ok()?;
        if !(1..=15).contains(&k) {
            return None;
        }
        Some(if plus { base + k } else { base - k })
    };
    let rt = if let Some(rest) = name.strip_prefix("RTMIN") {
        realtime(SIGRTMIN, rest, true)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        realtime(SIGRTMAX, rest, false)
    } else {
        None
    };
    rt.ok_or_else(invalid)
}

/// The signal `kill` sends without `--signal`: the image's stop signal when the container
/// has one, else `default`.
pub fn stop_signal(container: &Container, default: u32) -> CtlResult<u32> {
    stop_signal_of(&container.labels, default)
}

fn stop_signal_of(labels: &HashMap<String, String>, default: u32) -> CtlResult<u32> {
    match labels.get(STOP_SIGNAL_LABEL) {
        Some(s) => parse_signal(s),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_as_moby_reads_them() {
        for (raw, want) in [
            ("9", 9),
            ("SIGTERM", 15),
            ("term", 15),
            ("sigusr1", 10),
            ("HUP", 1),
            ("CLD", 17),
            ("WINCH", 28),
            ("RTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("RTMIN+15", 49),
            ("RTMAX-14", 50),
            ("RTMAX", 64),
            ("64", 64),
        ] {
            assert_eq!(parse_signal(raw).unwrap(), want, "{raw}");
        }
        for raw in [
            "0", "65", "-1", "SIGFOO", "", "RTMIN+16", "RTMAX-0", "RTMIN+03", "SIG",
        ] {
            assert_eq!(
                parse_signal(raw).unwrap_err().to_string(),
                format!("Invalid signal: {raw}"),
                "{raw}"
            );
        }
    }

    #[test]
    fn the_image_stop_signal_wins_over_the_default() {
        let mut labels = HashMap::new();
        assert_eq!(stop_signal_of(&labels, 15).unwrap(), 15);
        labels.insert(STOP_SIGNAL_LABEL.to_string(), "SIGQUIT".to_string());
        assert_eq!(stop_signal_of(&labels, 15).unwrap(), 3);
        labels.insert(STOP_SIGNAL_LABEL.to_string(), "nope".to_string());
        assert_eq!(
            stop_signal_of(&labels, 15).unwrap_err().to_string(),
            "Invalid signal: nope"
        );
    }
}

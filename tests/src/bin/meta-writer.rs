//! `meta-writer PATH START [COUNT]`: a crash-test writer for Corral's metadata store.
//!
//! Opens the store at `PATH` and commits one transaction per namespace `n<i>` (label
//! `seq=<i>`), for `i` from `START`; prints `<i>` on stdout (flushed) only after the commit
//! returned, i.e. once it is acknowledged and on disk. Runs until killed, or, with `COUNT`,
//! stops after `COUNT` commits and then holds the store open until stdin closes (for lock
//! tests). Any error: message on stderr, exit 1; usage error: exit 2.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use corral_daemon::metadata::namespace::{self, Namespace};
use corral_daemon::metadata::store::Store;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [path, start] => start.parse::<u64>().ok().map(|s| (path, s, None)),
        [path, start, count] => match (start.parse::<u64>(), count.parse::<u64>()) {
            (Ok(s), Ok(c)) => Some((path, s, Some(c))),
            _ => None,
        },
        _ => None,
    };
    let Some((path, start, count)) = parsed else {
        eprintln!("usage: meta-writer PATH START [COUNT]");
        return ExitCode::from(2);
    };
    match run(path, start, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meta-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, start: u64, count: Option<u64>) -> Result<(), String> {
    let store = Store::open(path).map_err(|e| format!("opening {path}: {e}"))?;
    let mut out = std::io::stdout().lock();
    let end = count.map_or(u64::MAX, |c| start.saturating_add(c));
    for i in start..end {
        let ns = Namespace {
            name: format!("n{i}"),
            labels: BTreeMap::from([("seq".to_string(), i.to_string())]),
        };
        store
            .update(|tx| namespace::create(tx, &ns))
            .map_err(|e| format!("creating n{i}: {e}"))?;
        writeln!(out, "{i}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("acknowledging {i}: {e}"))?;
    }
    // Hold the store (and its lock) until whoever started us closes stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(store);
    Ok(())
}

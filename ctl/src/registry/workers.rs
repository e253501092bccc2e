//! Blobs moved on a few threads at once (ctr's `--max-concurrent-downloads` and
//! `--max-concurrent-uploaded-layers`): each thread takes the next blob until none is left
//! or one has failed; progress goes to the caller's observer, on the caller's thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use super::pull::make_ref_key;
use crate::image::content::WriteProgress;
use crate::image::ocispec::Descriptor;
use crate::image::progress::Observer;
use crate::image::{ImageError, Result};

/// Stack size of a transfer thread.
const THREAD_STACK: usize = 256 << 10;

/// What moves one blob, reporting its progress.
pub type Transfer<'a> =
    dyn Fn(&Descriptor, &mut dyn FnMut(WriteProgress)) -> Result<()> + Sync + 'a;

/// Runs `transfer` for every blob on at most `threads` threads named `<name>-<n>`; every
/// blob is reported waiting first. The first failure stops the threads from taking more,
/// and is what this returns.
pub fn transfer_all(
    blobs: &[Descriptor],
    threads: usize,
    name: &str,
    observer: &mut dyn Observer,
    transfer: &Transfer<'_>,
) -> Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    let work: Mutex<VecDeque<&Descriptor>> = Mutex::new(blobs.iter().collect());
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(String, WriteProgress)>();
    let threads = threads.clamp(1, blobs.len());
    for b in blobs {
        observer.blob(&make_ref_key(b), WriteProgress::Waiting);
    }
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let tx = tx.clone();
            let (work, failed) = (&work, &failed);
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .stack_size(THREAD_STACK)
                .spawn_scoped(s, move || -> Result<()> {
                    while !failed.load(Ordering::SeqCst) {
                        let next = work.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                        let Some(desc) = next else {
                            return Ok(());
                        };
                        let key = make_ref_key(desc);
                        let result = transfer(desc, &mut |p| {
                            let _ = tx.send((key.clone(), p));
                        });
                        if let Err(e) = result {
                            failed.store(true, Ordering::SeqCst);
                            return Err(e);
                        }
                    }
                    Ok(())
                })
                .map_err(|e| ImageError::io(format!("starting a {name} thread"), e))?;
            handles.push(handle);
        }
        drop(tx);
        for (key, p) in rx {
            observer.blob(&key, p);
        }
        let mut first: Option<ImageError> = None;
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(ImageError::Unknown(format!("a {name} thread panicked"))));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Seen(Vec<(String, WriteProgress)>);

    impl Observer for Seen {
        fn blob(&mut self, key: &str, p: WriteProgress) {
            self.0.push((key.to_string(), p));
        }
    }

    fn blobs(n: usize) -> Vec<Descriptor> {
        (0..n)
            .map(|i| Descriptor::new("application/octet-stream", &format!("sha256:{i:064x}"), 1))
            .collect()
    }

    #[test]
    fn every_blob_moves_once_and_its_progress_reaches_the_caller() {
        let moved = AtomicUsize::new(0);
        let mut seen = Seen(Vec::new());
        let list = blobs(7);
        transfer_all(&list, 3, "test", &mut seen, &|_, progress| {
            moved.fetch_add(1, Ordering::SeqCst);
            progress(WriteProgress::Done { size: 1 });
            Ok(())
        })
        .unwrap();
        assert_eq!(moved.load(Ordering::SeqCst), 7);
        let done = seen
            .0
            .iter()
            .filter(|(_, p)| matches!(p, WriteProgress::Done { .. }))
            .count();
        assert_eq!(done, 7);
    }

    #[test]
    fn the_first_failure_stops_the_rest() {
        let moved = AtomicUsize::new(0);
        let list = blobs(50);
        let err = transfer_all(&list, 1, "test", &mut Seen(Vec::new()), &|_, _| {
            moved.fetch_add(1, Ordering::SeqCst);
            Err(ImageError::Unknown("no room".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("no room"), "{err}");
        assert_eq!(moved.load(Ordering::SeqCst), 1);
    }
}

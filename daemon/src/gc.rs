//! The garbage collector's scheduler (containerd's `io.containerd.gc.v1.scheduler`): when to
//! run a collection, and running it: the metadata mark and sweep
//! ([`crate::metadata::gc::collect`], one write transaction), then each backend's sweep
//! (content blobs, snapshot directories) through the [`Sweeper`]s registered with it.
//!
//! A collection runs on a thread started when one is wanted and gone when none is pending,
//! so an idle daemon has no collector thread. When, as containerd's scheduler decides: once
//! at startup after `startup_delay`; after a change that removed something (a delete), or
//! after `mutation_threshold` changes of any kind, but no sooner after the last collection
//! than the pause threshold allows (the average collection time divided by
//! `pause_threshold`, so collecting takes at most that share of the time); at once after
//! `deletion_threshold` removals when it is set; and whenever a caller waits for one
//! (`Images.Delete` with `sync`, [`Collector::collect_and_wait`]). Requests that arrive while
//! a collection runs are served by the next one, so a waiter always sees a collection that
//! began after it asked.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::metadata::encoding::Timestamp;
use crate::metadata::error::MetaError;
use crate::metadata::gc::{collect, has_garbage, Collected};
use crate::metadata::store::Store;

/// A backend whose objects the metadata collection may have orphaned.
pub trait Sweeper: Send + Sync {
    /// What it sweeps, for logs (`content`, `snapshotter overlayfs`).
    fn name(&self) -> String;
    /// Removes what no meta.db record refers to any more. `collected` tells what the metadata
    /// sweep removed (a sweeper may skip its work when nothing of its kind went).
    fn sweep(&self, store: &Store, collected: &Collected) -> Result<(), String>;
}

/// The scheduler's settings (`[plugins."io.containerd.gc.v1.scheduler"]`).
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// The largest share of time spent collecting (0.02: 2 %), which spaces collections.
    pub pause_threshold: f64,
    /// Collect at once after this many removals (0: removals wait for the spacing).
    pub deletion_threshold: u32,
    /// Collect after this many changes even without removals (0: never by count).
    pub mutation_threshold: u32,
    /// Wait this long after a trigger before collecting, so bursts share one collection.
    pub schedule_delay: Duration,
    /// The first collection, this long after startup.
    pub startup_delay: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            pause_threshold: 0.02,
            deletion_threshold: 0,
            mutation_threshold: 100,
            schedule_delay: Duration::ZERO,
            startup_delay: Duration::from_millis(100),
        }
    }
}

/// What one collection did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Records removed from meta.db.
    pub removed: usize,
    /// Time spent in the metadata transaction.
    pub meta: Duration,
    /// Time spent sweeping backends.
    pub backends: Duration,
}

#[derive(Default)]
struct State {
    /// A collector thread exists.
    thread: bool,
    /// Collections asked for, and the number of the last one started / finished.
    requested: u64,
    started: u64,
    finished: u64,
    /// When the next asked-for collection may start (delays).
    not_before: Option<Instant>,
    deletions: u32,
    mutations: u32,
    last: Option<Result<Stats, String>>,
    /// When the last collection finished, and the time all collections took.
    last_finish: Option<Instant>,
    total_time: Duration,
    stopped: bool,
}

struct Inner {
    store: Store,
    config: GcConfig,
    sweepers: Mutex<Vec<Arc<dyn Sweeper>>>,
    state: Mutex<State>,
    changed: Condvar,
}

/// The garbage collector of one daemon.
#[derive(Clone)]
pub struct Collector(Arc<Inner>);

impl Collector {
    pub fn new(store: Store, config: GcConfig) -> Self {
        Collector(Arc::new(Inner {
            store,
            config,
            sweepers: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }))
    }

    /// Adds a backend sweep, run after every metadata collection.
    pub fn register(&self, sweeper: Arc<dyn Sweeper>) {
        if let Ok(mut s) = self.0.sweepers.lock() {
            s.push(sweeper);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a collection no sooner than `delay` from now; returns its number.
    fn request(&self, st: &mut State, delay: Duration) -> u64 {
        if st.stopped {
            return st.requested;
        }
        if st.requested <= st.started {
            st.requested = st.started + 1;
            let at = Instant::now() + delay;
            st.not_before = Some(st.not_before.map_or(at, |t| t.min(at)));
        }
        if !st.thread {
            let me = self.clone();
            let spawned = thread::Builder::new()
                .name("gc".into())
                .stack_size(256 * 1024)
                .spawn(move || me.run());
            match spawned {
                Ok(_) => st.thread = true,
                Err(e) => log::error!("gc: cannot start the collector thread: {e}"),
            }
        }
        self.0.changed.notify_all();
        st.requested
    }

    /// The first collection after startup.
    pub fn start(&self) {
        let delay = self.0.config.startup_delay;
        let mut st = self.state();
        self.request(&mut st, delay);
    }

    /// Tells the scheduler that a change committed; `removed` when it removed a record
    /// (a delete, or an update that dropped a reference).
    pub fn mutated(&self, removed: bool) {
        let cfg = &self.0.config;
        let mut st = self.state();
        if removed {
            st.deletions += 1;
        }
        st.mutations += 1;
        if cfg.deletion_threshold > 0 && st.deletions >= cfg.deletion_threshold {
            let delay = cfg.schedule_delay;
            self.request(&mut st, delay);
        } else if st.deletions > 0
            || (cfg.mutation_threshold > 0 && st.mutations >= cfg.mutation_threshold)
        {
            let spacing = self.spacing(&st);
            self.request(&mut st, spacing.max(cfg.schedule_delay));
        }
    }

    /// How long to wait before the next collection so that collecting stays within the
    /// pause threshold: the average collection time / threshold - that time, counted from
    /// the end of the last collection.
    fn spacing(&self, st: &State) -> Duration {
        let (Some(last), n) = (st.last_finish, st.finished) else {
            return Duration::ZERO;
        };
        let p = self.0.config.pause_threshold;
        if n == 0 || !(p > 0.0 && p <= 0.5) {
            return Duration::ZERO;
        }
        let avg = st.total_time.as_secs_f64() / n as f64;
        let interval = Duration::from_secs_f64(avg / p - avg);
        interval.saturating_sub(last.elapsed())
    }

    /// Runs a collection that starts after this call and waits for it (containerd's
    /// `ScheduleAndWait`, used by deletes with `sync`).
    pub fn collect_and_wait(&self) -> Result<Stats, String> {
        let mut st = self.state();
        if st.stopped {
            return Err("garbage collector stopped".into());
        }
        // A collection already running may have marked before our caller's change: wait
        // for one that starts after now.
        let want = st.started + 1;
        st.requested = st.requested.max(want);
        st.not_before = Some(Instant::now());
        self.request(&mut st, Duration::ZERO);
        while st.finished < want && !st.stopped {
            st = self.0.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.finished < want {
            return Err("garbage collector stopped".into());
        }
        st.last
            .clone()
            .unwrap_or_else(|| Err("no collection ran".into()))
    }

    /// Stops scheduling; a collection that runs finishes first.
    pub fn stop(&self) {
        let mut st = self.state();
        st.stopped = true;
        self.0.changed.notify_all();
        while st.thread {
            st = self.0.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The collector thread: runs what was asked for, then exits.
    fn run(self) {
        loop {
            let mut st = self.state();
            loop {
                if st.stopped || st.requested <= st.started {
                    st.thread = false;
                    self.0.changed.notify_all();
                    return;
                }
                let now = Instant::now();
                match st.not_before {
                    Some(t) if t > now => {
                        st = self
                            .0
                            .changed
                            .wait_timeout(st, t - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                    _ => break,
                }
            }
            st.started = st.requested;
            st.not_before = None;
            st.deletions = 0;
            st.mutations = 0;
            let number = st.started;
            drop(st);

            let result = self.collect_once();
            match &result {
                Ok(s) => log::debug!(
                    "gc: collection {number}: {} records removed, metadata {:?}, backends {:?}",
                    s.removed,
                    s.meta,
                    s.backends
                ),
                Err(e) => log::warn!("gc: collection {number} failed: {e}"),
            }
            let mut st = self.state();
            st.finished = number;
            st.last_finish = Some(Instant::now());
            if let Ok(stats) = &result {
                st.total_time += stats.meta + stats.backends;
            }
            st.last = Some(result);
            self.0.changed.notify_all();
        }
    }

    fn collect_once(&self) -> Result<Stats, String> {
        let t0 = Instant::now();
        let now = Timestamp::now();
        // Look first: most collections find nothing, and then meta.db is not written.
        let garbage = self
            .0
            .store
            .view(|tx| Ok(has_garbage(tx, now)))
            .map_err(|e: MetaError| e.to_string())?;
        let collected = if garbage {
            self.0
                .store
                .update(|tx| collect(tx, now))
                .map_err(|e: MetaError| e.to_string())?
        } else {
            Collected::default()
        };
        let meta = t0.elapsed();
        let sweepers: Vec<Arc<dyn Sweeper>> = self
            .0
            .sweepers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let mut first_err = None;
        for s in sweepers {
            if let Err(e) = s.sweep(&self.0.store, &collected) {
                log::warn!("gc: sweeping {}: {e}", s.name());
                first_err.get_or_insert(format!("{}: {e}", s.name()));
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(Stats {
            removed: collected.removed.len(),
            meta,
            backends: t0.elapsed() - meta,
        })
    }
}

/// Sweeps the content backend (containerd's content `garbageCollect`): blobs no namespace
/// records or expects, and ingests no namespace records, go. Holds the content lock alone,
/// so no write is between its backend commit and its record meanwhile.
pub struct ContentSweeper {
    pub content: crate::content::Store,
    pub lock: Arc<std::sync::RwLock<()>>,
}

impl Sweeper for ContentSweeper {
    fn name(&self) -> String {
        "content".into()
    }

    fn sweep(&self, store: &Store, collected: &Collected) -> Result<(), String> {
        let _alone = self.lock.write().unwrap_or_else(|p| p.into_inner());
        let _ = collected;
        let refs = store
            .view(|tx| Ok(crate::metadata::gc::referenced_content(tx)))
            .map_err(|e| e.to_string())?;
        for info in self.content.walk().map_err(|e| e.to_string())? {
            if !refs.blobs.contains(&info.digest) {
                self.content
                    .delete(&info.digest)
                    .map_err(|e| e.to_string())?;
                log::debug!("gc: removed blob {}", info.digest);
            }
        }
        for status in self.content.list_statuses().map_err(|e| e.to_string())? {
            if !refs.ingests.contains(&status.reference)
                && !self.content.is_locked(&status.reference)
            {
                self.content
                    .abort(&status.reference)
                    .map_err(|e| e.to_string())?;
                log::debug!("gc: aborted ingest {}", status.reference);
            }
        }
        Ok(())
    }
}

/// Sweeps one snapshotter (containerd's snapshotter `garbageCollect`): backend snapshots no
/// namespace records go, children before parents, then its `cleanup` removes directories no
/// backend record has. Holds the snapshot lock alone meanwhile.
pub struct SnapshotSweeper {
    pub snapshotter: Arc<dyn crate::snapshot::Snapshotter>,
    pub lock: Arc<std::sync::RwLock<()>>,
}

impl Sweeper for SnapshotSweeper {
    fn name(&self) -> String {
        format!("snapshotter {}", self.snapshotter.name())
    }

    fn sweep(&self, store: &Store, _collected: &Collected) -> Result<(), String> {
        let _alone = self.lock.write().unwrap_or_else(|p| p.into_inner());
        let name = self.snapshotter.name();
        let keep = store
            .view(|tx| Ok(crate::metadata::gc::referenced_snapshots(tx, name)))
            .map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        self.snapshotter
            .walk(&[], &mut |info| {
                all.push((info.name.clone(), info.parent.clone()));
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        // Remove unreferenced snapshots that no remaining snapshot has as parent, until none
        // is left to remove (a referenced child keeps its parents).
        let mut left: Vec<(String, Option<String>)> = all;
        loop {
            let parents: std::collections::HashSet<String> =
                left.iter().filter_map(|(_, p)| p.clone()).collect();
            let (gone, kept): (Vec<_>, Vec<_>) = left
                .into_iter()
                .partition(|(n, _)| !keep.contains(n) && !parents.contains(n));
            if gone.is_empty() {
                break;
            }
            for (n, _) in &gone {
                self.snapshotter.remove(n).map_err(|e| e.to_string())?;
                log::debug!("gc: removed snapshot {name}/{n}");
            }
            left = kept;
        }
        self.snapshotter.cleanup().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::metadata::content;
    use crate::metadata::test_support::store;

    struct Counting(AtomicUsize);

    impl Sweeper for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        fn sweep(&self, _: &Store, _: &Collected) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn wait_no_thread(c: &Collector) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.state().thread {
            assert!(Instant::now() < deadline, "collector thread did not exit");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn collect_and_wait_removes_and_sweeps_then_the_thread_goes() {
        let (_d, s) = store();
        s.update(|tx| content::add_blob(tx, "default", &digest(1), 3, &BTreeMap::new()))
            .unwrap();
        let c = Collector::new(s.clone(), GcConfig::default());
        let sweeps = Arc::new(Counting(AtomicUsize::new(0)));
        c.register(sweeps.clone());
        let stats = c.collect_and_wait().unwrap();
        assert_eq!(stats.removed, 1);
        assert_eq!(sweeps.0.load(Ordering::SeqCst), 1);
        assert!(s
            .view(|tx| content::list(tx, "default"))
            .unwrap()
            .is_empty());
        wait_no_thread(&c);
        // Again: a new collection runs (nothing left to remove).
        assert_eq!(c.collect_and_wait().unwrap().removed, 0);
        assert_eq!(sweeps.0.load(Ordering::SeqCst), 2);
        c.stop();
        assert!(c.collect_and_wait().is_err());
    }

    fn wait_sweeps(sweeps: &Counting, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while sweeps.0.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "no collection ran");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn removals_and_mutation_counts_trigger_collections() {
        let (_d, s) = store();
        let c = Collector::new(
            s,
            GcConfig {
                mutation_threshold: 3,
                ..Default::default()
            },
        );
        let sweeps = Arc::new(Counting(AtomicUsize::new(0)));
        c.register(sweeps.clone());
        // Two changes without removals: below the threshold, nothing runs.
        c.mutated(false);
        c.mutated(false);
        wait_no_thread(&c);
        assert_eq!(sweeps.0.load(Ordering::SeqCst), 0);
        // The third reaches it.
        c.mutated(false);
        wait_sweeps(&sweeps, 1);
        wait_no_thread(&c);
        // One removal is enough.
        c.mutated(true);
        wait_sweeps(&sweeps, 2);
        c.stop();
    }

    #[test]
    fn collections_are_spaced_by_the_pause_threshold() {
        let (_d, s) = store();
        let c = Collector::new(s, GcConfig::default());
        c.collect_and_wait().unwrap();
        let mut st = c.state();
        // Pretend collections take 10 ms: at 2 % the next may start 490 ms after the last.
        st.total_time = Duration::from_millis(10) * st.finished as u32;
        st.last_finish = Some(Instant::now());
        let spacing = c.spacing(&st);
        drop(st);
        assert!(
            spacing > Duration::from_millis(400) && spacing <= Duration::from_millis(490),
            "{spacing:?}"
        );
        c.stop();
    }

    #[test]
    fn waiters_during_a_collection_get_a_later_one() {
        let (_d, s) = store();
        let c = Collector::new(s, GcConfig::default());
        let sweeps = Arc::new(Counting(AtomicUsize::new(0)));
        c.register(sweeps.clone());
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || c.collect_and_wait().map(|_| ()))
            })
            .collect();
        for w in waiters {
            w.join().unwrap().unwrap();
        }
        // Concurrent waiters share collections: at least one, at most one per waiter.
        let n = sweeps.0.load(Ordering::SeqCst);
        assert!((1..=8).contains(&n), "{n}");
        c.stop();
    }
}

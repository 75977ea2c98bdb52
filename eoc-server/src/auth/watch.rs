//! Tells the verifier when the user store may have changed, so that it asks
//! SQLite (`PRAGMA data_version`: a statement, file locks, several system
//! calls, all under the verifier's lock) only then rather than on every
//! request.
//!
//! On Linux an inotify watch on the data directory reports every write, by
//! any process, to `users.sqlite` and its `-wal`, `-shm` and `-journal`
//! files; the journal's constant writes in the same directory are told
//! apart by name. A writer's commit becomes visible a moment after its
//! write to the WAL, and the event may be read in between: so after an
//! event the store is asked on every check for [`RECHECK`]. Whatever
//! happens, it is asked at least every [`RECHECK`]. Where the watch cannot
//! be set (another system, no inotify left), it is asked on every check.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long after a change the store is asked on every check, and how long
/// it is trusted at most without asking.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Whether the user store must be asked for its version.
#[derive(Debug)]
pub struct StoreWatch {
    /// The inotify watch, with the file names (in the watched directory)
    /// whose changes count; `None` when it could not be set or was lost.
    #[cfg(target_os = "linux")]
    watch: Option<(rustix::fd::OwnedFd, Vec<u8>)>,
    /// Every check until then asks the store.
    ask_until: Instant,
    /// When the store was last asked.
    asked_at: Instant,
}

impl StoreWatch {
    /// Watches the files of `data_dir` whose names begin with `prefix`.
    pub fn new(data_dir: &Path, prefix: &str) -> StoreWatch {
        #[cfg(not(target_os = "linux"))]
        let _ = (data_dir, prefix);
        let now = Instant::now();
        StoreWatch {
            #[cfg(target_os = "linux")]
            watch: linux::watch(data_dir).map(|fd| (fd, prefix.as_bytes().to_vec())),
            ask_until: now,
            asked_at: now,
        }
    }

    /// Whether the store must be asked now; call [`StoreWatch::asked`]
    /// once it was.
    pub fn must_ask(&mut self, now: Instant) -> bool {
        if self.saw_change() {
            self.ask_until = now + RECHECK;
        }
        now < self.ask_until || now.saturating_duration_since(self.asked_at) >= RECHECK
    }

    /// Notes that the store was asked at `now`.
    pub fn asked(&mut self, now: Instant) {
        self.asked_at = now;
    }

    /// Whether a watched file changed since the last call (every event
    /// waiting is read); always, without a watch.
    #[cfg(target_os = "linux")]
    fn saw_change(&mut self) -> bool {
        let Some((fd, prefix)) = &self.watch else { return true };
        match linux::drain(fd, prefix) {
            Some(changed) => changed,
            None => {
                // The watch is gone (directory removed, read failed):
                // from now on, ask every time.
                self.watch = None;
                true
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn saw_change(&mut self) -> bool {
        true
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::mem::MaybeUninit;
    use std::path::Path;

    use rustix::fd::{AsFd, OwnedFd};
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;
    use tracing::warn;

    /// A non-blocking inotify watch on `dir`, or `None` (logged).
    pub fn watch(dir: &Path) -> Option<OwnedFd> {
        let set = || -> rustix::io::Result<OwnedFd> {
            let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
            let what = WatchFlags::MODIFY
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF;
            inotify::add_watch(&fd, dir, what)?;
            Ok(fd)
        };
        set()
            .inspect_err(|err| warn!(error = %err, "no watch on the user store: asking it on every check"))
            .ok()
    }

    /// Reads every event waiting: whether one concerns a file named
    /// `prefix…` (or may: the queue overflowed), or `None` when the watch
    /// is gone.
    pub fn drain(fd: &OwnedFd, prefix: &[u8]) -> Option<bool> {
        // Room for several events with names of any length.
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(fd.as_fd(), &mut buf);
        let mut changed = false;
        loop {
            match events.next() {
                Ok(e) => {
                    let flags = e.events();
                    if flags.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
                        return None;
                    }
                    changed |= flags.contains(ReadFlags::QUEUE_OVERFLOW)
                        || e.file_name().is_none_or(|name| name.to_bytes().starts_with(prefix));
                }
                Err(Errno::AGAIN) => return Some(changed),
                Err(Errno::INTR) => {}
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_to_a_watched_file_asks_for_a_while_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = StoreWatch::new(dir.path(), "users.sqlite");
        let start = Instant::now();
        watch.asked(start);
        // Quiet after asking: trusted, until RECHECK has passed.
        assert!(!watch.must_ask(start));
        assert!(watch.must_ask(start + RECHECK));
        // Another file of the data directory changes: still trusted.
        std::fs::write(dir.path().join("journal.sqlite-wal"), b"entries").unwrap();
        assert!(!watch.must_ask(start));
        // The store's WAL changes: asked, and again on the next check
        // (within RECHECK), then trusted once that has passed.
        std::fs::write(dir.path().join("users.sqlite-wal"), b"frames").unwrap();
        let seen = Instant::now();
        assert!(watch.must_ask(seen));
        watch.asked(seen);
        assert!(watch.must_ask(seen));
        let later = seen + RECHECK;
        watch.asked(later);
        assert!(!watch.must_ask(later + Duration::from_millis(1)));
    }
}

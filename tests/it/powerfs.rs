//! `powerfs`: an in-process FUSE filesystem that simulates power loss the way LazyFS does.
//!
//! Everything lives in memory. Each file has the data that reads see now and the data that
//! would survive a power cut; each directory has its current entries and its durable ones.
//! Only `fsync`/`fdatasync` of a file makes its data durable, and only `fsync` of a directory
//! makes its entries (names) durable. [`PowerFs::cut`] throws away everything else, so a test
//! that cuts power at random points finds every missing file or directory fsync.
//!
//! The model is strict POSIX, stricter than ext4 or xfs in practice:
//! - `fsync(file)` makes the file's data, length and attributes durable, never its name;
//! - `fsync(dir)` makes the directory's entries durable (name -> inode), nothing inside them;
//! - create, mkdir, rename, unlink and rmdir change current entries only;
//! - a file that was never fsynced has empty durable data; a directory that was never fsynced
//!   has no durable entries (the root starts durable and empty);
//! - renames are not atomic across a cut: after `rename(a/x, b/y)` and an fsync of `b` only, the
//!   cut leaves the inode under both names (one inode, so the names share data).
//!
//! The kernel's page cache stays on (no `direct_io`) so `mmap(MAP_SHARED)` works (SQLite's
//! `-shm`); the writeback cache stays off, so every `write(2)` has reached this filesystem
//! before it returns. File locks (`fcntl`, `flock`) are left to the kernel, which handles them
//! locally because this filesystem does not claim lock support.
//!
//! Not supported: hard links and symlinks (EPERM), special files, xattrs (ENOSYS); reads do
//! not update atime. Attributes (mode, owner, times) follow the data: durable at creation and
//! at each fsync of the inode, rolled back by a cut otherwise.
//!
//! Use: [`PowerFs::mount`], run the workload, kill it, [`Mounted::unmount`], [`PowerFs::cut`],
//! mount again. Unmounting destroys the mount's page cache, so nothing stale is read afterwards.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// How long the kernel may cache attributes and names. Every change goes through the kernel
/// and a cut only happens on a fresh mount, so caching can never show stale data; short anyway.
const TTL: Duration = Duration::from_secs(1);
/// File data is stored in chunks of this size, shared copy-on-write between the current and the
/// durable view, so an fsync costs a pointer copy per chunk and a write copies only its chunks.
const CHUNK: usize = 64 * 1024;
/// Larger files are refused with EFBIG (a hole still costs a pointer per chunk).
const MAX_FILE_SIZE: u64 = 1 << 36;
const BLOCK_SIZE: u32 = 4096;
const NAME_MAX: usize = 255;
const ROOT: u64 = INodeNo::ROOT.0;
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// How long [`Mounted::unmount`] retries a busy mount before it falls back to a lazy unmount.
const UNMOUNT_PATIENCE: Duration = Duration::from_secs(5);

/// Counters for test output. `last_cut_*` describe the most recent [`PowerFs::cut`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `fsync`/`fdatasync` calls on regular files.
    pub file_fsyncs: u64,
    /// `fsync` calls on directories.
    pub dir_fsyncs: u64,
    /// Bytes accepted by `write` calls, over all mounts.
    pub bytes_written: u64,
    /// Number of power cuts so far.
    pub cuts: u64,
    /// Unmounts that stayed busy for [`UNMOUNT_PATIENCE`] and were done lazily.
    pub lazy_unmounts: u64,
    /// Inodes (files and directories, root included) held in memory now.
    pub inodes: u64,
    /// File bytes the last cut discarded: unsynced chunks of surviving files (64 KiB
    /// granularity, so an upper bound) plus the whole current length of files that vanished.
    pub last_cut_bytes_lost: u64,
    /// Surviving files whose data or length the last cut rolled back.
    pub last_cut_files_reverted: u64,
    /// Directory entries (name -> inode) the last cut added back, removed or changed.
    pub last_cut_entries_reverted: u64,
    /// Inodes the last cut dropped because no durable name reached them any more.
    pub last_cut_inodes_dropped: u64,
}

/// The filesystem's state. It outlives mounts: mount, cut power, mount again.
#[derive(Clone)]
pub struct PowerFs {
    state: Arc<Mutex<State>>,
}

impl Default for PowerFs {
    fn default() -> Self {
        Self::new()
    }
}

impl PowerFs {
    /// An empty filesystem whose (empty) root directory is durable.
    pub fn new() -> PowerFs {
        PowerFs { state: Arc::new(Mutex::new(State::new())) }
    }

    /// Mounts at `mountpoint` (an existing, empty directory) and serves it from a background
    /// thread. Only one mount at a time.
    pub fn mount(&self, mountpoint: &Path) -> io::Result<Mounted> {
        let mountpoint = mountpoint.canonicalize()?;
        let epoch = {
            let mut st = lock(&self.state);
            if st.mounted {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "powerfs is already mounted",
                ));
            }
            st.mounted = true;
            st.epoch += 1;
            st.epoch
        };
        let fs = Handler { state: Arc::clone(&self.state), epoch };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powerfs".to_owned()),
            MountOption::Subtype("powerfs".to_owned()),
            MountOption::RW,
        ];
        match fuser::spawn_mount(fs, &mountpoint, &config) {
            Ok(session) => {
                Ok(Mounted { session: Some(session), mountpoint, state: Arc::clone(&self.state) })
            }
            Err(e) => {
                lock(&self.state).end_mount(false);
                Err(e)
            }
        }
    }

    /// Cuts power: every directory gets back its durable entries, every file its durable data
    /// and attributes, and inodes that no durable name reaches are dropped.
    ///
    /// # Panics
    /// While mounted: kill the workload and [`Mounted::unmount`] first.
    pub fn cut(&self) {
        let mut st = lock(&self.state);
        assert!(!st.mounted, "powerfs: cut() while mounted; unmount first");
        st.cut();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let st = lock(&self.state);
        Stats { inodes: st.inodes.len() as u64, ..st.stats.clone() }
    }
}

/// A live mount. Dropping it unmounts too, but [`Mounted::unmount`] says what it means.
pub struct Mounted {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Mounted {
    /// The (canonical) mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits until the kernel has let go of the mount, so its page cache is gone
    /// and a new mount reads only what this filesystem holds.
    ///
    /// A mount that stays busy (a process still has a file or its cwd there) is retried for
    /// [`UNMOUNT_PATIENCE`], then detached lazily (counted in [`Stats::lazy_unmounts`]). Either
    /// way, once this returns the old mount can no longer change the state: its requests fail
    /// with EIO, as if the disk had gone away.
    pub fn unmount(mut self) {
        self.unmount_now();
    }

    fn unmount_now(&mut self) {
        let Some(session) = self.session.take() else { return };
        // The FUSE connection's number in /sys/fs/fuse/connections is the mount's device minor.
        let connection = std::fs::metadata(&self.mountpoint).ok().map(|m| dev_minor(m.dev()));
        let deadline = Instant::now() + UNMOUNT_PATIENCE;
        let clean = loop {
            match unmount_command(&self.mountpoint, false) {
                Ok(()) => break Ok(()),
                Err(e) if Instant::now() >= deadline => break Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if let Err(e) = &clean {
            eprintln!(
                "powerfs: {} still busy after {UNMOUNT_PATIENCE:?} ({e}); unmounting lazily",
                self.mountpoint.display()
            );
            if let Err(e) = unmount_command(&self.mountpoint, true) {
                eprintln!("powerfs: lazy unmount of {} failed: {e}", self.mountpoint.display());
            }
        }
        // Fence the old session off before anything else can touch the state.
        lock(&self.state).end_mount(clean.is_err());
        if clean.is_err() {
            // Let the processes that still hold files fail fast instead of keeping the session
            // alive; works only where fusectl is mounted.
            if let Some(n) = connection {
                let _ = std::fs::write(format!("/sys/fs/fuse/connections/{n}/abort"), "1");
            }
        }
        // After a real unmount (or an abort) the kernel closes the connection and the session
        // thread ends; a lazily detached mount may be kept alive by its users instead.
        let patience = if clean.is_ok() { UNMOUNT_PATIENCE } else { Duration::from_millis(200) };
        let deadline = Instant::now() + patience;
        while !session.guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if session.guard.is_finished() {
            let _ = session.join();
        } else {
            // Still serving a lazily detached mount (EIO only). Dropping the session would make
            // fuser unmount the path again, possibly hitting a newer mount there: leak it.
            std::mem::forget(session);
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount_now();
    }
}

/// Runs `fusermount3 -u` (or `umount` where fusermount3 is missing) on `mountpoint`.
fn unmount_command(mountpoint: &Path, lazy: bool) -> Result<(), String> {
    let fusermount = if lazy { ["-u", "-z"].as_slice() } else { &["-u"] };
    let umount = if lazy { ["-l"].as_slice() } else { &[] };
    for (program, args) in [("fusermount3", fusermount), ("umount", umount)] {
        match Command::new(program).args(args).arg("--").arg(mountpoint).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{program}: {e}")),
        }
    }
    Err("neither fusermount3 nor umount is installed".to_owned())
}

/// The minor number of a `st_dev` as glibc encodes it.
fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock (say, `cut` while mounted) must not break later calls.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// File contents: chunk `i` holds bytes `[i * CHUNK, (i + 1) * CHUNK)`. A chunk may be missing
/// or shorter than `CHUNK`; the bytes it lacks (below `len`) read as zeros. No chunk holds
/// bytes at or past `len`, so growing a file never reveals old data.
#[derive(Clone, Default)]
struct Data {
    len: u64,
    chunks: Vec<Option<Arc<Vec<u8>>>>,
}

impl Data {
    fn read(&self, offset: u64, size: u32) -> Vec<u8> {
        let end = self.len.min(offset.saturating_add(u64::from(size)));
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let (index, within) = chunk_of(pos);
            let n = (end - pos).min((CHUNK - within) as u64) as usize;
            if let Some(Some(chunk)) = self.chunks.get(index) {
                let have = chunk.len().saturating_sub(within).min(n);
                let at = (pos - offset) as usize;
                out[at..at + have].copy_from_slice(&chunk[within..within + have]);
            }
            pos += n as u64;
        }
        out
    }

    /// Writes `bytes` at `offset`; the caller has checked that the end fits `MAX_FILE_SIZE`.
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset + bytes.len() as u64;
        if end > self.len {
            self.set_len(end);
        }
        let (mut pos, mut rest) = (offset, bytes);
        while !rest.is_empty() {
            let (index, within) = chunk_of(pos);
            let n = rest.len().min(CHUNK - within);
            let Some(slot) = self.chunks.get_mut(index) else { return };
            let chunk = Arc::make_mut(slot.get_or_insert_with(Default::default));
            if chunk.len() < within + n {
                // Grow geometrically, but never past a chunk.
                let want = (within + n).max(chunk.capacity() * 2).min(CHUNK);
                chunk.reserve_exact(want - chunk.len());
                chunk.resize(within + n, 0);
            }
            chunk[within..within + n].copy_from_slice(&rest[..n]);
            pos += n as u64;
            rest = &rest[n..];
        }
    }

    fn set_len(&mut self, len: u64) {
        self.chunks.resize(len.div_ceil(CHUNK as u64) as usize, None);
        let (_, within) = chunk_of(len);
        if len < self.len
            && within != 0
            && let Some(Some(last)) = self.chunks.last_mut()
            && last.len() > within
        {
            match Arc::get_mut(last) {
                Some(bytes) => bytes.truncate(within),
                None => *last = Arc::new(last[..within].to_vec()),
            }
        }
        self.len = len;
    }

    /// Bytes of `self` that a rollback to `durable` discards, counted per chunk not shared
    /// with `durable`.
    fn unshared_bytes(&self, durable: &Data) -> u64 {
        let mut lost = 0;
        for (index, chunk) in self.chunks.iter().enumerate() {
            let start = (index * CHUNK) as u64;
            let here = (self.len - start).min(CHUNK as u64);
            let there = durable.len.saturating_sub(start).min(CHUNK as u64);
            let shared = match (chunk, durable.chunks.get(index)) {
                (Some(a), Some(Some(b))) => Arc::ptr_eq(a, b),
                (None, Some(None)) => true,
                _ => false,
            };
            lost += if shared { here.saturating_sub(there) } else { here };
        }
        lost
    }
}

fn chunk_of(pos: u64) -> (usize, usize) {
    ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize)
}

/// Attributes, kept twice per inode (current and durable) like the contents.
#[derive(Clone, Copy)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Meta {
    fn new(mode: u32, umask: u32, req: &Request) -> Meta {
        let now = SystemTime::now();
        Meta {
            perm: (mode & !umask & 0o7777) as u16,
            uid: req.uid(),
            gid: req.gid(),
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

enum Body {
    File {
        data: Data,
        durable: Data,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
        /// Target of `..` (current tree; recomputed by a cut).
        parent: u64,
    },
}

struct Inode {
    meta: Meta,
    durable_meta: Meta,
    body: Body,
    /// Current entries naming this inode.
    links: u32,
    /// Durable entries (of any directory still in memory) naming this inode: while there are
    /// any, a cut may bring the inode back, so it must be kept even if unlinked now.
    durable_links: u32,
    /// The kernel's FUSE lookup count; the kernel may still use the inode while it is above 0.
    lookups: u64,
}

impl Inode {
    fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir { .. })
    }

    fn kind(&self) -> FileType {
        if self.is_dir() { FileType::Directory } else { FileType::RegularFile }
    }
}

struct State {
    inodes: HashMap<u64, Inode>,
    /// Inode numbers are never reused, so a stale kernel handle can never hit a new file.
    next_ino: u64,
    /// Open directory streams, each a snapshot taken by opendir, so that deleting entries
    /// while reading the directory (as `remove_dir_all` does) skips nothing.
    dir_handles: HashMap<u64, Vec<(u64, FileType, OsString)>>,
    next_fh: u64,
    mounted: bool,
    /// Bumped at every mount and unmount; a session started in another epoch is stale.
    epoch: u64,
    stats: Stats,
}

impl State {
    fn new() -> State {
        let now = SystemTime::now();
        let meta = Meta { perm: 0o755, uid: 0, gid: 0, atime: now, mtime: now, ctime: now };
        let root = Inode {
            meta,
            durable_meta: meta,
            body: Body::Dir { entries: BTreeMap::new(), durable: BTreeMap::new(), parent: ROOT },
            links: 1,
            durable_links: 1,
            lookups: 0,
        };
        State {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            dir_handles: HashMap::new(),
            next_fh: 1,
            mounted: false,
            epoch: 0,
            stats: Stats::default(),
        }
    }

    /// Ends a mount: the kernel holds no inode any more, open handles are gone, and the old
    /// session is fenced off.
    fn end_mount(&mut self, lazy: bool) {
        self.mounted = false;
        self.epoch += 1;
        self.dir_handles.clear();
        if lazy {
            self.stats.lazy_unmounts += 1;
        }
        let all: Vec<u64> = self.inodes.keys().copied().collect();
        for node in self.inodes.values_mut() {
            node.lookups = 0;
        }
        for ino in all {
            self.release_if_unreferenced(ino);
        }
    }

    fn node(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.node(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.entries(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn data_mut(&mut self, ino: u64) -> Result<(&mut Data, &mut Meta), Errno> {
        let node = self.node_mut(ino)?;
        match &mut node.body {
            Body::File { data, .. } => Ok((data, &mut node.meta)),
            Body::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let (size, nlink) = match &node.body {
            Body::File { data, .. } => (data.len, node.links),
            Body::Dir { entries, .. } => {
                let subdirs = entries
                    .values()
                    .filter(|c| self.inodes.get(c).is_some_and(Inode::is_dir))
                    .count();
                (u64::from(BLOCK_SIZE), 2 + subdirs as u32)
            }
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.meta.atime,
            mtime: node.meta.mtime,
            ctime: node.meta.ctime,
            crtime: node.meta.ctime,
            kind: node.kind(),
            perm: node.meta.perm,
            nlink,
            uid: node.meta.uid,
            gid: node.meta.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        })
    }

    /// Adds a new inode under `parent/name`, counting the kernel's lookup of the reply.
    fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        meta: Meta,
        dir: bool,
    ) -> Result<FileAttr, Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = if dir {
            Body::Dir { entries: BTreeMap::new(), durable: BTreeMap::new(), parent }
        } else {
            Body::File { data: Data::default(), durable: Data::default() }
        };
        // The attributes at creation are durable together with the name (a journaled create).
        let node = Inode { meta, durable_meta: meta, body, links: 1, durable_links: 0, lookups: 1 };
        self.inodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.node_mut(parent)?.meta.touch();
        self.attr(ino)
    }

    /// Removes the entry `parent/name` (current entries only) and returns its inode.
    fn remove_entry(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        let ino = self.entries_mut(parent)?.remove(name).ok_or(Errno::ENOENT)?;
        self.node_mut(parent)?.meta.touch();
        if let Ok(node) = self.node_mut(ino) {
            node.links = node.links.saturating_sub(1);
            node.meta.ctime = SystemTime::now();
        }
        Ok(ino)
    }

    fn unlink(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let victim = self.node(self.child(parent, name)?)?;
        match (&victim.body, dir) {
            (Body::File { .. }, true) => return Err(Errno::ENOTDIR),
            (Body::Dir { .. }, false) => return Err(Errno::EISDIR),
            (Body::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Errno::ENOTEMPTY);
            }
            _ => {}
        }
        let ino = self.remove_entry(parent, name)?;
        self.release_if_unreferenced(ino);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return Err(Errno::EINVAL);
        }
        if new_name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let ino = self.child(parent, name)?;
        let moving_dir = self.node(ino)?.is_dir();
        if moving_dir {
            // A directory cannot move below itself.
            let mut at = new_parent;
            while at != ROOT {
                if at == ino {
                    return Err(Errno::EINVAL);
                }
                at = match &self.node(at)?.body {
                    Body::Dir { parent, .. } => *parent,
                    Body::File { .. } => return Err(Errno::ENOTDIR),
                };
            }
        }
        let replaced = self.entries(new_parent)?.get(new_name).copied();
        if let Some(old) = replaced {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            match (&self.node(old)?.body, moving_dir) {
                (Body::File { .. }, true) => return Err(Errno::ENOTDIR),
                (Body::Dir { .. }, false) => return Err(Errno::EISDIR),
                (Body::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
            self.remove_entry(new_parent, new_name)?;
        }
        self.remove_entry(parent, name)?;
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.node_mut(new_parent)?.meta.touch();
        let node = self.node_mut(ino)?;
        node.links += 1;
        if let Body::Dir { parent, .. } = &mut node.body {
            *parent = new_parent;
        }
        if let Some(old) = replaced {
            self.release_if_unreferenced(old);
        }
        Ok(())
    }

    /// fsync of a file (data, length, attributes) or of a directory (entries, attributes).
    fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        let node = self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        node.durable_meta = node.meta;
        let (fresh, stale) = match &mut node.body {
            Body::File { data, durable } => {
                *durable = data.clone();
                self.stats.file_fsyncs += 1;
                return Ok(());
            }
            Body::Dir { entries, durable, .. } => {
                let fresh: Vec<u64> = entries.values().copied().collect();
                (fresh, std::mem::replace(durable, entries.clone()))
            }
        };
        self.stats.dir_fsyncs += 1;
        for ino in fresh {
            if let Some(child) = self.inodes.get_mut(&ino) {
                child.durable_links += 1;
            }
        }
        for ino in stale.into_values() {
            if let Some(child) = self.inodes.get_mut(&ino) {
                child.durable_links = child.durable_links.saturating_sub(1);
            }
            self.release_if_unreferenced(ino);
        }
        Ok(())
    }

    /// Frees `ino` if neither a current nor a durable name nor the kernel refers to it, and
    /// then whatever that leaves unreferenced.
    fn release_if_unreferenced(&mut self, ino: u64) {
        let mut work = vec![ino];
        while let Some(ino) = work.pop() {
            let unreferenced = ino != ROOT
                && self
                    .inodes
                    .get(&ino)
                    .is_some_and(|n| n.links == 0 && n.durable_links == 0 && n.lookups == 0);
            if !unreferenced {
                continue;
            }
            if let Some(Inode { body: Body::Dir { entries, durable, .. }, .. }) =
                self.inodes.remove(&ino)
            {
                for child in entries.into_values() {
                    if let Some(node) = self.inodes.get_mut(&child) {
                        node.links = node.links.saturating_sub(1);
                    }
                    work.push(child);
                }
                for child in durable.into_values() {
                    if let Some(node) = self.inodes.get_mut(&child) {
                        node.durable_links = node.durable_links.saturating_sub(1);
                    }
                    work.push(child);
                }
            }
        }
    }

    /// The power cut; see [`PowerFs::cut`].
    fn cut(&mut self) {
        let mut bytes_lost = 0;
        let mut files_reverted = 0;
        let mut entries_reverted = 0;

        for node in self.inodes.values_mut() {
            if let Body::Dir { entries, durable, .. } = &mut node.body {
                let added = entries.iter().filter(|(k, v)| durable.get(*k) != Some(*v)).count();
                let gone = durable.keys().filter(|k| !entries.contains_key(*k)).count();
                entries_reverted += (added + gone) as u64;
                *entries = durable.clone();
            }
        }

        // Walk the durable tree. A directory reachable under a second name (possible only
        // because renames are not atomic here) keeps its first name, so the tree stays a tree.
        let mut reachable = HashSet::from([ROOT]);
        let mut queue = VecDeque::from([ROOT]);
        while let Some(dir) = queue.pop_front() {
            let Some(Body::Dir { entries, .. }) = self.inodes.get(&dir).map(|n| &n.body) else {
                continue;
            };
            let children: Vec<(OsString, u64)> =
                entries.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let mut drop_names = Vec::new();
            for (name, ino) in children {
                match self.inodes.get_mut(&ino).map(|n| &mut n.body) {
                    Some(Body::File { .. }) => {
                        reachable.insert(ino);
                    }
                    Some(Body::Dir { parent, .. }) if reachable.insert(ino) => {
                        *parent = dir;
                        queue.push_back(ino);
                    }
                    Some(Body::Dir { .. }) | None => drop_names.push(name),
                }
            }
            if let Some(Body::Dir { entries, durable, .. }) =
                self.inodes.get_mut(&dir).map(|n| &mut n.body)
            {
                for name in drop_names {
                    entries.remove(&name);
                    durable.remove(&name);
                }
            }
        }

        let before = self.inodes.len();
        self.inodes.retain(|ino, node| {
            let keep = reachable.contains(ino);
            if let (false, Body::File { data, .. }) = (keep, &node.body) {
                bytes_lost += data.len;
            }
            keep
        });
        let inodes_dropped = (before - self.inodes.len()) as u64;

        let mut links: HashMap<u64, u32> = HashMap::new();
        for node in self.inodes.values_mut() {
            node.meta = node.durable_meta;
            node.lookups = 0;
            match &mut node.body {
                Body::File { data, durable } => {
                    let lost = data.unshared_bytes(durable);
                    if lost > 0 || data.len != durable.len {
                        files_reverted += 1;
                    }
                    bytes_lost += lost;
                    *data = durable.clone();
                }
                Body::Dir { entries, .. } => {
                    for ino in entries.values() {
                        *links.entry(*ino).or_default() += 1;
                    }
                }
            }
        }
        for (ino, node) in &mut self.inodes {
            let n = if *ino == ROOT { 1 } else { links.get(ino).copied().unwrap_or(0) };
            node.links = n;
            node.durable_links = n;
        }

        self.stats.cuts += 1;
        self.stats.last_cut_bytes_lost = bytes_lost;
        self.stats.last_cut_files_reverted = files_reverted;
        self.stats.last_cut_entries_reverted = entries_reverted;
        self.stats.last_cut_inodes_dropped = inodes_dropped;
    }
}

/// The FUSE side of one mount. Requests from a session whose epoch has passed (its mount was
/// unmounted) fail with EIO.
struct Handler {
    state: Arc<Mutex<State>>,
    epoch: u64,
}

impl Handler {
    /// Runs `op` on the state, unless this session is stale.
    fn with<T>(&self, op: impl FnOnce(&mut State) -> Result<T, Errno>) -> Result<T, Errno> {
        let mut st = lock(&self.state);
        if st.epoch != self.epoch {
            return Err(Errno::EIO);
        }
        // A bug here must show as EIO (and the panic message), not kill the session thread,
        // which would leave every later request on the mount hanging.
        panic::catch_unwind(AssertUnwindSafe(|| op(&mut st))).unwrap_or(Err(Errno::EIO))
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for Handler {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.with(|st| {
            let ino = st.child(parent.0, name)?;
            st.node_mut(ino)?.lookups += 1;
            st.attr(ino)
        });
        match found {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _ = self.with(|st| {
            let node = st.node_mut(ino.0)?;
            node.lookups = node.lookups.saturating_sub(nlookup);
            st.release_if_unreferenced(ino.0);
            Ok(())
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(|st| st.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.with(|st| {
            if let Some(size) = size {
                if size > MAX_FILE_SIZE {
                    return Err(Errno::EFBIG);
                }
                let (data, meta) = st.data_mut(ino.0)?;
                data.set_len(size);
                meta.touch();
            }
            let meta = &mut st.node_mut(ino.0)?.meta;
            if let Some(mode) = mode {
                meta.perm = (mode & 0o7777) as u16;
            }
            meta.uid = uid.unwrap_or(meta.uid);
            meta.gid = gid.unwrap_or(meta.gid);
            meta.atime = atime.map_or(meta.atime, time);
            meta.mtime = mtime.map_or(meta.mtime, time);
            meta.ctime = ctime.unwrap_or_else(SystemTime::now);
            st.attr(ino.0)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & S_IFMT != S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.with(|st| st.create(parent.0, name, Meta::new(mode, umask, req), false)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.with(|st| st.create(parent.0, name, Meta::new(mode, umask, req), true)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|st| st.unlink(parent.0, name, false)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|st| st.unlink(parent.0, name, true)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.with(|st| st.rename(parent.0, name, newparent.0, newname, flags)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Stateless handles; O_TRUNC arrives as a setattr, O_APPEND as the kernel's offsets.
        match self.with(|st| st.data_mut(ino.0).map(|_| ())) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.with(|st| st.data_mut(ino.0).map(|(data, _)| data.read(offset, size))) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.with(|st| {
            if offset.saturating_add(bytes.len() as u64) > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
            let (data, meta) = st.data_mut(ino.0)?;
            data.write(offset, bytes);
            meta.touch();
            st.stats.bytes_written += bytes.len() as u64;
            Ok(())
        });
        match result {
            Ok(()) => reply.written(bytes.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Never answer ENOSYS here: the kernel would then treat every fsync as a success.
        match self.with(|st| st.fsync(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = self.with(|st| {
            let node = st.node(ino.0)?;
            let Body::Dir { entries, parent, .. } = &node.body else { return Err(Errno::ENOTDIR) };
            let mut listing = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (*parent, FileType::Directory, OsString::from("..")),
            ];
            for (name, child) in entries {
                let kind = st.node(*child).map_or(FileType::RegularFile, Inode::kind);
                listing.push((*child, kind, name.clone()));
            }
            let fh = st.next_fh;
            st.next_fh += 1;
            st.dir_handles.insert(fh, listing);
            Ok(fh)
        });
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.with(|st| {
            let listing = st.dir_handles.get(&fh.0).ok_or(Errno::EBADF)?;
            // An entry's offset is the index of the next one, where a later call resumes.
            for (i, (ino, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                    break;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _ = self.with(|st| Ok(st.dir_handles.remove(&fh.0)));
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.with(|st| st.fsync(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let used = self.with(|st| Ok(st.inodes.len() as u64)).unwrap_or(0);
        let (blocks, files) = (1 << 28, 1 << 24); // 1 TiB in 4 KiB blocks, 16 Mi inodes
        reply.statfs(
            blocks,
            blocks,
            blocks,
            files,
            files.saturating_sub(used),
            BLOCK_SIZE,
            NAME_MAX as u32,
            BLOCK_SIZE,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        match self.with(|st| st.node(ino.0).map(|_| ())) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.with(|st| st.create(parent.0, name, Meta::new(mode, umask, req), false)) {
            Ok(attr) => {
                reply.created(&TTL, &attr, Generation(0), FileHandle(0), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.with(|st| {
            let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
            match mode {
                // Space is never short, so preallocating without growing changes nothing.
                FALLOC_FL_KEEP_SIZE => st.data_mut(ino.0).map(|_| ()),
                0 if end > MAX_FILE_SIZE => Err(Errno::EFBIG),
                0 => {
                    let (data, meta) = st.data_mut(ino.0)?;
                    if end > data.len {
                        data.set_len(end);
                        meta.touch();
                    }
                    Ok(())
                }
                _ => Err(Errno::EOPNOTSUPP),
            }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

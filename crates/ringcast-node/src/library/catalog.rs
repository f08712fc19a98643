//! The library of each disk (DESIGN section 6, claims 2-3): which titles a disk
//! holds, so the supervisor knows which disks hold each title (replicas) and
//! the node can serve them.
//!
//! A disk's library is the folder [`LIBRARY_DIR`] under its mount point:
//! `<mount>/library`. Its titles are the regular files directly in it or in one
//! sub-folder of it (an HLS rendition: `movie/index.m3u8`, `movie/seg_001.ts`).
//!
//! Titles are names, not paths ([`Title`], [`parse_title`]): one or two
//! components of `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` separated by `/`, so no
//! `..`, no hidden files, no absolute paths, no encoded or back slashes. A
//! symlink is a title only when it resolves to a regular file inside the
//! library, and [`open_title`] checks the file it actually opened, so no title
//! can read anything outside the library.
//!
//! New and removed files are noticed without a restart: the runtime calls
//! [`rescan_if_changed`] every few seconds and publishes [`Catalog::digest`]
//! in its disk reports.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use ringcast_config::settings::LIBRARY_DIR;

/// Most components of a title: a file in the library or in one sub-folder.
pub const MAX_TITLE_COMPONENTS: usize = 2;

/// Longest component of a title, in bytes.
pub const MAX_COMPONENT_LEN: usize = 128;

/// The library folder of the disk mounted at `mount`: `<mount>/library`.
pub fn library_dir(mount: &Path) -> PathBuf {
    mount.join(LIBRARY_DIR)
}

/// A title: the name under which players ask for a video file (DESIGN
/// section 6). It is a name, not a path: one or two components of
/// `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` joined by `/`, which can only name a
/// file inside the library. Only [`parse_title`] makes one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl Title {
    /// The title as text, e.g. `movie/index.m3u8`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sub-folder of the library holding it, if any (`movie` for
    /// `movie/index.m3u8`).
    pub fn folder(&self) -> Option<&str> {
        self.0.split_once('/').map(|(folder, _)| folder)
    }

    /// Its last component (`index.m3u8` for `movie/index.m3u8`).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Title {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets a catalog be searched with a `&str` (the order is that of `str`).
impl Borrow<str> for Title {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for Title {
    type Err = TitleError;
    fn from_str(s: &str) -> Result<Self, TitleError> {
        parse_title(s)
    }
}

impl TryFrom<String> for Title {
    type Error = TitleError;
    fn try_from(s: String) -> Result<Self, TitleError> {
        check_title(&s)?;
        Ok(Title(s))
    }
}

impl From<Title> for String {
    fn from(t: Title) -> String {
        t.0
    }
}

/// Why a string is not a title (traversal and other refusals, DESIGN
/// section 6); the HTTP layer answers these with 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    /// The title is empty.
    #[error("the title is empty")]
    Empty,
    /// The title starts with `/`.
    #[error("a title is a name, not an absolute path")]
    Absolute,
    /// The title has more than two components.
    #[error("a title has at most {MAX_TITLE_COMPONENTS} components, this one has {0}")]
    TooDeep(usize),
    /// Two slashes in a row, or a trailing slash.
    #[error("a title has no empty component")]
    EmptyComponent,
    /// A component longer than [`MAX_COMPONENT_LEN`].
    #[error("a title component has at most {MAX_COMPONENT_LEN} characters, this one has {0}")]
    TooLong(usize),
    /// A component starts with something else than a letter or digit
    /// (`.`, `..`, hidden files, `-`, `_`).
    #[error("a title component starts with a letter or a digit, not {0:?}")]
    BadStart(char),
    /// A character outside `[A-Za-z0-9._-]`, such as `%`, `\`, NUL, a space
    /// or any non-ASCII character.
    #[error("a title has only letters, digits, '.', '_' and '-', not {0:?}")]
    BadChar(char),
}

/// Checks that `s` is a title (see [`Title`]) and makes it one. Percent-decoding
/// is the HTTP layer's job: a `%` left in `s` is refused, as are `\` and NUL.
pub fn parse_title(s: &str) -> Result<Title, TitleError> {
    check_title(s)?;
    Ok(Title(s.to_owned()))
}

fn check_title(s: &str) -> Result<(), TitleError> {
    if s.is_empty() {
        return Err(TitleError::Empty);
    }
    if s.starts_with('/') {
        return Err(TitleError::Absolute);
    }
    s.split('/').try_for_each(check_component)?;
    let components = s.split('/').count();
    if components > MAX_TITLE_COMPONENTS {
        return Err(TitleError::TooDeep(components));
    }
    Ok(())
}

fn check_component(c: &str) -> Result<(), TitleError> {
    let mut chars = c.chars();
    let Some(first) = chars.next() else {
        return Err(TitleError::EmptyComponent);
    };
    if !first.is_ascii_alphanumeric() {
        return Err(TitleError::BadStart(first));
    }
    if let Some(bad) =
        chars.find(|&ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
    {
        return Err(TitleError::BadChar(bad));
    }
    // Only ASCII is left, so bytes are characters.
    if c.len() > MAX_COMPONENT_LEN {
        return Err(TitleError::TooLong(c.len()));
    }
    Ok(())
}

/// Size and modification time of one title's file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Length in bytes.
    pub len: u64,
    /// Modification time in nanoseconds since the Unix epoch (negative before).
    pub modified_ns: i128,
}

impl FileInfo {
    fn of(meta: &fs::Metadata) -> Self {
        FileInfo {
            len: meta.len(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Claims 2-3: the titles on one disk, found by [`scan`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Every title of the disk's library with its file's size and time.
    pub titles: BTreeMap<Title, FileInfo>,
}

impl Catalog {
    /// A digest of the titles, sizes and modification times: equal for equal
    /// libraries, in any process on any node (64-bit FNV-1a), so it can ride
    /// the ring in disk reports and tell the supervisor when to refresh its
    /// catalog of the disk.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::new();
        h.write(&(self.titles.len() as u64).to_le_bytes());
        for (title, info) in &self.titles {
            h.write(title.as_str().as_bytes());
            // No title contains a NUL, so the title ends here.
            h.write(&[0]);
            h.write(&info.len.to_le_bytes());
            h.write(&info.modified_ns.to_le_bytes());
        }
        h.0
    }
}

/// 64-bit FNV-1a: fixed constants, so the same bytes hash the same everywhere.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Why a library could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The disk has no library folder (or it is not a folder); the disk may
    /// not be mounted. The runtime may treat this as an empty library.
    #[error("there is no library folder at {}", path.display())]
    NoLibrary {
        /// The missing folder, `<mount>/library`.
        path: PathBuf,
    },
    /// The library folder could not be read.
    #[error("cannot read the library folder {}: {source}", path.display())]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Lists the titles of the library of the disk mounted at `mount`
/// (`<mount>/library`): regular files at depth 1 and 2 whose relative paths are
/// valid titles. Symlinks are not followed out of the library: one is listed
/// only if it resolves to a regular file inside the library folder (symlinked
/// sub-folders are not entered). Deeper files, invalid names and other kinds
/// of files are skipped; an unreadable sub-folder is skipped with a warning.
pub fn scan(mount: &Path) -> Result<Catalog, ScanError> {
    let library = library_dir(mount);
    let io_err = |path: &Path, source: io::Error| ScanError::Io {
        path: path.to_owned(),
        source,
    };
    let root = match fs::canonicalize(&library) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ScanError::NoLibrary { path: library })
        }
        Err(e) => return Err(io_err(&library, e)),
    };
    match fs::metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ScanError::NoLibrary { path: library }),
        Err(e) => return Err(io_err(&library, e)),
    }
    let mut titles = BTreeMap::new();
    for entry in fs::read_dir(&root).map_err(|e| io_err(&library, e))? {
        let entry = entry.map_err(|e| io_err(&library, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| check_component(n).is_ok()) else {
            continue;
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            let folder = entry.path();
            let entries = match fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(folder = %folder.display(), error = %e, "library sub-folder skipped");
                    continue;
                }
            };
            for inner in entries {
                let inner = match inner {
                    Ok(inner) => inner,
                    Err(e) => {
                        tracing::warn!(folder = %folder.display(), error = %e, "library sub-folder cut short");
                        break;
                    }
                };
                let inner_name = inner.file_name();
                let Some(inner_name) = inner_name.to_str().filter(|n| check_component(n).is_ok())
                else {
                    continue;
                };
                if let Some(info) = file_info(&root, &inner) {
                    titles.insert(Title(format!("{name}/{inner_name}")), info);
                }
            }
        } else if let Some(info) = file_info(&root, &entry) {
            titles.insert(Title(name.to_owned()), info);
        }
    }
    Ok(Catalog { titles })
}

/// The file behind a library entry if it is a title: a regular file, or a
/// symlink that resolves to a regular file inside `root`.
fn file_info(root: &Path, entry: &fs::DirEntry) -> Option<FileInfo> {
    let kind = entry.file_type().ok()?;
    let path = entry.path();
    if kind.is_file() {
        let meta = fs::symlink_metadata(&path).ok()?;
        meta.is_file().then(|| FileInfo::of(&meta))
    } else if kind.is_symlink() {
        let target = fs::canonicalize(&path).ok()?;
        if !target.starts_with(root) {
            return None;
        }
        let meta = fs::metadata(&target).ok()?;
        meta.is_file().then(|| FileInfo::of(&meta))
    } else {
        None
    }
}

/// Opens `title` on the disk mounted at `mount` for reading, and returns the
/// file with its canonical path. Anything that resolves outside the library
/// (a symlink out of it) is refused with [`io::ErrorKind::PermissionDenied`]:
/// the check is made on the file actually opened (its device and inode must be
/// those of the canonical path, which must lie in the library), so swapping a
/// symlink while opening cannot escape either. A title that is not a regular
/// file is [`io::ErrorKind::NotFound`]. The open never blocks on a FIFO.
pub fn open_title(mount: &Path, title: &Title) -> io::Result<(File, PathBuf)> {
    let root = fs::canonicalize(library_dir(mount))?;
    let path = root.join(title.as_str());
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&path)?;
    let opened = file.metadata()?;
    let canonical = fs::canonicalize(&path)?;
    if !canonical.starts_with(&root) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the title {title} resolves outside the library"),
        ));
    }
    let named = fs::metadata(&canonical)?;
    if (named.dev(), named.ino()) != (opened.dev(), opened.ino()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the title {title} changed while it was being opened"),
        ));
    }
    if !opened.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the title {title} is not a regular file"),
        ));
    }
    // Back to ordinary blocking reads (O_NONBLOCK only guarded the open).
    nix::fcntl::fcntl(
        file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(io::Error::from)?;
    Ok((file, canonical))
}

/// Scans the library of the disk mounted at `mount` again and returns the
/// catalog only if its digest differs from `previous_digest` (`None`: no
/// catalog yet, so any scan is news). The runtime calls it every few seconds,
/// so new and removed files are noticed without a restart.
pub fn rescan_if_changed(
    mount: &Path,
    previous_digest: Option<u64>,
) -> Result<Option<Catalog>, ScanError> {
    let catalog = scan(mount)?;
    Ok((Some(catalog.digest()) != previous_digest).then_some(catalog))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, SystemTime};

    fn library(mount: &Path) -> PathBuf {
        let lib = library_dir(mount);
        fs::create_dir_all(&lib).unwrap();
        lib
    }

    fn names(c: &Catalog) -> Vec<&str> {
        c.titles.keys().map(Title::as_str).collect()
    }

    #[test]
    fn the_title_table() {
        let long = "a".repeat(MAX_COMPONENT_LEN);
        let too_long = "a".repeat(MAX_COMPONENT_LEN + 1);
        let good = [
            "movie.mp4",
            "movie/index.m3u8",
            "movie/seg_001.ts",
            "A-b_c.d",
            "0",
            "a..",
            "x/y",
            long.as_str(),
        ];
        for s in good {
            let t = parse_title(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(t.as_str(), s);
            assert_eq!(t.to_string(), s);
        }
        let two_long = format!("{long}/{long}");
        assert!(parse_title(&two_long).is_ok());
        let bad: Vec<(&str, TitleError)> = vec![
            ("", TitleError::Empty),
            ("..", TitleError::BadStart('.')),
            (".", TitleError::BadStart('.')),
            ("a/../b", TitleError::BadStart('.')),
            ("a/b/../c", TitleError::BadStart('.')),
            ("a/..", TitleError::BadStart('.')),
            ("../a", TitleError::BadStart('.')),
            ("/etc/passwd", TitleError::Absolute),
            (".hidden", TitleError::BadStart('.')),
            ("movie/.hidden", TitleError::BadStart('.')),
            ("a/b/c", TitleError::TooDeep(3)),
            ("a%2fb", TitleError::BadChar('%')),
            ("%2e%2e", TitleError::BadStart('%')),
            ("a\\b", TitleError::BadChar('\\')),
            ("..\\a", TitleError::BadStart('.')),
            ("a\0b", TitleError::BadChar('\0')),
            ("a//b", TitleError::EmptyComponent),
            ("a/", TitleError::EmptyComponent),
            (
                too_long.as_str(),
                TitleError::TooLong(MAX_COMPONENT_LEN + 1),
            ),
            ("vidéo.mp4", TitleError::BadChar('é')),
            ("ａ", TitleError::BadStart('ａ')),
            ("a b", TitleError::BadChar(' ')),
            ("-rf", TitleError::BadStart('-')),
            ("_x", TitleError::BadStart('_')),
            ("a:b", TitleError::BadChar(':')),
        ];
        for (s, want) in bad {
            assert_eq!(parse_title(s), Err(want), "{s:?}");
        }
    }

    #[test]
    fn a_title_is_a_string_in_serde_and_checked_when_read() {
        let t = parse_title("movie/index.m3u8").unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"movie/index.m3u8\"");
        assert_eq!(serde_json::from_str::<Title>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Title>("\"../etc/passwd\"").is_err());
        assert_eq!(t.folder(), Some("movie"));
        assert_eq!(t.file_name(), "index.m3u8");
        let flat = parse_title("a.mp4").unwrap();
        assert_eq!((flat.folder(), flat.file_name()), (None, "a.mp4"));
    }

    proptest! {
        #[test]
        fn titles_made_by_the_grammar_parse(
            t in "[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?"
        ) {
            let parsed = parse_title(&t).unwrap();
            prop_assert_eq!(parsed.as_str(), t.as_str());
        }

        #[test]
        fn any_accepted_string_stays_in_the_library(s in "[a-z./%\\\\\\x00-]{0,12}|\\PC{0,12}") {
            if let Ok(t) = parse_title(&s) {
                let p = Path::new(t.as_str());
                prop_assert!(p.is_relative());
                let parts: Vec<_> = p.components().collect();
                prop_assert!(!parts.is_empty() && parts.len() <= 2);
                for c in parts {
                    prop_assert!(matches!(c, std::path::Component::Normal(_)));
                    let c = c.as_os_str().to_str().unwrap();
                    prop_assert!(!c.starts_with('.'));
                }
                prop_assert!(!s.contains(['%', '\\', '\0']));
            }
        }
    }

    #[test]
    fn scan_finds_depth_one_and_two_and_skips_the_rest() {
        let mount = tempfile::tempdir().unwrap();
        let lib = library(mount.path());
        fs::write(lib.join("movie.mp4"), b"0123456789").unwrap();
        fs::create_dir(lib.join("show")).unwrap();
        fs::write(lib.join("show/index.m3u8"), b"#EXTM3U\n").unwrap();
        fs::write(lib.join("show/seg_001.ts"), b"ts").unwrap();
        fs::create_dir(lib.join("show/deeper")).unwrap();
        fs::write(lib.join("show/deeper/too-deep.ts"), b"no").unwrap();
        fs::write(lib.join(".hidden"), b"no").unwrap();
        fs::write(lib.join("with space.mp4"), b"no").unwrap();
        fs::write(lib.join("vidéo.mp4"), b"no").unwrap();
        fs::create_dir(lib.join(".git")).unwrap();
        fs::write(lib.join(".git/config"), b"no").unwrap();
        fs::create_dir(lib.join("empty")).unwrap();
        nix::unistd::mkfifo(
            &lib.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        // Outside the library, on the same mount.
        fs::write(mount.path().join("outside.mp4"), b"no").unwrap();

        let c = scan(mount.path()).unwrap();
        assert_eq!(
            names(&c),
            ["movie.mp4", "show/index.m3u8", "show/seg_001.ts"]
        );
        assert_eq!(c.titles["movie.mp4"].len, 10);
        assert!(c.titles["movie.mp4"].modified_ns > 0);
    }

    #[test]
    fn a_mount_without_a_library_is_reported_as_such() {
        let mount = tempfile::tempdir().unwrap();
        assert!(matches!(
            scan(mount.path()),
            Err(ScanError::NoLibrary { .. })
        ));
        fs::write(library_dir(mount.path()), b"a file").unwrap();
        let err = scan(mount.path()).unwrap_err();
        assert!(matches!(err, ScanError::NoLibrary { .. }), "{err}");
        assert!(err.to_string().contains("library"));
        assert!(rescan_if_changed(mount.path(), None).is_err());
    }

    #[test]
    fn a_symlink_out_of_the_library_is_skipped_and_refused() {
        let mount = tempfile::tempdir().unwrap();
        let lib = library(mount.path());
        let secret = mount.path().join("secret.mp4");
        fs::write(&secret, b"secret").unwrap();
        symlink(&secret, lib.join("escape.mp4")).unwrap();
        symlink("../secret.mp4", lib.join("relative.mp4")).unwrap();
        symlink("/etc/passwd", lib.join("passwd")).unwrap();
        fs::create_dir(lib.join("show")).unwrap();
        symlink("../../secret.mp4", lib.join("show/escape.ts")).unwrap();
        // A symlinked folder pointing out is not entered either.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("x.mp4"), b"no").unwrap();
        symlink(outside.path(), lib.join("linked")).unwrap();

        let c = scan(mount.path()).unwrap();
        assert!(c.titles.is_empty(), "{:?}", names(&c));
        for t in [
            "escape.mp4",
            "relative.mp4",
            "passwd",
            "show/escape.ts",
            "linked/x.mp4",
        ] {
            let err = open_title(mount.path(), &parse_title(t).unwrap()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{t}: {err}");
        }
    }

    #[test]
    fn a_symlink_inside_the_library_is_listed_and_opens() {
        let mount = tempfile::tempdir().unwrap();
        let lib = library(mount.path());
        fs::create_dir(lib.join("show")).unwrap();
        fs::write(lib.join("show/seg_001.ts"), b"segment").unwrap();
        symlink("show/seg_001.ts", lib.join("alias.ts")).unwrap();
        symlink("../alias.ts", lib.join("show/seg_002.ts")).unwrap();
        symlink("missing.ts", lib.join("dangling.ts")).unwrap();
        symlink("show", lib.join("folder-link.ts")).unwrap();

        let c = scan(mount.path()).unwrap();
        assert_eq!(
            names(&c),
            ["alias.ts", "show/seg_001.ts", "show/seg_002.ts"]
        );
        assert_eq!(c.titles["alias.ts"], c.titles["show/seg_001.ts"]);
        let (mut file, path) = open_title(mount.path(), &parse_title("alias.ts").unwrap()).unwrap();
        let mut bytes = String::new();
        file.read_to_string(&mut bytes).unwrap();
        assert_eq!(bytes, "segment");
        assert_eq!(path, fs::canonicalize(lib.join("show/seg_001.ts")).unwrap());
    }

    #[test]
    fn a_symlinked_library_folder_works() {
        let mount = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("a.mp4"), b"a").unwrap();
        symlink(elsewhere.path(), library_dir(mount.path())).unwrap();
        let c = scan(mount.path()).unwrap();
        assert_eq!(names(&c), ["a.mp4"]);
        assert!(open_title(mount.path(), &parse_title("a.mp4").unwrap()).is_ok());
    }

    #[test]
    fn open_title_refuses_folders_fifos_and_missing_titles() {
        let mount = tempfile::tempdir().unwrap();
        let lib = library(mount.path());
        fs::create_dir(lib.join("show")).unwrap();
        nix::unistd::mkfifo(
            &lib.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        for (t, kind) in [
            ("show", io::ErrorKind::NotFound),
            ("pipe", io::ErrorKind::NotFound),
            ("nothing.mp4", io::ErrorKind::NotFound),
        ] {
            let err = open_title(mount.path(), &parse_title(t).unwrap()).unwrap_err();
            assert_eq!(err.kind(), kind, "{t}: {err}");
        }
        fs::write(lib.join("show/a.ts"), b"a").unwrap();
        let (file, _) = open_title(mount.path(), &parse_title("show/a.ts").unwrap()).unwrap();
        let flags = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & nix::fcntl::OFlag::O_NONBLOCK.bits(), 0);
    }

    fn write_at(path: &Path, bytes: &[u8], time: SystemTime) {
        fs::write(path, bytes).unwrap();
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[test]
    fn the_digest_follows_the_content_and_not_the_place() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let make = || {
            let mount = tempfile::tempdir().unwrap();
            let lib = library(mount.path());
            write_at(&lib.join("a.mp4"), b"aaaa", t0);
            fs::create_dir(lib.join("show")).unwrap();
            write_at(&lib.join("show/index.m3u8"), b"#EXTM3U\n", t0);
            mount
        };
        let (one, two) = (make(), make());
        let base = scan(one.path()).unwrap().digest();
        assert_eq!(base, scan(two.path()).unwrap().digest());
        assert_ne!(base, Catalog::default().digest());

        let lib = library_dir(one.path());
        write_at(&lib.join("b.mp4"), b"b", t0);
        let added = scan(one.path()).unwrap().digest();
        assert_ne!(added, base);
        fs::remove_file(lib.join("b.mp4")).unwrap();
        assert_eq!(scan(one.path()).unwrap().digest(), base);
        // Same length, new time.
        write_at(&lib.join("a.mp4"), b"AAAA", t0 + Duration::from_nanos(1));
        let touched = scan(one.path()).unwrap().digest();
        assert_ne!(touched, base);
        // Same time, new length.
        write_at(&lib.join("a.mp4"), b"aaaaa", t0);
        assert_ne!(scan(one.path()).unwrap().digest(), base);
        write_at(&lib.join("a.mp4"), b"aaaa", t0);
        assert_eq!(scan(one.path()).unwrap().digest(), base);
        // A rename is a change.
        fs::rename(lib.join("a.mp4"), lib.join("c.mp4")).unwrap();
        assert_ne!(scan(one.path()).unwrap().digest(), base);
    }

    const PINNED: u64 = 4_331_760_699_786_676_431;

    #[test]
    fn the_digest_is_fixed_across_processes() {
        let mut c = Catalog::default();
        c.titles.insert(
            parse_title("a.mp4").unwrap(),
            FileInfo {
                len: 4,
                modified_ns: 1,
            },
        );
        // The published FNV-1a test vectors.
        let fnv = |b: &[u8]| {
            let mut h = Fnv::new();
            h.write(b);
            h.0
        };
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
        // Pinned: a change here makes nodes of two versions disagree.
        assert_eq!(c.digest(), PINNED);
    }

    #[test]
    fn rescan_reports_only_changes() {
        let mount = tempfile::tempdir().unwrap();
        let lib = library(mount.path());
        let first = rescan_if_changed(mount.path(), None)
            .unwrap()
            .expect("a first catalog");
        assert!(first.titles.is_empty());
        let d = first.digest();
        assert!(rescan_if_changed(mount.path(), Some(d)).unwrap().is_none());
        fs::write(lib.join("new.mp4"), b"new").unwrap();
        let second = rescan_if_changed(mount.path(), Some(d))
            .unwrap()
            .expect("the new file");
        assert_eq!(names(&second), ["new.mp4"]);
        let d2 = second.digest();
        assert!(rescan_if_changed(mount.path(), Some(d2)).unwrap().is_none());
        fs::remove_file(lib.join("new.mp4")).unwrap();
        let third = rescan_if_changed(mount.path(), Some(d2))
            .unwrap()
            .expect("the removal");
        assert!(third.titles.is_empty());
        assert_eq!(third.digest(), d);
    }
}

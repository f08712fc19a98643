//! A node's life number across restarts. Receivers refuse frames of a life
//! below the highest they have seen (replay windows), so every start must be
//! above every earlier life, refutations included. The wall clock in
//! milliseconds usually is; a clock stepped back is not. The last life is
//! kept in a small file so the next start is above it either way.

use std::io;
use std::path::{Path, PathBuf};

use ringcast_proto::{Incarnation, NodeId};

/// Where a node keeps its last life.
#[derive(Clone, Debug)]
pub struct LifeFile {
    path: PathBuf,
}

impl LifeFile {
    /// The life file of `node` in `dir`.
    pub fn new(dir: &Path, node: NodeId) -> LifeFile {
        LifeFile {
            path: dir.join(format!("node-{}.life", node.0)),
        }
    }

    /// The last life recorded, if the file exists and holds a number.
    pub fn last(&self) -> Option<Incarnation> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.trim().parse().ok().map(Incarnation)
    }

    /// The life to start with: the clock's, or one above the last recorded.
    pub fn next(&self, clock_ms: u64) -> Incarnation {
        let floor = self.last().map_or(Incarnation(0), Incarnation::next);
        Incarnation(clock_ms).max(floor)
    }

    /// Records `life` (written to a temporary file, then renamed).
    pub fn record(&self, life: Incarnation) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("life.tmp");
        std::fs::write(&tmp, format!("{}\n", life.0))?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_above_the_last_recorded_life_even_when_the_clock_went_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = LifeFile::new(dir.path(), NodeId(3));
        assert_eq!(f.next(1_000), Incarnation(1_000), "no file: the clock");
        f.record(Incarnation(5_000)).unwrap();
        assert_eq!(f.last(), Some(Incarnation(5_000)));
        assert_eq!(f.next(1_000), Incarnation(5_001), "the clock stepped back");
        assert_eq!(f.next(9_000), Incarnation(9_000), "the clock moved on");
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let f = LifeFile::new(dir.path(), NodeId(1));
        std::fs::write(f.path(), "not a number").unwrap();
        assert_eq!(f.next(42), Incarnation(42));
    }
}

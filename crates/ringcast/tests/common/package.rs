//! The Debian package for tests: built once per test binary by
//! `scripts/package-deb --dev` from the binary under test, unpacked or
//! installed (`dpkg --root`) into fresh folders, and the installed unit's
//! command line as systemd would run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{test_root, BIN};

/// The workspace's root, where `scripts/` is.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the package once for this test binary; returns its path.
pub fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        // The debug binary the tests run is the one packaged.
        assert!(
            Path::new(BIN).ends_with("debug/ringcast"),
            "unexpected binary {BIN}"
        );
        let out = Command::new(workspace().join("scripts/package-deb"))
            .arg("--dev")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/package-deb");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/package-deb failed\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deb = stdout.lines().last().map(str::trim).unwrap_or_default();
        let path = workspace().join(deb);
        assert!(
            deb.ends_with(".deb") && path.is_file(),
            "scripts/package-deb printed no package path: {stdout:?}"
        );
        path
    })
}

/// A fresh folder for one test, removed when the test passes (kept for a
/// look when it fails).
pub struct Scratch(pub PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn scratch(name: &str) -> Scratch {
    let dir = test_root().join(format!("ringcast-pkg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package unpacked (not installed) into a fresh folder.
pub fn unpacked(name: &str) -> Scratch {
    let root = scratch(name);
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(package())
        .arg(&*root));
    root
}

/// The package installed into a fresh root, as `dpkg -i` on a machine
/// would: its maintainer scripts made the user's files (a first cluster
/// file with fresh keys) under the root.
pub fn install(name: &str) -> Scratch {
    let root = scratch(name);
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // A fresh root has no libc package to satisfy Depends (the host's libc
    // runs the binary), and no shell to chroot the maintainer scripts into:
    // they run with DPKG_ROOT set, which they honour.
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-depends",
            "--force-script-chrootless",
            "--log=/dev/null",
            "-i",
        ])
        .arg(package()));
    root
}

/// The unit's `ExecStart` as words, with `${VAR}` and `$VAR` expanded from
/// the unit's `Environment=` and the defaults file, as systemd does.
pub fn exec_start(unit: &str, defaults: &str) -> Vec<String> {
    let mut env = BTreeMap::new();
    let assignments = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .chain(
            defaults
                .lines()
                .filter(|l| !l.trim_start().starts_with('#')),
        );
    for assignment in assignments {
        if let Some((k, v)) = assignment.split_once('=') {
            env.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    line.split_whitespace()
        .filter_map(|word| {
            if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                // ${VAR} is one word, even empty.
                Some(env.get(name).cloned().unwrap_or_default())
            } else if let Some(name) = word.strip_prefix('$') {
                // $VAR splits into words; empty, it is none.
                env.get(name).filter(|v| !v.is_empty()).cloned()
            } else {
                Some(word.to_string())
            }
        })
        .collect()
}

/// The installed unit's `ExecStart` under `root`: expanded from the unit's
/// environment and the installed defaults file, each absolute path taken
/// inside the root.
pub fn unit_command(root: &Path) -> Vec<String> {
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ringcast.service")).unwrap();
    let defaults = std::fs::read_to_string(root.join("etc/default/ringcast")).unwrap();
    exec_start(&unit, &defaults)
        .iter()
        .map(|w| match w.strip_prefix('/') {
            Some(path) => root.join(path).display().to_string(),
            None => w.clone(),
        })
        .collect()
}

//! The Debian package as an operator gets it: `scripts/package-deb` builds it
//! (from the binary under test), its contents are what a node needs, its
//! unit passes `systemd-analyze verify`, its manual pages render and its
//! bash completion completes; installed into a fresh root, the installed
//! binary starts from the installed unit's command line against the default
//! configuration the installation wrote, and tells its service manager READY.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::notify::Manager;
use common::{is_root, isolate_network, test_root, BIN, LIMIT};

/// The workspace's root, where `scripts/` is.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the package once for this test binary; returns its path.
fn package() -> &'static Path {
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
struct Scratch(PathBuf);

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

fn scratch(name: &str) -> Scratch {
    let dir = test_root().join(format!("ringcast-pkg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn run(cmd: &mut Command) -> String {
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
fn unpacked(name: &str) -> Scratch {
    let root = scratch(name);
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(package())
        .arg(&*root));
    root
}

#[test]
fn the_package_holds_the_binary_unit_defaults_manual_and_completions() {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(package()));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in [
        "./usr/bin/ringcast",
        "./lib/systemd/system/ringcast.service",
        "./etc/default/ringcast",
        "./usr/share/man/man1/ringcast.1.gz",
        "./usr/share/man/man1/ringcast-node.1.gz",
        "./usr/share/man/man1/ringcast-config-check.1.gz",
        "./usr/share/bash-completion/completions/ringcast",
        "./usr/share/zsh/vendor-completions/_ringcast",
        "./usr/share/fish/vendor_completions.d/ringcast.fish",
        "./usr/share/doc/ringcast/deploy.md",
    ] {
        assert!(
            files.contains(&want),
            "the package lacks {want}:\n{listing}"
        );
    }
    let binary = listing
        .lines()
        .find(|l| l.ends_with("./usr/bin/ringcast"))
        .unwrap();
    assert!(
        binary.starts_with("-rwxr-xr-x"),
        "the binary is not executable: {binary}"
    );

    let control = run(Command::new("dpkg-deb").arg("-f").arg(package()));
    assert!(control.contains("Package: ringcast"), "{control}");
    assert!(
        control
            .lines()
            .any(|l| l.starts_with("Depends:") && l.contains("adduser")),
        "the package must depend on adduser (its postinst makes the user):\n{control}"
    );
    // An operator's edits to the defaults survive an upgrade.
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(package())
        .arg("conffiles"));
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/default/ringcast"),
        "/etc/default/ringcast is not a conffile: {conffiles:?}"
    );
    let root = unpacked("contents");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ringcast.service")).unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=",
        "User=ringcast",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(want)),
            "the unit lacks {want}:\n{unit}"
        );
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !is_root() {
        eprintln!("skipped: the unit is verified against the package's binary in a private mount namespace, which needs root");
        return;
    }
    let root = unpacked("verify");
    let unit = root.join("lib/systemd/system/ringcast.service");
    // systemd-analyze checks that ExecStart's binary exists: the package's
    // /usr/bin is laid over the host's in a mount namespace of this command
    // only, so the host never sees it.
    let script = format!(
        "mount --make-rprivate / && \
         mount -t overlay overlay -o lowerdir={}:/usr/bin /usr/bin && \
         exec systemd-analyze verify --man=no {}",
        root.join("usr/bin").display(),
        unit.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("run unshare and systemd-analyze (scripts/install-test-deps installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );
}

#[test]
fn the_manual_pages_render_and_bash_completes_the_commands() {
    let root = unpacked("manual");
    let man1 = root.join("usr/share/man/man1");
    for page in [
        "ringcast",
        "ringcast-node",
        "ringcast-config-init",
        "ringcast-status",
    ] {
        let out = Command::new("man")
            .arg("-l")
            .arg(man1.join(format!("{page}.1.gz")))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .expect("run man (scripts/install-test-deps installs man-db)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "man {page} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("NAME") && text.contains(page),
            "man {page} rendered:\n{text}"
        );
    }
    let node = String::from_utf8_lossy(
        &Command::new("man")
            .arg("-l")
            .arg(man1.join("ringcast-node.1.gz"))
            .env("MANPAGER", "cat")
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        node.contains("--state-dir"),
        "ringcast-node(1) lacks its options:\n{node}"
    );

    let completion = root.join("usr/share/bash-completion/completions/ringcast");
    let complete = |words: &str| -> Vec<String> {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _ringcast ringcast \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            completion.display()
        );
        let out = run(Command::new("bash").args(["-c", &script]));
        out.lines().map(String::from).collect()
    };
    let top = complete("ringcast ''");
    for want in ["node", "status", "config", "completions", "man"] {
        assert!(
            top.iter().any(|w| w == want),
            "ringcast <TAB> lacks {want}: {top:?}"
        );
    }
    let config = complete("ringcast config ''");
    for want in ["check", "serve", "init"] {
        assert!(
            config.iter().any(|w| w == want),
            "ringcast config <TAB> lacks {want}: {config:?}"
        );
    }
    let node = complete("ringcast node --st");
    assert_eq!(
        node,
        vec!["--state-dir".to_string()],
        "ringcast node --st<TAB>"
    );
}

/// The unit's `ExecStart` as words, with `${VAR}` and `$VAR` expanded from
/// the unit's `Environment=` and the defaults file, as systemd does.
fn exec_start(unit: &str, defaults: &str) -> Vec<String> {
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

#[test]
fn the_installed_node_starts_from_its_unit_against_the_installed_configuration() {
    if !is_root() {
        eprintln!("skipped: installing into a fresh root (dpkg --root) and isolating its node's network need root");
        return;
    }
    isolate_network();
    let root = scratch("install");
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
    let etc = root.join("etc/ringcast");
    for file in ["cluster.toml", "cluster.key", "admin.token"] {
        assert!(
            etc.join(file).is_file(),
            "the installation wrote no /etc/ringcast/{file}"
        );
    }
    let checked = run(Command::new(root.join("usr/bin/ringcast"))
        .args(["config", "check"])
        .arg(etc.join("cluster.toml")));
    assert!(checked.contains("ok"), "{checked}");

    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ringcast.service")).unwrap();
    let defaults = std::fs::read_to_string(root.join("etc/default/ringcast")).unwrap();
    let words = exec_start(&unit, &defaults);
    // The unit names host paths; the installation is under `root`.
    let words: Vec<String> = words
        .iter()
        .map(|w| match w.strip_prefix('/') {
            Some(path) => root.join(path).display().to_string(),
            None => w.clone(),
        })
        .collect();
    assert_eq!(
        Path::new(&words[0]),
        root.join("usr/bin/ringcast"),
        "ExecStart does not start the installed binary: {words:?}"
    );
    let manager = Manager::bind(&root.join("notify.sock"));
    let log = root.join("node.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut node = Command::new(&words[0])
        .args(&words[1..])
        .env("NOTIFY_SOCKET", root.join("notify.sock"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("start the installed node");
    let describe = || std::fs::read_to_string(&log).unwrap_or_default();
    let ready = manager.expect("READY=1", describe);
    assert!(
        ready.contains("supervises"),
        "READY of a lone node: {ready:?}"
    );
    assert!(
        root.join("var/lib/ringcast")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "the node kept no state in /var/lib/ringcast (--state-dir)\n{}",
        describe()
    );
    // SIGTERM, as `systemctl stop` sends: STOPPING, then a clean exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    manager.expect("STOPPING=1", describe);
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = node.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the node exited {status}\n{}", describe());
}

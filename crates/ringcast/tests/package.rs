//! The Debian package as an operator gets it: `scripts/package-deb` builds it
//! (from the binary under test), its contents are what a node needs, its
//! unit passes `systemd-analyze verify`, its manual pages render and its
//! bash completion completes; installed into a fresh root, the installed
//! binary starts from the installed unit's command line against the default
//! configuration the installation wrote, and tells its service manager READY.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::notify::Manager;
use common::package::{install, package, run, unit_command, unpacked};
use common::{is_root, isolate_network, LIMIT};

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

#[test]
fn the_installed_node_starts_from_its_unit_against_the_installed_configuration() {
    if !is_root() {
        eprintln!("skipped: installing into a fresh root (dpkg --root) and isolating its node's network need root");
        return;
    }
    isolate_network();
    let root = install("install");
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

    let words = unit_command(&root);
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

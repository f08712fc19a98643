//! Packet captures on loopback for the tests that show what crosses the
//! wire (`tcpdump`, as root, in the test's own network namespace).

use std::path::Path;
use std::process::{Command, Stdio};

/// A packet capture of loopback port `port` while `during` runs: every
/// byte that crossed it (`tcpdump -w`, started before and stopped after;
/// `--immediate-mode`, or packets still in the kernel's capture buffer when
/// it stops are lost).
pub fn captured(dir: &Path, port: u16, during: impl FnOnce()) -> Vec<u8> {
    captured_filter(dir, &format!("tcp port {port}"), during)
}

/// [`captured`] of every packet on loopback that `filter` (a pcap
/// filter, such as `tcp or udp`) passes.
pub fn captured_filter(dir: &Path, filter: &str, during: impl FnOnce()) -> Vec<u8> {
    use std::io::{BufRead, BufReader};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pcap = dir.join(format!("capture-{n}.pcap"));
    let mut dump = Command::new("tcpdump")
        .args([
            "--immediate-mode",
            "-B",
            "65536",
            "-i",
            "lo",
            "-U",
            "-s",
            "0",
            "-w",
        ])
        .arg(&pcap)
        .args(filter.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed by scripts/install-test-deps");
    // tcpdump says when it listens; nothing before that is captured.
    let mut said = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    during();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut said, &mut rest).unwrap();
    assert!(dump.wait().unwrap().success());
    // A capture that lost packets proves nothing about what was not in it.
    let dropped = rest
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert_eq!(dropped, Some(0), "tcpdump: {rest}");
    std::fs::read(&pcap).unwrap()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

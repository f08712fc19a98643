//! The cluster file parser: `ringcast_config::clusterfile::load`.
//!
//! The input (UTF-8) is written to `cluster.toml` in a per-process temporary
//! folder that also holds valid key and token files, so that parsing reaches
//! validation: `cluster.key` (one key), `rotate.key` (two keys with ids),
//! `admin.token`. Text after a NUL character, if any, is written to
//! `fuzz.key` first, so the key file parser is fuzzed too. Key and token file
//! names that are not plain names in that folder are skipped (the fuzzer is
//! not to read `/dev/zero`).
//!
//! Checks: no panic; an error lists at least one problem, each at a line of
//! the file; a loaded file yields, for every node it defines, settings that
//! pass `NodeSettings::validate`, a keyring, and a protocol node that starts;
//! the JSON the configuration service serves for it decodes to the same
//! settings; its `Debug` output never shows a key.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ringcast_config::clusterfile::{load, ConfigFileError};
use ringcast_proto::{Incarnation, Node};

const KEY_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const KEY2_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ringcast-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        std::fs::write(dir.join("cluster.key"), format!("# test key\n{KEY_HEX}\n")).unwrap();
        std::fs::write(dir.join("rotate.key"), format!("2:{KEY2_HEX}\n1:{KEY_HEX}\n")).unwrap();
        std::fs::write(dir.join("admin.token"), "let-me-in\n").unwrap();
        dir
    })
}

/// Whether a key or token file name stays a plain name in the folder.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 64
        && !name.contains(['/', '\\', '\0'])
        && name != "."
        && name != ".."
}

/// Whether the file names only files of the folder (or does not parse, in
/// which case the loader reads no other file either).
fn safe(text: &str) -> bool {
    let Ok(value) = text.parse::<toml::Table>() else {
        return true;
    };
    let Some(cluster) = value.get("cluster").and_then(|c| c.as_table()) else {
        return true;
    };
    ["key_file", "admin_token_file"]
        .iter()
        .all(|k| match cluster.get(*k) {
            Some(toml::Value::String(s)) => plain(s),
            _ => true,
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, key) = match text.split_once('\0') {
        Some((file, key)) => (file, Some(key)),
        None => (text, None),
    };
    if !safe(file) {
        return;
    }
    let dir = dir();
    let key_path = dir.join("fuzz.key");
    match key {
        Some(key) => std::fs::write(&key_path, key).unwrap(),
        None => {
            let _ = std::fs::remove_file(&key_path);
        }
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, file).unwrap();

    match load(&path) {
        Ok(cluster) => {
            let shown = format!("{cluster:?}");
            assert!(!shown.contains("0707070707") && !shown.contains("5a5a5a5a5a"));
            let ids = cluster.node_ids();
            assert!(!ids.is_empty(), "a loaded cluster file defines no node");
            for id in ids {
                let settings = cluster.node_settings(id).expect("a node the file defines");
                assert!(cluster.http_addr(id).is_some());
                if let Err(e) = settings.validate() {
                    panic!("node {id} of a loaded file has invalid settings: {e}\n{file}");
                }
                let keyring = settings.keyring();
                if let Err(e) =
                    Node::new(settings.proto.clone(), keyring, Incarnation(1), 1, Instant::now())
                {
                    panic!("node {id} of a loaded file does not start: {e}\n{file}");
                }
                // The JSON the configuration service serves decodes to the same settings.
                let json = serde_json::to_string(&settings).expect("settings serialize");
                let back: ringcast_config::settings::NodeSettings =
                    serde_json::from_str(&json).expect("served settings decode");
                assert_eq!(back, settings, "settings JSON does not round-trip: {json}");
                let shown = format!("{settings:?}");
                assert!(!shown.contains("0707070707") && !shown.contains("5a5a5a5a5a"));
            }
        }
        Err(e) => {
            let lines = file.lines().count().max(1);
            let message = e.to_string();
            if let ConfigFileError::Invalid { problems, .. } = &e {
                assert!(!problems.is_empty(), "an invalid file with no problem listed");
                for p in problems {
                    assert!(
                        p.line >= 1 && p.line <= lines + 1,
                        "problem at line {} of a {lines}-line file: {p}",
                        p.line
                    );
                }
            }
            assert!(!message.contains(KEY_HEX) && !message.contains(KEY2_HEX));
        }
    }
});

//! Title names: `ringcast_node::library::catalog::parse_title`.
//!
//! Checks: no panic; an accepted title is exactly the input, not absolute,
//! has 1 or 2 components, none empty, `.` or `..`, none starting with
//! anything but a letter or digit, only `[A-Za-z0-9._-]`, each at most 128
//! bytes, and joined to a library folder it stays inside it. `FromStr`,
//! `TryFrom<String>` and serde agree with `parse_title`. (A component such as
//! `a..b` is accepted: it is a file name, not a parent reference.)

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use ringcast_node::library::catalog::{library_dir, parse_title, Title, MAX_COMPONENT_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_title(s);
    assert_eq!(s.parse::<Title>(), parsed);
    assert_eq!(Title::try_from(s.to_string()), parsed);
    let Ok(title) = parsed else {
        return;
    };
    assert_eq!(title.as_str(), s);
    assert!(!s.starts_with('/'), "absolute title {s:?}");
    let components: Vec<&str> = s.split('/').collect();
    assert!(
        (1..=2).contains(&components.len()),
        "title {s:?} has {} components",
        components.len()
    );
    for c in &components {
        assert!(!c.is_empty(), "empty component in {s:?}");
        assert!(*c != "." && *c != "..", "dot component in {s:?}");
        assert!(c.len() <= MAX_COMPONENT_LEN);
        let first = c.chars().next().unwrap();
        assert!(first.is_ascii_alphanumeric(), "component starts with {first:?} in {s:?}");
        assert!(
            c.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')),
            "bad character in {s:?}"
        );
    }
    match title.folder() {
        Some(folder) => assert_eq!(format!("{folder}/{}", title.file_name()), s),
        None => assert_eq!(title.file_name(), s),
    }
    // It names something inside the library, never above it.
    let lib = library_dir(Path::new("/srv/d1"));
    let path = lib.join(title.as_str());
    assert!(path.starts_with(&lib));
    let extra: Vec<Component> = path.strip_prefix(&lib).unwrap().components().collect();
    assert_eq!(extra.len(), components.len(), "{s:?} -> {}", path.display());
    assert!(extra.iter().all(|c| matches!(c, Component::Normal(_))));
});

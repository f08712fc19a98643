//! The cluster's secrets on disk: the key file (one or two keys, for a
//! rotation), and files only their owner may read.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use ringcast_proto::KeyId;

use super::error::ConfigFileError;
use crate::settings::{key_from_hex, key_to_hex, KEY_LEN};

/// Parses a key file (see the module doc); errors name the file and its line.
pub(super) fn parse_key_file(
    text: &str,
    path: &Path,
) -> Result<Vec<(KeyId, [u8; KEY_LEN])>, String> {
    let mut keys: Vec<(KeyId, [u8; KEY_LEN])> = Vec::new();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    for (number, line) in lines {
        let at = format!("{}:{number}", path.display());
        if keys.len() == 2 {
            return Err(format!(
                "the key file {at} holds a third key; at most two are allowed"
            ));
        }
        let (id, hex) = match line.split_once(':') {
            Some((id, hex)) => {
                let id = id.trim().parse::<u8>().map_err(|_| {
                    format!("the key file {at} has a key id that is not a number from 0 to 255")
                })?;
                (KeyId(id), hex.trim())
            }
            None => (KeyId(keys.len() as u8 + 1), line),
        };
        let key = key_from_hex(hex).ok_or_else(|| {
            format!("the key file {at} does not hold 64 hexadecimal characters (a 32-byte key)")
        })?;
        if keys.iter().any(|(other, _)| *other == id) {
            return Err(format!("the key file {at} repeats key id {}", id.0));
        }
        keys.push((id, key));
    }
    if keys.is_empty() {
        return Err(format!(
            "the key file {} holds no key; write 64 hexadecimal characters (a 32-byte key)",
            path.display()
        ));
    }
    Ok(keys)
}

/// Creates `dir` and writes a fresh random `cluster.key` and `admin.token`
/// into it, readable by their owner only; returns the key.
pub(super) fn write_fresh_secrets(dir: &Path) -> Result<[u8; KEY_LEN], ConfigFileError> {
    let mut random = [0u8; KEY_LEN + 16];
    getrandom::getrandom(&mut random).map_err(ConfigFileError::Random)?;
    let (key, token) = random.split_at(KEY_LEN);
    fs::create_dir_all(dir).map_err(|source| ConfigFileError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut key_bytes = [0u8; KEY_LEN];
    key_bytes.copy_from_slice(key);
    write_private(
        &dir.join("cluster.key"),
        &format!("{}\n", key_to_hex(&key_bytes)),
    )?;
    write_private(
        &dir.join("admin.token"),
        &format!("{}\n", hex::encode(token)),
    )?;
    Ok(key_bytes)
}

/// Writes a file only its owner can read and write (it may hold a key or a token).
pub(super) fn write_private(path: &Path, contents: &str) -> Result<(), ConfigFileError> {
    write_private_bytes(path, contents.as_bytes()).map_err(|source| ConfigFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates or truncates `path` with mode 0600 (on Unix), writes `contents`
/// and syncs it to disk.
pub(crate) fn write_private_bytes(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

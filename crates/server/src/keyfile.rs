//! The generated publisher key kept on disk, so it survives restarts (issue #15 item 2).
//!
//! When no API key is configured, the server generates a publisher key. With a store on disk
//! it keeps that key in `signalhub.key` beside the store (`signalhub.key` next to
//! `signalhub.db`; in the working directory for PostgreSQL), created once with mode 0600 and
//! read back on every later start, so scripts written against the first run keep working.
//! With `sqlite::memory:` nothing is written: the key is new on every start, like the data.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::store::StoreUrl;

/// The key file's name.
pub const FILE_NAME: &str = "signalhub.key";

/// Shortest key accepted, as for configured keys.
const MIN_KEY_LEN: usize = 8;

/// Why the key file could not be used. Never holds the key itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the publisher key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the publisher key file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the publisher key file {} does not hold a key (one line of at least 8 printable \
         characters, no spaces): delete it to have a new key generated, or configure keys \
         with SIGNALHUB_API_KEYS or --api-key",
        path.display()
    )]
    Invalid { path: PathBuf },
}

/// Where the generated key of a server using `store` is kept: beside a SQLite file, in the
/// working directory for PostgreSQL, nowhere for `sqlite::memory:`.
pub fn path_for(store: &StoreUrl) -> Option<PathBuf> {
    match store {
        StoreUrl::Sqlite(path) if path == ":memory:" => None,
        StoreUrl::Sqlite(path) => Some(
            Path::new(path)
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(FILE_NAME),
        ),
        StoreUrl::Postgres(_) => Some(PathBuf::from(FILE_NAME)),
    }
}

/// The key kept in `path`, or `fresh`, written to a new `path` (mode 0600) when there is
/// none yet. The flag is true when the file was created now.
pub fn load_or_create(path: &Path, fresh: &str) -> Result<(String, bool), KeyFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{fresh}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|source| KeyFileError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok((fresh.to_string(), true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let key = text.trim();
            let printable = key.chars().all(|c| c.is_ascii_graphic());
            if key.len() < MIN_KEY_LEN || !printable {
                return Err(KeyFileError::Invalid {
                    path: path.to_path_buf(),
                });
            }
            Ok((key.to_string(), false))
        }
        Err(source) => Err(KeyFileError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// For a configuration whose publisher key was generated: replaces it with the one kept on
/// disk (writing it there the first time). Returns the file used, if any; does nothing when
/// keys were configured.
pub fn keep_generated_key(config: &mut Config) -> Result<Option<PathBuf>, KeyFileError> {
    if !config.generated_key {
        return Ok(None);
    }
    let Some(path) = path_for(&config.store) else {
        return Ok(None);
    };
    let Some(generated) = config.api_keys.first_mut() else {
        return Ok(None);
    };
    let (key, _created) = load_or_create(&path, &generated.key)?;
    generated.key = key;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_beside_a_sqlite_store_and_nowhere_for_memory() {
        let at = |s: &str| path_for(&StoreUrl::Sqlite(s.to_string()));
        assert_eq!(at("signalhub.db"), Some(PathBuf::from("signalhub.key")));
        assert_eq!(
            at("/var/lib/signalhub/signals.db"),
            Some(PathBuf::from("/var/lib/signalhub/signalhub.key"))
        );
        assert_eq!(at(":memory:"), None);
        assert_eq!(
            path_for(&StoreUrl::Postgres("postgres://db/x".into())),
            Some(PathBuf::from("signalhub.key"))
        );
    }

    #[test]
    fn a_key_file_is_written_once_and_read_back_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(
            load_or_create(&path, "shk_first_key").unwrap(),
            ("shk_first_key".to_string(), true)
        );
        assert_eq!(
            load_or_create(&path, "shk_second_key").unwrap(),
            ("shk_first_key".to_string(), false)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_file_without_a_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "short\n").unwrap();
        let err = load_or_create(&path, "shk_fresh_key").unwrap_err();
        assert!(matches!(err, KeyFileError::Invalid { .. }));
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}

//! Scripted frames for a replay server: one JSON message per line, sent verbatim.

use std::io;
use std::path::{Path, PathBuf};

/// Frames a replay server plays, in order, after the subscription is acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The text frames, each sent byte for byte.
    pub frames: Vec<String>,
}

impl Script {
    /// Frames from a JSONL file: every non-empty line is one frame.
    pub fn load(path: impl AsRef<Path>) -> io::Result<Script> {
        let text = std::fs::read_to_string(path)?;
        Ok(Script::from_frames(
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(str::to_string),
        ))
    }

    /// A fixture of this crate, `tests/fixtures/{name}`.
    pub fn fixture(name: &str) -> io::Result<Script> {
        Script::load(fixture_path(name))
    }

    /// Frames given directly.
    pub fn from_frames(frames: impl IntoIterator<Item = String>) -> Script {
        Script {
            frames: frames.into_iter().collect(),
        }
    }
}

/// Where this crate's fixtures live.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

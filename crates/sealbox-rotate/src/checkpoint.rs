//! `--checkpoint FILE`: where a rewrite run stands, saved atomically after every page, so a
//! run killed at any moment resumes where it stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// A run's saved position and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Which run this is: store, mode and shard must match on resume.
    pub(crate) run: String,
    /// Every key up to and including this one is done.
    pub(crate) after: Option<String>,
    /// Whether the walk reached the end.
    pub(crate) finished: bool,
    /// The counts so far.
    pub(crate) report: Report,
}

/// Why a checkpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but belongs to another run.
    #[error(
        "checkpoint {path} belongs to another run ({found}), not this one ({expected}); \
         use another file, or delete it to start over"
    )]
    OtherRun {
        /// The file.
        path: PathBuf,
        /// The run it records.
        found: String,
        /// This run.
        expected: String,
    },
    /// The file cannot be read or written, or is not a checkpoint.
    #[error("checkpoint {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn io(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

impl Checkpoint {
    /// The checkpoint at `path` for `run`, or a fresh one if there is no file.
    pub(crate) fn load(path: &Path, run: &str) -> Result<Self, CheckpointError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    run: run.to_owned(),
                    after: None,
                    finished: false,
                    report: Report::default(),
                });
            }
            Err(e) => return Err(io(path, e)),
        };
        let saved: Self = serde_json::from_str(&text).map_err(|e| io(path, e))?;
        if saved.run != run {
            return Err(CheckpointError::OtherRun {
                path: path.to_owned(),
                found: saved.run,
                expected: run.to_owned(),
            });
        }
        Ok(saved)
    }

    /// Saves atomically: a temporary file in the same directory, fsynced, renamed over the
    /// old one, and the directory fsynced.
    pub(crate) fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| io(path, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| io(path, e))?;
        tmp.write_all(&json).map_err(|e| io(path, e))?;
        tmp.as_file().sync_all().map_err(|e| io(path, e))?;
        tmp.persist(path).map_err(|e| io(path, e.error))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(path, e))
    }
}

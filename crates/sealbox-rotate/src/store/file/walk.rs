//! Listing a file store: a depth-first walk in bytewise key order that stops when a page
//! is full.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{WORK_DIR, io_error, is_missing};
use crate::store::{ObjectMeta, StoreError};

/// Appends to `out`, in bytewise key order, the objects under `dir` (whose keys start with
/// `prefix`, `""` or `"a/b/"`) that sort after `after`, until `out` holds `limit` of them.
/// Returns whether `out` is full.
pub(super) fn walk(
    dir: &Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    out: &mut Vec<ObjectMeta>,
) -> Result<bool, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed while walking: its objects were not present throughout.
        Err(e) if is_missing(&e) && !prefix.is_empty() => return Ok(false),
        Err(e) => return Err(io_error(None, "list", dir, e)),
    };
    // (key, is_dir, file name); a directory's key ends with `/`, so that sorting these keys
    // puts every subtree exactly where its objects' keys sort.
    let mut children: Vec<(String, bool, std::ffi::OsString)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(None, "list", dir, e))?;
        let name = entry.file_name();
        if prefix.is_empty() && name == WORK_DIR {
            continue;
        }
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(io_error(None, "stat", &entry.path(), e)),
        };
        let is_dir = file_type.is_dir();
        if !is_dir && !file_type.is_file() {
            continue; // symbolic links, sockets, devices: not objects
        }
        let Some(text) = name.to_str() else {
            return Err(StoreError::backend(
                None,
                format!(
                    "{} has a name that is not UTF-8, which no key can name; rename it",
                    entry.path().display()
                ),
            ));
        };
        let key = if is_dir {
            format!("{prefix}{text}/")
        } else {
            format!("{prefix}{text}")
        };
        children.push((key, is_dir, name));
    }
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, is_dir, name) in children {
        if out.len() >= limit {
            return Ok(true);
        }
        if is_dir {
            // Every key below starts with `key`: skip the subtree if `after` sorts after all
            // of them (greater than `key` without being inside it).
            if after.is_some_and(|a| a > key.as_str() && !a.starts_with(key.as_str())) {
                continue;
            }
            if walk(&dir.join(&name), &key, after, limit, out)? {
                return Ok(true);
            }
        } else {
            if after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let size = match fs::symlink_metadata(dir.join(&name)) {
                Ok(m) if m.file_type().is_file() => m.size(),
                Ok(_) => continue,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(io_error(None, "stat", &dir.join(&name), e)),
            };
            out.push(ObjectMeta { key, size });
        }
    }
    Ok(out.len() >= limit)
}

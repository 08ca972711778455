//! Running the logheal binary with input on stdin, and reading its JSON records.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `cmd` with `input` on stdin (fed from a thread, so a full pipe cannot deadlock);
/// its stdout as JSON records. The command must succeed.
pub fn json_records_of(mut cmd: Command, input: &str) -> Vec<Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = input.to_string();
    let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A file in a directory of its own; both are removed when it is dropped, also when
/// the test fails. It reads as the file's path.
pub struct TempFile {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// Writes `text` to `name` in a fresh directory (`tag` names the test crate in it).
pub fn temp_file(tag: &str, name: &str, text: &str) -> TempFile {
    let dir = tempfile::Builder::new()
        .prefix(&format!("logheal-{tag}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    TempFile { path, _dir: dir }
}

//! End-to-end: `logheal templates` writes one CSV row per input line and groups lines of
//! one template under one id.

use std::process::Command;

#[test]
fn csv_has_one_row_per_line_and_shared_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("app.log");
    let csv = dir.join("out.csv");
    std::fs::write(
        &log,
        "081109 203615 148 INFO dfs.DataNode: Receiving block blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:6\n\
         081109 203616 149 INFO dfs.DataNode: Receiving block blk_-2 src: /10.0.0.3:7 dest: /10.0.0.4:8\n\
         081109 203616 149 INFO dfs.DataNode: Receiving block blk_7 src: /10.0.0.9:3 dest: /10.0.0.8:4\n\
         this line does not fit the header\n\
         081109 203617 150 WARN dfs.DataNode: Deleting block blk_3 file /data/x/blk_3\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logheal"))
        .args([
            "templates",
            "--format",
            "<Date> <Time> <Pid> <Level> <Component>: <Content>",
            "--csv",
        ])
        .arg(&csv)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows[0], ["line", "template_id", "template"]);
    assert_eq!(rows.len(), 6, "{text}");
    assert_eq!(rows[1][0], "1");
    assert_eq!(rows[1][1], rows[2][1], "same template, same id");
    assert_eq!(rows[1][1], rows[3][1]);
    assert_eq!(rows[1][2], "Receiving block <*> src: <*> dest: <*>");
    assert_ne!(rows[4][1], rows[1][1]);
    assert_eq!(
        rows[4][2], "this line does not fit the header",
        "unparsed lines are mined whole"
    );
    assert_eq!(rows[5][2], "Deleting block <*> file <*>");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().next().unwrap().contains("3  T0"), "{stdout}");
    // The third line is the first one but for its digits.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("3 templates; 1 repeated an earlier line's digit-blind form"),
        "{stderr}"
    );
}

//! Progress in a real terminal (issue 15, item 3): tmux at 80×24 runs
//! `dmirror probe` against mirrors that hang; the progress line names the
//! mirrors still pending, its count moves, it fits 80 columns, and Ctrl-C
//! ends the run with 130.

mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{require, Lab};

fn tmux(args: &[&str]) -> String {
    let out = Command::new(require("tmux", "tmux"))
        .args(args)
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_names_the_pending_mirrors_and_fits_80_columns() {
    let mut lab = Lab::new();
    let hangs: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("hang-{i}"),
                format!("http://127.0.0.1:{}", lab.hanging_port()),
            )
        })
        .collect();
    let mut entries: Vec<(&str, String, &str)> = hangs
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone(), ""))
        .collect();
    let refused = format!("http://127.0.0.1:{}", lab.refused_port());
    entries.push(("refused", refused, ""));
    let mirrors = lab.mirrors_toml("m.toml", &entries);
    let session = format!("dmirror-test-{}", std::process::id());
    let exit_file = lab.path("exit");
    let command = format!(
        "env -i PATH=/usr/bin:/bin HOME={home} XDG_STATE_HOME={state} TERM=xterm {bin} probe --no-history --proxy none --timeout 30s -m {m}; echo $? > {exit}; sleep 30",
        home = lab.path("home").display(),
        state = lab.path("state").display(),
        bin = env!("CARGO_BIN_EXE_dmirror"),
        m = mirrors.display(),
        exit = exit_file.display(),
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    let start = Instant::now();
    let mut screen = String::new();
    while start.elapsed() < Duration::from_secs(15) {
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        // The refused mirror ends at once; the hanging ones stay pending.
        if screen.contains("1/4") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = screen
        .lines()
        .find(|l| l.contains("checking"))
        .unwrap_or_default()
        .to_owned();
    tmux(&["send-keys", "-t", &session, "C-c"]);
    let start = Instant::now();
    while !exit_file.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = std::fs::read_to_string(&exit_file).unwrap_or_default();
    tmux(&["kill-session", "-t", &session]);
    assert!(
        line.contains("1/4") && line.contains("waiting for hang-0, hang-1, hang-2"),
        "the progress line should count the refused mirror and name the pending ones: {line:?}\n{screen}"
    );
    assert!(line.chars().count() <= 80, "{line:?}");
    assert_eq!(code.trim(), "130", "Ctrl-C exit status");
}

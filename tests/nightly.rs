//! The nightly job's parts: the probe history (counts, ranking weight, a
//! corrupt state file survived), Prometheus metrics, and the schedule's
//! systemd units and cron entry.

mod lab;

use std::path::Path;
use std::process::Output;

use lab::{dmirror, require, Front, Image, Lab};
use serde_json::Value;

const REPO: &str = "library/small";
const MB: usize = 1024 * 1024;

fn run(lab: &Lab, args: &[&str]) -> Output {
    dmirror(lab).args(args).output().expect("run dmirror")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn probe(lab: &Lab, mirrors: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "probe",
        "--image",
        "small",
        "--timeout",
        "2s",
        "--budget",
        "2s",
        "--mirrors",
        mirrors.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    run(lab, &args)
}

fn record<'a>(history: &'a Value, name: &str) -> &'a Value {
    history["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {history}"))
}

fn names(probe: &Value) -> Vec<String> {
    probe["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A lab with one fast mirror, one capped, one dead.
fn world() -> (
    Lab,
    std::collections::HashMap<String, String>,
    std::path::PathBuf,
) {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(51, "amd64", &[4 * MB]);
    origin.push(REPO, "latest", &image);
    let mut urls = lab.nginx(&[
        (
            "fast",
            Front::Proxy {
                upstream: origin.port,
                rate: None,
            },
        ),
        (
            "steady",
            Front::Proxy {
                upstream: origin.port,
                rate: Some("1m"),
            },
        ),
    ]);
    urls.insert(
        "dead".into(),
        format!("http://127.0.0.1:{}", lab.refused_port()),
    );
    let mirrors = lab.mirrors_toml(
        "mirrors.toml",
        &[
            ("fast", urls["fast"].clone(), ""),
            ("steady", urls["steady"].clone(), ""),
            ("dead", urls["dead"].clone(), ""),
        ],
    );
    (lab, urls, mirrors)
}

/// Issue 5, item 1: every probe is recorded; `history --json` counts runs;
/// `--no-history` neither reads nor records; a corrupt state file is set
/// aside with a warning, never fatal.
#[test]
fn history_counts_runs_and_survives_a_corrupt_state_file() {
    let (lab, _, mirrors) = world();
    for _ in 0..2 {
        let out = probe(&lab, &mirrors, &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = probe(&lab, &mirrors, &["--json", "--no-history"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let h = json(&run(&lab, &["history", "--json"]));
    let fast = record(&h, "fast");
    assert_eq!(fast["runs"], 2, "{h}");
    assert_eq!(fast["ok_runs"], 2);
    assert_eq!(fast["last_status"], "ok");
    assert!(fast["throughput_bps"].as_u64().unwrap_or(0) > 0, "{h}");
    assert!(fast["latency_ms"].is_u64(), "{h}");
    let dead = record(&h, "dead");
    assert_eq!(dead["runs"], 2);
    assert_eq!(dead["ok_runs"], 0);
    assert_eq!(dead["last_status"], "unreachable");
    assert!(dead["throughput_bps"].is_null());
    // Most reliable first.
    assert_eq!(h["mirrors"][2]["name"], "dead");

    // A state file cut short by a crash of some older writer, or garbage.
    let state = lab.path("state").join("dmirror");
    let file = state.join("history.json");
    std::fs::write(&file, "{\"version\": 1, \"mirrors\": {\"fast\": {\"url\"").expect("write");
    let out = probe(&lab, &mirrors, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unreadable") && stderr(&out).contains("set aside"),
        "{}",
        stderr(&out)
    );
    assert!(state.join("history.json.corrupt").exists());
    let h = json(&run(&lab, &["history", "--json"]));
    assert_eq!(record(&h, "fast")["runs"], 1, "{h}");
    // No temporary file left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Issue 5, item 1: a mirror that failed most nights cannot win on one good
/// night; a mirror that just died drops out at once.
#[test]
fn history_outweighs_one_good_night() {
    let (lab, _, mirrors) = world();
    let out = probe(&lab, &mirrors, &["--json"]);
    assert_eq!(names(&json(&out))[..2], ["fast", "steady"]);

    // Rewrite fast's past: nine failed nights before the one just recorded.
    let file = lab.path("state").join("dmirror").join("history.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("state")).expect("json");
    let runs = state["mirrors"]["fast"]["runs"]
        .as_array_mut()
        .expect("runs");
    let failed = serde_json::json!({"at": 1, "status": "timeout", "latency_ms": null, "throughput_bps": null});
    for _ in 0..9 {
        runs.insert(0, failed.clone());
    }
    std::fs::write(&file, serde_json::to_vec(&state).expect("json")).expect("write");

    // Tonight fast works again and measures fastest, but ranks below steady.
    let out = probe(&lab, &mirrors, &["--json"]);
    let tonight = json(&out);
    assert_eq!(names(&tonight)[..2], ["steady", "fast"], "{tonight}");
    assert_eq!(tonight["mirrors"][1]["status"], "ok");
    assert!(
        tonight["mirrors"][1]["throughput_bps"].as_u64()
            > tonight["mirrors"][0]["throughput_bps"].as_u64(),
        "{tonight}"
    );
    // Ranked on this run alone, it would win.
    let alone = json(&probe(&lab, &mirrors, &["--json", "--no-history"]));
    assert_eq!(names(&alone)[..2], ["fast", "steady"]);

    // Steady dies: it drops out at once, whatever its record.
    let died = lab.mirrors_toml(
        "died.toml",
        &[
            (
                "fast",
                json(&out)["mirrors"][1]["url"]
                    .as_str()
                    .expect("url")
                    .to_owned(),
                "",
            ),
            (
                "steady",
                format!("http://127.0.0.1:{}", lab.refused_port()),
                "",
            ),
        ],
    );
    let h = json(&run(&lab, &["history", "--json"]));
    assert_eq!(record(&h, "steady")["ok_runs"], 2, "{h}");
    let after = json(&probe(&lab, &died, &["--json"]));
    assert_eq!(names(&after), ["fast", "steady"], "{after}");
    assert_eq!(after["mirrors"][1]["status"], "unreachable");
}

/// Issue 5, item 4: `--format prometheus` and `--textfile` give metrics that
/// Prometheus' own checker accepts, with up/status/latency/throughput/last
/// success per mirror.
#[test]
fn metrics_parse_as_prometheus_text() {
    let promtool = require("promtool", "prometheus");
    let (lab, _, mirrors) = world();
    let dir = lab.path("textfile");
    std::fs::create_dir_all(&dir).expect("dir");
    let textfile = dir.join("dmirror.prom");
    let out = probe(
        &lab,
        &mirrors,
        &[
            "--format",
            "prometheus",
            "--textfile",
            textfile.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).expect("utf8");
    assert_eq!(std::fs::read_to_string(&textfile).expect("textfile"), text);
    let files: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(files.len(), 1, "temporary files left behind");

    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let checked = check.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number")
    };
    assert_eq!(value("dmirror_mirror_up{mirror=\"fast\""), 1.0);
    assert_eq!(value("dmirror_mirror_up{mirror=\"dead\""), 0.0);
    assert_eq!(
        value(
            "dmirror_mirror_status{mirror=\"dead\",registry=\"docker.io\",status=\"unreachable\"}"
        ),
        1.0
    );
    assert_eq!(
        value("dmirror_mirror_status{mirror=\"dead\",registry=\"docker.io\",status=\"ok\"}"),
        0.0
    );
    assert_eq!(
        value("dmirror_mirror_rank{mirror=\"fast\",registry=\"docker.io\"}"),
        1.0
    );
    assert!(
        value(
            "dmirror_mirror_throughput_bytes_per_second{mirror=\"steady\",registry=\"docker.io\"}"
        ) > 0.0
    );
    assert!(value("dmirror_mirror_latency_seconds{mirror=\"fast\",registry=\"docker.io\"}") > 0.0);
    assert!(
        value(
            "dmirror_mirror_last_success_timestamp_seconds{mirror=\"fast\",registry=\"docker.io\"}"
        ) > 1.7e9
    );
    assert!(!text.contains("dmirror_mirror_last_success_timestamp_seconds{mirror=\"dead\""));
    assert_eq!(
        value("dmirror_probe_mirrors_ok{registry=\"docker.io\"} "),
        2.0
    );
}

/// Plain lines when stdout is no terminal (journald, cron): one per mirror.
#[test]
fn plain_lines_off_a_terminal() {
    let (lab, _, mirrors) = world();
    let out = probe(&lab, &mirrors, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("rank=1 mirror=fast status=ok "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("rank=3 mirror=dead status=unreachable "),
        "{text}"
    );
    assert!(lines[2].contains(" error=\""), "{text}");
}

/// Issue 5, item 3: the units pass `systemd-analyze verify`; --cron writes a
/// cron.d entry instead (and removes the units); remove undoes it; bad
/// input exits 2 and writes nothing.
#[test]
fn schedule_installs_verified_units_or_a_cron_entry_and_removes_them() {
    let lab = Lab::new();
    let (units, cron) = job_dirs(&lab);
    let places = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if extra.first() == Some(&"install") {
            // The test binary lives in target/: name it, as an installed one.
            v.extend(["--binary".into(), env!("CARGO_BIN_EXE_dmirror").into()]);
        }
        v.extend([
            "--unit-dir".into(),
            units.display().to_string(),
            "--cron-dir".into(),
            cron.display().to_string(),
        ]);
        v
    };
    let sched = |args: Vec<String>| {
        dmirror(&lab)
            .arg("schedule")
            .args(args)
            .output()
            .expect("run")
    };

    let mut dry = places(&["install", "--dry-run", "--at", "04:15"]);
    dry.extend(["--".into(), "--top".into(), "2".into()]);
    let out = sched(dry);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("OnCalendar=*-*-* 04:15:00"), "{shown}");
    assert!(shown.contains("apply --reload --top 2"), "{shown}");
    assert_eq!(std::fs::read_dir(&units).expect("dir").count(), 0);

    let mut install = places(&["install", "--at", "04:15"]);
    install.extend(["--".into(), "--top".into(), "2".into()]);
    let out = sched(install);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let service = units.join("dmirror-apply.service");
    let timer = units.join("dmirror-apply.timer");
    let timer_text = std::fs::read_to_string(&timer).expect("timer");
    assert!(timer_text.contains("Persistent=true"));
    assert!(timer_text.contains("RandomizedDelaySec="));
    let service_text = std::fs::read_to_string(&service).expect("service");
    let exec = service_text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(exec.ends_with(" apply --reload --top 2"), "{exec}");
    assert!(Path::new(exec.split(' ').next().expect("exe")).is_absolute());

    systemd_verify(&[&service, &timer]);

    // Switching to cron removes the timer: one nightly job, not two.
    let out = sched(places(&["install", "--cron", "--at", "04:15"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!service.exists() && !timer.exists());
    let entry = std::fs::read_to_string(cron.join("dmirror")).expect("cron entry");
    let line = entry
        .lines()
        .find(|l| l.contains(" root "))
        .expect("job line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[..6], ["15", "4", "*", "*", "*", "root"], "{line}");
    assert!(line.contains(" apply --reload"), "{line}");

    let out = sched(places(&["remove"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!cron.join("dmirror").exists());
    let out = sched(places(&["remove"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("nothing to remove"),
        "{}",
        stderr(&out)
    );

    // A binary in a build directory is refused unless named: the job would
    // run whatever the next build leaves there, or nothing.
    let mut built = vec!["install".to_string()];
    built.extend(places(&["--dry-run"]));
    let out = sched(built);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cargo install --locked"),
        "{}",
        stderr(&out)
    );

    // Bad input: exit 2, nothing written.
    let out = sched(places(&["install", "--at", "25:00"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("HH:MM"), "{}", stderr(&out));
    let mut bad = places(&["install"]);
    bad.extend(["--".into(), "--top".into(), "many".into()]);
    let out = sched(bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nightly apply"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&units).expect("dir").count(), 0);
    assert_eq!(std::fs::read_dir(&cron).expect("dir").count(), 0);
}

/// Issue 13, item 10: options after `--` cannot inject directives into the
/// unit or lines into cron: control characters are refused (exit 2,
/// nothing written), everything else is quoted so that systemd reads one
/// ExecStart and `systemd-analyze verify` passes.
#[test]
fn schedule_options_cannot_inject_into_units_or_cron() {
    let lab = Lab::new();
    let (units, cron) = job_dirs(&lab);
    let sched = |kind: &[&str], extra: &[&str], config_home: &str| {
        dmirror(&lab)
            .env("XDG_CONFIG_HOME", config_home)
            .args([
                "schedule",
                "install",
                "--binary",
                env!("CARGO_BIN_EXE_dmirror"),
            ])
            .args(kind)
            .args([
                "--unit-dir",
                units.to_str().unwrap(),
                "--cron-dir",
                cron.to_str().unwrap(),
                "--",
            ])
            .args(extra)
            .output()
            .expect("run")
    };
    let home = lab.path("config").display().to_string();
    for kind in [&[][..], &["--cron"][..]] {
        let out = sched(
            kind,
            &["--textfile", "/x.prom\nExecStartPre=/bin/touch /tmp/pwned"],
            &home,
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("control character"),
            "{}",
            stderr(&out)
        );
        let out = sched(
            kind,
            &[],
            &format!("{home}\n* * * * * root /bin/touch /tmp/pwned"),
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(std::fs::read_dir(&units).expect("dir").count(), 0);
        assert_eq!(std::fs::read_dir(&cron).expect("dir").count(), 0);
    }

    let odd = "/tmp/a b\"c'd%e$f\\g;h.prom";
    let out = sched(&[], &["--textfile", odd], &home);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let service = units.join("dmirror-apply.service");
    let text = std::fs::read_to_string(&service).expect("service");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Exec")).count(),
        1,
        "{text}"
    );
    systemd_verify(&[&service]);
    let out = sched(&["--cron"], &["--textfile", odd], &home);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let entry = std::fs::read_to_string(cron.join("dmirror")).expect("cron entry");
    assert_eq!(
        entry.lines().filter(|l| l.contains(" root ")).count(),
        1,
        "{entry}"
    );
}

/// Empty unit and cron.d directories for `schedule` to write into.
fn job_dirs(lab: &Lab) -> (std::path::PathBuf, std::path::PathBuf) {
    let (units, cron) = (lab.path("units"), lab.path("cron"));
    std::fs::create_dir_all(&units).expect("dir");
    std::fs::create_dir_all(&cron).expect("dir");
    (units, cron)
}

/// `systemd-analyze verify` accepts the unit files.
fn systemd_verify(files: &[&Path]) {
    let verify = std::process::Command::new(require("systemd-analyze", "systemd"))
        .arg("verify")
        .args(files)
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        stderr(&verify)
    );
}

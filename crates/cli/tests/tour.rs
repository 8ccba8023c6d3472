//! The README's 5-minute tour, run as written: its shell blocks, taken from
//! between the README's tour markers, under `bash -euo pipefail` against the
//! real binary. Only the ports change (free ones instead of 8080, 9090 and
//! 18081, so that the test runs beside anything else), and `cargo run …
//! -- ARGS` runs the binary under test through a stand-in `cargo` on `PATH`.

mod common;

use common::{free_port, tempdir};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- tour:";
const END: &str = "<!-- tour end -->";

/// The shell blocks between the markers, in order, as one script.
fn tour_script(readme: &str) -> String {
    let begin = readme
        .find(BEGIN)
        .expect("README.md has the tour's begin marker");
    let end = readme
        .find(END)
        .expect("README.md has the tour's end marker");
    assert!(begin < end, "tour markers out of order");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[begin..end].lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => {
                in_block = false;
                script.push('\n');
            }
            (true, line) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(!in_block, "an unclosed sh block in the tour");
    script
}

/// A `<placeholder>` in a command (not in a comment) would be sent literally.
fn placeholders(script: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in script.lines() {
        let code = line.split(" # ").next().unwrap_or(line);
        if code.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_- .".contains(*c))
                .collect();
            if word.starts_with(|c: char| c.is_ascii_alphabetic())
                && rest[word.len()..].starts_with('>')
            {
                found.push(format!("<{word}> in: {line}"));
            }
        }
        if code.contains('…') {
            found.push(format!("… in: {line}"));
        }
    }
    found
}

/// Kills the tour's whole process group (hookwarden and the receiver run in
/// the background) when dropped, also when the test fails.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let script = tour_script(&readme);
    assert!(
        script.contains("cargo run --release -- serve"),
        "the tour starts hookwarden itself"
    );
    let found = placeholders(&script);
    assert!(
        found.is_empty(),
        "placeholders in the tour:\n{}",
        found.join("\n")
    );

    let (api, ops, receiver) = (free_port(), free_port(), free_port());
    let script = script
        .replace("18081", &receiver.to_string())
        .replace(":8080", &format!(":{api}"))
        .replace(":9090", &format!(":{ops}"));
    for port in ["8080", "9090", "18081"] {
        assert!(
            !script.contains(port),
            "the tour names port {port} in a form this test does not replace"
        );
    }

    let dir = tempdir();
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let shim = bin.join("cargo");
    std::fs::write(
        &shim,
        "#!/bin/sh\n\
         # The README's `cargo run [options] -- ARGS`, on the binary under test;\n\
         # `cargo build` has nothing to do (the binary is built).\n\
         [ \"${1:-}\" = build ] && exit 0\n\
         while [ $# -gt 0 ] && [ \"$1\" != \"--\" ]; do shift; done\n\
         [ $# -gt 0 ] || { echo \"cargo stand-in: expected 'cargo run ... -- ARGS'\" >&2; exit 2; }\n\
         shift\n\
         exec \"$HOOKWARDEN_TOUR_BIN\" \"$@\"\n",
    )
    .expect("write the cargo stand-in");
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tmp = dir.0.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    std::fs::write(dir.0.join("tour.sh"), &script).expect("write tour.sh");
    let out_path = dir.0.join("tour.out");
    let err_path = dir.0.join("tour.err");

    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "tour.sh"])
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(std::fs::File::create(&err_path).expect("err"))
        .process_group(0);
    // Nothing of the caller's configuration or proxies reaches the tour.
    for (key, _) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        if key.starts_with("HOOKWARDEN_") || lower.ends_with("_proxy") {
            cmd.env_remove(&key);
        }
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("TMPDIR", &tmp)
        .env("HOOKWARDEN_TOUR_BIN", env!("CARGO_BIN_EXE_hookwarden"))
        .env("HOOKWARDEN_LISTEN", format!("127.0.0.1:{api}"))
        .env("HOOKWARDEN_OPS_LISTEN", format!("127.0.0.1:{ops}"));
    let mut child = cmd.spawn().expect("bash");
    let _group = Group(child.id());

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let report = format!(
        "--- stdout\n{out}\n--- stderr (last 60 lines)\n{}",
        tail(&err, 60)
    );
    let Some(status) = status else {
        panic!("the tour did not finish within 90 s\n{report}");
    };
    assert!(status.success(), "the tour failed ({status})\n{report}");

    // The receiver printed a signed delivery of the published event.
    assert!(
        out.lines().any(|l| l.contains("webhook-signature")
            && l.contains("v1,")
            && l.contains(r#""type":"invoice.paid""#)),
        "no signed delivery printed by the receiver\n{report}"
    );
    // The delivery history shows the try succeeded, at the first try: the
    // tour waits for its receiver to listen before anything is published.
    let history = out
        .lines()
        .find(|l| l.starts_with(r#"{"items":"#) && l.contains(r#""status":"succeeded""#))
        .unwrap_or_else(|| panic!("no delivery history with a success\n{report}"));
    assert_eq!(
        history.matches(r#""attempt":"#).count(),
        1,
        "more than one try for the first delivery\n{report}"
    );
    assert!(history.contains(r#""attempt":1,"#), "{report}");
    // The metadata address was refused at registration.
    assert!(
        out.lines()
            .any(|l| l.contains(r#""code":"VALIDATION_ERROR""#) && l.contains("url:")),
        "no SSRF refusal\n{report}"
    );
    // The ingress: accepted, then a duplicate, then a bad signature refused.
    let statuses: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("eventId") || l.contains("INVALID_SIGNATURE"))
        .filter_map(|l| l.rsplit(' ').next())
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(statuses, ["202", "200", "401"], "ingress answers\n{report}");
    assert!(out.contains(r#""duplicate":true"#), "{report}");
    // It was forwarded, and the audit chain verifies and prints its head,
    // SEQ:HASH (any line: the receiver's share stdout).
    assert!(out.contains("order.created"), "{report}");
    assert!(out.contains("audit trail intact"), "{report}");
    let head = out.lines().any(|line| {
        let (seq, hash) = line.split_once(':').unwrap_or(("", ""));
        seq.parse::<u64>().is_ok_and(|n| n > 0)
            && hash.len() == 64
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
    });
    assert!(head, "no audit head printed\n{report}");
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn the_tour_extraction_finds_placeholders() {
    let readme = "x\n<!-- tour: y -->\n```sh\ncurl localhost/v1/webhooks/<id>/deliveries # <fine>\n# <also fine>\necho 2>/dev/null\n```\n<!-- tour end -->\n";
    let script = tour_script(readme);
    assert_eq!(
        script,
        "curl localhost/v1/webhooks/<id>/deliveries # <fine>\n# <also fine>\necho 2>/dev/null\n\n"
    );
    let found = placeholders(&script);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("<id> in:"), "{found:?}");
}

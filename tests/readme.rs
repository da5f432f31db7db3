//! README.md stays true: its example output is what the binary prints, and its test command is
//! the one .ci/run runs.

use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn readme_example_is_the_real_output_of_the_main_command() {
    let text = readme();
    let intro = "`cargo run --release -- fix --root examples/coreos-1192 --dry-run docker` prints:";
    let at = text.find(intro).expect("example intro in README");
    let block = &text[at + intro.len()..];
    let start = block.find("```\n").unwrap() + 4;
    let end = block[start..].find("\n```").unwrap();
    let shown = &block[start..start + end];
    let out = Command::new(env!("CARGO_BIN_EXE_dropfix"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "fix",
            "--root",
            "examples/coreos-1192",
            "--dry-run",
            "docker",
            "--color",
            "never",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let real = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        shown,
        real.trim_end_matches('\n'),
        "README example differs from the real output"
    );
}

#[test]
fn readme_names_the_main_and_test_commands_and_ci_runs_the_test_command() {
    let text = readme();
    for marker in ["<!-- main-command -->", "<!-- test-command -->"] {
        assert!(text.contains(marker), "{marker}");
    }
    let main = text.split("<!-- main-command -->").nth(1).unwrap();
    assert!(main
        .trim_start()
        .starts_with("```\ncargo run --release -- fix --root examples/coreos-1192 --dry-run\n```"));
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(
        ci.contains("<!-- test-command -->"),
        ".ci/run reads the README's test command"
    );
}

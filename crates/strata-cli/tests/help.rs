//! The finished text: every flag of every command has help, the flags with a
//! default say it, and the README lists the optimizers and losses the
//! binary takes.

use std::process::Command;

use strata_nn::{Loss, Optimizer};

const COMMANDS: [&str; 7] = [
    "summary", "train", "evaluate", "predict", "explain", "filters", "plot",
];

fn help(command: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([command, "--help"])
        .output()
        .expect("running strata");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// (flag, its help text) for each option of a `--help` page, whether clap
/// put the text on the flag's line or on the lines below it.
fn options(page: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = page.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !(t.starts_with("--") || (t.starts_with('-') && t.get(2..4) == Some(", "))) {
            continue;
        }
        let flag = t
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap_or(t);
        let same_line = t.split("  ").skip(1).collect::<Vec<_>>().join(" ");
        let mut text = same_line.trim().to_string();
        let indent = line.len() - t.len();
        for next in &lines[i + 1..] {
            let nt = next.trim_start();
            if nt.is_empty() || next.len() - nt.len() <= indent {
                break;
            }
            text.push(' ');
            text.push_str(nt.trim());
        }
        out.push((
            flag.trim_end_matches(',').to_string(),
            text.trim().to_string(),
        ));
    }
    out
}

#[test]
fn every_flag_has_help_text() {
    let mut missing = Vec::new();
    for c in COMMANDS {
        let opts = options(&help(c));
        assert!(!opts.is_empty(), "{c}: no options found");
        for (flag, text) in opts {
            if text.is_empty() {
                missing.push(format!("{c} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "flags without help: {missing:?}");
}

#[test]
fn train_lists_every_optimizer_and_loss_and_so_does_the_readme() {
    let page = help("train");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let usage = readme
        .split("## The command line")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's command-line section");
    for name in Optimizer::NAMES.iter().chain(Loss::NAMES.iter()) {
        assert!(page.contains(name), "train --help does not list {name}");
        assert!(
            usage.contains(name),
            "README's command line does not list {name}"
        );
    }
}

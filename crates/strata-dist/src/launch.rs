//! `strata train --workers N`: the command relaunched under `mpirun` on
//! this machine, and mpirun's own reports folded into one error line.
//! Nothing here needs MPI, so it is tested in the default build.

/// The flag that asks for a relaunch.
pub const WORKERS_FLAG: &str = "--workers";

/// `args` (the command line after the program name) without `--workers N`
/// or `--workers=N`, and N when it was there.
pub fn strip_workers(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut out = Vec::with_capacity(args.len());
    let mut workers = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == WORKERS_FLAG {
            workers = it.next().cloned();
        } else if let Some(v) = a.strip_prefix("--workers=") {
            workers = Some(v.to_string());
        } else {
            out.push(a.clone());
        }
    }
    (workers, out)
}

/// mpirun's arguments for `workers` ranks of `exe args` on this machine:
/// no pinning (`--bind-to none`: OpenMPI's default pins each rank to one
/// core, which starves the kernels' threads), and more ranks than cores
/// allowed.
pub fn mpirun_args(workers: usize, exe: &str, args: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "-np",
        &workers.to_string(),
        "--bind-to",
        "none",
        "--oversubscribe",
        exe,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(args.iter().cloned());
    v
}

/// Threads per rank: the cores shared among the ranks on this machine.
pub fn threads_per_rank(cores: usize, local_ranks: usize) -> usize {
    (cores / local_ranks.max(1)).max(1)
}

/// Reads mpirun's standard error: its banners (blocks between lines of
/// dashes, and `[host:pid]` notes) are kept back, the ranks' lines pass.
#[derive(Default)]
pub struct MpirunReport {
    in_banner: bool,
    banner: Vec<String>,
    /// Whether a rank printed an `error:` line of its own.
    pub rank_error_seen: bool,
}

impl MpirunReport {
    /// The line to show for `line` of mpirun's standard error, if any.
    pub fn pass(&mut self, line: &str) -> Option<String> {
        let t = line.trim();
        if t.len() >= 10 && t.chars().all(|c| c == '-') {
            self.in_banner = !self.in_banner;
            return None;
        }
        if self.in_banner || is_note(t) {
            self.banner.push(t.to_string());
            return None;
        }
        if t.starts_with("error:") {
            self.rank_error_seen = true;
        }
        Some(line.to_string())
    }

    /// After mpirun failed: one line saying what happened to which rank,
    /// unless a rank said so itself.
    pub fn error_line(&self, status: Option<i32>) -> Option<String> {
        if self.rank_error_seen {
            return None;
        }
        let text = self.banner.join(" ");
        let rank = find_after(&text, "process rank ").or_else(|| find_after(&text, "rank "));
        let signal = text.find("exited on signal ").map(|i| {
            let rest = &text[i + "exited on signal ".len()..];
            rest.split('.').next().unwrap_or(rest).trim().to_string()
        });
        let what = match (rank, signal) {
            (Some(r), Some(s)) => {
                format!("rank {r} died (signal {s}); the other ranks were stopped")
            }
            (Some(r), None) => {
                format!("rank {r} stopped without finishing; the other ranks were stopped")
            }
            (None, _) => format!(
                "mpirun failed (exit status {}){}",
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into()),
                self.banner
                    .iter()
                    .find(|l| !l.is_empty())
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ),
        };
        Some(format!("error: train: {what}"))
    }
}

/// An OpenMPI note such as `[host:1234] 1 more process has sent help message`.
fn is_note(t: &str) -> bool {
    if let Some(rest) = t.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let inside = &rest[..end];
            return inside.contains(':')
                && inside
                    .rsplit(':')
                    .next()
                    .is_some_and(|p| p.parse::<u64>().is_ok());
        }
    }
    t.starts_with("mpirun ") || t.starts_with("mpirun:")
}

/// The number right after `pat` in `text`.
fn find_after(text: &str, pat: &str) -> Option<u64> {
    let mut from = 0;
    while let Some(i) = text[from..].find(pat) {
        let rest = &text[from + i + pat.len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(v) = digits.parse() {
            return Some(v);
        }
        from += i + pat.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn workers_flag_is_taken_out() {
        let (w, rest) = strip_workers(&strings(&["train", "m", "--workers", "4", "--steps", "3"]));
        assert_eq!(w.as_deref(), Some("4"));
        assert_eq!(rest, strings(&["train", "m", "--steps", "3"]));
        let (w, rest) = strip_workers(&strings(&["train", "--workers=2"]));
        assert_eq!(w.as_deref(), Some("2"));
        assert_eq!(rest, strings(&["train"]));
    }

    #[test]
    fn mpirun_line_unpins_the_ranks() {
        let a = mpirun_args(2, "/bin/strata", &strings(&["train", "x"]));
        assert_eq!(
            a,
            strings(&[
                "-np",
                "2",
                "--bind-to",
                "none",
                "--oversubscribe",
                "/bin/strata",
                "train",
                "x"
            ])
        );
        assert_eq!(threads_per_rank(16, 4), 4);
        assert_eq!(threads_per_rank(2, 4), 1);
    }

    #[test]
    fn a_dead_rank_becomes_one_line() {
        let mut r = MpirunReport::default();
        let lines = [
            "epoch 1/3",
            "--------------------------------------------------------------------------",
            "Primary job  terminated normally, but 1 process returned",
            "--------------------------------------------------------------------------",
            "--------------------------------------------------------------------------",
            "mpirun noticed that process rank 1 with PID 4242 on node box exited on signal 9 (Killed).",
            "--------------------------------------------------------------------------",
            "[box:04240] 1 more process has sent help message help-mpi-api.txt",
        ];
        let shown: Vec<String> = lines.iter().filter_map(|l| r.pass(l)).collect();
        assert_eq!(shown, strings(&["epoch 1/3"]));
        assert_eq!(
            r.error_line(Some(137)).unwrap(),
            "error: train: rank 1 died (signal 9 (Killed)); the other ranks were stopped"
        );
    }

    #[test]
    fn a_rank_that_said_why_is_not_repeated() {
        let mut r = MpirunReport::default();
        assert!(r.pass("error: train: distributed training: x").is_some());
        r.pass("----------");
        r.pass("mpirun detected that one or more processes exited with non-zero status");
        r.pass("----------");
        assert_eq!(r.error_line(Some(1)), None);
    }
}

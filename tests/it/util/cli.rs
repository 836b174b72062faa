//! Runs of the `wharf` CLI against a test server.

use super::*;

/// What a CLI run printed.
pub struct CliRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Assert success; the JSON printed.
    pub fn ok_json(&self) -> Value {
        assert!(self.ok, "wharf failed: {}\n{}", self.stderr, self.stdout);
        self.json()
    }

    /// Assert success; the JSON printed, `Null` if nothing was.
    pub fn ok_json_or_empty(&self) -> Value {
        assert!(self.ok, "wharf failed: {}\n{}", self.stderr, self.stdout);
        if self.stdout.trim().is_empty() { Value::Null } else { self.json() }
    }

    /// Assert failure with one line on stderr; that line.
    pub fn err_line(&self) -> String {
        assert!(!self.ok, "expected a failure, got: {}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.starts_with("WARNING")).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {}", self.stderr);
        lines[0].to_owned()
    }
}

/// Run the `wharf` CLI against a server, signed in as the admin (`WHARF_USERNAME`,
/// `WHARF_PASSWORD`).
pub fn cli(w: &Wharf, args: &[&str]) -> CliRun {
    cli_as(w, Some(("admin", ADMIN_PASSWORD)), args)
}

/// Run the `wharf` CLI as someone (or no one).
pub fn cli_as(w: &Wharf, who: Option<(&str, &str)>, args: &[&str]) -> CliRun {
    let mut cmd = Command::new(wharf_bin());
    cmd.arg("--server").arg(w.url()).args(args);
    // Never a cached sign-in of the machine's user.
    cmd.env("WHARF_CONFIG_DIR", w.data.with_extension("cli"));
    if w.tls {
        cmd.env("WHARF_CA_FILE", w.ca());
    }
    match who {
        Some((u, p)) => cmd.env("WHARF_USERNAME", u).env("WHARF_PASSWORD", p),
        None => cmd.env_remove("WHARF_USERNAME").env_remove("WHARF_PASSWORD"),
    };
    let out = cmd.output().unwrap();
    CliRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

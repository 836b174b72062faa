//! containerd (and its `ctr` client) of the test's own, as a real client of wharf.

use super::*;

/// A containerd of the test's own — root, state and socket in a temporary directory, the
/// CRI plugin off (no network of its own) — stopped by PID when dropped.
pub struct Containerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// `None` (said loudly) where containerd can't run: not installed, or not root.
    pub fn start() -> Option<Containerd> {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
        let installed = Command::new("containerd").arg("--version").output().is_ok();
        if !root || !installed {
            eprintln!("SKIPPED: containerd needs root and the Debian package containerd");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(dir.path().join("c.sock"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).unwrap())
            .spawn()
            .unwrap();
        let c = Containerd { child, dir };
        assert!(
            eventually(std::time::Duration::from_secs(20), || {
                c.ctr().arg("version").output().is_ok_and(|o| o.status.success())
            }),
            "containerd did not come up"
        );
        Some(c)
    }

    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.dir.path().join("c.sock"));
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The CNCF distribution registry as a foreign source, and images made by `make-images.py`.

use super::*;

/// The CNCF distribution registry (Debian `docker-registry`) on a free loopback port.
pub struct Distribution {
    pub port: u16,
    tmp: tempfile::TempDir,
}

impl Distribution {
    pub fn start(auth: Option<(&str, &str)>) -> Distribution {
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(tools_dir().join("start-distribution.sh"));
        cmd.arg(port.to_string()).env("HARNESS_TMP", tmp.path());
        if let Some((u, p)) = auth {
            cmd.arg(u).arg(p);
        }
        let out = cmd
            .output()
            .expect("start-distribution.sh (is docker-registry installed? run scripts/test.sh)");
        assert!(
            out.status.success(),
            "start-distribution.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Distribution { port, tmp }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = Command::new(tools_dir().join("stop-distribution.sh"))
            .arg(self.port.to_string())
            .env("HARNESS_TMP", self.tmp.path())
            .output();
    }
}

/// Push the reproducible test content of `make-images.py` to `host`; its JSON summary.
pub fn make_images(host: &str, workdir: &Path, extra: &[&str]) -> Value {
    // Credentials for a wharf (sent only when a registry asks; `--user` in `extra` wins).
    let out = Command::new("python3")
        .env("REGISTRY_USER", "admin")
        .env("REGISTRY_PASSWORD", ADMIN_PASSWORD)
        .arg(tools_dir().join("make-images.py"))
        .arg(host)
        .arg("--workdir")
        .arg(workdir)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "make-images.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

impl Distribution {
    /// Where its storage lives (to corrupt a blob on purpose).
    pub fn storage(&self) -> PathBuf {
        self.tmp
            .path()
            .join(format!("harness-distribution-{}/storage/docker/registry/v2", self.port))
    }

    /// Stop it, keeping its storage.
    pub fn stop_keep(&self) {
        let out = Command::new(tools_dir().join("stop-distribution.sh"))
            .arg(self.port.to_string())
            .env("HARNESS_TMP", self.tmp.path())
            .env("KEEP_STORAGE", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    /// Start it again on the same port and storage.
    pub fn restart_keep(&self) {
        let out = Command::new(tools_dir().join("start-distribution.sh"))
            .arg(self.port.to_string())
            .env("HARNESS_TMP", self.tmp.path())
            .env("KEEP_STORAGE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

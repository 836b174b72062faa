//! A TCP proxy that breaks connections on demand (`faultproxy.py`).

use super::*;

/// `tests/it/faultproxy.py` in front of a registry.
pub struct FaultProxy {
    pub port: u16,
    child: Child,
}

impl FaultProxy {
    pub fn start(upstream: &str, args: &[&str]) -> FaultProxy {
        FaultProxy::start_on(free_port(), upstream, args)
    }

    /// Start on a given port (to stand in for one that was stopped).
    pub fn start_on(port: u16, upstream: &str, args: &[&str]) -> FaultProxy {
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/faultproxy.py"))
            .arg(port.to_string())
            .arg(upstream)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        FaultProxy { port, child }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stats(&self) -> Value {
        client()
            .get(format!("http://127.0.0.1:{}/_proxy/stats", self.port))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

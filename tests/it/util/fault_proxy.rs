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
        let port_arg = port.to_string();
        let mut all = vec![port_arg.as_str(), upstream];
        all.extend_from_slice(args);
        let child = start_python_helper("faultproxy.py", &all);
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

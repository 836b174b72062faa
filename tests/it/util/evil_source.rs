//! A hostile source registry for import tests (`tests/it/evilsource.py`).

use super::*;

/// `tests/it/evilsource.py`: a registry where every repository is an attack.
pub struct EvilSource {
    pub port: u16,
    child: Child,
}

impl EvilSource {
    pub fn start() -> EvilSource {
        let port = free_port();
        let child = start_python_helper("evilsource.py", &[&port.to_string()]);
        EvilSource { port, child }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stats(&self) -> Value {
        client().get(format!("http://{}/_evil/stats", self.host())).send().unwrap().json().unwrap()
    }
}

impl Drop for EvilSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

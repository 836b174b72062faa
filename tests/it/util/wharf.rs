//! A `wharf serve` process of the test's own: its port, data directory, log and signals.

use super::*;

/// A `wharf serve` process on its own port and data directory, killed on drop.
pub struct Wharf {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    pub args: Vec<String>,
    log: PathBuf,
    /// The admin's management token, fetched once.
    token: std::sync::OnceLock<String>,
    /// The admin's directory token, fetched once.
    graph_token: std::sync::OnceLock<String>,
    /// Clients made once: one trusting this server's CA, the admin's for ARM and Graph.
    anon: std::sync::OnceLock<Client>,
    arm: std::sync::OnceLock<Client>,
    graph: std::sync::OnceLock<Client>,
    /// Serves TLS with its development CA (`--tls-self-signed`).
    pub tls: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl Wharf {
    pub fn start() -> Wharf {
        Wharf::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Wharf {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut w = Wharf::start_in(&data, args);
        w._tmp = Some(tmp);
        w
    }

    /// Start with a configuration file holding `toml` (and more flags).
    pub fn start_with_config(toml: &str, args: &[&str]) -> Wharf {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("wharf.toml");
        std::fs::write(&config, toml).unwrap();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let data = tmp.path().join("data");
        let mut w = Wharf::start_in(&data, &all);
        w._tmp = Some(tmp);
        w
    }

    /// The server's resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        proc_status_kib(self.pid(), "VmRSS") as f64 / 1024.0
    }

    /// Sockets the server has open (listener included).
    pub fn sockets(&self) -> usize {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else { return 0 };
        fds.filter_map(Result::ok)
            .filter(|f| {
                std::fs::read_link(f.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    }

    /// Start on a given data directory (kept after the process stops).
    pub fn start_in(data: &Path, args: &[&str]) -> Wharf {
        let mut w = Wharf {
            child: None,
            port: free_port(),
            data: data.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: data.with_extension("log"),
            token: std::sync::OnceLock::new(),
            graph_token: std::sync::OnceLock::new(),
            anon: std::sync::OnceLock::new(),
            arm: std::sync::OnceLock::new(),
            graph: std::sync::OnceLock::new(),
            tls: args.contains(&"--tls-self-signed") || args.contains(&"--tls-cert"),
            _tmp: None,
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(wharf_bin())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && (!self.tls || self.ca().exists())
                && self
                    .anon()
                    .get(format!("{}/v2/", self.url()))
                    .send()
                    .is_ok_and(|r| r.status() == 200 || r.status() == 401)
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wharf exited with {status} before it was ready; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("wharf did not come up; log:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    /// The CA that signed the server's certificate: the development CA a
    /// `--tls-self-signed` server made, or (for `--tls-cert FILE`) `ca.pem` beside FILE.
    pub fn ca(&self) -> PathBuf {
        match self.args.iter().position(|a| a == "--tls-cert") {
            Some(i) => Path::new(&self.args[i + 1]).with_file_name("ca.pem"),
            None => self.data.join("tls/ca.pem"),
        }
    }

    /// A client builder that trusts this server (its development CA, if it has one).
    pub fn builder(&self) -> reqwest::blocking::ClientBuilder {
        let b = builder();
        if !self.tls {
            return b;
        }
        let pem = std::fs::read(self.ca()).unwrap();
        b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
    }

    /// A client without credentials that trusts this server.
    pub fn anon(&self) -> Client {
        if !self.tls {
            return anon_client();
        }
        self.anon.get_or_init(|| shared(|| self.builder())).clone()
    }

    /// `127.0.0.1:<port>`, as clients name the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(c.id(), "TERM");
        wait_timeout(&mut c, Duration::from_secs(30)).expect("wharf did not exit after SIGTERM")
    }

    /// Wait for an exit already under way (after a signal sent by hand).
    pub fn terminate_wait(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        wait_timeout(&mut c, Duration::from_secs(30)).expect("wharf did not exit")
    }

    /// Start again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn reg(&self) -> Reg {
        Reg { base: self.url(), http: client() }
    }

    /// An identity token of `user` for the management API (password grant).
    pub fn token_for(&self, user: &str, password: &str) -> String {
        self.identity_token(
            &[("grant_type", "password"), ("username", user), ("password", password)],
            ARM_SCOPE,
        )
    }

    /// A service principal's identity token (client credentials) for the management API.
    pub fn token_for_app(&self, app_id: &str, secret: &str) -> String {
        self.identity_token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", app_id),
                ("client_secret", secret),
            ],
            ARM_SCOPE,
        )
    }

    /// A service principal's identity token for the directory (Microsoft Graph's audience).
    pub fn graph_token_for_app(&self, app_id: &str, secret: &str) -> String {
        self.identity_token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", app_id),
                ("client_secret", secret),
            ],
            GRAPH_SCOPE,
        )
    }

    /// A user's identity token for the directory.
    pub fn graph_token_for(&self, user: &str, password: &str) -> String {
        self.identity_token(
            &[("grant_type", "password"), ("username", user), ("password", password)],
            GRAPH_SCOPE,
        )
    }

    fn identity_token(&self, grant: &[(&str, &str)], scope: &str) -> String {
        let mut form = grant.to_vec();
        form.push(("scope", scope));
        let r = self
            .anon()
            .post(format!("{}/common/oauth2/v2.0/token", self.url()))
            .form(&form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "sign in with {:?}: {}", grant[0], r.text().unwrap());
        r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// A client that calls the management API as the admin (`Authorization: Bearer`).
    pub fn arm_client(&self) -> Client {
        self.arm.get_or_init(|| self.bearer_client(&self.admin_token())).clone()
    }

    /// A client that calls the directory (`/v1.0/…`) as the admin, with a Graph token.
    pub fn graph_client(&self) -> Client {
        self.graph
            .get_or_init(|| {
                let token =
                    self.graph_token.get_or_init(|| self.graph_token_for("admin", ADMIN_PASSWORD));
                self.bearer_client(token)
            })
            .clone()
    }

    fn bearer_client(&self, token: &str) -> Client {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        shared(|| self.builder().default_headers(h))
    }

    /// The admin's management token.
    pub fn admin_token(&self) -> String {
        self.token.get_or_init(|| self.token_for("admin", ADMIN_PASSWORD)).clone()
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        self.kill9();
    }
}

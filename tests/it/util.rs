//! Test harness: the real `wharf` binary on a free loopback port, real peers (the CNCF
//! distribution registry, skopeo, podman, helm, oras) started from `../shared/tools`, and
//! a small blocking registry client for sessions written by hand.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `../shared/tools`, or `$WHARF_SHARED_TOOLS`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WHARF_SHARED_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools"))
}

pub fn wharf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

/// The scopes of identity tokens for the management API and for the directory.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The password every test server gives its `admin` user (`WHARF_ADMIN_PASSWORD`).
pub const ADMIN_PASSWORD: &str = "test-admin-password-0";

/// The admin's credentials as a raw request's header line (for requests written by hand).
pub const ADMIN_AUTH_LINE: &str = "Authorization: Basic YWRtaW46dGVzdC1hZG1pbi1wYXNzd29yZC0w\r\n";

/// `Basic` credentials, as an `Authorization` header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The admin's `Basic` credentials (accepted on every registry's data plane).
pub fn admin_basic() -> String {
    basic("admin", ADMIN_PASSWORD)
}

fn builder() -> reqwest::blocking::ClientBuilder {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Client::builder().timeout(Duration::from_secs(300))
}

/// One client of a kind, made once and shared (making one costs ~20 ms: a runtime thread
/// and TLS roots). Shared clients keep no idle connections, so that a server restarted on
/// the same port, or a test counting a server's sockets, never meets one left open.
fn shared(make: impl FnOnce() -> reqwest::blocking::ClientBuilder) -> Client {
    make().pool_max_idle_per_host(0).build().unwrap()
}

/// A client that signs in to wharf's data plane as the admin (with `Basic` on every
/// request; a request that sets its own `Authorization` replaces it). Registries without
/// access control ignore the header.
pub fn client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut h = HeaderMap::new();
            h.insert(reqwest::header::AUTHORIZATION, admin_basic().parse().unwrap());
            shared(|| builder().default_headers(h))
        })
        .clone()
}

/// A client without credentials whose connections come from `ip` (any 127.0.0.0/8 address
/// reaches a loopback server): for network rules.
pub fn client_from(ip: &str) -> Client {
    static CLIENTS: std::sync::Mutex<Vec<(String, Client)>> = std::sync::Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock().unwrap();
    if let Some((_, c)) = clients.iter().find(|(from, _)| from == ip) {
        return c.clone();
    }
    let c = shared(|| builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()));
    clients.push((ip.to_owned(), c.clone()));
    c
}

/// A client without credentials.
pub fn anon_client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| shared(builder)).clone()
}

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

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM…).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Let this process open as many files as its hard limit allows (tests that hold
/// thousands of connections).
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if let Some(max) = l.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) });
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Wait until `cond` holds, for at most `within`; whether it did.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

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

/// Run a command; panic with its output if it fails; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hand-driven registry client for the OCI API.
pub struct Reg {
    pub base: String,
    pub http: Client,
}

impl Reg {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    pub fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().unwrap()
    }

    pub fn head(&self, path: &str) -> Response {
        self.http.head(self.url(path)).send().unwrap()
    }

    pub fn delete(&self, path: &str) -> Response {
        self.http.delete(self.url(path)).send().unwrap()
    }

    /// Monolithic push (`POST ?digest=`, or POST then PUT where a registry, like
    /// distribution 2.8, answers the POST with a session); the digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest_of(bytes);
        let mut r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(bytes.to_vec())
            .send()
            .unwrap();
        if r.status() == 202 {
            let loc = self.url(location(r.headers()));
            let sep = if loc.contains('?') { '&' } else { '?' };
            r = self.http.put(format!("{loc}{sep}digest={d}")).body(bytes.to_vec()).send().unwrap();
        }
        assert_eq!(r.status(), 201, "push blob: {}", r.text().unwrap());
        d
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap()
    }

    /// Push an image of the given layer contents under `repo:tag`; its manifest bytes and digest.
    pub fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (Vec<u8>, String) {
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "repo": repo, "tag": tag});
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = image_manifest(&config, layers);
        self.push_blob(repo, &config);
        for l in layers {
            self.push_blob(repo, l);
        }
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest);
        assert_eq!(r.status(), 201, "push manifest: {}", r.text().unwrap());
        let d = digest_of(&manifest);
        (manifest, d)
    }

    /// Start an upload session; its absolute Location.
    pub fn start_upload(&self, repo: &str) -> String {
        let r = self.http.post(self.url(&format!("/v2/{repo}/blobs/uploads/"))).send().unwrap();
        assert_eq!(r.status(), 202);
        self.url(location(r.headers()))
    }
}

/// The OCI manifest for a config and layers (bytes as a client would write them).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER, "digest": digest_of(l), "size": l.len()})).collect::<Vec<_>>(),
    });
    serde_json::to_vec_pretty(&m).unwrap()
}

pub fn location(h: &HeaderMap) -> &str {
    h.get("location").expect("Location header").to_str().unwrap()
}

pub fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).unwrap_or_else(|| panic!("missing header {name}")).to_str().unwrap()
}

/// The first OCI error code of an error response.
pub fn error_code(r: Response) -> String {
    let v: Value = r.json().expect("an OCI error body");
    v["errors"][0]["code"].as_str().expect("errors[0].code").to_owned()
}

/// Send raw bytes over a fresh connection and read whatever comes back (for requests
/// reqwest won't make, such as a body shorter than its Content-Length).
pub fn raw_request(port: u16, head: &str, body: &[u8], close_after: bool) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if close_after {
        s.shutdown(std::net::Shutdown::Both).ok();
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Every file under `<data>/blobs/sha256` hashes to its name; how many there are.
pub fn assert_blob_files_match_names(data: &Path) -> usize {
    let mut n = 0;
    let root = data.join("blobs/sha256");
    let Ok(shards) = std::fs::read_dir(&root) else { return 0 };
    for shard in shards {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let bytes = std::fs::read(f.path()).unwrap();
            let name = f.file_name().into_string().unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                name,
                "blob file {} holds other bytes",
                f.path().display()
            );
            n += 1;
        }
    }
    n
}

/// Pseudo-random bytes from a seed (reproducible test content).
/// (splitmix64: a test needs bytes that don't compress, not a CSPRNG.)
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The ARM api-version tests send.
pub const API: &str = "api-version=2025-11-01";

/// A management call as the admin; the status and the JSON body (`Null` when empty).
pub fn arm(w: &Wharf, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    arm_as(w, Some(&w.admin_token()), method, path, body)
}

/// A management call with a given token (or none); the status and the JSON body.
pub fn arm_as(
    w: &Wharf,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = if path.contains("api-version") {
        format!("{}{path}", w.url())
    } else {
        format!("{}{path}{sep}{API}", w.url())
    };
    let mut req = w.anon().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The ARM ID of a registry in the default subscription and resource group.
pub fn registry_id(name: &str) -> String {
    format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

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

/// The manifest bytes a registry serves (any host; `host` picks a wharf registry).
pub fn manifest_bytes(
    base: &str,
    host: Option<&str>,
    repo: &str,
    reference: &str,
) -> Option<Vec<u8>> {
    let mut req = client().get(format!("{base}/v2/{repo}/manifests/{reference}")).header(
        "accept",
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, */*",
    );
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let r = req.send().unwrap();
    (r.status() == 200).then(|| r.bytes().unwrap().to_vec())
}

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

//! A cluster of wharf nodes on shared PostgreSQL and object-store backends, behind a
//! round-robin balancer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// The shared stores of one test's cluster.
pub struct Shared {
    pub metadata: String,
    pub blobs: String,
    /// Holds the sealing key; deleted with the cluster.
    _dir: tempfile::TempDir,
    pub sealing_key: std::path::PathBuf,
}

impl Shared {
    /// A fresh database and bucket prefix; `None` (and a loud skip) without the servers.
    pub fn new() -> Option<Shared> {
        Shared::new_on("WHARF_TEST_S3")
    }

    /// The same, with blobs in the object store that `blobs_var` names (`WHARF_TEST_S3`,
    /// `WHARF_TEST_AZURE`).
    pub fn new_on(blobs_var: &str) -> Option<Shared> {
        let (Ok(pg), Ok(blobs)) = (std::env::var("WHARF_TEST_POSTGRES"), std::env::var(blobs_var))
        else {
            assert!(
                std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(),
                "WHARF_TEST_POSTGRES / {blobs_var} are not set but WHARF_REQUIRE_BACKENDS is"
            );
            eprintln!(
                "SKIPPED: WHARF_TEST_POSTGRES / {blobs_var} not set (scripts/test.sh sets them)"
            );
            return None;
        };
        Some(Shared::on(&pg, &blobs))
    }

    /// A fresh database and prefix on the given servers.
    pub fn on(pg: &str, s3: &str) -> Shared {
        let name = format!("wharf_it_{}", uuid_simple());
        run(Command::new("psql").args([pg, "-q", "-c", &format!("CREATE DATABASE {name}")]));
        let metadata = match pg.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("WHARF_TEST_POSTGRES {pg} has no database"),
        };
        let blobs = match s3.split_once('?') {
            Some((bucket, query)) => format!("{bucket}/{name}?{query}"),
            None => format!("{s3}/{name}"),
        };
        let dir = tempfile::tempdir().unwrap();
        let sealing_key = dir.path().join("sealing-key");
        std::fs::write(&sealing_key, "q3JQmU1u0cTtv1l8WjJ7a3oAqVvXq3y0r1J5zj2m2dA=\n").unwrap();
        Shared { metadata, blobs, _dir: dir, sealing_key }
    }

    /// The configuration every node of the cluster shares.
    pub fn config(&self, public_url: &str, extra: &str) -> String {
        format!(
            "public_url = \"{public_url}\"\n{extra}\n[storage]\nmetadata = \"{}\"\nblobs = \"{}\"\n[auth]\nsealing_key_file = \"{}\"\n",
            self.metadata,
            self.blobs,
            self.sealing_key.display()
        )
    }
}

fn uuid_simple() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    hex::encode(b)
}

/// A round-robin TCP load balancer in front of the nodes, as clients reach a cluster.
pub struct Balancer {
    pub port: u16,
    pub backends: Arc<std::sync::Mutex<Vec<u16>>>,
}

impl Balancer {
    pub fn start() -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let backends: Arc<std::sync::Mutex<Vec<u16>>> = Arc::default();
        let next = AtomicUsize::new(0);
        let b = backends.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let ports = b.lock().unwrap().clone();
                if ports.is_empty() {
                    continue;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                // The next node that accepts (a killed node is skipped, as a balancer's
                // health check would).
                let upstream = (0..ports.len()).find_map(|i| {
                    TcpStream::connect(("127.0.0.1", ports[(start + i) % ports.len()])).ok()
                });
                let Some(upstream) = upstream else { continue };
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (mut c1, mut u1) = (client, upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut u1);
                    let _ = u1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Balancer { port, backends }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A cluster of `n` nodes behind a balancer, the first started before the others (it
/// makes the admin user and the signing key).
pub struct Cluster {
    pub nodes: Vec<Wharf>,
    pub balancer: Balancer,
    pub _shared: Shared,
}

impl Cluster {
    pub fn start(n: usize, extra_config: &str, args: &[&str]) -> Option<Cluster> {
        Cluster::start_on("WHARF_TEST_S3", n, extra_config, args)
    }

    /// The same, with blobs in the object store `blobs_var` names.
    pub fn start_on(
        blobs_var: &str,
        n: usize,
        extra_config: &str,
        args: &[&str],
    ) -> Option<Cluster> {
        let shared = Shared::new_on(blobs_var)?;
        let balancer = Balancer::start();
        let config = shared.config(&balancer.url(), extra_config);
        let mut nodes = vec![Wharf::start_with_config(&config, args)];
        for _ in 1..n {
            nodes.push(Wharf::start_with_config(&config, args));
        }
        *balancer.backends.lock().unwrap() = nodes.iter().map(|w| w.port).collect();
        Some(Cluster { nodes, balancer, _shared: shared })
    }
}

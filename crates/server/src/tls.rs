//! TLS: rustls serving the certificate and key from PEM files — read again on
//! [`Tls::reload`] (what `wharf serve` does on SIGHUP), so a renewed certificate is served
//! without a restart — or, for development, a certificate signed by a CA this server makes
//! once and keeps in its data directory for clients to trust (`self_signed`). ALPN offers
//! HTTP/2 and HTTP/1.1.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// A served certificate that can be swapped while connections keep coming.
#[derive(Debug)]
struct Reloading(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// The server's TLS setup.
pub struct Tls {
    /// Where the served certificate comes from, for [`Tls::reload`] (files only).
    files: Option<(PathBuf, PathBuf, Arc<Reloading>)>,
    acceptor: TlsAcceptor,
}

fn acceptor(resolver: Arc<dyn ResolvesServerCert>) -> Result<TlsAcceptor, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Tls {
    /// Serve the certificate chain in `cert` with the private key in `key` (PEM).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Tls, String> {
        let current = Arc::new(Reloading(RwLock::new(Arc::new(load(cert, key)?))));
        Ok(Tls {
            acceptor: acceptor(current.clone())?,
            files: Some((cert.to_owned(), key.to_owned(), current)),
        })
    }

    /// Read the files again; on failure the certificate served so far stays.
    pub fn reload(&self) -> Result<(), String> {
        let Some((cert, key, current)) = &self.files else { return Ok(()) };
        let fresh = load(cert, key)?;
        *current.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        format!("{} and {} don't make a usable pair: {e}", cert.display(), key.display())
    })
}

/// Development TLS: a CA made once in `dir` (`ca.pem` for clients to trust; its key 0600,
/// so it survives restarts) signing, on demand, a certificate for each name a client asks
/// for by SNI — `localhost`, `domain`, or one label under either (each registry's login
/// server: clients such as curl and OpenSSL refuse a `*.localhost` wildcard) — and one for
/// `ips` when no name is given. Issued certificates are kept; at most 60 new names a minute
/// and 4096 in all are signed (then the default certificate is served).
pub fn self_signed(dir: &Path, domain: &str, ips: &[IpAddr]) -> Result<(Tls, PathBuf), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca_key_path = dir.join("ca-key.pem");
    // Made only when there is none: a CA clients were told to trust is never replaced
    // behind their back (an unreadable key is an error, not a reason for a new one).
    let (ca_key, made) = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) => (KeyPair::from_pem(&pem).map_err(err)?, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = KeyPair::generate().map_err(err)?;
            write_file(&ca_key_path, &k.serialize_pem(), true)?;
            (k, true)
        }
        Err(e) => return Err(format!("cannot read {}: {e}", ca_key_path.display())),
    };
    // The same subject and key make the same issuer whenever it is rebuilt.
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    // It signs server certificates only: no intermediate CAs under it.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "wharf development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2044, 1, 1);
    // And only for this server's names: a client that trusts `ca.pem` trusts it for
    // nothing else, even if its key leaks.
    ca.name_constraints = Some(name_constraints(domain, ips));
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let ca_path = dir.join("ca.pem");
    // The names the CA clients trust was made for: clients enforce its constraints, so a
    // CA made before them, or for other names, is reported (it is never replaced behind
    // the clients' back: deleting the files makes a new one, which they must trust anew).
    let names_path = dir.join("ca.names");
    let names = constrained_names(domain, ips);
    if made || !ca_path.exists() {
        write_file(&ca_path, &ca_cert.pem(), false)?;
        write_file(&names_path, &names, false)?;
    } else {
        match std::fs::read_to_string(&names_path) {
            Ok(before) if before == names => {}
            Ok(before) => tracing::warn!(
                ca = %ca_path.display(), before = %before.trim(), now = %names.trim(),
                "the development CA was made for other names: clients will refuse certificates for the new ones; delete ca.pem and ca-key.pem to make a new CA, and trust it"
            ),
            Err(_) => tracing::warn!(
                ca = %ca_path.display(),
                "the development CA predates name constraints: clients trust it for any name; delete ca.pem and ca-key.pem to make a constrained one, and trust it"
            ),
        }
    }
    let issuer = Issuer { ca: ca_cert, key: ca_key };
    let default = Arc::new(issuer.issue(&["localhost".to_owned()], ips)?);
    let mut domains = vec!["localhost".to_owned()];
    if !domain.eq_ignore_ascii_case("localhost") {
        domains.push(domain.to_ascii_lowercase());
    }
    let resolver = OnDemand { issuer, domains, default, issued: std::sync::Mutex::default() };
    Ok((Tls { files: None, acceptor: acceptor(Arc::new(resolver))? }, ca_path))
}

/// What the development CA may sign for: `localhost`, the domain and the names under
/// them, and the listen addresses (no address at all when there is none to name).
fn name_constraints(domain: &str, ips: &[IpAddr]) -> rcgen::NameConstraints {
    use rcgen::{CidrSubnet, GeneralSubtree};
    let mut permitted = vec![GeneralSubtree::DnsName("localhost".into())];
    if !domain.eq_ignore_ascii_case("localhost") {
        permitted.push(GeneralSubtree::DnsName(domain.to_ascii_lowercase()));
    }
    let host = |ip: &IpAddr| CidrSubnet::from_addr_prefix(*ip, if ip.is_ipv4() { 32 } else { 128 });
    permitted.extend(ips.iter().map(|ip| GeneralSubtree::IpAddress(host(ip))));
    let excluded = if ips.is_empty() {
        vec![
            GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([0; 4], 0)),
            GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix([0; 16], 0)),
        ]
    } else {
        Vec::new()
    };
    rcgen::NameConstraints { permitted_subtrees: permitted, excluded_subtrees: excluded }
}

/// The names and addresses a development CA is constrained to, one per line.
fn constrained_names(domain: &str, ips: &[IpAddr]) -> String {
    let mut out = String::from("localhost\n");
    if !domain.eq_ignore_ascii_case("localhost") {
        out.push_str(&format!("{}\n", domain.to_ascii_lowercase()));
    }
    for ip in ips {
        out.push_str(&format!("{ip}\n"));
    }
    out
}

/// The development CA.
struct Issuer {
    ca: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuer")
    }
}

impl Issuer {
    /// A certificate (fresh key, valid from yesterday for a year) for `names` and `ips`.
    fn issue(&self, names: &[String], ips: &[IpAddr]) -> Result<CertifiedKey, String> {
        use chrono::Datelike as _;
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
        };
        let err = |e: rcgen::Error| e.to_string();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        leaf.distinguished_name.push(DnType::CommonName, names.first().map_or("localhost", |n| n));
        for n in names {
            leaf.subject_alt_names.push(SanType::DnsName(n.clone().try_into().map_err(err)?));
        }
        for ip in ips {
            leaf.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let from = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
        let day = |d: chrono::NaiveDate| {
            rcgen::date_time_ymd(d.year(), d.month() as u8, d.day().min(28) as u8)
        };
        leaf.not_before = day(from);
        leaf.not_after = day(from + chrono::Duration::days(366));
        let key = KeyPair::generate().map_err(err)?;
        let cert = leaf.signed_by(&key, &self.ca, &self.key).map_err(err)?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
        CertifiedKey::from_der(
            vec![cert.der().clone(), self.ca.der().clone()],
            key_der,
            &provider(),
        )
        .map_err(|e| e.to_string())
    }
}

/// Issues a certificate per SNI name under the served domains (see [`self_signed`]).
#[derive(Debug)]
struct OnDemand {
    issuer: Issuer,
    domains: Vec<String>,
    default: Arc<CertifiedKey>,
    issued: std::sync::Mutex<Issued>,
}

/// Certificates issued so far, and how many in the current minute.
#[derive(Debug, Default)]
struct Issued {
    by_name: std::collections::HashMap<String, Arc<CertifiedKey>>,
    window: Option<std::time::Instant>,
    in_window: u32,
}

/// New names a minute the development CA signs for; past it, the default certificate (a
/// client inventing names can't make the server sign without end).
const ISSUE_PER_MINUTE: u32 = 60;

impl OnDemand {
    /// A name this server answers for: a served domain, or one label under one.
    fn serves(&self, name: &str) -> bool {
        self.domains.iter().any(|d| {
            name == d
                || name.strip_suffix(d.as_str()).and_then(|l| l.strip_suffix('.')).is_some_and(
                    |label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    },
                )
        })
    }
}

impl ResolvesServerCert for OnDemand {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(self.default.clone());
        };
        if !self.serves(&name) {
            return Some(self.default.clone());
        }
        let mut issued = self.issued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = issued.by_name.get(&name) {
            return Some(c.clone());
        }
        let now = std::time::Instant::now();
        if issued.window.is_none_or(|w| now.duration_since(w).as_secs() >= 60) {
            issued.window = Some(now);
            issued.in_window = 0;
        }
        if issued.in_window >= ISSUE_PER_MINUTE || issued.by_name.len() >= 4096 {
            return Some(self.default.clone());
        }
        issued.in_window += 1;
        match self.issuer.issue(std::slice::from_ref(&name), &[]) {
            Ok(c) => {
                let c = Arc::new(c);
                issued.by_name.insert(name, c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot issue a development certificate");
                Some(self.default.clone())
            }
        }
    }
}

/// Write a file atomically; a secret one readable by its owner only.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    /// What a client trusting `ca.pem` accepts, for a certificate its key signed.
    fn accepted(dir: &Path, issuer: &Issuer, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .unwrap();
        let leaf = issuer.issue(&[name.to_owned()], &[]).unwrap();
        let server = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(&leaf.cert[0], &[], &server, &[], UnixTime::now()).is_ok()
    }

    /// The development CA vouches for this server's names only, whoever holds its key.
    #[test]
    fn the_development_ca_signs_for_this_servers_names_only() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), "wharf.test", &[IpAddr::from([127, 0, 0, 1])]).unwrap();
        let key = rcgen::KeyPair::from_pem(
            &std::fs::read_to_string(dir.path().join("ca-key.pem")).unwrap(),
        )
        .unwrap();
        // The CA as the server rebuilds it, signing whatever it is asked to.
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca.distinguished_name.push(rcgen::DnType::CommonName, "wharf development CA");
        ca.name_constraints = Some(name_constraints("wharf.test", &[]));
        let issuer = Issuer { ca: ca.self_signed(&key).unwrap(), key };
        for name in ["localhost", "myreg.localhost", "wharf.test", "myreg.wharf.test"] {
            assert!(accepted(dir.path(), &issuer, name), "{name}");
        }
        for name in ["example.com", "login.microsoftonline.com", "wharf.test.evil.org"] {
            assert!(!accepted(dir.path(), &issuer, name), "{name} must be refused");
        }
    }
}

//! A hand-driven blocking client of the OCI distribution API, and its response helpers.

use super::*;

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

    /// Push a blob in `parts` requests (1: monolithic `POST ?digest=`; n: POST, n-1 PATCHes,
    /// PUT of the rest with the digest), without asserting: `Err` says which step the
    /// server refused or dropped (crash and power-loss tests, where it goes away).
    pub fn try_push_blob(&self, repo: &str, blob: &[u8], parts: usize) -> Result<String, String> {
        let d = digest_of(blob);
        let send = |req: reqwest::blocking::RequestBuilder, want: u16, step: &str| {
            let r = req.send().map_err(|e| format!("{step}: {e}"))?;
            if r.status() != want {
                return Err(format!("{step}: {}", r.status()));
            }
            Ok(r)
        };
        if parts <= 1 {
            let url = self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}"));
            send(self.http.post(url).body(blob.to_vec()), 201, "monolithic push")?;
            return Ok(d);
        }
        let r =
            send(self.http.post(self.url(&format!("/v2/{repo}/blobs/uploads/"))), 202, "start")?;
        let mut loc = self.url(location(r.headers()));
        let size = blob.len() / parts;
        for k in 0..parts - 1 {
            let (start, end) = (k * size, (k + 1) * size);
            let patch = self
                .http
                .patch(&loc)
                .header("content-range", format!("{start}-{}", end - 1))
                .body(blob[start..end].to_vec());
            loc = self.url(location(send(patch, 202, "chunk")?.headers()));
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let rest = blob[(parts - 1) * size..].to_vec();
        send(self.http.put(format!("{loc}{sep}digest={d}")).body(rest), 201, "closing chunk")?;
        Ok(d)
    }

    /// Put an OCI image manifest without asserting; its digest, or which status came back.
    pub fn try_put_manifest(
        &self,
        repo: &str,
        tag: &str,
        manifest: &[u8],
    ) -> Result<String, String> {
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.to_vec())
            .send()
            .map_err(|e| format!("manifest: {e}"))?;
        if r.status() != 201 {
            return Err(format!("manifest: {}", r.status()));
        }
        Ok(digest_of(manifest))
    }

    /// Start an upload session; its absolute Location.
    pub fn start_upload(&self, repo: &str) -> String {
        let r = self.http.post(self.url(&format!("/v2/{repo}/blobs/uploads/"))).send().unwrap();
        assert_eq!(r.status(), 202);
        self.url(location(r.headers()))
    }
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

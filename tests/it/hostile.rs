//! Hostile clients: peers that hold connections, stop reading, stall mid-body or race each
//! other. Each test plays the attack against the real binary and checks that the server
//! stays small and answers everyone else. (The latencies are measured by
//! `bench/hostile.sh`; here they are only bounded generously, as liveness.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

/// Send `head` (and `body`) on a fresh connection, and leave it open.
fn open(port: u16, head: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// The status line's code of what a connection answered (within `wait`).
fn status_of(s: &mut TcpStream, wait: Duration) -> Option<u16> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn clients_that_stop_reading_cost_little_and_are_dropped() {
    raise_open_files();
    // All on loopback, attackers and everyone else share an address: the per-client cap
    // (tested on its own below) is lifted so that all thousand get in.
    let w = Wharf::start_with_config(
        "[limits]\nwrite_idle_timeout = \"3s\"\nmax_transfers_per_client = 100000\n",
        &[],
    );
    let reg = w.reg();
    let big = reg.push_blob("big", &bytes(7, 32 << 20));
    reg.push_image("app", "v1", &[b"a layer"]);
    let idle = w.sockets();

    // A thousand clients ask for 32 MiB and never read a byte.
    let stalled: Vec<TcpStream> = (0..1000)
        .map(|_| {
            open(
                w.port,
                &format!("GET /v2/big/blobs/{big} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}\r\n"),
                b"",
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let rss = w.rss_mib();
    println!("1000 stalled 32 MiB downloads: server RSS {rss:.1} MiB");

    // Everyone else is served meanwhile.
    let t = Instant::now();
    reg.push_blob("fresh", &bytes(8, 1 << 20));
    let push = t.elapsed();
    let t = Instant::now();
    assert!(manifest_bytes(&w.url(), None, "app", "v1").is_some());
    let manifest = t.elapsed();
    println!("while they hang: 1 MiB push {push:?}, manifest GET {manifest:?}");
    assert!(push < Duration::from_secs(10) && manifest < Duration::from_secs(10));
    assert!(rss <= 128.0, "1000 stalled readers took the server to {rss:.1} MiB");

    // The write timeout closes them all.
    assert!(
        eventually(Duration::from_secs(30), || w.sockets() <= idle + 2),
        "stalled connections still open: {} sockets",
        w.sockets()
    );
    drop(stalled);
}

#[test]
fn half_open_connections_are_closed_by_the_header_timeout() {
    let limit = raise_open_files();
    let n = 10_000.min(limit.saturating_sub(1_000) as usize);
    let w = Wharf::start_with_config(
        "[limits]\nheader_read_timeout = \"4s\"\nkeepalive_timeout = \"6s\"\n",
        &[],
    );
    let idle = w.sockets();
    // Half a request line, then nothing; and a few that send nothing at all.
    let half: Vec<TcpStream> = (0..n).map(|_| open(w.port, "GET /v2/ HT", b"")).collect();
    let silent: Vec<TcpStream> =
        (0..20).map(|_| TcpStream::connect(("127.0.0.1", w.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let rss = w.rss_mib();
    let t = Instant::now();
    let r = w.reg().get("/v2/");
    let fresh = t.elapsed();
    println!("{n} half-open connections: server RSS {rss:.1} MiB, a fresh GET /v2/ took {fresh:?}");
    assert_eq!(r.status(), 200);
    assert!(fresh < Duration::from_secs(5));
    assert!(rss <= 256.0, "{n} half-open connections took the server to {rss:.1} MiB");
    assert!(
        eventually(Duration::from_secs(30), || w.sockets() <= idle + 2),
        "half-open or silent connections still open: {} sockets",
        w.sockets()
    );
    drop((half, silent));
}

#[test]
fn transfers_past_the_caps_are_told_to_retry_and_stalled_uploads_give_their_slot_back() {
    let w = Wharf::start_with_config(
        "[limits]\nmax_uploads = 2\nmax_downloads = 2\nbody_idle_timeout = \"2s\"\n",
        &[],
    );
    let reg = w.reg();
    // Two uploads that send a little of their body and stop.
    let blob = bytes(1, 100_000);
    let d = digest_of(&blob);
    let head = format!(
        "POST /v2/a/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Length: {}\r\n\r\n",
        blob.len()
    );
    let mut stalled: Vec<TcpStream> = (0..2).map(|_| open(w.port, &head, &blob[..1000])).collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = reg
        .http
        .post(reg.url(&format!("/v2/a/blobs/uploads/?digest={d}")))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 429, "a third upload is refused, not queued");
    assert_eq!(header(r.headers(), "retry-after"), "1");
    assert_eq!(error_code(r), "TOOMANYREQUESTS");
    // The body timeout fails the stalled ones (400) and frees their slots.
    for s in &mut stalled {
        assert_eq!(status_of(s, Duration::from_secs(10)), Some(400));
    }
    assert_eq!(reg.push_blob("a", &blob), d);
    assert_eq!(reg.get(&format!("/v2/a/blobs/{d}")).bytes().unwrap().as_ref(), &blob[..]);

    // Downloads have their own slots.
    let big = reg.push_blob("big", &bytes(2, 16 << 20));
    let readers: Vec<TcpStream> = (0..2)
        .map(|_| {
            open(
                w.port,
                &format!("GET /v2/big/blobs/{big} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}\r\n"),
                b"",
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = reg.get(&format!("/v2/a/blobs/{d}"));
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(r), "TOOMANYREQUESTS");
    // Uploads still go through while downloads are full.
    reg.push_blob("b", b"not a download");
    drop(readers);
    assert!(eventually(Duration::from_secs(10), || reg.get(&format!("/v2/a/blobs/{d}")).status()
        == 200));
}

#[test]
fn racing_patches_at_one_offset_accept_exactly_one() {
    let w = Wharf::start();
    let reg = w.reg();
    let loc = reg.start_upload("race");
    let path = loc.strip_prefix(&w.url()).unwrap().to_owned();
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| bytes(100 + i, 100_000)).collect();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Type: application/octet-stream\r\nContent-Range: 0-99999\r\nContent-Length: 100000\r\n\r\n"
    );
    // All eight are in the server at once, each halfway through its body: nothing waits
    // on a lock while a body streams, so none has been answered yet.
    let mut conns: Vec<TcpStream> =
        bodies.iter().map(|b| open(w.port, &head, &b[..50_000])).collect();
    std::thread::sleep(Duration::from_millis(300));
    for c in &mut conns {
        assert_eq!(status_of(c, Duration::from_millis(50)), None, "answered before its body ended");
    }
    for (c, b) in conns.iter_mut().zip(&bodies) {
        c.write_all(&b[50_000..]).unwrap();
    }
    // The first to finish is attached; every other one finds the session moved on.
    let answers: Vec<Option<u16>> =
        conns.iter_mut().map(|c| status_of(c, Duration::from_secs(10))).collect();
    assert_eq!(answers.iter().filter(|a| **a == Some(202)).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| **a == Some(416)).count(), 7, "{answers:?}");
    let i = answers.iter().position(|a| *a == Some(202)).unwrap();
    // The session holds exactly the winner's bytes and finishes as that blob.
    let r = reg.get(&path);
    assert_eq!(header(r.headers(), "range"), "0-99999");
    let d = digest_of(&bodies[i]);
    let r = reg.http.put(format!("{loc}?digest={d}")).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert_eq!(reg.get(&format!("/v2/race/blobs/{d}")).bytes().unwrap().as_ref(), &bodies[i][..]);
}

#[test]
fn a_chunk_retried_while_the_first_try_still_hangs_goes_through() {
    let w = Wharf::start();
    let reg = w.reg();
    let loc = reg.start_upload("retry");
    let path = loc.strip_prefix(&w.url()).unwrap().to_owned();
    let data = bytes(5, 64_000);
    // The first try stops halfway (the client's connection died, the server doesn't know).
    let mut first = open(
        w.port,
        &format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Range: 0-63999\r\nContent-Length: 64000\r\n\r\n"
        ),
        &data[..10_000],
    );
    std::thread::sleep(Duration::from_millis(200));
    // The retry isn't held up by it.
    let r =
        reg.http.patch(&loc).header("content-range", "0-63999").body(data.clone()).send().unwrap();
    assert_eq!(r.status(), 202);
    // When the first try ends after all, it is refused and changes nothing.
    first.write_all(&data[10_000..]).unwrap();
    assert_eq!(status_of(&mut first, Duration::from_secs(10)), Some(416));
    let d = digest_of(&data);
    assert_eq!(reg.http.put(format!("{loc}?digest={d}")).send().unwrap().status(), 201);
}

#[test]
fn unrelated_uploads_never_wait_on_a_stalled_one() {
    let w = Wharf::start_with(&["--upload-ttl", "1s", "--gc-interval", "0"]);
    let reg = w.reg();
    // One session's PATCH stops halfway; another session is left idle.
    let loc = reg.start_upload("stuck");
    let idle = reg.start_upload("idle");
    let path = loc.strip_prefix(&w.url()).unwrap().to_owned();
    let data = bytes(9, 100_000);
    let mut stuck = open(
        w.port,
        &format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Length: 100000\r\n\r\n"
        ),
        &data[..1000],
    );
    std::thread::sleep(Duration::from_millis(200));
    // 64 chunked uploads to other sessions, at once: all succeed.
    let errors: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64u64)
            .map(|i| {
                let reg = w.reg();
                s.spawn(move || {
                    let data = bytes(1000 + i, 256 << 10);
                    let loc = reg.start_upload(&format!("many/{i}"));
                    let r = reg
                        .http
                        .patch(&loc)
                        .header("content-range", format!("0-{}", data.len() / 2 - 1))
                        .body(data[..data.len() / 2].to_vec())
                        .send()
                        .unwrap();
                    if r.status() != 202 {
                        return 1;
                    }
                    let next = reg.url(location(r.headers()));
                    let sep = if next.contains('?') { '&' } else { '?' };
                    let r = reg
                        .http
                        .put(format!("{next}{sep}digest={}", digest_of(&data)))
                        .body(data[data.len() / 2..].to_vec())
                        .send()
                        .unwrap();
                    usize::from(r.status() != 201)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(errors, 0);
    // Both sessions are past their 1 s TTL now. Garbage collection removes the idle one
    // and leaves the one with a chunk streaming in, without waiting for it.
    std::thread::sleep(Duration::from_millis(1200));
    let t = Instant::now();
    let report = cli(&w, &["gc"]).ok_json();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(report["uploadsRemoved"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(reg.get(idle.strip_prefix(&w.url()).unwrap()).status(), 404);
    stuck.write_all(&data[1000..]).unwrap();
    assert_eq!(status_of(&mut stuck, Duration::from_secs(10)), Some(202));
}

#[test]
fn one_client_address_gets_its_share_of_transfers_and_no_more() {
    let w = Wharf::start_with_config(
        "[limits]\nmax_transfers_per_client = 3\n[network]\ntrusted_proxies = [\"127.0.0.7\"]\n",
        &[],
    );
    let reg = w.reg();
    let big = reg.push_blob("big", &bytes(3, 16 << 20));
    let readers: Vec<TcpStream> = (0..3)
        .map(|_| {
            open(
                w.port,
                &format!("GET /v2/big/blobs/{big} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}\r\n"),
                b"",
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // This address has three transfers in flight: a fourth, of either kind, must wait.
    let r = reg.get(&format!("/v2/big/blobs/{big}"));
    assert_eq!(r.status(), 429);
    assert!(r.text().unwrap().contains("from this client"));
    let r = reg.http.post(reg.url("/v2/big/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), 429);
    drop(readers);
    assert!(eventually(Duration::from_secs(10), || {
        reg.get(&format!("/v2/big/blobs/{big}")).status() == 200
    }));
    // Behind a trusted proxy each client it names has its own share, not one for all.
    let via = |client: &str| {
        client_from("127.0.0.7")
            .get(format!("{}/v2/big/blobs/{big}", w.url()))
            .header("authorization", admin_basic())
            .header("x-forwarded-for", client)
            .send()
            .unwrap()
    };
    let held: Vec<_> = (0..3).map(|_| via("198.51.100.1")).collect();
    assert!(held.iter().all(|r| r.status() == 200));
    assert_eq!(via("198.51.100.1").status(), 429);
    assert_eq!(via("198.51.100.2").status(), 200);
}

#[test]
fn an_http2_stream_that_stops_moving_closes_its_connection_and_frees_its_slot() {
    let w =
        Wharf::start_with_config("[limits]\nwrite_idle_timeout = \"3s\"\nmax_downloads = 1\n", &[]);
    let reg = w.reg();
    let big = reg.push_blob("big", &bytes(4, 8 << 20));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ended = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", w.port)).await.unwrap();
        // A client that grants 1 KiB of window and never more, but keeps the connection
        // alive (its connection task answers pings).
        let (mut h2, conn) = h2::client::Builder::new()
            .initial_window_size(1024)
            .initial_connection_window_size(1 << 20)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get(format!("http://127.0.0.1:{}/v2/big/blobs/{big}", w.port))
            .header("authorization", admin_basic())
            .body(())
            .unwrap();
        let (response, _) = h2.send_request(req, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        let _body = response.into_body(); // never read, never released
        // The only download slot is held meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let url = format!("http://127.0.0.1:{}/v2/big/blobs/{big}", w.port);
        let busy = tokio::task::spawn_blocking(move || client().get(url).send().unwrap().status());
        assert_eq!(busy.await.unwrap(), 429);
        // The write timeout closes the connection.
        tokio::time::timeout(Duration::from_secs(20), conn).await.is_ok()
    });
    assert!(ended, "the stalled HTTP/2 connection was not closed");
    // And the slot is free again.
    assert!(eventually(Duration::from_secs(5), || {
        reg.get(&format!("/v2/big/blobs/{big}")).status() == 200
    }));
}

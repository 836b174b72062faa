//! `wharf serve`: zero configuration, flags, environment, config file, logs, shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn wait_up(port: u16) {
    for _ in 0..400 {
        if client().get(format!("http://127.0.0.1:{port}/v2/")).send().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("server on {port} did not come up");
}

#[test]
fn zero_config_uses_wharf_data_in_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    // Only the listen address is moved off the default port (tests run in parallel).
    let mut child = Command::new(wharf_bin())
        .arg("serve")
        .current_dir(cwd.path())
        .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("WHARF_DATA_DIR")
        .env_remove("WHARF_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_up(port);
    // The first start made the admin a password: shown once, and kept in a file only the
    // server's user can read.
    let mut shown = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut shown,
    )
    .unwrap();
    let file = cwd.path().join("wharf-data/admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 20, "{password:?}");
    assert!(shown.contains("'admin'") && shown.contains(&password), "{shown}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // So is everything else the server keeps: the database (hashes, signing keys), the
    // sealing key, the blobs' directory.
    for name in ["wharf-data", "wharf-data/wharf.db", "wharf-data/sealing-key", "wharf-data/blobs"]
    {
        let mode = std::fs::metadata(cwd.path().join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name} is open to others: {mode:o}");
    }
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert("authorization", basic("admin", &password).parse().unwrap());
    let http = reqwest::blocking::Client::builder().default_headers(auth).build().unwrap();
    let reg = Reg { base: format!("http://127.0.0.1:{port}"), http };
    // Without it, nothing.
    let anon = anon_client().get(format!("http://127.0.0.1:{port}/v2/")).send().unwrap();
    assert_eq!(anon.status(), 401);
    reg.push_image("zero", "v1", &[b"zero config"]);
    assert!(cwd.path().join("wharf-data/wharf.db").exists());
    assert_eq!(assert_blob_files_match_names(&cwd.path().join("wharf-data")), 2);
    signal(child.id(), "TERM");
    let status = wait_timeout(&mut child, Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit status {status}");
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains(&format!("listening on http://127.0.0.1:{port}")), "{log}");
}

#[test]
fn config_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\ndata_dir = \"{}\"\nlog_format = \"json\"\n",
            dir.path().join("from-file").display()
        ),
    )
    .unwrap();

    // The file alone.
    let mut child = Command::new(wharf_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_up(file_port);
    signal(child.id(), "TERM");
    assert!(wait_timeout(&mut child, Duration::from_secs(20)).unwrap().success());
    assert!(dir.path().join("from-file/wharf.db").exists());
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    // JSON logs: every line is an object.
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string());
    }

    // A flag beats the environment, which beats the file.
    let mut child = Command::new(wharf_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{flag_port}")])
        .env("WHARF_DATA_DIR", dir.path().join("from-env"))
        .env("WHARF_LISTEN", format!("127.0.0.1:{file_port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_up(flag_port);
    signal(child.id(), "TERM");
    assert!(wait_timeout(&mut child, Duration::from_secs(20)).unwrap().success());
    assert!(dir.path().join("from-env/wharf.db").exists());
}

#[test]
fn bad_configuration_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "listen = 5\nunknown_key = true\n").unwrap();
    for args in [
        vec!["serve".to_owned(), "--config".to_owned(), config.display().to_string()],
        vec!["serve".to_owned(), "--config".to_owned(), "/nonexistent/wharf.toml".to_owned()],
        vec!["serve".to_owned(), "--listen".to_owned(), "not-an-address".to_owned()],
    ] {
        let out = Command::new(wharf_bin()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?}: an error is printed");
        if !args.contains(&"--listen".to_owned()) {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
            assert!(err.starts_with("wharf: error: "), "{err}");
        }
    }
    // Redirected downloads need an object store, and a URL lifetime S3 can sign.
    let expiry = dir.path().join("expiry.toml");
    std::fs::write(
        &expiry,
        "[storage]\nblobs = \"s3://b?endpoint=http://127.0.0.1:1\"\nredirect_downloads = true\nredirect_valid_for = \"8days\"\n",
    )
    .unwrap();
    // Nodes sharing PostgreSQL must agree on the address their tokens name; token
    // lifetimes stay within reason.
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(&cluster, "[storage]\nmetadata = \"postgres://wharf@127.0.0.1:1/x\"\n").unwrap();
    let lifetime = dir.path().join("lifetime.toml");
    std::fs::write(&lifetime, "[auth]\nregistry_access_token_lifetime = \"3days\"\n").unwrap();
    for (args, says) in [
        (vec!["serve", "--redirect-downloads"], "needs an object store"),
        (vec!["serve", "--config", expiry.to_str().unwrap()], "between 1s and 7days"),
        (vec!["serve", "--config", cluster.to_str().unwrap()], "needs public_url"),
        (vec!["serve", "--config", lifetime.to_str().unwrap()], "between 1m and 24h"),
    ] {
        let data = dir.path().join("data");
        let out =
            Command::new(wharf_bin()).args(&args).arg("--data-dir").arg(&data).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.starts_with("wharf: error: ") && err.contains(says), "{err}");
    }
}

#[test]
fn a_data_directory_has_one_server() {
    let w = Wharf::start();
    let out = Command::new(wharf_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(&w.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another wharf server"), "{err}");
    assert_eq!(w.reg().get("/v2/").status(), 200, "the first server is unaffected");
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let mut w = Wharf::start();
    let blob = bytes(20, 2_000_000);
    let d = digest_of(&blob);
    // A slow client: headers and half the body, then SIGTERM, then the rest.
    let mut s = TcpStream::connect(("127.0.0.1", w.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v2/slow/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n{ADMIN_AUTH_LINE}Content-Length: {}\r\nConnection: close\r\n\r\n",
        blob.len()
    )
    .unwrap();
    s.write_all(&blob[..1_000_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = w.pid();
    signal(pid, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // New connections are no longer accepted...
    assert!(
        client().get(format!("{}/v2/", w.url())).send().is_err(),
        "still accepting after SIGTERM"
    );
    // ...but the request in flight completes.
    s.write_all(&blob[1_000_000..]).unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let status = w.terminate_wait();
    assert!(status.success(), "exit status {status}");
    assert_eq!(assert_blob_files_match_names(&w.data), 1);
}

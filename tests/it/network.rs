//! Network rules as ACR has them: who may reach a registry's data plane from where
//! (`publicNetworkAccess`, `networkRuleSet`, trusted proxies, private networks), import
//! through the trusted path (`networkRuleBypassOptions`), the export policy, and settings
//! wharf would store without enforcing, refused.

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::*;

const CONFIG: &str =
    "[network]\ntrusted_proxies = [\"127.0.0.7\"]\nprivate_networks = [\"127.0.0.8/32\"]\n";

fn status(r: reqwest::blocking::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

#[test]
fn network_rules_decide_who_reaches_a_registry_and_import_takes_the_trusted_path() {
    let w = Wharf::start_with_config(CONFIG, &[]);
    cli(&w, &["registry", "create", "-n", "fenced"]).ok_json();
    let fenced = format!("fenced.localhost:{}", w.port);
    let reg = w.reg();
    let (_, digest) = reg.push_image("base", "v1", &[b"the default registry's image"]);
    // Something in `fenced` too, pushed while it is open.
    let imported = cli(
        &w,
        &["import", "-n", "fenced", "--source", "base:v1", "-r", "default", "-t", "app:v1"],
    );
    imported.ok_json();

    let get = |from: &str, path: &str, xff: Option<&str>| {
        let mut r = client_from(from)
            .get(format!("{}{path}", w.url()))
            .header("host", &fenced)
            .header("authorization", admin_basic());
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        status(r.send().unwrap())
    };
    assert_eq!(get("127.0.0.9", "/v2/app/manifests/v1", None).0, 200, "open to all at first");

    // Deny by default, one address allowed.
    cli(&w, &["registry", "update", "-n", "fenced", "--default-action", "Deny"]).ok_json();
    let rules =
        cli(&w, &["registry", "network-rule", "add", "-n", "fenced", "--ip-address", "127.0.0.5"])
            .ok_json();
    assert_eq!(rules["ipRules"][0]["value"], "127.0.0.5", "{rules}");
    for path in [
        "/v2/",
        "/v2/app/manifests/v1",
        "/acr/v1/_catalog",
        "/oauth2/token?scope=repository:app:pull",
    ] {
        let (s, v) = get("127.0.0.9", path, None);
        assert_eq!(s, 403, "{path}: {v}");
        assert_eq!(v["errors"][0]["code"], "DENIED", "{v}");
        let m = v["errors"][0]["message"].as_str().unwrap();
        assert!(m.contains("127.0.0.9") && m.contains("not allowed access"), "{m}");
        assert_eq!(get("127.0.0.5", path, None).0, 200, "{path} from the allowed address");
    }
    // The other registry of the server is not affected.
    let other = client_from("127.0.0.9")
        .get(format!("{}/v2/base/manifests/v1", w.url()))
        .header("authorization", admin_basic())
        .send()
        .unwrap();
    assert_eq!(other.status(), 200);
    // A trusted proxy names the client; anyone else's X-Forwarded-For is ignored, and so is
    // what a client wrote itself to the left of what the proxy added.
    assert_eq!(get("127.0.0.7", "/v2/app/manifests/v1", Some("127.0.0.5")).0, 200);
    assert_eq!(get("127.0.0.7", "/v2/app/manifests/v1", Some("127.0.0.9")).0, 403);
    assert_eq!(get("127.0.0.9", "/v2/app/manifests/v1", Some("127.0.0.5")).0, 403);
    assert_eq!(get("127.0.0.7", "/v2/app/manifests/v1", Some("127.0.0.5, 127.0.0.9")).0, 403);
    assert_eq!(get("127.0.0.7", "/v2/app/manifests/v1", Some("junk, 127.0.0.5")).0, 200);
    // Proxies here write X-Forwarded-For: a `Forwarded` header the client wrote itself is
    // never read.
    let r = client_from("127.0.0.7")
        .get(format!("{}/v2/app/manifests/v1", w.url()))
        .header("host", &fenced)
        .header("authorization", admin_basic())
        .header("forwarded", "for=127.0.0.5")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "a client's own Forwarded header was believed");
    // A private network passes, like ACR's private endpoints.
    assert_eq!(get("127.0.0.8", "/v2/app/manifests/v1", None).0, 200);
    // The management API is not network-restricted.
    let (s, v) = arm(&w, Method::GET, &registry_id("fenced"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["properties"]["networkRuleSet"]["defaultAction"], "Deny");

    // By login server, a registry with IP rules is reached as from outside: refused, with
    // the resourceId form named.
    let by_login = json!({"source": {"registryUri": fenced, "sourceImage": "app:v1"}, "targetTags": ["viahost:v1"]});
    let (s, v) =
        arm(&w, Method::POST, &format!("{}/importImage", registry_id("default")), Some(by_login));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("SourceForbidden")), "{v}");
    // Import goes in and out through the trusted path while trusted services are allowed …
    cli(&w, &["import", "-n", "fenced", "--source", "base:v1", "-r", "default", "-t", "app:v2"])
        .ok_json();
    cli(&w, &["import", "-n", "default", "--source", "app:v1", "-r", "fenced", "-t", "out:v1"])
        .ok_json();
    assert_eq!(digest_of(&manifest_bytes(&w.url(), None, "out", "v1").unwrap()), digest);
    // … and not once they aren't.
    cli(&w, &["registry", "update", "-n", "fenced", "--allow-trusted-services", "false"]).ok_json();
    let err = cli(
        &w,
        &["import", "-n", "fenced", "--source", "base:v1", "-r", "default", "-t", "app:v3"],
    )
    .err_line();
    assert!(err.contains("NetworkRestricted") && err.contains("trusted services"), "{err}");
    let err =
        cli(&w, &["import", "-n", "default", "--source", "app:v1", "-r", "fenced", "-t", "out:v2"])
            .err_line();
    assert!(err.contains("SourceForbidden") && err.contains("trusted services"), "{err}");
    cli(&w, &["registry", "update", "-n", "fenced", "--allow-trusted-services", "true"]).ok_json();

    // Public access off: nobody from outside, not even an allowed address; by resource ID it
    // is still an import source, by login server it isn't.
    cli(&w, &["registry", "update", "-n", "fenced", "--public-network-enabled", "false"]).ok_json();
    let (s, v) = get("127.0.0.5", "/v2/app/manifests/v1", None);
    assert_eq!(s, 403, "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("public network access disabled"));
    assert_eq!(get("127.0.0.8", "/v2/app/manifests/v1", None).0, 200, "private network");
    let by_id = json!({"source": {"resourceId": registry_id("fenced"), "sourceImage": "app:v1"}, "targetTags": ["byid:v1"]});
    let (s, v) =
        arm(&w, Method::POST, &format!("{}/importImage", registry_id("default")), Some(by_id));
    assert_eq!(s, 200, "{v}");
    let by_login = json!({"source": {"registryUri": fenced, "sourceImage": "app:v1"}, "targetTags": ["bylogin:v1"]});
    let (s, v) =
        arm(&w, Method::POST, &format!("{}/importImage", registry_id("default")), Some(by_login));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("SourceForbidden")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("resource ID"), "{v}");

    // Exports off: nothing is imported out of it any more (but within it, yes).
    cli(&w, &["registry", "update", "-n", "fenced", "--allow-exports", "false"]).ok_json();
    let err =
        cli(&w, &["import", "-n", "default", "--source", "app:v1", "-r", "fenced", "-t", "out:v3"])
            .err_line();
    assert!(err.contains("SourceForbidden") && err.contains("exports disabled"), "{err}");
    cli(&w, &["import", "-n", "fenced", "--source", "app:v1", "-r", "fenced", "-t", "app:copy"])
        .ok_json();
    // ACR's rule: exports can be off only while public access is.
    let (s, v) = arm(
        &w,
        Method::PATCH,
        &registry_id("fenced"),
        Some(json!({"properties": {"publicNetworkAccess": "Enabled"}})),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidExportPolicy")), "{v}");
    assert!(manifest_bytes(&w.url(), None, "out", "v3").is_none());
}

#[test]
fn settings_wharf_would_not_enforce_are_refused() {
    let w = Wharf::start();
    let id = registry_id("default");
    let before = arm(&w, Method::GET, &id, None).1;
    for props in [
        json!({"policies": {"quarantinePolicy": {"status": "enabled"}}}),
        json!({"policies": {"trustPolicy": {"type": "Notary", "status": "enabled"}}}),
        json!({"policies": {"retentionPolicy": {"days": 7, "status": "enabled"}}}),
        json!({"policies": {"softDeletePolicy": {"retentionDays": 7, "status": "enabled"}}}),
        json!({"policies": {"azureADAuthenticationAsArmPolicy": {"status": "disabled"}}}),
        json!({"encryption": {"status": "enabled", "keyVaultProperties": {"keyIdentifier": "k"}}}),
        json!({"dataEndpointEnabled": true}),
        json!({"zoneRedundancy": "Enabled"}),
        json!({"networkRuleBypassAllowedForTasks": true}),
    ] {
        let (s, v) = arm(&w, Method::PATCH, &id, Some(json!({ "properties": props })));
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("UnsupportedSetting")),
            "{props}: {v}"
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("does not enforce"), "{v}");
        let (s, v) = arm(
            &w,
            Method::PUT,
            &registry_id("another1"),
            Some(json!({"location": "local", "sku": {"name": "Premium"}, "properties": props})),
        );
        assert_eq!(s, 400, "a new registry with {props}: {v}");
    }
    assert_eq!(arm(&w, Method::GET, &id, None).1, before, "nothing changed");
    assert_eq!(arm(&w, Method::GET, &registry_id("another1"), None).0, 404);
    // The defaults themselves are fine, as ARM clients send them back.
    let (s, v) = arm(
        &w,
        Method::PATCH,
        &id,
        Some(json!({"properties": {"policies": {"quarantinePolicy": {"status": "disabled"},
            "retentionPolicy": {"days": 7, "status": "disabled"}}, "encryption": {"status": "disabled"},
            "zoneRedundancy": "Disabled", "dataEndpointEnabled": false}})),
    );
    assert_eq!(s, 200, "{v}");
}

#[test]
fn behind_a_proxy_clients_are_told_the_names_they_reach() {
    // The server listens on one port; clients reach it through a proxy at another address.
    let public_port = free_port();
    let config = format!(
        "public_url = \"https://localhost:{public_port}\"\n[network]\ntrusted_proxies = [\"127.0.0.7\"]\n"
    );
    let w = Wharf::start_with_config(&config, &[]);
    cli(&w, &["registry", "create", "-n", "behind"]).ok_json();
    let (_, v) = arm(&w, Method::GET, &registry_id("behind"), None);
    assert_eq!(v["properties"]["loginServer"], format!("behind.localhost:{public_port}"));
    let meta: Value = anon_client()
        .get(format!("{}/metadata/endpoints?api-version=2022-09-01", w.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta[0]["suffixes"]["acrLoginServer"], format!(".localhost:{public_port}"));
    assert_eq!(meta[0]["resourceManager"], format!("https://localhost:{public_port}/"));

    // A challenge names the realm the client can reach: the proxy's host and scheme when a
    // trusted proxy forwards, the configured scheme otherwise; either name routes.
    let challenge = |from: &str, host: &str, forwarded: Option<(&str, &str)>| {
        let mut r = client_from(from).get(format!("{}/v2/", w.url())).header("host", host);
        if let Some((h, p)) = forwarded {
            r = r.header("x-forwarded-host", h).header("x-forwarded-proto", p);
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), 401);
        header(r.headers(), "www-authenticate").to_owned()
    };
    let public = format!("behind.localhost:{public_port}");
    let internal = format!("behind.localhost:{}", w.port);
    assert_eq!(
        challenge("127.0.0.7", &internal, Some((&public, "https"))),
        format!("Bearer realm=\"https://{public}/oauth2/token\",service=\"{public}\"")
    );
    // Not from a trusted proxy: the forwarding headers are ignored.
    assert_eq!(
        challenge("127.0.0.9", &internal, Some(("evil.example", "http"))),
        format!("Bearer realm=\"https://{internal}/oauth2/token\",service=\"{internal}\"")
    );
    // The public name routes to the same registry as the internal one.
    w.reg().push_image("base", "v1", &[b"for the proxy test"]);
    // (Through the API: the CLI would follow the operation's https Location, which only the
    // proxy this test doesn't run would answer.)
    let body = json!({"source": {"resourceId": registry_id("default"), "sourceImage": "base:v1"}, "targetTags": ["app:v1"]});
    let (s, v) =
        arm(&w, Method::POST, &format!("{}/importImage", registry_id("behind")), Some(body));
    assert_eq!(s, 200, "{v}");
    for host in [&public, &internal] {
        let r = client_from("127.0.0.9")
            .get(format!("{}/v2/app/manifests/v1", w.url()))
            .header("host", host.as_str())
            .header("authorization", admin_basic())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // An import's Location names what the client reached.
    let body = json!({"source": {"resourceId": registry_id("default"), "sourceImage": "base:v1"}, "targetTags": ["loc:v1"]});
    let r = w
        .arm_client()
        .post(format!("{}{}/importImage?api-version=2025-11-01", w.url(), registry_id("behind")))
        .header("host", format!("localhost:{public_port}"))
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let location = header(r.headers(), "location");
    assert!(
        location.starts_with(&format!("https://localhost:{public_port}/subscriptions/")),
        "{location}"
    );
}

#[test]
fn with_rfc7239_configured_the_nearest_forwarded_element_is_read() {
    let config = "[network]\ntrusted_proxies = [\"127.0.0.7\"]\nforwarded_header = \"forwarded\"\n";
    let w = Wharf::start_with_config(config, &[]);
    cli(&w, &["registry", "update", "-n", "default", "--default-action", "Deny"]).ok_json();
    cli(&w, &["registry", "network-rule", "add", "-n", "default", "--ip-address", "127.0.0.5"])
        .ok_json();
    let get = |name: &str, value: &str| {
        client_from("127.0.0.7")
            .get(format!("{}/v2/", w.url()))
            .header("authorization", admin_basic())
            .header(name, value)
            .send()
            .unwrap()
    };
    for (value, want) in [
        ("for=127.0.0.5", 200),
        ("for=\"127.0.0.5:4711\"", 200),
        ("For=127.0.0.5;proto=https", 200),
        ("for=127.0.0.5, for=127.0.0.9", 403),
        ("for=_hidden", 403),
        // The nearest element says nothing of the client: the proxy itself is the client.
        ("for=127.0.0.5, proto=https", 403),
    ] {
        assert_eq!(get("forwarded", value).status(), want, "Forwarded: {value}");
    }
    // In this mode X-Forwarded-For is the client's own and ignored.
    assert_eq!(get("x-forwarded-for", "127.0.0.5").status(), 403);
    // Host and scheme come from the nearest element only.
    cli(&w, &["registry", "network-rule", "add", "-n", "default", "--ip-address", "127.0.0.9"])
        .ok_json();
    let realm = |value: &str| {
        let r = client_from("127.0.0.7")
            .get(format!("{}/v2/", w.url()))
            .header("host", "internal.example:5000")
            .header("forwarded", value)
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
        header(r.headers(), "www-authenticate").to_owned()
    };
    assert_eq!(
        realm(
            "for=198.51.100.1;host=evil.example;proto=http, for=127.0.0.9;host=\"public.example\";proto=https"
        ),
        "Bearer realm=\"https://public.example/oauth2/token\",service=\"public.example\""
    );
    assert_eq!(
        realm("host=evil.example;proto=https, for=127.0.0.9"),
        "Bearer realm=\"http://internal.example:5000/oauth2/token\",service=\"internal.example:5000\""
    );
}

//! The management API, as an ARM client (SDK, script) uses it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::*;

const SUB: &str = "11111111-2222-3333-4444-555555555555";

fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourcegroups/{rg}")
}

fn reg_path(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

#[test]
fn api_version_is_required_and_any_well_formed_one_works() {
    let w = Wharf::start();
    let r = w.arm_client().get(format!("{}/subscriptions", w.url())).send().unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "MissingApiVersionParameter");
    for bad in ["latest", "2019-5-1", "2019-02-30"] {
        let (s, v) = arm(&w, Method::GET, &format!("/subscriptions?api-version={bad}"), None);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("InvalidApiVersionParameter")),
            "{bad}"
        );
    }
    for good in ["2017-10-01", "2019-12-01-preview", "2031-06-30-preview"] {
        let (s, v) = arm(&w, Method::GET, &format!("/subscriptions?api-version={good}"), None);
        assert_eq!(s, 200, "{good}");
        assert!(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subscriptionId"] == "00000000-0000-0000-0000-000000000000")
        );
    }
}

#[test]
fn registry_lifecycle_like_acr() {
    let w = Wharf::start();
    // A resource group (its subscription appears with it).
    let (s, rg) = arm(&w, Method::PUT, &rg_path("myRG"), Some(json!({"location": "westus"})));
    assert_eq!(s, 201);
    assert_eq!(rg["id"], format!("/subscriptions/{SUB}/resourceGroups/myRG"));
    assert_eq!(
        arm(&w, Method::PUT, &rg_path("myrg"), Some(json!({"location": "westus"}))).0,
        200,
        "names are case-insensitive"
    );
    let (s, v) = arm(&w, Method::PUT, &rg_path("norg"), Some(json!({})));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("LocationRequired")));

    // Create a registry: 201 and ACR's Registry JSON.
    let body = json!({"location": "westus", "sku": {"name": "Premium"}, "properties": {"adminUserEnabled": true}, "tags": {"env": "test"}});
    let (s, r) = arm(&w, Method::PUT, &reg_path("myRG", "MyRegistry1"), Some(body.clone()));
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["id"], reg_path("myRG", "MyRegistry1"));
    assert_eq!(r["name"], "MyRegistry1");
    assert_eq!(r["type"], "Microsoft.ContainerRegistry/registries");
    assert_eq!(r["location"], "westus");
    assert_eq!(r["sku"], json!({"name": "Premium", "tier": "Premium"}));
    assert_eq!(r["tags"], json!({"env": "test"}));
    let p = &r["properties"];
    assert_eq!(p["loginServer"], format!("myregistry1.localhost:{}", w.port));
    assert_eq!(p["provisioningState"], "Succeeded");
    assert!(p["creationDate"].as_str().unwrap().ends_with('Z'));
    assert_eq!(p["adminUserEnabled"], true);
    assert_eq!(p["publicNetworkAccess"], "Enabled");
    assert_eq!(p["networkRuleSet"], json!({"defaultAction": "Allow", "ipRules": []}));
    assert_eq!(p["networkRuleBypassOptions"], "AzureServices");
    assert_eq!(p["anonymousPullEnabled"], false);
    assert_eq!(p["policies"]["exportPolicy"]["status"], "enabled");

    // GET, PUT again (update: 200), PATCH.
    let (s, got) = arm(&w, Method::GET, &reg_path("myrg", "myregistry1"), None);
    assert_eq!((s, &got["id"]), (200, &r["id"]));
    assert_eq!(arm(&w, Method::PUT, &reg_path("myRG", "MyRegistry1"), Some(body)).0, 200);
    let (s, patched) = arm(
        &w,
        Method::PATCH,
        &reg_path("myRG", "MyRegistry1"),
        Some(
            json!({"sku": {"name": "Basic"}, "properties": {"networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "203.0.113.0/24"}]}, "anonymousPullEnabled": true}}),
        ),
    );
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["sku"]["name"], "Basic");
    assert_eq!(patched["properties"]["networkRuleSet"]["ipRules"][0]["value"], "203.0.113.0/24");
    assert_eq!(patched["properties"]["adminUserEnabled"], true, "PATCH keeps the rest");

    // Lists: by resource group, by subscription.
    let (_, in_rg) = arm(
        &w,
        Method::GET,
        &format!(
            "/subscriptions/{SUB}/resourceGroups/myRG/providers/Microsoft.ContainerRegistry/registries"
        ),
        None,
    );
    assert_eq!(in_rg["value"].as_array().unwrap().len(), 1);
    let (_, in_sub) = arm(
        &w,
        Method::GET,
        &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/registries"),
        None,
    );
    assert_eq!(in_sub["value"][0]["name"], "MyRegistry1");

    // Names: 5-50 alphanumerics, unique on the server.
    let check = |name: &str| {
        arm(
            &w,
            Method::POST,
            &format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/checkNameAvailability"
            ),
            Some(json!({"name": name, "type": "Microsoft.ContainerRegistry/registries"})),
        )
        .1
    };
    assert_eq!(
        check("myregistry1"),
        json!({"nameAvailable": false, "reason": "AlreadyExists", "message": "The registry myregistry1 is already in use."})
    );
    assert_eq!(check("fresh123"), json!({"nameAvailable": true}));
    assert_eq!(check("no-dash")["reason"], "Invalid");
    arm(&w, Method::PUT, &rg_path("other"), Some(json!({"location": "eastus"})));
    let (s, v) = arm(
        &w,
        Method::PUT,
        &reg_path("other", "MYREGISTRY1"),
        Some(json!({"location": "eastus", "sku": {"name": "Basic"}})),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("AlreadyInUse")));
    for bad in ["abcd", "has-dash", &"a".repeat(51)] {
        let (s, v) = arm(
            &w,
            Method::PUT,
            &reg_path("other", bad),
            Some(json!({"location": "eastus", "sku": {"name": "Basic"}})),
        );
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidResourceName")), "{bad}");
    }

    // Bad requests get the ARM envelope.
    let raw = w
        .arm_client()
        .put(format!("{}{}?{API}", w.url(), reg_path("other", "newreg1")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.json::<Value>().unwrap()["error"]["code"], "InvalidRequestContent");
    let (s, v) = arm(
        &w,
        Method::PUT,
        &reg_path("other", "newreg1"),
        Some(json!({"location": "eastus", "sku": {"name": "Gold"}})),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidSku")));
    let (s, v) = arm(
        &w,
        Method::PATCH,
        &reg_path("myRG", "MyRegistry1"),
        Some(json!({"properties": {"publicNetworkAccess": "Sometimes"}})),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidRequestContent")));
    let (s, v) = arm(&w, Method::GET, &reg_path("nosuchrg", "MyRegistry1"), None);
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("ResourceGroupNotFound")));
    let (s, v) = arm(&w, Method::GET, &reg_path("myRG", "nosuchregistry"), None);
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("ResourceNotFound")));
    let (s, v) = arm(&w, Method::GET, "/subscriptions/nosuchsub/resourcegroups", None);
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("SubscriptionNotFound")));
    let (s, v) = arm(
        &w,
        Method::GET,
        &format!(
            "/subscriptions/{SUB}/resourceGroups/myRG/providers/Microsoft.Storage/storageAccounts/x"
        ),
        None,
    );
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("InvalidResourceType")));

    // Delete: 200, then 204; the resource group takes its registries with it.
    assert_eq!(arm(&w, Method::DELETE, &reg_path("myRG", "MyRegistry1"), None).0, 200);
    assert_eq!(arm(&w, Method::DELETE, &reg_path("myRG", "MyRegistry1"), None).0, 204);
    arm(
        &w,
        Method::PUT,
        &reg_path("other", "inother1"),
        Some(json!({"location": "eastus", "sku": {"name": "Basic"}})),
    );
    assert_eq!(arm(&w, Method::DELETE, &rg_path("other"), None).0, 200);
    assert_eq!(arm(&w, Method::GET, &reg_path("other", "inother1"), None).0, 404);
}

#[test]
fn each_registry_has_its_own_login_server_and_content() {
    let w = Wharf::start();
    for name in ["teamone", "teamtwo"] {
        let (s, _) = arm(
            &w,
            Method::PUT,
            &registry_id(name),
            Some(json!({"location": "local", "sku": {"name": "Standard"}})),
        );
        assert_eq!(s, 201);
    }
    let one = format!("teamone.localhost:{}", w.port);
    let two = format!("TeamTwo.LOCALHOST:{}", w.port);
    let reg = w.reg();
    let blob = b"only in team one";
    let d = digest_of(blob);
    let r = reg
        .http
        .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={d}")))
        .header("host", &one)
        .body(blob.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let head = |host: Option<&str>| {
        let mut req = reg.http.head(reg.url(&format!("/v2/app/blobs/{d}")));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(head(Some(&one)), 200);
    assert_eq!(head(Some(&two)), 404, "registries don't share repositories");
    assert_eq!(head(None), 404, "nor does the default registry");
    // The ACR data plane lists per registry.
    let config = b"{}";
    let cd = digest_of(config);
    reg.http
        .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={cd}")))
        .header("host", &one)
        .body(config.to_vec())
        .send()
        .unwrap();
    let m = image_manifest(config, &[blob]);
    let r = reg
        .http
        .put(reg.url("/v2/app/manifests/v1"))
        .header("host", &one)
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let cat: Value = reg
        .http
        .get(reg.url("/acr/v1/_catalog"))
        .header("host", &one)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cat["repositories"], json!(["app"]));
    let cat: Value = reg
        .http
        .get(reg.url("/acr/v1/_catalog"))
        .header("host", &two)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cat["repositories"], json!([]));
    let tags: Value = reg
        .http
        .get(reg.url("/acr/v1/app/_tags"))
        .header("host", &one)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["registry"], one);
    assert_eq!(tags["imageName"], "app");
    assert_eq!(tags["tags"][0]["name"], "v1");
    assert_eq!(tags["tags"][0]["digest"], digest_of(&m));
    let r = reg.http.get(reg.url("/acr/v1/nothere/_tags")).header("host", &one).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "NAME_UNKNOWN");
}

#[test]
fn acr_listings_page_filter_and_forget_empty_repositories() {
    let w = Wharf::start();
    let reg = w.reg();
    let (first, d1) = reg.push_image("paged", "a", &[b"one"]);
    let (_, d2) = reg.push_image("paged", "b", &[b"two"]);
    for t in ["c", "d", "e"] {
        assert_eq!(reg.put_manifest("paged", t, OCI_MANIFEST, &first).status(), 201);
    }
    // Pages of two, following ACR's Link header.
    let mut names = Vec::new();
    let mut next = Some("/acr/v1/paged/_tags?n=2".to_owned());
    while let Some(path) = next.take() {
        let r = reg.get(&path);
        assert_eq!(r.status(), 200);
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l[1..l.find('>').unwrap()].to_owned()
        });
        let v: Value = r.json().unwrap();
        names.extend(
            v["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    // The digest filter applies before paging, and stays in the next link.
    let r = reg.get(&format!("/acr/v1/paged/_tags?n=2&digest={d1}"));
    let link = r.headers().get("link").unwrap().to_str().unwrap().to_owned();
    assert!(link.contains("digest=sha256%3A"), "{link}");
    let v: Value = r.json().unwrap();
    let tags: Vec<&str> =
        v["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tags, ["a", "c"]);
    let v: Value = reg.get(&format!("/acr/v1/paged/_tags?digest={d2}")).json().unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 1);
    let manifests: Value = reg.get("/acr/v1/paged/_manifests?n=1").json().unwrap();
    assert_eq!(manifests["manifests"].as_array().unwrap().len(), 1);

    // A repository whose last manifest is gone is gone, as in /v2.
    for d in [&d1, &d2] {
        assert_eq!(reg.delete(&format!("/v2/paged/manifests/{d}")).status(), 202);
    }
    for path in
        ["/acr/v1/paged", "/acr/v1/paged/_tags", "/acr/v1/paged/_manifests", "/v2/paged/tags/list"]
    {
        let r = reg.get(path);
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(error_code(r), "NAME_UNKNOWN");
    }
}

#[test]
fn the_generic_resource_list_shows_registries_as_arm_clients_filter_them() {
    let w = Wharf::start();
    let (s, _) = arm(
        &w,
        Method::PUT,
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/team",
        Some(json!({"location": "local"})),
    );
    assert_eq!(s, 201);
    let (s, v) = arm(
        &w,
        Method::PUT,
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/team/providers/Microsoft.ContainerRegistry/registries/teamreg",
        Some(
            json!({"location": "westeurope", "sku": {"name": "Basic"}, "tags": {"owner": "team"}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let sub = "/subscriptions/00000000-0000-0000-0000-000000000000";
    let list = |path: &str| arm(&w, Method::GET, path, None);
    let (s, v) = list(&format!("{sub}/resources"));
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> =
        v["value"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"default") && names.contains(&"teamreg"), "{v}");
    let team = v["value"].as_array().unwrap().iter().find(|r| r["name"] == "teamreg").unwrap();
    assert_eq!(team["type"], "Microsoft.ContainerRegistry/registries");
    assert_eq!(team["location"], "westeurope");
    assert_eq!(team["tags"]["owner"], "team");
    assert_eq!(team["sku"]["name"], "Basic");
    let keys: Vec<&String> = team.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "id, name, type, location, tags, sku: {team}");
    // Filtered by type (any case), and by resource group.
    let (s, v) = list(&format!(
        "{sub}/resourceGroups/team/resources?$filter=resourceType%20eq%20%27microsoft.containerregistry/REGISTRIES%27"
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");
    let (s, v) = list(&format!(
        "{sub}/resources?$filter=resourceType%20eq%20%27Microsoft.Storage/storageAccounts%27"
    ));
    assert_eq!((s, v["value"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    // What isn't understood is refused, in ARM's envelope.
    let (s, v) = list(&format!("{sub}/resources?$filter=tagName%20eq%20%27owner%27"));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidFilterInQueryString")), "{v}");
    let (s, v) = list("/subscriptions/99999999-0000-0000-0000-000000000000/resources");
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("SubscriptionNotFound")), "{v}");
    let (s, v) = list(&format!("{sub}/resourceGroups/nogroup/resources"));
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("ResourceGroupNotFound")), "{v}");
}

//! The client commands: `wharf registry …`, `wharf repository …`, errors as one line.

use serde_json::{Value, json};

use crate::util::*;

#[test]
fn registry_commands() {
    let w = Wharf::start();
    // A default subscription and resource group exist: `create -n` just works.
    let created = cli(&w, &["registry", "create", "-n", "myregistry"]).ok_json();
    assert_eq!(created["id"], registry_id("myregistry"));
    assert_eq!(created["properties"]["loginServer"], format!("myregistry.localhost:{}", w.port));
    let shown = cli(&w, &["registry", "show", "-n", "MyRegistry"]).ok_json();
    assert_eq!(shown["id"], created["id"]);
    // In a new resource group and subscription.
    let other = cli(
        &w,
        &[
            "registry",
            "create",
            "-n",
            "otherreg1",
            "-g",
            "teamrg",
            "--subscription",
            "33333333-0000-0000-0000-000000000000",
            "--sku",
            "Premium",
            "-l",
            "westeurope",
        ],
    )
    .ok_json();
    assert_eq!(other["sku"]["name"], "Premium");
    assert_eq!(
        other["id"],
        "/subscriptions/33333333-0000-0000-0000-000000000000/resourceGroups/teamrg/providers/Microsoft.ContainerRegistry/registries/otherreg1"
    );
    let names: Vec<String> = cli(&w, &["registry", "list"])
        .ok_json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["default", "myregistry", "otherreg1"]);
    let table = cli(
        &w,
        &[
            "registry",
            "list",
            "-g",
            "teamrg",
            "--subscription",
            "33333333-0000-0000-0000-000000000000",
            "-o",
            "table",
        ],
    );
    assert!(table.ok);
    assert!(table.stdout.lines().next().unwrap().starts_with("NAME"), "{}", table.stdout);
    assert!(
        table.stdout.contains("otherreg1") && table.stdout.contains("teamrg"),
        "{}",
        table.stdout
    );

    // Errors: one line, non-zero.
    let err = cli(&w, &["registry", "create", "-n", "myregistry"]).err_line();
    assert!(err.contains("already exists"), "{err}");
    let err = cli(&w, &["registry", "create", "-n", "bad-name"]).err_line();
    assert!(err.contains("InvalidResourceName"), "{err}");
    let err = cli(&w, &["registry", "show", "-n", "nosuchregistry"]).err_line();
    assert!(err.contains("could not be found"), "{err}");
    let err = cli(&w, &["registry", "delete", "-n", "myregistry"]).err_line();
    assert!(err.contains("--yes"), "{err}");

    cli(&w, &["registry", "delete", "-n", "myregistry", "--yes"]);
    assert!(!cli(&w, &["registry", "show", "-n", "myregistry"]).ok);
    let err = cli(&w, &["registry", "delete", "-n", "default", "--yes"]).err_line();
    assert!(err.contains("CannotDeleteDefaultRegistry"), "{err}");
    let down = Wharf::start();
    let url = down.url();
    drop(down);
    let out = std::process::Command::new(wharf_bin())
        .args(["--server", &url, "registry", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1);
}

#[test]
fn repository_commands() {
    let w = Wharf::start();
    let reg = w.reg();
    let (m, d) = reg.push_image("team/app", "v1", &[b"one"]);
    assert_eq!(reg.put_manifest("team/app", "v2", OCI_MANIFEST, &m).status(), 201);
    reg.push_image("team/other", "latest", &[b"two"]);

    assert_eq!(
        cli(&w, &["repository", "list", "-n", "default"]).ok_json(),
        json!(["team/app", "team/other"])
    );
    assert_eq!(
        cli(&w, &["repository", "list", "-n", "default", "--top", "1"]).ok_json(),
        json!(["team/app"])
    );
    assert_eq!(
        cli(&w, &["repository", "show-tags", "-n", "default", "--repository", "team/app"])
            .ok_json(),
        json!(["v1", "v2"])
    );
    // Time order: a newer tag on another manifest comes first with time_desc, last with time_asc.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (_, newer) = reg.push_image("team/app", "v3", &[b"newer"]);
    let by_time = |order: &str| -> Vec<String> {
        let v = cli(
            &w,
            &[
                "repository",
                "show-tags",
                "-n",
                "default",
                "--repository",
                "team/app",
                "--detail",
                "--orderby",
                order,
            ],
        )
        .ok_json();
        v.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(by_time("time_desc")[0], "v3");
    assert_eq!(by_time("time_asc").last().unwrap(), "v3");
    let top = cli(
        &w,
        &[
            "repository",
            "show-tags",
            "-n",
            "default",
            "--repository",
            "team/app",
            "--orderby",
            "time_desc",
            "--top",
            "1",
        ],
    )
    .ok_json();
    assert_eq!(top, json!(["v3"]));
    let detail = cli(
        &w,
        &["repository", "show-tags", "-n", "default", "--repository", "team/app", "--detail"],
    )
    .ok_json();
    assert_eq!(detail[0]["digest"], d);
    assert_eq!(detail[2]["digest"], newer);
    assert!(reg.delete(&format!("/v2/team/app/manifests/{newer}")).status().is_success());
    assert!(detail[0]["lastUpdateTime"].as_str().unwrap().ends_with('Z'));
    let manifests =
        cli(&w, &["repository", "show-manifests", "-n", "default", "--repository", "team/app"])
            .ok_json();
    assert_eq!(
        manifests,
        json!([{"digest": d, "tags": ["v1", "v2"], "timestamp": manifests[0]["timestamp"]}])
    );
    let detail = cli(
        &w,
        &["repository", "show-manifests", "-n", "default", "--repository", "team/app", "--detail"],
    )
    .ok_json();
    assert_eq!(detail[0]["architecture"], "amd64");
    assert_eq!(detail[0]["os"], "linux");
    let shown =
        cli(&w, &["repository", "show", "-n", "default", "--image", "team/app:v1"]).ok_json();
    assert_eq!(shown["tag"]["digest"], d);
    let repo =
        cli(&w, &["repository", "show", "-n", "default", "--repository", "team/app"]).ok_json();
    assert_eq!((repo["manifestCount"].as_u64(), repo["tagCount"].as_u64()), (Some(1), Some(2)));

    cli(&w, &["repository", "untag", "-n", "default", "--image", "team/app:v1"]);
    assert_eq!(
        cli(&w, &["repository", "show-tags", "-n", "default", "--repository", "team/app"])
            .ok_json(),
        json!(["v2"])
    );
    assert!(
        cli(&w, &["repository", "delete", "-n", "default", "--image", "team/app:v2", "--yes"]).ok
    );
    assert_eq!(reg.get(&format!("/v2/team/app/manifests/{d}")).status(), 404);
    let deleted =
        cli(&w, &["repository", "delete", "-n", "default", "--repository", "team/other", "--yes"])
            .ok_json();
    assert_eq!(deleted["tagsDeleted"], json!(["latest"]));
    assert_eq!(cli(&w, &["repository", "list", "-n", "default"]).ok_json(), json!([]));

    let err = cli(&w, &["repository", "show-tags", "-n", "default", "--repository", "nothere"])
        .err_line();
    assert!(err.contains("NAME_UNKNOWN"), "{err}");
    let err = cli(&w, &["repository", "untag", "-n", "default", "--image", "noversion"]).err_line();
    assert!(err.contains("repo:tag"), "{err}");
    let _: Value = Value::Null;
}

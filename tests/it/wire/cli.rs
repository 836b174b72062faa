//! The client commands' output against a running server, as users and scripts read it:
//! JSON (the default) and `-o table`, and the one line a failure prints on stderr.

use std::collections::HashSet;

use serde_json::Value;

use super::{Normalizer, snap_json, snap_text};
use crate::util::{CliRun, Wharf, cli, registry_id};

/// Output made comparable: the server's port named, random ids numbered, the built-in
/// roles' ids kept.
struct Shown {
    named: Vec<(String, String)>,
    fixed: HashSet<String>,
}

impl Shown {
    fn json(&self, name: &str, run: &CliRun) {
        let v = run.ok_json();
        snap_json(name, Normalizer::new(self.named.clone(), &self.fixed).value(v, None));
    }

    fn text(&self, name: &str, run: &CliRun) {
        assert!(run.ok, "wharf failed: {}", run.stderr);
        snap_text(name, &Normalizer::new(self.named.clone(), &self.fixed).string(&run.stdout));
    }

    fn error(&self, name: &str, run: &CliRun) {
        snap_text(name, &Normalizer::new(self.named.clone(), &self.fixed).string(&run.err_line()));
    }
}

#[test]
fn client_commands_print_json_tables_and_one_line_errors() {
    let w = Wharf::start();
    let roles = cli(&w, &["role", "definition", "list"]).ok_json();
    let fixed =
        roles.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();
    let mut shown = Shown { named: vec![(format!(":{}", w.port), ":[port]".into())], fixed };
    w.reg().push_image("team/app", "v1", &[b"layer one"]);
    w.reg().push_image("team/zeta", "latest", &[b"layer two"]);
    shown.json("cli_registry_list_json", &cli(&w, &["registry", "list"]));
    shown.text("cli_registry_list_table", &cli(&w, &["registry", "list", "-o", "table"]));
    shown.json("cli_repository_list_json", &cli(&w, &["repository", "list", "-n", "default"]));
    let r = cli(&w, &["repository", "list", "-n", "default", "-o", "table"]);
    shown.text("cli_repository_list_table", &r);
    let r = cli(&w, &["role", "definition", "list", "--name", "AcrPull", "-o", "table"]);
    shown.text("cli_role_definition_list_table", &r);

    let scope = registry_id("default");
    let sp = cli(
        &w,
        &["ad", "sp", "create-for-rbac", "-n", "ci-bot", "--role", "AcrPull", "--scopes", &scope],
    );
    let v: Value = sp.ok_json();
    shown.named.push((v["appId"].as_str().unwrap().to_owned(), "[sp-app-id]".into()));
    shown.json("cli_sp_create_for_rbac_json", &sp);
    let list = ["role", "assignment", "list", "--assignee", "ci-bot", "--scope", &scope];
    let r = cli(&w, &list);
    let principal = r.ok_json()[0]["properties"]["principalId"].as_str().unwrap().to_owned();
    shown.named.push((principal, "[sp-id]".into()));
    shown.json("cli_role_assignment_list_json", &r);
    let table: Vec<&str> = list.iter().copied().chain(["-o", "table"]).collect();
    shown.text("cli_role_assignment_list_table", &cli(&w, &table));

    shown.error("cli_missing_argument_error", &cli(&w, &["registry", "show"]));
    shown.error("cli_unknown_registry_error", &cli(&w, &["registry", "show", "-n", "nosuchreg"]));
    let r = cli(&w, &["repository", "show-tags", "-n", "default", "--repository", "nothere"]);
    shown.error("cli_unknown_repository_error", &r);
}

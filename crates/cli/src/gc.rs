//! Server administration: `wharf gc` and `wharf keys`.

use crate::args::{GcArgs, GlobalArgs, KeysCommand};
use crate::client::Client;
use crate::output::print;

/// `wharf gc`: ask the running server for a GC pass and print its report.
pub(crate) async fn run(global: &GlobalArgs, _args: GcArgs) -> anyhow::Result<()> {
    let report = Client::new(&global.server).await?.post_json("/_wharf/gc").await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `wharf keys list|rotate|prune`.
pub(crate) async fn keys(global: &GlobalArgs, cmd: KeysCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    let columns: &[(&str, &str)] = &[
        ("KID", "/kid"),
        ("CREATED", "/createdOn"),
        ("RETIRED", "/retiredOn"),
        ("SIGNING", "/signing"),
    ];
    match cmd {
        KeysCommand::List => {
            let v = client.get_json("/_wharf/keys").await?;
            print(global.output, &v["value"], columns);
        }
        KeysCommand::Rotate => {
            let v = client.post_json("/_wharf/keys/rotate").await?;
            print(global.output, &v["value"], columns);
        }
        KeysCommand::Prune { all_retired } => {
            let v =
                client.post_json(&format!("/_wharf/keys/prune?allRetired={all_retired}")).await?;
            print(global.output, &v, &[("PRUNED", "/pruned")]);
        }
    }
    Ok(())
}

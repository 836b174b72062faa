use crate::args::{GcArgs, GlobalArgs};
use crate::client::Client;

/// `wharf gc`: ask the running server for a GC pass and print its report.
pub(crate) async fn run(global: &GlobalArgs, _args: GcArgs) -> anyhow::Result<()> {
    let report = Client::new(&global.server).await?.post_json("/_wharf/gc").await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

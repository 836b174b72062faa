//! `wharf operation show`: the status of a long-running operation (an import).

use reqwest::Method;

use crate::args::{GlobalArgs, OperationCommand};
use crate::client::{API_VERSION, Client, DEFAULT_SUBSCRIPTION};
use crate::output::print;

/// The operation URL for an id (`registries-<uuid>`), or the URL itself.
pub(crate) fn operation_url(id: &str) -> String {
    if id.starts_with("http") || id.starts_with('/') {
        return id.to_owned();
    }
    format!(
        "/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.ContainerRegistry/locations/local/operationResults/{id}?api-version={API_VERSION}"
    )
}

pub(crate) async fn run(global: &GlobalArgs, cmd: OperationCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server)?;
    let OperationCommand::Show { id } = cmd;
    let a = client.send(Method::GET, &operation_url(&id), None, None).await?;
    if !a.status.is_success() && a.status.as_u16() != 202 {
        let e = &a.body["error"];
        anyhow::bail!(
            "({}) {}",
            e["code"].as_str().unwrap_or("Error"),
            e["message"].as_str().unwrap_or("the operation failed")
        );
    }
    print(
        global.output,
        &a.body,
        &[
            ("STATUS", "/status"),
            ("PHASE", "/progress/phase"),
            ("BYTES", "/progress/bytesDone"),
            ("BLOBS", "/progress/blobsDone"),
        ],
    );
    Ok(())
}

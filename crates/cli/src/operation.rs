//! `wharf operation show|cancel`: the status of a long-running operation (an import), or
//! stopping it.

use reqwest::Method;

use crate::args::{GlobalArgs, OperationCommand};
use crate::client::{API_VERSION, Client, DEFAULT_SUBSCRIPTION};
use crate::output::print;

/// The operation URL for an id (`registries-<uuid>`) in a subscription, or the URL itself.
pub(crate) fn operation_url(id: &str, subscription: &str) -> String {
    if id.starts_with("http") || id.starts_with('/') {
        return id.to_owned();
    }
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.ContainerRegistry/locations/local/operationResults/{id}?api-version={API_VERSION}"
    )
}

/// The cancel action of an operation URL: `…/operationResults/<id>/cancel?…`.
fn cancel_url(operation: &str) -> String {
    match operation.split_once('?') {
        Some((path, query)) => format!("{}/cancel?{query}", path.trim_end_matches('/')),
        None => format!("{}/cancel?api-version={API_VERSION}", operation.trim_end_matches('/')),
    }
}

pub(crate) async fn run(global: &GlobalArgs, cmd: OperationCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    let (id, subscription, cancel) = match cmd {
        OperationCommand::Show { id, subscription } => (id, subscription, false),
        OperationCommand::Cancel { id, subscription } => (id, subscription, true),
    };
    // An operation is found under its registry's subscription: the one given, else each.
    let subscriptions = match subscription {
        Some(s) => vec![s],
        None => {
            let subs = client.arm(Method::GET, "/subscriptions", None).await?;
            let mut all: Vec<String> = subs.body["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["subscriptionId"].as_str().map(str::to_owned))
                .collect();
            all.sort_by_key(|s| s != DEFAULT_SUBSCRIPTION);
            all
        }
    };
    let mut answer = None;
    for sub in &subscriptions {
        let url = operation_url(&id, sub);
        let a = if cancel {
            client.send(Method::POST, &cancel_url(&url), None, None).await?
        } else {
            client.send(Method::GET, &url, None, None).await?
        };
        let not_found = a.status.as_u16() == 404 && a.body["error"]["code"] == "OperationNotFound";
        answer = Some(a);
        if !not_found {
            break;
        }
    }
    let a =
        answer.ok_or_else(|| anyhow::anyhow!("there are no subscriptions on {}", client.base))?;
    if !a.status.is_success() {
        let e = &a.body["error"];
        anyhow::bail!(
            "({}) {}",
            e["code"].as_str().unwrap_or("Error"),
            e["message"].as_str().unwrap_or("the operation failed")
        );
    }
    if cancel {
        // Asynchronous: the job stops within seconds and ends Canceled.
        print(
            global.output,
            &serde_json::json!({"id": id, "status": "Canceling"}),
            &[("ID", "/id"), ("STATUS", "/status")],
        );
        return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_urls() {
        assert_eq!(
            cancel_url(
                "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/L/operationResults/registries-1?api-version=2025-11-01"
            ),
            "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/L/operationResults/registries-1/cancel?api-version=2025-11-01"
        );
        assert!(
            cancel_url("http://h/x/registries-1")
                .ends_with("/registries-1/cancel?api-version=2025-11-01")
        );
    }
}

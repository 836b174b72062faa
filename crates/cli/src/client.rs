//! The HTTP client the CLI's commands use to talk to a wharf server.

use anyhow::Context;

/// A client for one wharf server.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub(crate) fn new(server: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, base: server.trim_end_matches('/').to_owned() })
    }

    pub(crate) async fn post_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let res = self
            .http
            .post(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the wharf server at {}", self.base))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let message = body
                .pointer("/errors/0/message")
                .or_else(|| body.pointer("/error/message"))
                .and_then(|m| m.as_str())
                .unwrap_or("no error message");
            anyhow::bail!("{url}: {status}: {message}");
        }
        Ok(body)
    }
}

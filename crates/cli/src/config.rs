//! The optional TOML configuration file of `wharf serve`.
//!
//! ```toml
//! listen = "127.0.0.1:5000"
//! data_dir = "/var/lib/wharf"
//! log_format = "json"
//! domain = "registry.example.com"
//!
//! [gc]
//! interval = "1h"
//! grace = "1h"
//! upload_ttl = "24h"
//!
//! [import]
//! insecure_sources = ["127.0.0.1:5001"]
//! registry_mirrors = { "docker.io" = "http://127.0.0.1:5001" }
//! parallelism = 4
//! sync_wait = "2s"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::args::LogFormat;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) domain: Option<String>,
    #[serde(default)]
    pub(crate) gc: GcConfig,
    #[serde(default)]
    pub(crate) import: ImportConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportConfig {
    #[serde(default)]
    pub(crate) insecure_sources: Vec<String>,
    #[serde(default)]
    pub(crate) registry_mirrors: std::collections::BTreeMap<String, String>,
    pub(crate) parallelism: Option<usize>,
    #[serde(default, with = "opt_duration")]
    pub(crate) sync_wait: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GcConfig {
    #[serde(default, with = "opt_duration")]
    pub(crate) interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) grace: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) upload_ttl: Option<Duration>,
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace('\n', " ")))
            .with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// Durations as humantime strings ("30s", "1h 30m").
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\nlog_format = \"json\"\n[gc]\ngrace = \"5m\"\n[import]\ninsecure_sources = [\"a:1\"]\nregistry_mirrors = { \"docker.io\" = \"http://m\" }\n",
        )
        .unwrap();
        assert_eq!(c.listen.unwrap().port(), 6000);
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(c.gc.grace, Some(Duration::from_secs(300)));
        assert_eq!(c.import.insecure_sources, ["a:1"]);
        assert_eq!(c.import.registry_mirrors["docker.io"], "http://m");
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
    }
}

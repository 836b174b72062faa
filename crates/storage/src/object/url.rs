//! The `--blobs` URL of an object store: which service, bucket or container, prefix and
//! options (never credentials).

use std::str::FromStr;

/// Where an [`ObjectBlobStore`](crate::ObjectBlobStore) keeps its objects, parsed from a `--blobs` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectStoreUrl {
    /// `s3://bucket[/prefix][?endpoint=…&region=…&allow_http=true&…]`; credentials from the
    /// usual `AWS_*` environment variables.
    S3 { bucket: String, prefix: String, options: Vec<(String, String)> },
    /// `az://account/container[/prefix][?endpoint=…&use_emulator=true&…]`; credentials from
    /// the usual `AZURE_STORAGE_*` environment variables.
    Azure { account: String, container: String, prefix: String, options: Vec<(String, String)> },
}

impl FromStr for ObjectStoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(s)
            .map_err(|e| format!("{s:?} is not a URL (s3://… or az://…): {e}"))?;
        let mut options = Vec::new();
        for (key, value) in url.query_pairs() {
            // A URL ends up in command lines, config files and logs; secrets don't belong in it.
            let lower = key.to_ascii_lowercase();
            if ["secret", "key", "token", "sas", "password", "signature"]
                .iter()
                .any(|w| lower.contains(w) && lower != "skip_signature")
            {
                return Err(format!(
                    "{key:?} can't be given in the blob store URL: credentials come from the \
                     environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                     AZURE_STORAGE_ACCOUNT_KEY, …)"
                ));
            }
            // A bare `?allow_http` means true.
            let value = if value.is_empty() { "true".into() } else { value.into_owned() };
            if key == "endpoint" && reqwest::Url::parse(&value).is_err() {
                return Err(format!("endpoint {value:?} is not a URL"));
            }
            options.push((key.into_owned(), value));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).map(str::to_owned);
        let mut segments = url.path().split('/').filter(|p| !p.is_empty());
        match url.scheme() {
            "s3" | "s3a" => {
                let bucket = host.ok_or("an s3:// URL needs a bucket: s3://bucket[/prefix]")?;
                let prefix = segments.collect::<Vec<_>>().join("/");
                Ok(ObjectStoreUrl::S3 { bucket, prefix, options })
            }
            "az" | "azure" => {
                let account =
                    host.ok_or("an az:// URL needs an account: az://account/container")?;
                let container = segments
                    .next()
                    .ok_or("an az:// URL needs a container: az://account/container")?
                    .to_owned();
                let prefix = segments.collect::<Vec<_>>().join("/");
                Ok(ObjectStoreUrl::Azure { account, container, prefix, options })
            }
            other => Err(format!("unknown blob store scheme {other:?} (s3://… or az://…)")),
        }
    }
}

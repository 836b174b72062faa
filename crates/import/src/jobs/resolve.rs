//! Which [`Source`] an import reads from, and whether it may: a registry on this server
//! (by resource ID, or by one of this server's login servers) is read in-process on behalf
//! of a caller; any other address over HTTP, within the egress policy.

use std::sync::Arc;

use wharf_auth::{Caller, RegistryCredential, RepoOp};
use wharf_management::{ErrorKind, Management, RegistryResourceId};
use wharf_storage::{RegistryId, RegistryRecord};

use super::{ImportService, lock};
use crate::ImportError;
use crate::remote::{HostLimiter, RemoteRegistry};
use crate::request::{Credentials, ImportRequest, SourceLocation};
use crate::source::{LocalSource, RemoteSource, Source};

impl ImportService {
    /// The source an import reads from. A `registryUri` that is one of this server's login
    /// servers is read locally, like a `resourceId`.
    pub(super) async fn source(
        &self,
        req: &ImportRequest,
        caller: &Caller,
        target: RegistryId,
    ) -> Result<Box<dyn Source>, ImportError> {
        match &req.source {
            SourceLocation::Registry { resource_id } => {
                let r = self.registry_by_resource_id(resource_id).await?;
                reachable(&r, target)?;
                self.local(r, caller, req)
            }
            SourceLocation::Remote { registry_uri, credentials } => {
                let host =
                    registry_uri.split("://").last().unwrap_or("").split('/').next().unwrap_or("");
                match self.by_login_server(host, credentials.as_ref(), target).await? {
                    Some((r, reader)) => self.local(r, &reader, req),
                    None => self.remote(registry_uri, credentials.clone()),
                }
            }
        }
    }

    async fn registry_by_resource_id(
        &self,
        resource_id: &str,
    ) -> Result<RegistryRecord, ImportError> {
        let id = RegistryResourceId::parse(resource_id).map_err(|e| {
            ImportError::InvalidParameters(format!("Invalid source.resourceId: {}", e.message))
        })?;
        self.inner.management.registry(&id).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => ImportError::SourceRegistryNotFound(format!(
                "The source registry '{resource_id}' was not found on this server."
            )),
            _ => ImportError::Management(e),
        })
    }

    /// One of this server's registries by its login server (port included: another server
    /// on this host may use the same domain), with who reads it: whoever the given
    /// credentials are (anonymous without any), as a registry elsewhere would — not the
    /// caller.
    async fn by_login_server(
        &self,
        host: &str,
        credentials: Option<&Credentials>,
        target: RegistryId,
    ) -> Result<Option<(RegistryRecord, Caller)>, ImportError> {
        let inner = &self.inner;
        let domain = inner.management.login_servers().domain.clone();
        let Some(r) = inner.registry.registry_named_by_host(host, &domain).await? else {
            return Ok(None);
        };
        let login = inner.management.login_server(&r);
        if !login.eq_ignore_ascii_case(host) {
            return Ok(None);
        }
        // By its login server, a registry is reached as over its public network: closed if
        // that is; ACR's way around is the resourceId form.
        if Management::network(&r).restricted() {
            return Err(ImportError::SourceForbidden(format!(
                "The source registry '{host}' restricts network access (public access disabled or IP rules): give it by resource ID (source.resourceId, or --registry with the resource ID) to import through the trusted path."
            )));
        }
        reachable(&r, target)?;
        let policy = Management::policy(&r);
        let credential = credentials.map(|c| RegistryCredential::Basic {
            username: c.username.as_deref().unwrap_or(""),
            password: &c.password,
        });
        let reader =
            inner.identity.registry_caller(&policy, &login, credential, None).await.map_err(
                |e| match e {
                    wharf_auth::AuthError::Internal(m) => ImportError::Internal(m),
                    _ => ImportError::SourceUnauthorized(format!(
                        "The source registry '{host}' refused the credentials."
                    )),
                },
            )?;
        Ok(Some((r, reader)))
    }

    /// A registry on this server, read as `reader`, who must be allowed to pull the source
    /// repository there.
    fn local(
        &self,
        r: RegistryRecord,
        reader: &Caller,
        req: &ImportRequest,
    ) -> Result<Box<dyn Source>, ImportError> {
        let policy = Management::policy(&r);
        if !reader.can(RepoOp::Pull, &policy, req.source_repo.as_str()) {
            if reader.is_anonymous() {
                return Err(ImportError::SourceUnauthorized(format!(
                    "The source registry '{}' requires valid credentials to read '{}'.",
                    r.name, req.source_repo
                )));
            }
            let who = reader.display();
            return Err(ImportError::AuthorizationFailed(format!(
                "The client '{who}' with object id '{who}' does not have authorization to perform action '{}' over scope '{}/repositories/{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                wharf_auth::actions::PULL,
                policy.scope,
                req.source_repo
            )));
        }
        Ok(Box::new(LocalSource {
            registry: self.inner.registry.clone(),
            registry_id: r.id,
            name: r.name,
        }))
    }

    /// Another registry, over HTTP: one limiter per upstream (shared by the cluster's
    /// nodes, if any).
    fn remote(
        &self,
        registry_uri: &str,
        credentials: Option<Credentials>,
    ) -> Result<Box<dyn Source>, ImportError> {
        let inner = &self.inner;
        let endpoint = inner.policy.endpoint(registry_uri)?;
        let key = endpoint.base.as_str().to_owned();
        let limiter = lock(&inner.limiters)
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(match &inner.cluster {
                    Some(cluster) => HostLimiter::shared(cluster.clone(), key),
                    None => HostLimiter::default(),
                })
            })
            .clone();
        Ok(Box::new(RemoteSource(RemoteRegistry::new(
            inner.http.clone(),
            endpoint,
            credentials,
            limiter,
            inner.policy.clone(),
            inner.settings.request_timeout,
        ))))
    }
}

/// A registry on this server is read through the trusted in-server path: its network rules
/// let that path through unless its owner closed it, and its export policy may forbid
/// copying anything out of it (into a registry other than `target`).
fn reachable(r: &RegistryRecord, target: RegistryId) -> Result<(), ImportError> {
    let net = Management::network(r);
    if !net.export && r.id != target {
        return Err(ImportError::SourceForbidden(format!(
            "The source registry '{}' has exports disabled (policies.exportPolicy): its images can't be imported into another registry.",
            r.name
        )));
    }
    if net.restricted() && !net.trusted_services {
        return Err(ImportError::SourceForbidden(format!(
            "The source registry '{}' restricts network access and doesn't allow trusted services (networkRuleBypassOptions: None).",
            r.name
        )));
    }
    Ok(())
}

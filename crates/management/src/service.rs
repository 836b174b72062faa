//! The management operations: what each ARM route does, in terms of the stored records.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use wharf_storage::{
    CreateRegistryOutcome, ManagementStore, RegistryId, RegistryRecord, ResourceGroupRecord,
    now_millis,
};

use crate::registry::canonical_sku;
use crate::{
    ArmError, REGISTRY_TYPE, RegistryProperties, RegistryResourceId, validate_registry_name,
};

/// How registries' login servers are named: `<name>.<domain>[:port]`.
#[derive(Clone, Debug)]
pub struct LoginServers {
    pub domain: String,
    /// `:5000`, or empty when clients reach the server on a default port.
    pub port_suffix: String,
}

impl LoginServers {
    pub fn for_name(&self, name: &str) -> String {
        format!("{}.{}{}", name.to_ascii_lowercase(), self.domain, self.port_suffix)
    }
}

/// The management plane's operations.
#[derive(Clone)]
pub struct Management {
    store: Arc<dyn ManagementStore>,
    login: LoginServers,
}

/// A time (ms since the epoch) as ARM and ACR write it: RFC 3339, UTC, microseconds.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn object<'a>(body: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ArmError> {
    body.as_object()
        .ok_or_else(|| ArmError::invalid_content(format!("the {what} must be a JSON object")))
}

fn tags_of(body: &Map<String, Value>) -> Result<Option<String>, ArmError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(t)) if t.values().all(Value::is_string) => {
            Ok(Some(Value::Object(t.clone()).to_string()))
        }
        Some(_) => Err(ArmError::invalid_content("tags must be an object of strings")),
    }
}

fn location_of(body: &Map<String, Value>) -> Result<String, ArmError> {
    match body.get("location").and_then(Value::as_str).filter(|l| !l.trim().is_empty()) {
        Some(l) => Ok(l.to_owned()),
        None => Err(ArmError::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        )),
    }
}

fn valid_segment(kind: &str, s: &str) -> Result<(), ArmError> {
    let ok = !s.is_empty()
        && s.len() <= 90
        && s.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c))
        && !s.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidResourceName",
            format!("'{}' is not a valid {kind} name.", s.chars().take(100).collect::<String>()),
        ))
    }
}

impl Management {
    pub fn new(store: Arc<dyn ManagementStore>, login: LoginServers) -> Self {
        Management { store, login }
    }

    pub fn login_servers(&self) -> &LoginServers {
        &self.login
    }

    // ---- subscriptions -------------------------------------------------------------------

    fn subscription_json(id: &str, display_name: &str) -> Value {
        json!({
            "id": format!("/subscriptions/{id}"),
            "subscriptionId": id,
            "displayName": display_name,
            "state": "Enabled",
        })
    }

    /// Create or rename a subscription (a wharf extension: ARM has no such call).
    pub async fn put_subscription(
        &self,
        id: &str,
        body: &Value,
    ) -> Result<(bool, Value), ArmError> {
        valid_segment("subscription", id)?;
        let name = body.get("displayName").and_then(Value::as_str).unwrap_or(id).to_owned();
        let created = self.store.put_subscription(id, &name).await?;
        Ok((created, Self::subscription_json(id, &name)))
    }

    pub async fn get_subscription(&self, id: &str) -> Result<Value, ArmError> {
        let s = self
            .store
            .subscription(id)
            .await?
            .ok_or_else(|| ArmError::subscription_not_found(id))?;
        Ok(Self::subscription_json(&s.id, &s.display_name))
    }

    pub async fn list_subscriptions(&self) -> Result<Value, ArmError> {
        let subs = self.store.subscriptions().await?;
        Ok(
            json!({"value": subs.iter().map(|s| Self::subscription_json(&s.id, &s.display_name)).collect::<Vec<_>>()}),
        )
    }

    async fn require_subscription(&self, id: &str) -> Result<(), ArmError> {
        match self.store.subscription(id).await? {
            Some(_) => Ok(()),
            None => Err(ArmError::subscription_not_found(id)),
        }
    }

    // ---- resource groups -----------------------------------------------------------------

    fn rg_json(rg: &ResourceGroupRecord) -> Value {
        json!({
            "id": format!("/subscriptions/{}/resourceGroups/{}", rg.subscription, rg.name),
            "name": rg.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": rg.location,
            "tags": serde_json::from_str::<Value>(&rg.tags).unwrap_or_else(|_| json!({})),
            "properties": {"provisioningState": "Succeeded"},
        })
    }

    /// Create or update a resource group; its subscription is created if needed.
    pub async fn put_resource_group(
        &self,
        sub: &str,
        rg: &str,
        body: &Value,
    ) -> Result<(bool, Value), ArmError> {
        valid_segment("subscription", sub)?;
        valid_segment("resource group", rg)?;
        let body = object(body, "resource group")?;
        if self.store.subscription(sub).await?.is_none() {
            self.store.put_subscription(sub, sub).await?;
        }
        let existing = self.store.resource_group(sub, rg).await?;
        let location = match (&existing, body.get("location")) {
            (Some(e), None) => e.location.clone(),
            _ => location_of(body)?,
        };
        if let Some(e) = &existing
            && !e.location.eq_ignore_ascii_case(&location)
        {
            return Err(ArmError::conflict(
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                    e.location
                ),
            ));
        }
        let record = ResourceGroupRecord {
            subscription: sub.to_owned(),
            name: existing.as_ref().map_or(rg, |e| &e.name).to_owned(),
            location,
            tags: tags_of(body)?
                .unwrap_or_else(|| existing.as_ref().map_or("{}".into(), |e| e.tags.clone())),
            created_at: existing.as_ref().map_or_else(now_millis, |e| e.created_at),
        };
        let created = self.store.put_resource_group(&record).await?;
        Ok((created, Self::rg_json(&record)))
    }

    pub async fn get_resource_group(&self, sub: &str, rg: &str) -> Result<Value, ArmError> {
        self.require_subscription(sub).await?;
        let r = self
            .store
            .resource_group(sub, rg)
            .await?
            .ok_or_else(|| ArmError::resource_group_not_found(rg))?;
        Ok(Self::rg_json(&r))
    }

    pub async fn list_resource_groups(&self, sub: &str) -> Result<Value, ArmError> {
        self.require_subscription(sub).await?;
        let rgs = self.store.resource_groups(sub).await?;
        Ok(json!({"value": rgs.iter().map(Self::rg_json).collect::<Vec<_>>()}))
    }

    /// Delete a resource group and the registries in it; `false` if it didn't exist.
    pub async fn delete_resource_group(&self, sub: &str, rg: &str) -> Result<bool, ArmError> {
        if let Some(r) =
            self.store.registries(Some(sub), Some(rg)).await?.iter().find(|r| r.is_default)
        {
            return Err(ArmError::conflict(
                "CannotDeleteDefaultRegistry",
                format!(
                    "Resource group '{rg}' holds the default registry '{}', which can't be deleted.",
                    r.name
                ),
            ));
        }
        Ok(self.store.delete_resource_group(sub, rg).await?)
    }

    // ---- registries ----------------------------------------------------------------------

    /// The resource ID of a stored registry.
    pub fn resource_id(r: &RegistryRecord) -> RegistryResourceId {
        RegistryResourceId {
            subscription: r.subscription.clone(),
            resource_group: r.resource_group.clone(),
            name: r.name.clone(),
        }
    }

    /// The settings of a registry that decide who may read and write its content.
    pub fn policy(r: &RegistryRecord) -> wharf_auth::RegistryPolicy {
        Self::policy_of(r, &Self::properties(r))
    }

    pub(crate) fn policy_of(
        r: &RegistryRecord,
        props: &RegistryProperties,
    ) -> wharf_auth::RegistryPolicy {
        wharf_auth::RegistryPolicy {
            id: r.id,
            scope: Self::resource_id(r).to_string(),
            abac: props.role_assignment_mode == "AbacRepositoryPermissions",
            anonymous_pull: props.anonymous_pull_enabled,
            admin_user: props.admin_user_enabled,
            name: r.name.clone(),
        }
    }

    /// A registry's properties (ACR's defaults where unset).
    pub fn properties(r: &RegistryRecord) -> RegistryProperties {
        serde_json::from_str(&r.properties).unwrap_or_default()
    }

    pub fn login_server(&self, r: &RegistryRecord) -> String {
        self.login.for_name(&r.name)
    }

    /// ACR's `Registry` JSON.
    pub fn registry_json(&self, r: &RegistryRecord) -> Value {
        let props: RegistryProperties = serde_json::from_str(&r.properties).unwrap_or_default();
        let mut properties = serde_json::to_value(&props).unwrap_or_else(|_| json!({}));
        if let Some(p) = properties.as_object_mut() {
            p.insert("loginServer".into(), json!(self.login_server(r)));
            p.insert("creationDate".into(), json!(timestamp(r.created_at)));
            p.insert("provisioningState".into(), json!("Succeeded"));
            p.insert("status".into(), Value::Null);
            p.insert("dataEndpointHostNames".into(), json!([]));
            p.insert("privateEndpointConnections".into(), json!([]));
        }
        json!({
            "id": Self::resource_id(r).to_string(),
            "name": r.name,
            "type": REGISTRY_TYPE,
            "location": r.location,
            "tags": serde_json::from_str::<Value>(&r.tags).unwrap_or_else(|_| json!({})),
            "sku": {"name": r.sku, "tier": r.sku},
            "properties": properties,
        })
    }

    /// The stored registry an ID names.
    pub async fn registry(&self, id: &RegistryResourceId) -> Result<RegistryRecord, ArmError> {
        if let Some(r) =
            self.store.registry_in(&id.subscription, &id.resource_group, &id.name).await?
        {
            return Ok(r);
        }
        self.require_subscription(&id.subscription).await?;
        if self.store.resource_group(&id.subscription, &id.resource_group).await?.is_none() {
            return Err(ArmError::resource_group_not_found(&id.resource_group));
        }
        Err(ArmError::registry_not_found(&id.resource_group, &id.name))
    }

    /// A registry by its internal id.
    pub async fn registry_by_number(
        &self,
        id: RegistryId,
    ) -> Result<Option<RegistryRecord>, ArmError> {
        Ok(self.store.registry(id).await?)
    }

    pub async fn get_registry(&self, id: &RegistryResourceId) -> Result<Value, ArmError> {
        Ok(self.registry_json(&self.registry(id).await?))
    }

    /// Create a registry, or update one that exists (`true` when created).
    pub async fn put_registry(
        &self,
        id: &RegistryResourceId,
        body: &Value,
    ) -> Result<(bool, Value), ArmError> {
        validate_registry_name(&id.name)?;
        let body = object(body, "registry")?;
        if let Some(existing) =
            self.store.registry_in(&id.subscription, &id.resource_group, &id.name).await?
        {
            let updated = self.apply_update(existing, body, true).await?;
            return Ok((false, self.registry_json(&updated)));
        }
        self.require_subscription(&id.subscription).await?;
        let location = location_of(body)?;
        let sku = body.get("sku").and_then(|s| s.get("name")).and_then(Value::as_str).ok_or_else(
            || {
                ArmError::bad_request(
                    "MissingSku",
                    "The sku property is required: {\"sku\": {\"name\": \"Standard\"}}.",
                )
            },
        )?;
        let sku = canonical_sku(sku)?;
        let mut props = RegistryProperties::default();
        if let Some(p) = body.get("properties").filter(|p| !p.is_null()) {
            props.merge(p)?;
            props.check_enforceable()?;
        }
        let record = RegistryRecord {
            id: RegistryId(0),
            name: id.name.clone(),
            is_default: false,
            subscription: id.subscription.clone(),
            resource_group: id.resource_group.clone(),
            location,
            sku: sku.to_owned(),
            properties: serde_json::to_string(&props).map_err(ArmError::internal)?,
            tags: tags_of(body)?.unwrap_or_else(|| "{}".into()),
            created_at: now_millis(),
        };
        match self.store.create_registry(&record).await? {
            CreateRegistryOutcome::Created(r) => {
                tracing::info!(registry = %r.name, "registry created");
                Ok((true, self.registry_json(&r)))
            }
            CreateRegistryOutcome::NoResourceGroup => {
                Err(ArmError::resource_group_not_found(&id.resource_group))
            }
            CreateRegistryOutcome::NameTaken => Err(ArmError::conflict(
                "AlreadyInUse",
                format!(
                    "The registry DNS name {} is already in use. You can check if the name is already claimed using the checkNameAvailability API.",
                    self.login.for_name(&id.name)
                ),
            )),
        }
    }

    /// Update tags, sku and properties (`PATCH`).
    pub async fn patch_registry(
        &self,
        id: &RegistryResourceId,
        body: &Value,
    ) -> Result<Value, ArmError> {
        let existing = self.registry(id).await?;
        let updated = self.apply_update(existing, object(body, "registry update")?, false).await?;
        Ok(self.registry_json(&updated))
    }

    async fn apply_update(
        &self,
        mut r: RegistryRecord,
        body: &Map<String, Value>,
        is_put: bool,
    ) -> Result<RegistryRecord, ArmError> {
        if is_put
            && let Some(loc) = body.get("location").and_then(Value::as_str)
            && !loc.eq_ignore_ascii_case(&r.location)
        {
            return Err(ArmError::bad_request(
                "LocationNotChangeable",
                format!(
                    "The location of registry '{}' is '{}' and can't be changed.",
                    r.name, r.location
                ),
            ));
        }
        if let Some(sku) = body.get("sku").and_then(|s| s.get("name")).and_then(Value::as_str) {
            r.sku = canonical_sku(sku)?.to_owned();
        }
        if let Some(tags) = tags_of(body)? {
            r.tags = tags;
        }
        if let Some(p) = body.get("properties").filter(|p| !p.is_null()) {
            let mut props: RegistryProperties =
                serde_json::from_str(&r.properties).unwrap_or_default();
            props.merge(p)?;
            props.check_enforceable()?;
            r.properties = serde_json::to_string(&props).map_err(ArmError::internal)?;
        }
        self.store.update_registry(&r).await?;
        Ok(r)
    }

    /// Delete a registry with everything in it; `false` if it didn't exist.
    pub async fn delete_registry(&self, id: &RegistryResourceId) -> Result<bool, ArmError> {
        let Some(r) =
            self.store.registry_in(&id.subscription, &id.resource_group, &id.name).await?
        else {
            return Ok(false);
        };
        if r.is_default {
            return Err(ArmError::conflict(
                "CannotDeleteDefaultRegistry",
                format!("'{}' is the default registry and can't be deleted.", r.name),
            ));
        }
        let deleted = self.store.delete_registry(r.id).await?;
        tracing::info!(registry = %r.name, "registry deleted");
        Ok(deleted)
    }

    /// Registries of a subscription (or one of its resource groups); every registry on the
    /// server for `None`.
    pub async fn list_registries(
        &self,
        sub: Option<&str>,
        rg: Option<&str>,
    ) -> Result<Value, ArmError> {
        if let Some(sub) = sub {
            self.require_subscription(sub).await?;
            if let Some(rg) = rg
                && self.store.resource_group(sub, rg).await?.is_none()
            {
                return Err(ArmError::resource_group_not_found(rg));
            }
        }
        let list = self.store.registries(sub, rg).await?;
        Ok(json!({"value": list.iter().map(|r| self.registry_json(r)).collect::<Vec<_>>()}))
    }

    /// Every registry on the server, as records.
    pub async fn all_registries(&self) -> Result<Vec<RegistryRecord>, ArmError> {
        Ok(self.store.registries(None, None).await?)
    }

    /// `checkNameAvailability`.
    pub async fn check_name_availability(
        &self,
        sub: &str,
        body: &Value,
    ) -> Result<Value, ArmError> {
        self.require_subscription(sub).await?;
        let body = object(body, "request")?;
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ArmError::invalid_content("'name' is required"))?;
        match body.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case(REGISTRY_TYPE) => {}
            _ => {
                return Err(ArmError::invalid_content(format!("'type' must be '{REGISTRY_TYPE}'")));
            }
        }
        if let Err(e) = validate_registry_name(name) {
            return Ok(json!({"nameAvailable": false, "reason": "Invalid", "message": e.message}));
        }
        let taken = self
            .store
            .registries(None, None)
            .await?
            .iter()
            .any(|r| r.name.eq_ignore_ascii_case(name));
        Ok(if taken {
            json!({"nameAvailable": false, "reason": "AlreadyExists", "message": format!("The registry {name} is already in use.")})
        } else {
            json!({"nameAvailable": true})
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_storage::SqliteMetadataStore;

    async fn management() -> (Management, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetadataStore::open(&dir.path().join("m.db")).await.unwrap();
        let login = LoginServers { domain: "localhost".into(), port_suffix: ":5000".into() };
        (Management::new(Arc::new(store), login), dir)
    }

    #[tokio::test]
    async fn registry_lifecycle() {
        let (m, _dir) = management().await;
        m.put_resource_group("sub1", "rg1", &json!({"location": "westus"})).await.unwrap();
        let id = RegistryResourceId::parse("/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/MyRegistry").unwrap();
        let (created, r) = m.put_registry(&id, &json!({"location": "westus", "sku": {"name": "premium"}, "properties": {"adminUserEnabled": true}})).await.unwrap();
        assert!(created);
        assert_eq!(r["properties"]["loginServer"], "myregistry.localhost:5000");
        assert_eq!(r["sku"]["name"], "Premium");
        assert_eq!(r["properties"]["adminUserEnabled"], true);
        assert_eq!(r["properties"]["networkRuleSet"]["defaultAction"], "Allow");

        // Names are unique per server, whatever the case or the resource group.
        m.put_resource_group("sub2", "rg2", &json!({"location": "eastus"})).await.unwrap();
        let other = RegistryResourceId {
            subscription: "sub2".into(),
            resource_group: "rg2".into(),
            name: "myregistry".into(),
        };
        let err = m
            .put_registry(&other, &json!({"location": "eastus", "sku": {"name": "Basic"}}))
            .await
            .unwrap_err();
        assert_eq!(err.code, "AlreadyInUse");
        let avail = m
            .check_name_availability("sub2", &json!({"name": "MYREGISTRY", "type": REGISTRY_TYPE}))
            .await
            .unwrap();
        assert_eq!(avail["reason"], "AlreadyExists");

        let r = m
            .patch_registry(
                &id,
                &json!({"properties": {"anonymousPullEnabled": true}, "tags": {"team": "a"}}),
            )
            .await
            .unwrap();
        assert_eq!(r["properties"]["anonymousPullEnabled"], true);
        assert_eq!(r["properties"]["adminUserEnabled"], true, "PATCH keeps what it doesn't name");
        assert_eq!(r["tags"]["team"], "a");

        assert!(m.delete_registry(&id).await.unwrap());
        assert_eq!(m.get_registry(&id).await.unwrap_err().code, "ResourceNotFound");
        assert!(!m.delete_registry(&id).await.unwrap());
    }

    /// The Registry JSON is what ACR's SDKs deserialize: its shape is pinned.
    #[tokio::test]
    async fn registry_json_shape() {
        let (m, _dir) = management().await;
        let id = RegistryResourceId {
            subscription: wharf_storage::DEFAULT_SUBSCRIPTION.into(),
            resource_group: "default".into(),
            name: "Snapshot1".into(),
        };
        let (_, r) = m
            .put_registry(
                &id,
                &json!({"location": "westus", "sku": {"name": "Standard"}, "tags": {"team": "a"}}),
            )
            .await
            .unwrap();
        insta::assert_json_snapshot!(r, {".properties.creationDate" => "[date]"});
    }

    #[tokio::test]
    async fn default_registry_exists_and_stays() {
        let (m, _dir) = management().await;
        let list = m.list_registries(None, None).await.unwrap();
        assert_eq!(list["value"][0]["name"], "default");
        let id = RegistryResourceId {
            subscription: wharf_storage::DEFAULT_SUBSCRIPTION.into(),
            resource_group: "default".into(),
            name: "default".into(),
        };
        assert_eq!(m.delete_registry(&id).await.unwrap_err().code, "CannotDeleteDefaultRegistry");
    }
}

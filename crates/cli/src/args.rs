//! What the user typed: clap's view of the command line, nothing resolved yet.
//! Client commands take the flags of their `az acr` counterparts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "wharf", version, about = "A self-hosted OCI registry with server-side import")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct GlobalArgs {
    /// The wharf server to talk to.
    #[arg(long, global = true, env = "WHARF_SERVER", default_value = "http://127.0.0.1:5000")]
    pub(crate) server: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "json")]
    pub(crate) output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Json,
    Table,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Import an image into a registry from another registry, server-side.
    Import(ImportArgs),
    /// Manage registries.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Look at and delete repositories, tags and manifests.
    #[command(subcommand)]
    Repository(RepositoryCommand),
    /// Long-running operations (imports).
    #[command(subcommand)]
    Operation(OperationCommand),
    /// Move an embedded store (a stopped server's data directory) to PostgreSQL and/or an
    /// object store, for a cluster: every record as stored, every blob verified by digest.
    Migrate(MigrateArgs),
    /// Remove unreferenced blobs and abandoned uploads now (on a running server).
    Gc(GcArgs),
    /// Sign in to a wharf server (the token is cached per server).
    Login(LoginArgs),
    /// Forget the cached sign-in to a server.
    Logout,
    /// Users and service principals of the server's directory.
    #[command(subcommand)]
    Ad(AdCommand),
    /// Role definitions and role assignments.
    #[command(subcommand)]
    Role(RoleCommand),
    /// A registry's repository-scoped tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// A registry's scope maps (what its tokens may do).
    #[command(subcommand, name = "scope-map")]
    ScopeMap(ScopeMapCommand),
    /// The keys that sign tokens: list, rotate, prune.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// The registry a token or scope map belongs to: az's `--registry/-r`.
#[derive(Args, Debug, Clone)]
pub(crate) struct OwnerRegistry {
    /// The registry's name.
    #[arg(long, short = 'r')]
    pub(crate) registry: String,
    #[arg(long = "resource-group", short = 'g')]
    pub(crate) resource_group: Option<String>,
    #[arg(long)]
    pub(crate) subscription: Option<String>,
}

impl OwnerRegistry {
    pub(crate) fn as_ref(&self) -> RegistryRef {
        RegistryRef {
            name: self.registry.clone(),
            resource_group: self.resource_group.clone(),
            subscription: self.subscription.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Create a token with a scope map (or one made from --repository), and its passwords.
    Create(TokenCreateArgs),
    List {
        #[command(flatten)]
        owner: OwnerRegistry,
    },
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
    },
    /// Change a token's scope map or status.
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
        #[arg(long)]
        scope_map: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// A token's passwords.
    #[command(subcommand)]
    Credential(TokenCredentialCommand),
}

// `token create`.
#[derive(Args, Debug)]
pub(crate) struct TokenCreateArgs {
    #[arg(long, short = 'n')]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) owner: OwnerRegistry,
    /// An existing scope map.
    #[arg(long)]
    pub(crate) scope_map: Option<String>,
    /// A repository and its actions (content/read, content/write, content/delete,
    /// metadata/read, metadata/write); repeatable. Makes a scope map `<name>-scope-map`.
    #[arg(long, num_args = 2.., value_names = ["REPOSITORY", "ACTION"])]
    pub(crate) repository: Vec<String>,
    /// enabled or disabled.
    #[arg(long, default_value = "enabled")]
    pub(crate) status: String,
    /// Days until the passwords expire (never by default).
    #[arg(long)]
    pub(crate) expiration_in_days: Option<u32>,
    /// Don't make passwords now.
    #[arg(long)]
    pub(crate) no_passwords: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCredentialCommand {
    /// New passwords (both unless --password1 or --password2), shown once.
    Generate {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
        #[arg(long)]
        password1: bool,
        #[arg(long)]
        password2: bool,
        #[arg(long)]
        expiration_in_days: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ScopeMapCommand {
    /// Create a scope map from repositories and their actions.
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
        /// A repository (`samples/*` for all under a prefix) and its actions; repeatable.
        #[arg(long, num_args = 2.., value_names = ["REPOSITORY", "ACTION"], required = true)]
        repository: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    List {
        #[command(flatten)]
        owner: OwnerRegistry,
    },
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
    },
    /// Add or remove repository actions.
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
        #[arg(long, num_args = 2.., value_names = ["REPOSITORY", "ACTION"])]
        add_repository: Vec<String>,
        #[arg(long, num_args = 2.., value_names = ["REPOSITORY", "ACTION"])]
        remove_repository: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        owner: OwnerRegistry,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct LoginArgs {
    /// User name, or a service principal's app id.
    #[arg(long, short = 'u')]
    pub(crate) username: Option<String>,
    /// Password or client secret (else WHARF_PASSWORD, else asked for).
    #[arg(long, short = 'p')]
    pub(crate) password: Option<String>,
    /// Sign in as a service principal (app id and secret).
    #[arg(long)]
    pub(crate) service_principal: bool,
    /// The tenant (the server's own by default).
    #[arg(long, short = 't')]
    pub(crate) tenant: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AdCommand {
    /// Service principals.
    #[command(subcommand)]
    Sp(SpCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum SpCommand {
    /// Create a service principal with a secret (printed once), optionally with a role.
    CreateForRbac {
        #[arg(long, short = 'n')]
        name: String,
        /// A role to assign it (name or id), with --scopes.
        #[arg(long)]
        role: Option<String>,
        /// Where the role applies (resource ids).
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
        /// How many years the secret is valid.
        #[arg(long, default_value_t = 1)]
        years: u32,
    },
    /// List service principals.
    List,
    /// Show a service principal (object id, app id or name).
    Show {
        #[arg(long)]
        id: String,
    },
    /// Delete a service principal with its secrets and role assignments.
    Delete {
        #[arg(long)]
        id: String,
    },
    /// Enable or disable a service principal (disabling ends every token it holds).
    Update {
        #[arg(long)]
        id: String,
        #[arg(long, value_parser = clap::value_parser!(bool))]
        account_enabled: bool,
    },
    /// End every token a service principal holds now (its secrets stay).
    RevokeSessions {
        #[arg(long)]
        id: String,
    },
    /// Client secrets.
    #[command(subcommand)]
    Credential(SpCredentialCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum SpCredentialCommand {
    /// Replace a service principal's secrets with a new one (printed once).
    Reset {
        #[arg(long)]
        id: String,
        /// Keep the existing secrets.
        #[arg(long)]
        append: bool,
        #[arg(long, default_value_t = 1)]
        years: u32,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Create a user.
    Create {
        /// The sign-in name.
        #[arg(long)]
        user_principal_name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// At least 12 characters (generated and printed once when omitted).
        #[arg(long)]
        password: Option<String>,
    },
    List,
    Show {
        #[arg(long)]
        id: String,
    },
    Delete {
        #[arg(long)]
        id: String,
    },
    /// Set a user's password, or enable or disable the user (either ends every token the
    /// user holds), as `az ad user update`.
    Update {
        #[arg(long)]
        id: String,
        /// The new password (at least 12 characters).
        #[arg(long)]
        password: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(bool))]
        account_enabled: Option<bool>,
    },
    /// End every token a user holds now.
    RevokeSessions {
        #[arg(long)]
        id: String,
    },
}

/// `wharf keys`: the keys that sign every token.
#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// The signing keys: the one in use, and retired ones still verifying.
    List,
    /// Sign with a new key from now on; tokens signed before keep working until pruned.
    Rotate,
    /// Delete retired keys no valid token needs (or, with --all-retired, every retired key
    /// now: each token they signed stops working).
    Prune {
        #[arg(long)]
        all_retired: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RoleCommand {
    #[command(subcommand)]
    Definition(RoleDefinitionCommand),
    #[command(subcommand)]
    Assignment(RoleAssignmentCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum RoleDefinitionCommand {
    /// List role definitions.
    List {
        /// Only the one with this name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        custom_role_only: bool,
        #[arg(long, default_value = "/")]
        scope: String,
    },
    /// Create a custom role from JSON (inline or @file): Name, Description, Actions,
    /// NotActions, DataActions, NotDataActions, AssignableScopes — as az takes it.
    Create {
        #[arg(long)]
        role_definition: String,
    },
    /// Delete a custom role (name or id).
    Delete {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "/")]
        scope: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RoleAssignmentCommand {
    /// Assign a role to a user or service principal at a scope.
    Create(RoleAssignmentCreateArgs),
    /// List role assignments.
    List {
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// Every assignment, at any scope.
        #[arg(long)]
        all: bool,
    },
    /// Delete role assignments: by id, or every one matching assignee, role and scope.
    Delete {
        #[arg(long, num_args = 1..)]
        ids: Vec<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        scope: Option<String>,
    },
}

// `role assignment create`.
#[derive(Args, Debug)]
pub(crate) struct RoleAssignmentCreateArgs {
    /// User name, app id or object id.
    #[arg(long)]
    pub(crate) assignee: String,
    /// Role name or id.
    #[arg(long)]
    pub(crate) role: String,
    /// A resource id (`/` for everything).
    #[arg(long)]
    pub(crate) scope: String,
    /// An ABAC condition (version 2.0).
    #[arg(long)]
    pub(crate) condition: Option<String>,
    #[arg(long)]
    pub(crate) condition_version: Option<String>,
    #[arg(long)]
    pub(crate) description: Option<String>,
}

#[derive(Args, Debug, Default, Clone)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "WHARF_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Directory for the embedded store [default: ./wharf-data].
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Keep metadata in PostgreSQL (postgres://user@host/db) rather than the embedded
    /// SQLite; nodes sharing it serve the same registries.
    #[arg(long, env = "WHARF_METADATA", value_name = "URL")]
    pub(crate) metadata: Option<String>,
    /// Keep blobs in an object store: s3://bucket[/prefix][?endpoint=…&region=…] or
    /// az://account/container[/prefix]; credentials from AWS_* / AZURE_STORAGE_* variables.
    #[arg(long, env = "WHARF_BLOBS", value_name = "URL")]
    pub(crate) blobs: Option<String>,
    /// Answer blob GETs with a 307 to a presigned URL of the object store (--blobs), so
    /// clients download from it directly; it must be reachable at its endpoint by clients.
    #[arg(long)]
    pub(crate) redirect_downloads: bool,
    /// A TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "WHARF_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Log format [default: human].
    #[arg(long, env = "WHARF_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Registries answer at <name>.<domain> [default: localhost].
    #[arg(long, env = "WHARF_DOMAIN")]
    pub(crate) domain: Option<String>,
    /// The URL clients reach this server at (behind a proxy or a port mapping): tokens'
    /// issuer and the identity endpoints name it [default: http://<listen address>].
    #[arg(long, env = "WHARF_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// Turn access control off: anyone who reaches the port may do anything. For a
    /// development machine only.
    #[arg(long)]
    pub(crate) no_auth: bool,
    /// Serve TLS with this certificate chain (PEM; read again on SIGHUP).
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate from a development CA made in <data-dir>/tls/ (trust
    /// its ca.pem on clients).
    #[arg(long)]
    pub(crate) tls_self_signed: bool,
    /// How often garbage collection runs in the background; 0 turns it off [default: 1h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) gc_interval: Option<std::time::Duration>,
    /// Unreferenced blobs younger than this are kept [default: 1h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) gc_grace: Option<std::time::Duration>,
    /// Upload sessions idle for longer than this are removed [default: 24h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) upload_ttl: Option<std::time::Duration>,
    /// A source registry reached over plain HTTP, which may be on a loopback or private
    /// address (repeatable): host or host:port.
    #[arg(long = "insecure-source", value_name = "HOST[:PORT]")]
    pub(crate) insecure_sources: Vec<String>,
    /// Fetch a registry's images from a mirror (repeatable), e.g. docker.io=http://127.0.0.1:5001.
    #[arg(long = "registry-mirror", value_name = "HOST=URL")]
    pub(crate) registry_mirrors: Vec<String>,
    /// Blobs an import downloads at once [default: 4].
    #[arg(long)]
    pub(crate) import_parallelism: Option<usize>,
    /// How long importImage waits for completion before answering 202 [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) import_sync_wait: Option<std::time::Duration>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Human,
    Json,
}

/// Which registry: `az`'s `--name/-n`, `--resource-group/-g`, plus `--subscription`.
#[derive(Args, Debug, Clone)]
pub(crate) struct RegistryRef {
    /// The registry's name.
    #[arg(long, short = 'n')]
    pub(crate) name: String,
    /// Its resource group (looked up when omitted).
    #[arg(long = "resource-group", short = 'g')]
    pub(crate) resource_group: Option<String>,
    /// Its subscription (looked up when omitted).
    #[arg(long)]
    pub(crate) subscription: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    pub(crate) target: RegistryRef,
    /// Source image, or fully qualified source containing the registry's login server.
    /// With --registry it is always an image name.
    #[arg(long)]
    pub(crate) source: String,
    /// Source registry on this server: name, login server or resource ID.
    #[arg(long, short = 'r')]
    pub(crate) registry: Option<String>,
    /// Username for the source registry.
    #[arg(long, short = 'u')]
    pub(crate) username: Option<String>,
    /// Password or token for the source registry.
    #[arg(long, short = 'p')]
    pub(crate) password: Option<String>,
    /// Target repository and tag, repo[:tag] (repeatable).
    #[arg(long = "image", short = 't')]
    pub(crate) images: Vec<String>,
    /// Target repository for an untagged copy (repeatable).
    #[arg(long = "repository")]
    pub(crate) repositories: Vec<String>,
    /// Overwrite existing target tags.
    #[arg(long)]
    pub(crate) force: bool,
    /// Return once the import has started.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Don't copy signatures, SBOMs and other referrers.
    #[arg(long)]
    pub(crate) no_referrers: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum RegistryCommand {
    /// Create a registry.
    Create {
        #[command(flatten)]
        registry: RegistryRef,
        /// Where it is (free text, as in ARM).
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
        #[arg(long, default_value = "Standard")]
        sku: String,
        /// Enable the admin user.
        #[arg(long)]
        admin_enabled: bool,
    },
    /// List registries.
    List {
        #[arg(long = "resource-group", short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Show a registry's resource.
    Show {
        #[command(flatten)]
        registry: RegistryRef,
    },
    /// Delete a registry and everything in it.
    Delete {
        #[command(flatten)]
        registry: RegistryRef,
        /// Don't ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Change a registry's settings.
    Update(RegistryUpdateArgs),
    /// IP rules of the registry's network rule set.
    #[command(subcommand)]
    NetworkRule(NetworkRuleCommand),
    /// The admin user's credentials.
    #[command(subcommand)]
    Credential(RegistryCredentialCommand),
}

// `registry update`: each setting is left as it is unless given.
#[derive(Args, Debug)]
pub(crate) struct RegistryUpdateArgs {
    #[command(flatten)]
    pub(crate) registry: RegistryRef,
    /// The admin user (user name: the registry's name; `registry credential show`).
    #[arg(long, value_name = "true|false")]
    pub(crate) admin_enabled: Option<bool>,
    /// Anyone may pull, without signing in.
    #[arg(long, value_name = "true|false")]
    pub(crate) anonymous_pull_enabled: Option<bool>,
    /// Reachable from the public network (else only from the server's private networks
    /// and by import through the trusted path).
    #[arg(long, value_name = "true|false")]
    pub(crate) public_network_enabled: Option<bool>,
    /// Let import through network rules (networkRuleBypassOptions AzureServices|None).
    #[arg(long, value_name = "true|false")]
    pub(crate) allow_trusted_services: Option<bool>,
    /// Allow or Deny: what network rules do with addresses no IP rule names.
    #[arg(long, value_name = "Allow|Deny")]
    pub(crate) default_action: Option<String>,
    /// Whether images may be imported out of this registry (exportPolicy).
    #[arg(long, value_name = "true|false")]
    pub(crate) allow_exports: Option<bool>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum NetworkRuleCommand {
    /// Allow an IPv4 address or CIDR range.
    Add {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long)]
        ip_address: String,
    },
    /// Remove an IP rule.
    Remove {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long)]
        ip_address: String,
    },
    List {
        #[command(flatten)]
        registry: RegistryRef,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RegistryCredentialCommand {
    /// Show the admin user's name and passwords.
    Show {
        #[command(flatten)]
        registry: RegistryRef,
    },
    /// Replace one of the admin user's passwords.
    Renew {
        #[command(flatten)]
        registry: RegistryRef,
        /// password or password2.
        #[arg(long)]
        password_name: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RepositoryCommand {
    /// List repositories.
    List {
        #[command(flatten)]
        registry: RegistryRef,
        /// At most this many.
        #[arg(long)]
        top: Option<u32>,
    },
    /// List the tags of a repository.
    ShowTags {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long)]
        repository: String,
        /// Show details, not just names.
        #[arg(long)]
        detail: bool,
        #[arg(long)]
        top: Option<u32>,
        /// time_asc or time_desc.
        #[arg(long)]
        orderby: Option<String>,
    },
    /// List the manifests of a repository.
    ShowManifests {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long)]
        repository: String,
        #[arg(long)]
        detail: bool,
        #[arg(long)]
        top: Option<u32>,
        #[arg(long)]
        orderby: Option<String>,
    },
    /// Show a repository, or one image (repo:tag or repo@digest).
    Show {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long)]
        repository: Option<String>,
        #[arg(long, short = 't')]
        image: Option<String>,
    },
    /// Delete a repository, or an image (its manifest and every tag on it).
    Delete {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long)]
        repository: Option<String>,
        #[arg(long, short = 't')]
        image: Option<String>,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Remove a tag, keeping the manifest.
    Untag {
        #[command(flatten)]
        registry: RegistryRef,
        #[arg(long, short = 't')]
        image: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum OperationCommand {
    /// Show an operation's status (id or Location URL).
    Show {
        id: String,
        /// The subscription of the import's registry (looked up when omitted).
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Cancel a running import (id or Location URL): it ends Canceled, nothing copied stays.
    Cancel {
        id: String,
        /// The subscription of the import's registry (looked up when omitted).
        #[arg(long)]
        subscription: Option<String>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct GcArgs {}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["to_metadata", "to_blobs"])))]
pub(crate) struct MigrateArgs {
    /// The data directory of the embedded server to move (stopped: its lock is taken).
    #[arg(long, value_name = "DATA_DIR")]
    pub(crate) from: PathBuf,
    /// Where the source's blobs are, if that server kept them in an object store (its
    /// `--blobs`) rather than in the data directory.
    #[arg(long, value_name = "URL")]
    pub(crate) from_blobs: Option<String>,
    /// The PostgreSQL database to move the metadata into (fresh: no node has run on it).
    #[arg(long, env = "WHARF_TO_METADATA", value_name = "URL")]
    pub(crate) to_metadata: Option<String>,
    /// The object store to copy the blobs into: s3://bucket[/prefix][?endpoint=…&region=…]
    /// or az://account/container[/prefix].
    #[arg(long, value_name = "URL")]
    pub(crate) to_blobs: Option<String>,
    /// Say what would be copied and check the targets, writing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Blobs copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) parallel: u16,
    /// Read every blob back from the target afterwards and check its digest again.
    #[arg(long)]
    pub(crate) verify: bool,
}

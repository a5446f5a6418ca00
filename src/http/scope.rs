//! The scope a request works in (SPEC §1.2, §9.1–9.2), and the handle handlers use to reach
//! that scope's catalog, users and boards.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kudos_actors::catalog::tenants::TenantLookup;
use kudos_actors::catalog::CatalogService;
use kudos_actors::leaderboard::boards::Boards;
use kudos_actors::space::Space;
use kudos_actors::user_shards::UserShards;
use kudos_snapshots::Scope;

use super::error::ApiError;
use crate::keys::Principal;
use crate::{AppState, Inner};

/// A request's state: the server's (through `Deref`) plus its scope's space. Handlers take
/// it instead of `State<AppState>`, so no handler can reach another scope's data.
#[derive(Clone)]
pub struct Scoped {
    pub app: AppState,
    pub space: Arc<Space>,
    pub scope: Scope,
    pub catalog: Arc<CatalogService>,
    pub users: UserShards,
    pub boards: Boards,
}

impl Scoped {
    /// The handle to `scope`'s space, opened if needed (503 when its catalog cannot load).
    pub fn of(app: &AppState, scope: Scope) -> Result<Self, ApiError> {
        let space = app.spaces.get(scope).map_err(|e| {
            tracing::error!(%scope, error = %e, "cannot open a scope");
            ApiError::unavailable("Storage is unavailable; retry later")
        })?;
        Ok(Self {
            app: app.clone(),
            scope,
            catalog: space.catalog.clone(),
            users: space.users.clone(),
            boards: space.boards.clone(),
            space,
        })
    }
}

impl Deref for Scoped {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.app
    }
}

/// The environment a request's key belongs to (its own scope, tenant 0).
pub fn environment_of(parts: &Parts) -> Scope {
    Scope {
        environment: parts
            .extensions
            .get::<Principal>()
            .map_or(0, |p| p.environment),
        tenant: 0,
    }
}

/// The space of a request (SPEC §1.2): its key's environment and, once that environment
/// has tenants, the tenant its `Tenant-ID` (a `customerId`) names. An application key made
/// for a tenant works in that tenant only, whatever the header says.
pub fn resolve(parts: &Parts, state: &AppState) -> Result<Scoped, ApiError> {
    let env = environment_of(parts);
    if let Some(tenant) = parts.extensions.get::<Principal>().and_then(|p| p.tenant) {
        return in_key_tenant(state, env, tenant);
    }
    in_tenant(state, env, parts.headers.get("tenant-id"))
}

/// The tenant an application key was made in, while it is active (an archived tenant's
/// keys stop working).
pub fn in_key_tenant(state: &AppState, env: Scope, tenant: u32) -> Result<Scoped, ApiError> {
    if !Scoped::of(state, env)?.catalog.get().tenant_active(tenant) {
        return Err(ApiError::unprocessable("Invalid Tenant-ID"));
    }
    Scoped::of(
        state,
        Scope {
            environment: env.environment,
            tenant,
        },
    )
}

/// The scope `header` (a `Tenant-ID`) selects in environment `env`: the environment itself
/// while it has no tenants, else the active tenant it names (422 otherwise).
pub fn tenant_scope(
    state: &AppState,
    env: Scope,
    header: Option<&axum::http::HeaderValue>,
) -> Result<Scope, ApiError> {
    in_tenant(state, env, header).map(|s| s.scope)
}

pub fn in_tenant(
    state: &AppState,
    env: Scope,
    header: Option<&axum::http::HeaderValue>,
) -> Result<Scoped, ApiError> {
    let environment = Scoped::of(state, env)?;
    let catalog = environment.catalog.get();
    if !catalog.is_multi_tenant() {
        return Ok(environment);
    }
    let Some(header) = header else {
        return Err(ApiError::unprocessable("Tenant-ID header is required"));
    };
    let customer_id = header
        .to_str()
        .map_err(|_| ApiError::unprocessable("Invalid Tenant-ID"))?;
    match catalog.lookup_tenant(customer_id.trim()) {
        TenantLookup::Found(tenant) => Scoped::of(
            state,
            Scope {
                environment: env.environment,
                tenant,
            },
        ),
        TenantLookup::Invalid | TenantLookup::SingleTenant => {
            Err(ApiError::unprocessable("Invalid Tenant-ID"))
        }
    }
}

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        resolve(parts, state)
    }
}

/// The key's environment itself, whatever `Tenant-ID` says: `/tenants*` and
/// `/application-api-keys` (SPEC §1.2.3).
pub struct Environment(pub Scoped);

impl FromRequestParts<AppState> for Environment {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Scoped::of(state, environment_of(parts)).map(Environment)
    }
}

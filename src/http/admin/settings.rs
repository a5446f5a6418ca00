//! `GET|PATCH /admin/v1/settings`: the org's branding, experimentation and aggregation
//! period (SPEC §9.5). A PATCH is a nested partial update: omitted fields stay, `null`
//! clears `logo` and `appIcon`; wrong JSON types are a 400, invalid values a 422 and
//! nothing is applied.

use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::catalog::settings::{OrgSettings, SettingsPatch};
use kudos_actors::catalog::Changed;
use serde_json::{json, Map, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::http::scope::Scoped;
use crate::wire::{object, opt_string, ShapeError};
use crate::AppState;

/// `AdminSettings`.
pub fn settings_json(s: &OrgSettings) -> Value {
    let b = &s.branding;
    let image = |url: &Option<String>| url.as_ref().map(|u| json!({ "url": u }));
    json!({
        "branding": {
            "appName": b.app_name,
            "appUrl": b.app_url,
            "brandColor": b.brand_color,
            "font": b.font,
            "logo": image(&b.logo),
            "appIcon": image(&b.app_icon),
        },
        "experimentation": {
            "controlRatio": s.experimentation.control_ratio,
            "userActivationWindow": s.experimentation.user_activation_window,
        },
        "aggregationPeriod": s.aggregation_period.as_str(),
    })
}

/// An optional nested object: absent → `None`; `null` or another type → a 400.
fn section<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, ShapeError> {
    match obj.get(field) {
        None => Ok(None),
        Some(v) => object(v, field).map(Some),
    }
}

/// `logo` / `appIcon`: absent → unchanged, `null` → cleared, `{url}` → set.
fn image(obj: &Map<String, Value>, field: &str) -> Result<Option<Option<String>>, ShapeError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let url = object(v, &format!("branding.{field}"))?
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| ShapeError::new(format!("branding.{field}.url must be a string")))?;
            Ok(Some(Some(url.to_string())))
        }
    }
}

fn integer(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, ShapeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ShapeError::new(format!("experimentation.{field} must be an integer"))),
    }
}

fn parse(body: &Value) -> Result<SettingsPatch, ShapeError> {
    let obj = object(body, "Request body")?;
    let mut patch = SettingsPatch::default();
    if let Some(b) = section(obj, "branding")? {
        let text = |field: &str| {
            opt_string(b, field)
                .map_err(|_| ShapeError::new(format!("branding.{field} must be a string")))
        };
        patch.app_name = text("appName")?;
        patch.app_url = text("appUrl")?;
        patch.brand_color = text("brandColor")?;
        patch.font = text("font")?;
        patch.logo = image(b, "logo")?;
        patch.app_icon = image(b, "appIcon")?;
    }
    if let Some(e) = section(obj, "experimentation")? {
        patch.control_ratio = integer(e, "controlRatio")?;
        patch.user_activation_window = integer(e, "userActivationWindow")?;
    }
    patch.aggregation_period = opt_string(obj, "aggregationPeriod")?;
    Ok(patch)
}

async fn get_settings(state: Scoped) -> Json<Value> {
    Json(settings_json(&state.catalog.get().settings))
}

async fn update_settings(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let patch = parse(&body)?;
    let next = state
        .catalog
        .update(|cat| match cat.settings.patched(patch) {
            Ok(next) => {
                cat.settings = next.clone();
                (Ok(next.clone()), vec![Changed::Settings(next)])
            }
            Err(message) => (Err(message), Vec::new()),
        })
        .await?
        .map_err(ApiError::unprocessable)?;
    tracing::info!(
        control_ratio = next.experimentation.control_ratio,
        aggregation_period = next.aggregation_period.as_str(),
        "settings updated"
    );
    Ok(Json(settings_json(&next)))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/settings", get(get_settings).patch(update_settings))
}

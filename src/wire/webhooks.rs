//! Webhook endpoint shapes (SPEC §11.3): the `Webhook` object and the create and update
//! items.

use std::collections::BTreeMap;

use kudos_actors::catalog::webhooks::{Webhook, WebhookFields, WebhookPatch};
use kudos_actors::catalog::{Issue, Item};
use serde_json::{json, Map, Value};

use super::achievements::opt_str;
use super::ts;

/// `Webhook`; `secret` only where SPEC §11.3.2 shows it (not in the list).
pub fn webhook(w: &Webhook, with_secret: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(w.id.to_string()));
    m.insert("name".into(), json!(w.name));
    m.insert("description".into(), json!(w.description));
    m.insert("url".into(), json!(w.url));
    m.insert("method".into(), json!(w.method.as_str()));
    m.insert("headers".into(), json!(w.headers));
    m.insert("events".into(), json!(w.events));
    m.insert("status".into(), json!(w.status.as_str()));
    if let Some(reason) = &w.disabled_reason {
        m.insert("disabledReason".into(), json!(reason));
    }
    m.insert("payloadFormat".into(), json!(w.payload_format.as_str()));
    if with_secret {
        m.insert("secret".into(), json!(w.secret));
    }
    m.insert("created".into(), json!(ts(w.created)));
    m.insert("updated".into(), json!(ts(w.updated)));
    Value::Object(m)
}

fn fields(item: &Value) -> Result<WebhookFields, String> {
    if !item.is_object() {
        return Err("Item must be an object".into());
    }
    let events = match item.get("events") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|e| e.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("events must be an array of event types")?,
        ),
        Some(_) => return Err("events must be an array of event types".into()),
    };
    let headers = match item.get("headers") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => Some(
            h.iter()
                .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or("headers must map header names to string values")?,
        ),
        Some(_) => return Err("headers must map header names to string values".into()),
    };
    Ok(WebhookFields {
        name: opt_str(item, "name")?,
        description: opt_str(item, "description")?,
        url: opt_str(item, "url")?.flatten(),
        events,
        method: opt_str(item, "method")?.flatten(),
        headers,
        status: opt_str(item, "status")?.flatten(),
        payload_format: opt_str(item, "payloadFormat")?.flatten(),
    })
}

/// A create item.
pub fn parse_new_webhook(item: &Value) -> Item<WebhookFields> {
    let f = fields(item)?;
    if f.url.is_none() {
        return Err("url is required".into());
    }
    Ok(f)
}

/// An update item (`{id, ...fields}`).
pub fn parse_webhook_patch(index: usize, item: &Value) -> Result<WebhookPatch, Issue> {
    let id = super::admin::item_id(index, item)?;
    Ok(WebhookPatch {
        fields: fields(item).map_err(|m| Issue::for_id(&id, m))?,
        id,
    })
}

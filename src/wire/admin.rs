//! Admin API shapes: bulk responses with issues (SPEC §10.1), metrics and attributes.

use kudos_actors::catalog::{
    Attribute, AttributeKind, Issue, Item, Metric, MetricPatch, NewAttribute, NewMetric, UnitType,
};
use serde::Serialize;
use serde_json::Value;

/// `AdminIssue`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminIssue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub severity: &'static str,
    pub message: String,
    /// User-scoped issues also carry the older `BulkInsertIssue` spelling (`level`,
    /// `reason`), which `@trophyso/node` requires on streak freezes and restores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<Issue> for AdminIssue {
    fn from(i: Issue) -> Self {
        let severity = if i.warning { "warning" } else { "error" };
        let user_scoped = i.user_id.is_some();
        Self {
            id: i.id,
            user_id: i.user_id,
            index: i.index,
            severity,
            level: user_scoped.then_some(severity),
            reason: user_scoped.then(|| i.message.clone()),
            message: i.message,
        }
    }
}

pub fn issues(list: Vec<Issue>) -> Vec<AdminIssue> {
    list.into_iter().map(AdminIssue::from).collect()
}

#[derive(Debug, Serialize)]
pub struct Created<T> {
    pub created: Vec<T>,
    pub issues: Vec<AdminIssue>,
}

#[derive(Debug, Serialize)]
pub struct Updated<T> {
    pub updated: Vec<T>,
    pub issues: Vec<AdminIssue>,
}

/// `DeletedResource`.
#[derive(Debug, Serialize)]
pub struct DeletedResource {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub deleted: Vec<DeletedResource>,
    pub issues: Vec<AdminIssue>,
}

/// `CreatedMetric`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedMetric {
    pub id: String,
    pub name: String,
    pub key: String,
    pub unit_type: UnitType,
    pub units: String,
}

impl From<&Metric> for CreatedMetric {
    fn from(m: &Metric) -> Self {
        Self {
            id: m.id.to_string(),
            name: m.name.clone(),
            key: m.key.clone(),
            unit_type: m.unit_type,
            units: m.units.clone(),
        }
    }
}

/// `AdminAttribute`.
#[derive(Debug, Serialize)]
pub struct AdminAttribute {
    pub id: String,
    pub name: String,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl From<&Attribute> for AdminAttribute {
    fn from(a: &Attribute) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name.clone(),
            key: a.key.clone(),
            kind: a.kind.as_str(),
        }
    }
}

fn required_string(item: &Value, field: &str, label: &str) -> Result<String, String> {
    match item.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(format!("{label} is required")),
        Some(_) => Err(format!("{label} not a string")),
    }
}

fn optional_string(item: &Value, field: &str, label: &str) -> Result<Option<String>, String> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{label} not a string")),
    }
}

fn unit_type(item: &Value) -> Result<Option<UnitType>, String> {
    match optional_string(item, "unitType", "Unit type")?.as_deref() {
        None => Ok(None),
        Some("number") => Ok(Some(UnitType::Number)),
        Some("currency") => Ok(Some(UnitType::Currency)),
        Some(_) => Err("Unit type must be one of: number, currency".into()),
    }
}

fn item_object(item: &Value) -> Result<(), String> {
    if item.is_object() {
        Ok(())
    } else {
        Err("Item must be an object".into())
    }
}

pub fn parse_new_metric(item: &Value) -> Item<NewMetric> {
    item_object(item)?;
    Ok(NewMetric {
        name: required_string(item, "name", "Name")?,
        key: required_string(item, "key", "Key")?,
        unit_type: unit_type(item)?.unwrap_or(UnitType::Number),
        units: optional_string(item, "units", "Units")?,
    })
}

/// The `id` of update item `index`; an item without one is reported by its index.
pub(crate) fn item_id(index: usize, item: &Value) -> Result<String, Issue> {
    match item.get("id") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(Issue::at_index(
            index,
            "id is required and must be a string",
        )),
    }
}

pub fn parse_metric_patch(index: usize, item: &Value) -> Result<MetricPatch, Issue> {
    let id = item_id(index, item)?;
    let fail = |message: String| Issue::for_id(&id, message);
    Ok(MetricPatch {
        name: optional_string(item, "name", "Name").map_err(fail)?,
        unit_type: unit_type(item).map_err(fail)?,
        units: optional_string(item, "units", "Units").map_err(fail)?,
        id: id.clone(),
    })
}

pub fn parse_new_attribute(item: &Value) -> Item<NewAttribute> {
    item_object(item)?;
    let name = required_string(item, "name", "Name")?;
    let key = required_string(item, "key", "Key")?;
    let kind = match required_string(item, "type", "Type")?.as_str() {
        "user" => AttributeKind::User,
        "event" => AttributeKind::Event,
        _ => return Err("Type must be one of: user, event".into()),
    };
    Ok(NewAttribute { key, name, kind })
}

pub fn parse_attribute_patch(
    index: usize,
    item: &Value,
) -> Result<(String, Option<String>), Issue> {
    let id = item_id(index, item)?;
    let name = optional_string(item, "name", "Name").map_err(|m| Issue::for_id(&id, m))?;
    Ok((id, name))
}

/// `BatchEventsResponse`.
#[derive(Debug, Serialize)]
pub struct BatchEventsResponse {
    pub accepted: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_items_report_trophy_style_messages() {
        assert_eq!(
            parse_new_metric(&json!({"name": 1, "key": "k"}))
                .err()
                .as_deref(),
            Some("Name not a string")
        );
        let m = parse_new_metric(&json!({"name": "N", "key": "k"})).expect("valid");
        assert_eq!((m.unit_type, m.units), (UnitType::Number, None));
        assert!(parse_new_metric(&json!({"name": "N", "key": "k", "unitType": "kg"})).is_err());
        let issue = parse_metric_patch(0, &json!({"id": "x", "name": 2})).expect_err("bad name");
        assert_eq!(issue.id.as_deref(), Some("x"));
        let issue = parse_metric_patch(3, &json!({"name": "n"})).expect_err("no id");
        assert_eq!((issue.index, issue.id), (Some(3), None));
    }
}

/// `AdminTenant`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminTenant {
    pub id: String,
    pub customer_id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
    pub updated: String,
}

impl From<&kudos_actors::catalog::tenants::Tenant> for AdminTenant {
    fn from(t: &kudos_actors::catalog::tenants::Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            customer_id: t.customer_id.clone(),
            name: t.name.clone(),
            status: if t.deleted { "archived" } else { "active" },
            created: crate::wire::ts(t.created),
            updated: crate::wire::ts(t.updated),
        }
    }
}

pub fn parse_new_tenant(item: &Value) -> Item<kudos_actors::catalog::tenants::NewTenant> {
    item_object(item)?;
    Ok(kudos_actors::catalog::tenants::NewTenant {
        customer_id: required_string(item, "customerId", "customerId")?,
        name: required_string(item, "name", "name")?,
    })
}

pub fn parse_tenant_patch(
    index: usize,
    item: &Value,
) -> Result<kudos_actors::catalog::tenants::TenantPatch, Issue> {
    let id = item_id(index, item)?;
    let field = |f: &str| optional_string(item, f, f).map_err(|m| Issue::for_id(&id, m));
    Ok(kudos_actors::catalog::tenants::TenantPatch {
        customer_id: field("customerId")?,
        name: field("name")?,
        id: id.clone(),
    })
}

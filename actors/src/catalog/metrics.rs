//! Metrics (SPEC §3.1): definitions and their admin bulk operations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bulk_delete, bulk_update, Catalog, Issue, Item};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitType {
    Number,
    Currency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub unit_type: UnitType,
    pub units: String,
    pub created: DateTime<Utc>,
    pub deleted: bool,
    /// Creation order (lists are in creation order).
    pub ord: u64,
}

/// A validated metric creation request.
#[derive(Debug, Clone)]
pub struct NewMetric {
    pub key: String,
    pub name: String,
    pub unit_type: UnitType,
    pub units: Option<String>,
}

/// A validated metric update; `None` fields are left alone.
#[derive(Debug, Clone)]
pub struct MetricPatch {
    pub id: String,
    pub name: Option<String>,
    pub unit_type: Option<UnitType>,
    pub units: Option<String>,
}

/// ISO-4217 codes accepted for `currency` metrics.
const CURRENCIES: &[&str] = &[
    "AED", "ARS", "AUD", "BDT", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK",
    "EGP", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KES", "KRW", "MAD",
    "MXN", "MYR", "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB",
    "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
];

fn check_units(unit_type: UnitType, units: Option<&str>) -> Result<String, String> {
    match unit_type {
        UnitType::Number => Ok(units.unwrap_or("").to_string()),
        UnitType::Currency => {
            let code = units.unwrap_or("").to_ascii_uppercase();
            if CURRENCIES.contains(&code.as_str()) {
                Ok(code)
            } else {
                Err("Units must be a supported ISO 4217 currency code for currency metrics".into())
            }
        }
    }
}

impl Catalog {
    /// Live (non-deleted) metrics in creation order.
    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.metrics.iter().filter(|m| !m.deleted)
    }

    pub fn metric_by_key(&self, key: &str) -> Option<&Metric> {
        self.metrics().find(|m| m.key == key)
    }

    pub fn metric(&self, id: Uuid) -> Option<&Metric> {
        self.metrics().find(|m| m.id == id)
    }

    pub fn metric_by_id(&self, id: &str) -> Option<&Metric> {
        let id = Uuid::parse_str(id).ok()?;
        self.metrics().find(|m| m.id == id)
    }

    pub fn create_metrics(
        &mut self,
        items: Vec<Item<NewMetric>>,
        now: DateTime<Utc>,
    ) -> (Vec<Metric>, Vec<Issue>) {
        self.bulk_create(
            items,
            |cat, new| {
                Self::check_key_and_name(&new.key, &new.name)?;
                if cat.metric_by_key(&new.key).is_some() {
                    return Err("Key already in use by another metric".into());
                }
                let units = check_units(new.unit_type, new.units.as_deref())?;
                Ok(Metric {
                    id: Uuid::new_v4(),
                    key: new.key,
                    name: new.name,
                    unit_type: new.unit_type,
                    units,
                    created: now,
                    deleted: false,
                    ord: cat.take_ord(),
                })
            },
            |cat, m| cat.metrics.push(m),
        )
    }

    pub fn update_metrics(
        &mut self,
        items: Vec<Result<MetricPatch, Issue>>,
    ) -> (Vec<Metric>, Vec<Issue>) {
        bulk_update(
            &mut self.metrics,
            items,
            |p| &p.id,
            "Metric",
            |metric, patch| {
                if patch.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                    return Err("Name must not be empty".into());
                }
                let unit_type = patch.unit_type.unwrap_or(metric.unit_type);
                // Without new units the current ones are kept, if still valid for the type.
                let units_in = patch.units.as_deref().unwrap_or(&metric.units);
                let units = check_units(unit_type, Some(units_in))?;
                if let Some(name) = patch.name {
                    metric.name = name;
                }
                metric.unit_type = unit_type;
                metric.units = units;
                Ok(())
            },
        )
    }

    pub fn delete_metrics(&mut self, ids: &[String]) -> (Vec<Metric>, Vec<Issue>) {
        bulk_delete(&mut self.metrics, ids, "Metric")
    }
}

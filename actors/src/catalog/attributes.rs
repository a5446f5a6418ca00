//! User and event attributes (SPEC §3.3): definitions and their admin bulk operations.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bulk_delete, bulk_update, Catalog, Issue, Item};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeKind {
    User,
    Event,
}

impl AttributeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeKind::User => "user",
            AttributeKind::Event => "event",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub kind: AttributeKind,
    pub deleted: bool,
    pub ord: u64,
}

#[derive(Debug, Clone)]
pub struct NewAttribute {
    pub key: String,
    pub name: String,
    pub kind: AttributeKind,
}

impl Catalog {
    /// Live attributes in creation order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(|a| !a.deleted)
    }

    pub fn attribute_by_id(&self, id: &str) -> Option<&Attribute> {
        let id = Uuid::parse_str(id).ok()?;
        self.attributes().find(|a| a.id == id)
    }

    /// The key of a live attribute.
    pub fn attribute_key(&self, id: Uuid) -> Option<&str> {
        self.attributes()
            .find(|a| a.id == id)
            .map(|a| a.key.as_str())
    }

    pub fn attribute(&self, kind: AttributeKind, key: &str) -> Option<&Attribute> {
        self.attributes().find(|a| a.kind == kind && a.key == key)
    }

    /// Keys among `keys` that are not live attributes of `kind`, sorted, for the
    /// "Invalid attribute keys" message (SPEC §1.3.3).
    pub fn unknown_attribute_keys<'a>(
        &self,
        kind: AttributeKind,
        keys: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        let unknown: BTreeSet<&String> = keys
            .into_iter()
            .filter(|k| self.attribute(kind, k).is_none())
            .collect();
        unknown.into_iter().cloned().collect()
    }

    pub fn create_attributes(
        &mut self,
        items: Vec<Item<NewAttribute>>,
    ) -> (Vec<Attribute>, Vec<Issue>) {
        self.bulk_create(
            items,
            |cat, new| {
                Self::check_key_and_name(&new.key, &new.name)?;
                if cat.attribute(new.kind, &new.key).is_some() {
                    return Err("Key already in use by another attribute of this type".into());
                }
                Ok(Attribute {
                    id: Uuid::new_v4(),
                    key: new.key,
                    name: new.name,
                    kind: new.kind,
                    deleted: false,
                    ord: cat.take_ord(),
                })
            },
            |cat, a| cat.attributes.push(a),
        )
    }

    /// Attribute updates: only the name can change (key and type are immutable).
    pub fn update_attributes(
        &mut self,
        items: Vec<Result<(String, Option<String>), Issue>>,
    ) -> (Vec<Attribute>, Vec<Issue>) {
        bulk_update(
            &mut self.attributes,
            items,
            |(id, _)| id,
            "Attribute",
            |attr, (_, name)| {
                if let Some(name) = name {
                    if name.trim().is_empty() {
                        return Err("Name must not be empty".into());
                    }
                    attr.name = name;
                }
                Ok(())
            },
        )
    }

    pub fn delete_attributes(&mut self, ids: &[String]) -> (Vec<Attribute>, Vec<Issue>) {
        bulk_delete(&mut self.attributes, ids, "Attribute")
    }
}

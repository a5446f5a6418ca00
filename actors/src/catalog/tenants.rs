//! Tenants (SPEC §9.1, §1.2): the customers of a multi-tenant environment.
//!
//! Tenants live in the catalog of their environment's own scope (tenant 0), and each one is
//! given a small number at creation: the `tenant` of the scope its data lives in. A tenant
//! is never removed: deleting archives it, its number is never reused, and its
//! `customerId` stays taken (a `Tenant-ID` naming it is refused, never re-pointed).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bulk_delete, bulk_update, Catalog, Issue, Item};

/// Longest `customerId` and `name` (characters).
pub const MAX_TENANT_TEXT: usize = 255;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: Uuid,
    /// The scope's tenant number (1, 2, …; 0 is the environment itself).
    pub number: u32,
    pub customer_id: String,
    pub name: String,
    /// Archived (the admin API's delete).
    pub deleted: bool,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// `customerId`s this tenant had before: still taken, so a header naming one is refused
    /// rather than sent to another tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub former_customer_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub customer_id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct TenantPatch {
    pub id: String,
    pub customer_id: Option<String>,
    pub name: Option<String>,
}

/// Why a `Tenant-ID` resolves to no tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantLookup {
    /// The environment has no tenants: the header is ignored.
    SingleTenant,
    Found(u32),
    /// Unknown or archived.
    Invalid,
}

fn check_text(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.chars().count() > MAX_TENANT_TEXT {
        return Err(format!(
            "{what} must be at most {MAX_TENANT_TEXT} characters"
        ));
    }
    Ok(())
}

/// `customerId` is sent as a header: visible ASCII, no surrounding spaces.
fn check_customer_id(value: &str) -> Result<(), String> {
    check_text("customerId", value)?;
    if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') || value.trim() != value {
        return Err(
            "customerId must be visible ASCII without leading or trailing spaces (it is sent as the Tenant-ID header)"
                .into(),
        );
    }
    Ok(())
}

fn taken(customer_id: &str) -> String {
    format!("Customer ID \"{customer_id}\" already exists in this environment")
}

impl Catalog {
    /// Every tenant, archived ones included, in creation order.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.iter()
    }

    pub fn tenant_by_id(&self, id: &str) -> Option<&Tenant> {
        let id = Uuid::parse_str(id).ok()?;
        self.tenants.iter().find(|t| t.id == id)
    }

    /// Whether the environment is multi-tenant: it had a tenant once (archiving every
    /// tenant does not make it single-tenant again, SPEC §1.2.1).
    pub fn is_multi_tenant(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// What a `Tenant-ID` header value (a `customerId`) selects.
    pub fn lookup_tenant(&self, customer_id: &str) -> TenantLookup {
        if !self.is_multi_tenant() {
            return TenantLookup::SingleTenant;
        }
        match self
            .tenants
            .iter()
            .find(|t| t.customer_id == customer_id && !t.deleted)
        {
            Some(t) => TenantLookup::Found(t.number),
            None => TenantLookup::Invalid,
        }
    }

    /// Whether tenant `number` exists and is active.
    pub fn tenant_active(&self, number: u32) -> bool {
        self.tenants
            .iter()
            .any(|t| t.number == number && !t.deleted)
    }

    fn customer_id_taken(&self, customer_id: &str, except: Option<Uuid>) -> bool {
        self.tenants.iter().any(|t| {
            (t.customer_id == customer_id && Some(t.id) != except)
                || t.former_customer_ids.iter().any(|c| c == customer_id)
        })
    }

    /// Creates tenants, each on its own (SPEC §10.1.2).
    pub fn create_tenants(
        &mut self,
        items: Vec<Item<NewTenant>>,
        now: DateTime<Utc>,
    ) -> (Vec<Tenant>, Vec<Issue>) {
        self.bulk_create(
            items,
            |cat, new| {
                check_customer_id(&new.customer_id)?;
                check_text("name", &new.name)?;
                if cat.customer_id_taken(&new.customer_id, None) {
                    return Err(taken(&new.customer_id));
                }
                let number = cat.tenants.iter().map(|t| t.number).max().unwrap_or(0);
                let number = number
                    .checked_add(1)
                    .ok_or("No more tenants can be created in this environment")?;
                Ok(Tenant {
                    id: Uuid::new_v4(),
                    number,
                    customer_id: new.customer_id,
                    name: new.name,
                    deleted: false,
                    created: now,
                    updated: now,
                    former_customer_ids: Vec::new(),
                })
            },
            |cat, t| cat.tenants.push(t),
        )
    }

    /// Renames tenants or changes their `customerId` (archived ones cannot be changed).
    pub fn update_tenants(
        &mut self,
        items: Vec<Result<TenantPatch, Issue>>,
        now: DateTime<Utc>,
    ) -> (Vec<Tenant>, Vec<Issue>) {
        let mut updated = Vec::new();
        let mut issues = Vec::new();
        for item in items {
            // Uniqueness needs the other tenants (and the items before this one), so it is
            // checked item by item, before the generic update borrows the list.
            let item = item.and_then(|patch| match &patch.customer_id {
                Some(c) if self.customer_id_taken(c, Uuid::parse_str(&patch.id).ok()) => {
                    Err(Issue::for_id(&patch.id, taken(c)))
                }
                _ => Ok(patch),
            });
            let (mut done, mut problems) = bulk_update(
                &mut self.tenants,
                vec![item],
                |p| &p.id,
                "Tenant",
                |t, p| {
                    if let Some(c) = &p.customer_id {
                        check_customer_id(c)?;
                    }
                    if let Some(n) = &p.name {
                        check_text("name", n)?;
                    }
                    if let Some(c) = p.customer_id.filter(|c| *c != t.customer_id) {
                        let old = std::mem::replace(&mut t.customer_id, c);
                        t.former_customer_ids.push(old);
                    }
                    if let Some(n) = p.name {
                        t.name = n;
                    }
                    t.updated = now;
                    Ok(())
                },
            );
            updated.append(&mut done);
            issues.append(&mut problems);
        }
        (updated, issues)
    }

    /// Archives tenants (the admin API's delete).
    pub fn archive_tenants(
        &mut self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> (Vec<Tenant>, Vec<Issue>) {
        let (mut archived, issues) = bulk_delete(&mut self.tenants, ids, "Tenant");
        for t in &mut archived {
            t.updated = now;
            if let Some(stored) = self.tenants.iter_mut().find(|s| s.id == t.id) {
                stored.updated = now;
            }
        }
        (archived, issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn new(c: &str) -> Item<NewTenant> {
        Ok(NewTenant {
            customer_id: c.into(),
            name: format!("Tenant {c}"),
        })
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).expect("valid")
    }

    #[test]
    fn customer_ids_are_unique_and_archiving_keeps_them_taken() {
        let mut cat = Catalog::default();
        assert_eq!(cat.lookup_tenant("acme"), TenantLookup::SingleTenant);
        let (created, issues) = cat.create_tenants(vec![new("acme"), new("acme"), new("")], at());
        assert_eq!(created.len(), 1);
        assert_eq!(
            issues
                .iter()
                .map(|i| i.message.as_str())
                .collect::<Vec<_>>(),
            [
                "Customer ID \"acme\" already exists in this environment",
                "customerId must not be empty"
            ]
        );
        assert_eq!(cat.lookup_tenant("acme"), TenantLookup::Found(1));
        assert_eq!(cat.lookup_tenant("other"), TenantLookup::Invalid);

        let id = created[0].id.to_string();
        let (archived, _) = cat.archive_tenants(std::slice::from_ref(&id), at());
        assert_eq!(archived.len(), 1);
        assert!(
            cat.is_multi_tenant(),
            "archiving keeps the environment multi-tenant"
        );
        assert_eq!(cat.lookup_tenant("acme"), TenantLookup::Invalid);
        let (_, issues) = cat.create_tenants(vec![new("acme")], at());
        assert_eq!(
            issues.len(),
            1,
            "an archived tenant's customerId stays taken"
        );
        let (created, _) = cat.create_tenants(vec![new("beta")], at());
        assert_eq!(created[0].number, 2, "numbers are never reused");
        let (_, issues) = cat.update_tenants(
            vec![Ok(TenantPatch {
                id,
                customer_id: None,
                name: Some("x".into()),
            })],
            at(),
        );
        assert_eq!(issues[0].message, "Tenant not found by ID");
    }

    #[test]
    fn an_update_cannot_take_another_tenants_customer_id() {
        let mut cat = Catalog::default();
        let (created, _) = cat.create_tenants(vec![new("a"), new("b")], at());
        let patch = |c: &str| {
            Ok(TenantPatch {
                id: created[1].id.to_string(),
                customer_id: Some(c.into()),
                name: None,
            })
        };
        let (updated, issues) = cat.update_tenants(vec![patch("a"), patch("b"), patch("c")], at());
        assert_eq!(issues.len(), 1);
        assert_eq!(updated.len(), 2, "its own id, then a free one");
        assert_eq!(cat.lookup_tenant("c"), TenantLookup::Found(2));
        assert_eq!(cat.lookup_tenant("b"), TenantLookup::Invalid);
        let (_, issues) = cat.create_tenants(vec![new("b"), new(" d"), new("é")], at());
        assert_eq!(
            issues.len(),
            3,
            "a former customerId stays taken; header-safe ids only"
        );
        assert_eq!(
            issues[0].message,
            "Customer ID \"b\" already exists in this environment"
        );
    }

    proptest! {
        /// Whatever is created, updated and archived, live customer ids never repeat, and
        /// numbers are distinct and never 0.
        #[test]
        fn customer_ids_and_numbers_stay_unique(
            ops in proptest::collection::vec((0u8..3, 0usize..6, 0u8..4), 1..40)
        ) {
            let mut cat = Catalog::default();
            for (op, target, c) in ops {
                let ids: Vec<String> = cat.tenants().map(|t| t.id.to_string()).collect();
                let customer = format!("c{c}");
                match op {
                    0 => { cat.create_tenants(vec![new(&customer)], at()); }
                    1 if !ids.is_empty() => {
                        let id = ids[target % ids.len()].clone();
                        cat.update_tenants(vec![Ok(TenantPatch { id, customer_id: Some(customer), name: None })], at());
                    }
                    _ if !ids.is_empty() => {
                        cat.archive_tenants(&[ids[target % ids.len()].clone()], at());
                    }
                    _ => {}
                }
            }
            let mut customers: Vec<&str> = cat.tenants().map(|t| t.customer_id.as_str()).collect();
            let n = customers.len();
            customers.sort_unstable();
            customers.dedup();
            prop_assert_eq!(customers.len(), n);
            let mut numbers: Vec<u32> = cat.tenants().map(|t| t.number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            prop_assert_eq!(numbers.len(), n);
            prop_assert!(numbers.iter().all(|&x| x > 0));
        }
    }
}

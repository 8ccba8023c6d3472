//! Producer grants: which event types (and accounts) each producer identity
//! may publish, over HTTP (the token's subject) and NATS (the subject's last
//! token, `webhook.dispatch.<producer>`). With no grants configured every
//! producer may publish anything (development); with grants, nothing else.
//! Event-type schemas, global to every account, belong to the producers
//! granted their type for all accounts (and to the operator API).

use hookwarden_core::validate::{type_matches, type_pattern};
use serde::{Deserialize, Serialize};

/// `[[producers]]` in the configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProducerGrant {
    pub name: String,
    /// Exact types, `prefix.*`, or `*`: the rule webhook subscriptions
    /// follow too (`hookwarden_core::validate::type_matches`).
    pub event_types: Vec<String>,
    /// Accounts it may publish for; empty or `*` means any.
    #[serde(default)]
    pub accounts: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Grants {
    grants: Vec<ProducerGrant>,
}

impl Grants {
    pub fn new(grants: Vec<ProducerGrant>) -> Result<Self, String> {
        for g in &grants {
            hookwarden_core::validate::identifier("producers.name", &g.name)
                .map_err(|e| e.to_string())?;
            if g.name == "deadletter" {
                return Err("producers: \"deadletter\" is reserved".into());
            }
            if g.event_types.is_empty() {
                return Err(format!("producers: {} grants no event types", g.name));
            }
            for p in &g.event_types {
                type_pattern(p).map_err(|_| {
                    format!(
                        "producers: {}: {p:?} is not an event type, \"prefix.*\" or \"*\"",
                        g.name
                    )
                })?;
            }
        }
        Ok(Self { grants })
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// May `producer` publish `event_type` for `account`? The reason if not.
    pub fn check(&self, producer: &str, account: &str, event_type: &str) -> Result<(), String> {
        if self.grants.is_empty() {
            return Ok(());
        }
        let grant = self.covering(producer, event_type)?;
        if !grant.accounts.is_empty() && !grant.accounts.iter().any(|a| a == "*" || a == account) {
            return Err(format!(
                "producer {producer:?} may not publish for account {account:?}"
            ));
        }
        Ok(())
    }
}

impl Grants {
    /// The producer's grant, if it covers `event_type`; the reason if not.
    fn covering(&self, producer: &str, event_type: &str) -> Result<&ProducerGrant, String> {
        let grant = self
            .grants
            .iter()
            .find(|g| g.name == producer)
            .ok_or_else(|| format!("producer {producer:?} has no grant"))?;
        if !grant
            .event_types
            .iter()
            .any(|p| type_matches(p, event_type))
        {
            return Err(format!(
                "producer {producer:?} may not publish {event_type:?}"
            ));
        }
        Ok(grant)
    }

    /// May `producer` write the schema of `event_type`? A schema applies to
    /// every account's events, so only a producer granted the type for all
    /// accounts owns it (besides the operator API). Without grants nobody
    /// is known to own anything: schemas are then the operator's alone.
    pub fn may_own_schema(&self, producer: &str, event_type: &str) -> Result<(), String> {
        if self.grants.is_empty() {
            return Err(
                "without producer grants, event-type schemas are managed through the operator API only"
                    .into(),
            );
        }
        let grant = self.covering(producer, event_type)?;
        if !(grant.accounts.is_empty() || grant.accounts.iter().any(|a| a == "*")) {
            return Err(format!(
                "the schema of {event_type:?} applies to every account; producer {producer:?} is granted it for some only"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new(vec![
            ProducerGrant {
                name: "billing".into(),
                event_types: vec!["invoice.*".into(), "payment.settled".into()],
                accounts: vec![],
            },
            ProducerGrant {
                name: "crm".into(),
                event_types: vec!["*".into()],
                accounts: vec!["acct_1".into()],
            },
        ])
        .expect("grants")
    }

    #[test]
    fn grants_are_enforced() {
        let g = grants();
        assert!(g.check("billing", "any", "invoice.paid").is_ok());
        assert!(g.check("billing", "any", "invoice.refund.created").is_ok());
        assert!(g.check("billing", "any", "payment.settled").is_ok());
        assert!(g.check("billing", "any", "invoicex.paid").is_err());
        assert!(g.check("billing", "any", "invoice").is_err());
        assert!(g.check("billing", "any", "user.created").is_err());
        assert!(g.check("crm", "acct_1", "user.created").is_ok());
        assert!(g.check("crm", "acct_2", "user.created").is_err());
        assert!(g.check("stranger", "acct_1", "invoice.paid").is_err());
        assert!(
            Grants::default().check("anyone", "a", "t").is_ok(),
            "no grants: development default"
        );
        // Schemas are global: owned only with the type for every account.
        assert!(g.may_own_schema("billing", "invoice.paid").is_ok());
        assert!(g.may_own_schema("billing", "user.created").is_err());
        assert!(g.may_own_schema("crm", "user.created").is_err());
        assert!(g.may_own_schema("stranger", "invoice.paid").is_err());
        assert!(Grants::default()
            .may_own_schema("anyone", "invoice.paid")
            .is_err());
        let star = Grants::new(vec![ProducerGrant {
            name: "all".into(),
            event_types: vec!["*".into()],
            accounts: vec!["*".into()],
        }])
        .expect("grants");
        assert!(star.may_own_schema("all", "user.created").is_ok());
        assert!(Grants::new(vec![ProducerGrant {
            name: "deadletter".into(),
            event_types: vec!["*".into()],
            accounts: vec![]
        }])
        .is_err());
        assert!(
            Grants::new(vec![ProducerGrant {
                name: "billing".into(),
                event_types: vec!["invoice*".into()],
                accounts: vec![]
            }])
            .is_err(),
            "a pattern subscriptions would refuse is refused here too"
        );
    }
}

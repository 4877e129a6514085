//! Object ids: 32 bytes, written as 64 hex digits, that name one object of one class of
//! one tenant.
//!
//! The first 16 bytes are the object's own (a hash of its name, or random); the last 16
//! are a check over them keyed by (tenant, class), so an id is self-validating: any node
//! can tell, without a lookup or a shared secret, that an id belongs to a namespace. That
//! keeps a fleet's routing of an address (tenant, class, id) free of a central registry.
//! The check is not a secret because it guards nothing a tenant could not reach anyway:
//! every namespace is the tenant's own.

use sha2::{Digest, Sha256};

/// A validated id of one class of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectId([u8; 32]);

/// Why a string is not an id of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not 64 hex digits.
    #[error("`{0}` is not an object id (64 hex digits)")]
    Malformed(String),
    /// Well formed, but made by another class or tenant.
    #[error("`{id}` is not an id of class `{class}` of this tenant (another class's or tenant's?)")]
    OtherNamespace {
        /// The id given.
        id: String,
        /// The class it was checked against.
        class: String,
    },
}

/// The key of one namespace, mixed into every id it makes.
#[derive(Clone)]
pub struct NamespaceKey([u8; 32]);

impl NamespaceKey {
    /// The key of `tenant`'s `class`.
    pub fn new(tenant: &str, class: &str) -> NamespaceKey {
        let mut hash = Sha256::new();
        hash.update(b"outpost durable object namespace\0");
        hash.update(tenant.as_bytes());
        hash.update([0]);
        hash.update(class.as_bytes());
        NamespaceKey(hash.finalize().into())
    }

    fn check(&self, body: &[u8; 16]) -> [u8; 16] {
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update(b"check");
        hash.update(body);
        let digest: [u8; 32] = hash.finalize().into();
        first_16(&digest)
    }

    fn id(&self, body: [u8; 16]) -> ObjectId {
        let mut id = [0; 32];
        id[..16].copy_from_slice(&body);
        id[16..].copy_from_slice(&self.check(&body));
        ObjectId(id)
    }

    /// The id `name` always gives in this namespace.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update(b"name");
        hash.update(name.as_bytes());
        let digest: [u8; 32] = hash.finalize().into();
        self.id(first_16(&digest))
    }

    /// A new random id (128 random bits: no two calls anywhere give the same).
    pub fn new_unique_id(&self) -> ObjectId {
        self.id(rand::random())
    }

    /// `text` as an id of this namespace, if it is one.
    pub fn parse(&self, text: &str, class: &str) -> Result<ObjectId, IdError> {
        let malformed = || IdError::Malformed(text.chars().take(80).collect());
        if text.len() != 64 {
            return Err(malformed());
        }
        let mut id = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(malformed);
            id[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        let body = first_16(&id);
        if id[16..] != self.check(&body) {
            return Err(IdError::OtherNamespace {
                id: text.to_string(),
                class: class.to_string(),
            });
        }
        Ok(ObjectId(id))
    }
}

fn first_16(bytes: &[u8; 32]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_gives_one_id_per_namespace() {
        let rooms = NamespaceKey::new("acme", "room");
        assert_eq!(rooms.id_from_name("doc-42"), rooms.id_from_name("doc-42"));
        assert_ne!(rooms.id_from_name("doc-42"), rooms.id_from_name("doc-43"));
        let other_tenant = NamespaceKey::new("globex", "room");
        assert_ne!(
            rooms.id_from_name("doc-42"),
            other_tenant.id_from_name("doc-42")
        );
    }

    #[test]
    fn ids_round_trip_and_other_namespaces_are_refused() {
        let rooms = NamespaceKey::new("acme", "room");
        let id = rooms.new_unique_id();
        assert_ne!(id, rooms.new_unique_id());
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(rooms.parse(&text, "room"), Ok(id));
        let counters = NamespaceKey::new("acme", "counter");
        assert!(matches!(
            counters.parse(&text, "counter"),
            Err(IdError::OtherNamespace { .. })
        ));
        let globex = NamespaceKey::new("globex", "room");
        assert!(globex.parse(&text, "room").is_err());
        assert!(matches!(
            rooms.parse("xyz", "room"),
            Err(IdError::Malformed(_))
        ));
        assert!(matches!(
            rooms.parse(&"g".repeat(64), "room"),
            Err(IdError::Malformed(_))
        ));
        assert!(matches!(
            rooms.parse(&text.replace(|_| true, "é"), "room"),
            Err(IdError::Malformed(_))
        ));
    }
}

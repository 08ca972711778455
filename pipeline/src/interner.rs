//! Service names interned to small ids, so correlation state holds a `u32` per event
//! instead of a string.

use rustc_hash::FxHashMap;

/// An interned service name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u32);

/// Name ↔ id table. Ids are dense and never reused.
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxHashMap<Box<str>, ServiceId>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The id of `name`, allocating only the first time a name is seen.
    pub fn intern(&mut self, name: &str) -> ServiceId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = ServiceId(self.names.len() as u32);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub fn name(&self, id: ServiceId) -> &str {
        &self.names[id.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id() {
        let mut i = Interner::default();
        let a = i.intern("payment");
        let b = i.intern("checkout");
        assert_eq!(i.intern("payment"), a);
        assert_ne!(a, b);
        assert_eq!(i.name(b), "checkout");
    }
}

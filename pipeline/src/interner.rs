//! Service names interned to small ids, so correlation state holds a `u32` per event
//! instead of a string.
//!
//! Bounded: at most `cap` names get ids of their own. Every name past the cap shares one
//! overflow id (named [`OVERFLOW_NAME`]): its lines are still mined, in one shared
//! miner, but no rule correlates them (a service that cannot be told apart is no target
//! for an action). Names come from the input, so the cap is what keeps a flood of pod
//! names or request values mapped to `service` from growing the process.

use rustc_hash::FxHashMap;

/// An interned service name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u32);

/// The name shown for the services past the cap.
pub const OVERFLOW_NAME: &str = "(services over the cap)";

/// Name ↔ id table. Ids are dense and never reused.
#[derive(Debug)]
pub struct Interner {
    cap: usize,
    ids: FxHashMap<Box<str>, ServiceId>,
    names: Vec<Box<str>>,
    overflow: Option<ServiceId>,
}

impl Interner {
    /// A table that gives at most `cap` names ids of their own.
    pub fn new(cap: usize) -> Self {
        Interner {
            cap,
            ids: FxHashMap::default(),
            names: Vec::new(),
            overflow: None,
        }
    }

    /// The id of `name`, allocating only the first time a name is seen; past the cap,
    /// the shared overflow id.
    pub fn intern(&mut self, name: &str) -> ServiceId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        if self.ids.len() >= self.cap {
            return *self.overflow.get_or_insert_with(|| {
                self.names.push(OVERFLOW_NAME.into());
                ServiceId((self.names.len() - 1) as u32)
            });
        }
        let id = ServiceId(self.names.len() as u32);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// The id of `name` if it has one of its own (nothing is interned).
    pub fn get(&self, name: &str) -> Option<ServiceId> {
        self.ids.get(name).copied()
    }

    /// Whether `id` is the shared id of the names past the cap.
    #[inline]
    pub fn is_overflow(&self, id: ServiceId) -> bool {
        self.overflow == Some(id)
    }

    /// Names with ids of their own.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
        let mut i = Interner::new(10);
        let a = i.intern("payment");
        let b = i.intern("checkout");
        assert_eq!(i.intern("payment"), a);
        assert_ne!(a, b);
        assert_eq!(i.name(b), "checkout");
        assert!(!i.is_overflow(a));
    }

    #[test]
    fn names_past_the_cap_share_one_id() {
        let mut i = Interner::new(2);
        let a = i.intern("a");
        i.intern("b");
        let c = i.intern("c");
        assert_eq!(i.intern("d"), c);
        assert!(i.is_overflow(c));
        assert_eq!(i.name(c), OVERFLOW_NAME);
        assert_eq!(i.intern("a"), a, "names with ids keep them");
        assert_eq!(i.len(), 2);
    }
}

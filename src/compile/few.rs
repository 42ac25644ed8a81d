//! A set for the indexes compile keeps, where nearly every set has one member.
//!
//! A `BTreeSet` allocates a whole node (eleven slots) for its first member: at 10,000 Ingresses
//! the index of which Ingresses name each Service, and of which slices each Service has, spent
//! 40 MB on nodes that each held one key. `Few` holds one member inline and becomes a
//! `BTreeSet` at the second.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Few<T: Ord> {
    One(T),
    Many(BTreeSet<T>),
}

impl<T: Ord> Default for Few<T> {
    fn default() -> Self {
        Few::Many(BTreeSet::new())
    }
}

impl<T: Ord> Few<T> {
    /// Adds `t`; whether it was not there.
    pub fn insert(&mut self, t: T) -> bool {
        match self {
            Few::One(one) if *one == t => false,
            Few::One(_) => {
                let Few::One(one) = std::mem::take(self) else { unreachable!() };
                *self = Few::Many(BTreeSet::from([one, t]));
                true
            }
            Few::Many(set) if set.is_empty() => {
                *self = Few::One(t);
                true
            }
            Few::Many(set) => set.insert(t),
        }
    }

    /// Removes `t`; whether it was there.
    pub fn remove(&mut self, t: &T) -> bool {
        match self {
            Few::One(one) if one == t => {
                *self = Few::default();
                true
            }
            Few::One(_) => false,
            Few::Many(set) => set.remove(t),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Few::Many(set) if set.is_empty())
    }

    /// The members, in order.
    pub fn iter(&self) -> Iter<'_, T> {
        let (one, many) = match self {
            Few::One(one) => (Some(one), None),
            Few::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

pub type Iter<'a, T> = std::iter::Chain<std::option::IntoIter<&'a T>, std::iter::Flatten<std::option::IntoIter<std::collections::btree_set::Iter<'a, T>>>>;

impl<'a, T: Ord> IntoIterator for &'a Few<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_set_in_order() {
        let mut s: Few<u32> = Few::default();
        assert!(s.is_empty() && s.iter().next().is_none());
        assert!(s.insert(5) && !s.insert(5));
        assert!(matches!(s, Few::One(5)) && !s.is_empty());
        assert!(s.insert(3) && s.insert(9) && !s.insert(3));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![3, 5, 9]);
        assert!(s.remove(&5) && !s.remove(&5));
        assert_eq!((&s).into_iter().copied().collect::<Vec<_>>(), vec![3, 9]);
        assert!(s.remove(&3) && s.remove(&9) && s.is_empty());
        assert!(s.insert(7) && matches!(s, Few::One(7)));
        assert!(s.remove(&7) && s.is_empty() && s.iter().next().is_none());
    }
}

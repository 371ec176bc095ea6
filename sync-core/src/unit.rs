//! Administrative units: province > (district) > commune > hamlet or residential group.
//!
//! The tree changes over time: communes are merged, and on 1 July 2025 the district level was
//! abolished. A unit therefore has a validity period and a lineage (the units it was merged from
//! and the unit it was merged into), and a commune's parent may be a district or a province.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::day::Day;
use crate::ids::UnitId;

/// A level of the administrative tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UnitLevel {
    /// Tỉnh / thành phố trực thuộc trung ương.
    Province,
    /// Huyện / quận / thị xã (absent after the 2025 reform).
    District,
    /// Xã / phường / thị trấn.
    Commune,
    /// Thôn / tổ dân phố: where responses are collected.
    Hamlet,
}

impl UnitLevel {
    /// The levels a unit of this level may hang under.
    pub fn allowed_parents(self) -> &'static [UnitLevel] {
        match self {
            UnitLevel::Province => &[],
            UnitLevel::District => &[UnitLevel::Province],
            UnitLevel::Commune => &[UnitLevel::District, UnitLevel::Province],
            UnitLevel::Hamlet => &[UnitLevel::Commune],
        }
    }
}

/// One administrative unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unit {
    /// Stable identifier.
    pub id: UnitId,
    /// Official name, in Vietnamese (for example "Thôn Đông").
    pub name: String,
    /// Level in the tree.
    pub level: UnitLevel,
    /// The unit this one belongs to; `None` only for a province.
    #[serde(default)]
    pub parent: Option<UnitId>,
    /// First day the unit exists.
    pub valid_from: Day,
    /// First day the unit no longer exists (exclusive), if it has ended.
    #[serde(default)]
    pub valid_until: Option<Day>,
    /// Units that were merged to form this one.
    #[serde(default)]
    pub merged_from: Vec<UnitId>,
    /// The unit this one was merged into, when it ended by a merger.
    #[serde(default)]
    pub merged_into: Option<UnitId>,
}

impl Unit {
    /// Whether the unit exists on `day`.
    pub fn is_valid_on(&self, day: Day) -> bool {
        self.valid_from <= day && self.valid_until.is_none_or(|until| day < until)
    }
}

/// What is wrong with a set of units, and which unit it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Two units share an id.
    #[error("unit {0} appears twice")]
    Duplicate(UnitId),
    /// A unit has no name.
    #[error("unit {0} has no name")]
    NoName(UnitId),
    /// A unit refers to a unit that is not in the tree.
    #[error("unit {unit} refers to unknown unit {missing} as its {relation}")]
    Unknown {
        /// The unit holding the reference.
        unit: UnitId,
        /// The missing unit.
        missing: UnitId,
        /// "parent", "merged_from" or "merged_into".
        relation: &'static str,
    },
    /// A unit is placed under a unit of a level it cannot belong to.
    #[error("unit {unit} ({level:?}) cannot belong to {parent} ({parent_level:?})")]
    WrongParentLevel {
        /// The child.
        unit: UnitId,
        /// Its level.
        level: UnitLevel,
        /// The parent named.
        parent: UnitId,
        /// The parent's level.
        parent_level: Option<UnitLevel>,
    },
    /// A unit other than a province has no parent.
    #[error("unit {0} has no parent")]
    MissingParent(UnitId),
    /// The validity period ends before it starts.
    #[error("unit {unit} ends on {until} before it starts on {from}")]
    EmptyValidity {
        /// The unit.
        unit: UnitId,
        /// Its first day.
        from: Day,
        /// Its end.
        until: Day,
    },
    /// A merger is recorded on one side only, or across levels, or on a unit that has not ended.
    #[error("merger of {from} into {into} is inconsistent: {reason}")]
    Lineage {
        /// The unit merged.
        from: UnitId,
        /// The unit it was merged into.
        into: UnitId,
        /// What does not hold.
        reason: &'static str,
    },
}

/// A checked set of units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitTree {
    units: BTreeMap<UnitId, Unit>,
}

impl UnitTree {
    /// Checks the units and builds the tree.
    pub fn new(units: impl IntoIterator<Item = Unit>) -> Result<Self, UnitError> {
        let mut map = BTreeMap::new();
        for unit in units {
            if map.contains_key(&unit.id) {
                return Err(UnitError::Duplicate(unit.id));
            }
            map.insert(unit.id.clone(), unit);
        }
        let tree = UnitTree { units: map };
        for unit in tree.units.values() {
            tree.check(unit)?;
        }
        tree.check_mergers_end()?;
        Ok(tree)
    }

    /// Every chain of mergers ends: no unit is merged, through others, back into itself.
    fn check_mergers_end(&self) -> Result<(), UnitError> {
        for unit in self.units.values() {
            let mut at = unit;
            for _ in 0..self.units.len() {
                let Some(next) = at.merged_into.as_ref().and_then(|i| self.units.get(i)) else { break };
                if next.id == unit.id {
                    return Err(UnitError::Lineage {
                        from: unit.id.clone(),
                        into: unit.merged_into.clone().unwrap_or_else(|| unit.id.clone()),
                        reason: "the mergers loop back to the unit",
                    });
                }
                at = next;
            }
        }
        Ok(())
    }

    fn known(&self, unit: &Unit, other: &UnitId, relation: &'static str) -> Result<&Unit, UnitError> {
        self.units.get(other).ok_or_else(|| UnitError::Unknown {
            unit: unit.id.clone(),
            missing: other.clone(),
            relation,
        })
    }

    fn check(&self, unit: &Unit) -> Result<(), UnitError> {
        if unit.name.trim().is_empty() {
            return Err(UnitError::NoName(unit.id.clone()));
        }
        if let Some(until) = unit.valid_until
            && until <= unit.valid_from
        {
            return Err(UnitError::EmptyValidity { unit: unit.id.clone(), from: unit.valid_from, until });
        }
        match &unit.parent {
            None if unit.level != UnitLevel::Province => return Err(UnitError::MissingParent(unit.id.clone())),
            None => {}
            Some(parent_id) => {
                let parent = self.known(unit, parent_id, "parent")?;
                // Levels strictly decrease towards the root, so the parent chain has no cycle.
                if !unit.level.allowed_parents().contains(&parent.level) {
                    return Err(UnitError::WrongParentLevel {
                        unit: unit.id.clone(),
                        level: unit.level,
                        parent: parent.id.clone(),
                        parent_level: Some(parent.level),
                    });
                }
            }
        }
        if let Some(into_id) = &unit.merged_into {
            let into = self.known(unit, into_id, "merged_into")?;
            let lineage = |reason| UnitError::Lineage { from: unit.id.clone(), into: into_id.clone(), reason };
            if *into_id == unit.id {
                return Err(lineage("a unit cannot be merged into itself"));
            }
            if into.level != unit.level {
                return Err(lineage("the two units are of different levels"));
            }
            if !into.merged_from.contains(&unit.id) {
                return Err(lineage("the merged unit does not list it in merged_from"));
            }
            match unit.valid_until {
                None => return Err(lineage("the unit merged away has no end of validity")),
                Some(until) if into.valid_from > until => {
                    return Err(lineage("the merged unit starts after the old one ends"));
                }
                Some(_) => {}
            }
        }
        for from_id in &unit.merged_from {
            let from = self.known(unit, from_id, "merged_from")?;
            if from.merged_into.as_ref() != Some(&unit.id) {
                return Err(UnitError::Lineage {
                    from: from_id.clone(),
                    into: unit.id.clone(),
                    reason: "the old unit does not name it in merged_into",
                });
            }
        }
        Ok(())
    }

    /// The unit with this id.
    pub fn get(&self, id: &UnitId) -> Option<&Unit> {
        self.units.get(id)
    }

    /// Every unit, in id order.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.values()
    }

    /// The units directly under `id`.
    pub fn children<'a>(&'a self, id: &'a UnitId) -> impl Iterator<Item = &'a Unit> + 'a {
        self.units.values().filter(move |u| u.parent.as_ref() == Some(id))
    }

    /// The chain from `id`'s parent up to its province.
    pub fn ancestors(&self, id: &UnitId) -> Vec<&Unit> {
        let mut out = Vec::new();
        let mut next = self.units.get(id).and_then(|u| u.parent.as_ref());
        while let Some(parent) = next.and_then(|p| self.units.get(p)) {
            out.push(parent);
            next = parent.parent.as_ref();
        }
        out
    }

    /// The ancestor of `id` (or `id` itself) at `level`, if the tree has that level there.
    pub fn ancestor_at(&self, id: &UnitId, level: UnitLevel) -> Option<&Unit> {
        let unit = self.units.get(id)?;
        if unit.level == level {
            return Some(unit);
        }
        self.ancestors(id).into_iter().find(|u| u.level == level)
    }

    /// The unit that carries `id` on today: `id` itself, or the end of its `merged_into` chain.
    pub fn successor(&self, id: &UnitId) -> Option<&Unit> {
        let mut unit = self.units.get(id)?;
        // Each merger moves to a unit that starts no later than the old one ends; bound the walk
        // by the number of units anyway so that no input can loop.
        for _ in 0..self.units.len() {
            match unit.merged_into.as_ref().and_then(|i| self.units.get(i)) {
                Some(next) => unit = next,
                None => break,
            }
        }
        Some(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        s.parse().expect("valid day")
    }

    fn unit(id: &str, level: UnitLevel, parent: Option<&str>) -> Unit {
        Unit {
            id: UnitId::new(id).expect("valid"),
            name: format!("Unit {id}"),
            level,
            parent: parent.map(|p| UnitId::new(p).expect("valid")),
            valid_from: day("2000-01-01"),
            valid_until: None,
            merged_from: vec![],
            merged_into: None,
        }
    }

    fn id(s: &str) -> UnitId {
        UnitId::new(s).expect("valid")
    }

    #[test]
    fn works_with_and_without_a_district_level() {
        let tree = UnitTree::new([
            unit("p", UnitLevel::Province, None),
            unit("d", UnitLevel::District, Some("p")),
            unit("c1", UnitLevel::Commune, Some("d")),
            unit("c2", UnitLevel::Commune, Some("p")),
            unit("h1", UnitLevel::Hamlet, Some("c1")),
            unit("h2", UnitLevel::Hamlet, Some("c2")),
        ])
        .expect("valid tree");
        assert_eq!(tree.ancestor_at(&id("h1"), UnitLevel::District).map(|u| u.id.as_str()), Some("d"));
        assert_eq!(tree.ancestor_at(&id("h2"), UnitLevel::District), None);
        assert_eq!(tree.ancestor_at(&id("h2"), UnitLevel::Province).map(|u| u.id.as_str()), Some("p"));
        assert_eq!(tree.children(&id("p")).count(), 2);
    }

    #[test]
    fn merged_communes_keep_their_lineage() {
        let mut a = unit("a", UnitLevel::Commune, Some("p"));
        let mut b = unit("b", UnitLevel::Commune, Some("p"));
        let mut ab = unit("ab", UnitLevel::Commune, Some("p"));
        for old in [&mut a, &mut b] {
            old.valid_until = Some(day("2025-07-01"));
            old.merged_into = Some(id("ab"));
        }
        ab.valid_from = day("2025-07-01");
        ab.merged_from = vec![id("a"), id("b")];
        let tree = UnitTree::new([unit("p", UnitLevel::Province, None), a, b, ab]).expect("valid tree");
        assert_eq!(tree.successor(&id("a")).map(|u| u.id.as_str()), Some("ab"));
        let a = tree.get(&id("a")).expect("present");
        assert!(a.is_valid_on(day("2025-06-30")));
        assert!(!a.is_valid_on(day("2025-07-01")));
    }

    fn check(units: Vec<Unit>, expected: UnitError) {
        assert_eq!(UnitTree::new(units), Err(expected));
    }

    #[test]
    fn every_error_names_the_unit() {
        let p = || unit("p", UnitLevel::Province, None);
        check(vec![p(), p()], UnitError::Duplicate(id("p")));
        let mut nameless = p();
        nameless.name = " ".into();
        check(vec![nameless], UnitError::NoName(id("p")));
        check(
            vec![p(), unit("h", UnitLevel::Hamlet, Some("c"))],
            UnitError::Unknown { unit: id("h"), missing: id("c"), relation: "parent" },
        );
        check(
            vec![p(), unit("h", UnitLevel::Hamlet, Some("p"))],
            UnitError::WrongParentLevel {
                unit: id("h"),
                level: UnitLevel::Hamlet,
                parent: id("p"),
                parent_level: Some(UnitLevel::Province),
            },
        );
        check(vec![unit("c", UnitLevel::Commune, None)], UnitError::MissingParent(id("c")));
        let mut ended = p();
        ended.valid_until = Some(day("1999-01-01"));
        check(
            vec![ended],
            UnitError::EmptyValidity { unit: id("p"), from: day("2000-01-01"), until: day("1999-01-01") },
        );
        let mut old = unit("a", UnitLevel::Commune, Some("p"));
        old.merged_into = Some(id("b"));
        old.valid_until = Some(day("2025-07-01"));
        let new = unit("b", UnitLevel::Commune, Some("p"));
        check(
            vec![p(), old, new],
            UnitError::Lineage {
                from: id("a"),
                into: id("b"),
                reason: "the merged unit does not list it in merged_from",
            },
        );
        let mut own = unit("a", UnitLevel::Commune, Some("p"));
        own.merged_into = Some(id("a"));
        own.merged_from = vec![id("a")];
        own.valid_until = Some(day("2025-07-01"));
        check(
            vec![p(), own],
            UnitError::Lineage { from: id("a"), into: id("a"), reason: "a unit cannot be merged into itself" },
        );
        let (mut a, mut b) = (unit("a", UnitLevel::Commune, Some("p")), unit("b", UnitLevel::Commune, Some("p")));
        for (x, y) in [(&mut a, "b"), (&mut b, "a")] {
            x.merged_into = Some(id(y));
            x.merged_from = vec![id(y)];
            x.valid_until = Some(day("2025-07-01"));
        }
        check(
            vec![p(), a, b],
            UnitError::Lineage { from: id("a"), into: id("b"), reason: "the mergers loop back to the unit" },
        );
        let old = unit("a", UnitLevel::Commune, Some("p"));
        let mut new = unit("b", UnitLevel::Commune, Some("p"));
        new.merged_from = vec![id("a")];
        check(
            vec![p(), old, new],
            UnitError::Lineage { from: id("a"), into: id("b"), reason: "the old unit does not name it in merged_into" },
        );
    }
}

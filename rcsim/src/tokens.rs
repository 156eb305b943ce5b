//! Login tokens (`services.resume.loginTokens[]`), by hash and by user.
//! Rocket.Chat keeps them in each user's document; one table here needs the
//! per-user index, or every login scans every token of every user: 9,000
//! logins were quadratic, 46 % of rcsim's CPU during set-up, under the store
//! lock.

use std::collections::{HashMap, HashSet};

/// A login token's record.
#[derive(Clone, Debug)]
pub struct TokenRec {
    /// Whose token (fixed for the token's life: the index is keyed by it).
    pub uid: String,
    /// `when`, ms.
    pub when: i64,
    /// Past `tokenExpires` but not purged yet: resume fails, REST still works.
    pub expired: bool,
    /// `twoFactorAuthorizedUntil` and the client IP it was granted to.
    pub two_factor_until: Option<(i64, String)>,
}

/// Every login token, by its hash, with each user's hashes.
#[derive(Default)]
pub struct LoginTokens {
    by_hash: HashMap<String, TokenRec>,
    by_user: HashMap<String, HashSet<String>>,
}

impl LoginTokens {
    /// Adds a token.
    pub fn insert(&mut self, hash: String, rec: TokenRec) {
        let uid = rec.uid.clone();
        // Unindex a replaced record before indexing the new one: with the
        // same uid the other order would drop the new entry.
        if let Some(old) = self.by_hash.insert(hash.clone(), rec) {
            self.unindex(&old.uid, &hash);
        }
        self.by_user.entry(uid).or_default().insert(hash);
    }

    /// A token's record.
    pub fn get(&self, hash: &str) -> Option<&TokenRec> {
        self.by_hash.get(hash)
    }

    /// A token's record, mutably (its `uid` must not change).
    pub fn get_mut(&mut self, hash: &str) -> Option<&mut TokenRec> {
        self.by_hash.get_mut(hash)
    }

    /// Removes a token.
    pub fn remove(&mut self, hash: &str) -> Option<TokenRec> {
        let rec = self.by_hash.remove(hash)?;
        self.unindex(&rec.uid, hash);
        Some(rec)
    }

    fn unindex(&mut self, uid: &str, hash: &str) {
        if let Some(mine) = self.by_user.get_mut(uid) {
            mine.remove(hash);
            if mine.is_empty() {
                self.by_user.remove(uid);
            }
        }
    }

    /// How many tokens a user holds.
    pub fn count(&self, uid: &str) -> usize {
        self.by_user.get(uid).map_or(0, HashSet::len)
    }

    /// Keeps a user's `n` newest tokens (RC's `ensureLoginTokensLimit`).
    pub fn keep_newest(&mut self, uid: &str, n: usize) {
        let Some(mine) = self.by_user.get(uid).filter(|m| m.len() > n) else {
            return;
        };
        let mut aged: Vec<(i64, String)> = mine
            .iter()
            .filter_map(|h| Some((self.by_hash.get(h)?.when, h.clone())))
            .collect();
        aged.sort();
        let drop = aged.len().saturating_sub(n);
        for (_, h) in aged.into_iter().take(drop) {
            self.remove(&h);
        }
    }

    /// Removes all of a user's tokens; returns their hashes.
    pub fn remove_user(&mut self, uid: &str) -> Vec<String> {
        let hashes: Vec<String> = self
            .by_user
            .remove(uid)
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        for h in &hashes {
            self.by_hash.remove(h);
        }
        hashes
    }

    /// Marks a user's tokens expired; returns how many.
    pub fn expire_user(&mut self, uid: &str) -> usize {
        let Some(mine) = self.by_user.get(uid) else {
            return 0;
        };
        for h in mine {
            if let Some(t) = self.by_hash.get_mut(h) {
                t.expired = true;
            }
        }
        mine.len()
    }

    /// Removes every expired token; returns their hashes.
    pub fn purge_expired(&mut self) -> Vec<String> {
        let hashes: Vec<String> = self
            .by_hash
            .iter()
            .filter(|(_, t)| t.expired)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &hashes {
            self.remove(h);
        }
        hashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: &str, when: i64) -> TokenRec {
        TokenRec {
            uid: uid.into(),
            when,
            expired: false,
            two_factor_until: None,
        }
    }

    #[test]
    fn the_index_follows_every_change() {
        let mut t = LoginTokens::default();
        for i in 0..5 {
            t.insert(format!("a{i}"), rec("a", i));
        }
        t.insert("b0".into(), rec("b", 0));
        assert_eq!((t.count("a"), t.count("b"), t.count("c")), (5, 1, 0));
        // Re-inserting a hash replaces it, for the same user or another.
        t.insert("a4".into(), rec("a", 4));
        assert_eq!(t.count("a"), 5);
        t.insert("b0".into(), rec("c", 0));
        assert_eq!((t.count("b"), t.count("c")), (0, 1));
        t.insert("b0".into(), rec("b", 0));
        assert_eq!((t.count("b"), t.count("c")), (1, 0));
        t.keep_newest("a", 3);
        assert_eq!(t.count("a"), 3);
        assert!(t.get("a0").is_none() && t.get("a1").is_none() && t.get("a2").is_some());
        assert_eq!(t.remove("a2").map(|r| r.when), Some(2));
        assert_eq!(t.count("a"), 2);
        assert_eq!(t.expire_user("a"), 2);
        assert_eq!(t.get("b0").map(|r| r.expired), Some(false));
        let mut purged = t.purge_expired();
        purged.sort();
        assert_eq!(purged, ["a3", "a4"]);
        assert_eq!(t.count("a"), 0);
        assert_eq!(t.remove_user("b"), ["b0"]);
        assert!(t.get("b0").is_none() && t.count("b") == 0);
    }
}

//! Committed offsets as the coordinator keeps them in memory, and the retention rule that
//! decides when one expires (KIP-211).

use std::time::Duration;

use super::records::OffsetValue;

/// An offset a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (KIP-320); -1 when unknown.
    pub leader_epoch: i32,
    /// Client metadata (empty when the client sent none).
    pub metadata: String,
    /// Wall-clock time of the commit, ms since the epoch.
    pub commit_timestamp_ms: i64,
    /// An explicit expiry from OffsetCommit v2–v4's `retention_time_ms`. Such an offset keeps
    /// the old rule: it expires at this time whatever the group's state.
    pub expire_timestamp_ms: Option<i64>,
}

impl CommittedOffset {
    /// Whether it has expired at `now_ms`, counting `retention` from `base_ms` — the time the
    /// group became empty, or the commit time (see `Group::expire_offsets` for which applies).
    pub fn expired(&self, now_ms: i64, base_ms: i64, retention: Duration) -> bool {
        match self.expire_timestamp_ms {
            Some(expire) => now_ms >= expire,
            None => {
                let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                now_ms.saturating_sub(base_ms) >= retention_ms
            }
        }
    }

    /// The record value that stores it.
    pub fn to_value(&self) -> OffsetValue {
        OffsetValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp: self.commit_timestamp_ms,
            expire_timestamp: self.expire_timestamp_ms,
        }
    }
}

impl From<OffsetValue> for CommittedOffset {
    fn from(v: OffsetValue) -> Self {
        CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp_ms: v.commit_timestamp,
            expire_timestamp_ms: v.expire_timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(commit: i64, expire: Option<i64>) -> CommittedOffset {
        CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: commit,
            expire_timestamp_ms: expire,
        }
    }

    /// KIP-211: retention counts from the base time; an explicit v2–v4 expire timestamp wins.
    #[test]
    fn expiry_counts_from_the_base_or_uses_the_explicit_timestamp() {
        let week = Duration::from_secs(7 * 24 * 3600);
        let week_ms = 7 * 24 * 3600 * 1000;
        let o = at(1_000, None);
        assert!(!o.expired(1_000 + week_ms - 1, 1_000, week));
        assert!(o.expired(1_000 + week_ms, 1_000, week));
        // Base later than the commit (the group emptied later): counts from the base.
        assert!(!o.expired(1_000 + week_ms, 5_000, week));
        let explicit = at(1_000, Some(2_000));
        assert!(!explicit.expired(1_999, 1_000, week));
        assert!(explicit.expired(2_000, 0, Duration::MAX));
        assert_eq!(CommittedOffset::from(explicit.to_value()), explicit);
    }
}

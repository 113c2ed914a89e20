//! Which versions of each API this client implements, and version negotiation.
//!
//! On every new connection the client sends ApiVersions and keeps the broker's answer as an
//! [`ApiVersionTable`]. Each request then goes out at the highest version both sides support:
//! `min(client max, broker max)`, provided that is not below `max(client min, broker min)`.
//! The client ranges below are the versions whose fields the code in this crate fills in and
//! reads; a newer version is only added once the code handles what it changes (e.g. Fetch v13
//! and Produce v13 name topics by id).

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::error::{Error, Result};

/// `(api, min, max)` versions this client implements.
pub(crate) const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ElectLeaders, 1, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The client's range for `api`, if it implements it.
pub(crate) fn client_range(api: ApiKey) -> Option<(i16, i16)> {
    CLIENT_VERSIONS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|&(_, min, max)| (min, max))
}

/// What one broker advertised in ApiVersions: API key → (min, max).
#[derive(Debug, Clone, Default)]
pub struct ApiVersionTable {
    ranges: HashMap<i16, (i16, i16)>,
}

impl ApiVersionTable {
    /// The table from a broker's ApiVersions response.
    pub(crate) fn from_response(response: &ApiVersionsResponse) -> ApiVersionTable {
        ApiVersionTable {
            ranges: response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
        }
    }

    /// The broker's range for `api`, if it advertised one.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// Whether the broker serves `api` at a version this client implements.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.negotiate(api).is_some()
    }

    /// The highest version both sides implement, if any.
    pub fn negotiate(&self, api: ApiKey) -> Option<i16> {
        let (client_min, client_max) = client_range(api)?;
        let (broker_min, broker_max) = self.broker_range(api)?;
        let version = client_max.min(broker_max);
        (version >= client_min.max(broker_min)).then_some(version)
    }

    /// Like [`ApiVersionTable::negotiate`], as an error that names both ranges.
    pub(crate) fn pick(&self, api: ApiKey, addr: &str) -> Result<i16> {
        self.negotiate(api).ok_or_else(|| {
            let (client_min, client_max) = client_range(api).unwrap_or((0, -1));
            Error::UnsupportedApi {
                addr: addr.to_string(),
                api,
                client_min,
                client_max,
                broker: self
                    .broker_range(api)
                    .map_or_else(|| "none".to_string(), |(a, b)| format!("{a}..={b}")),
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    use super::*;

    /// An ApiVersions response advertising `entries` (also what the fake brokers answer).
    pub(crate) fn advertise(entries: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            entries
                .iter()
                .map(|&(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
    }

    fn table(entries: &[(ApiKey, i16, i16)]) -> ApiVersionTable {
        ApiVersionTable::from_response(&advertise(entries))
    }

    #[test]
    fn picks_the_highest_common_version() {
        let t = table(&[
            (ApiKey::Fetch, 4, 17),
            (ApiKey::Produce, 0, 7),
            (ApiKey::Metadata, 13, 13),
        ]);
        // Broker newer than the client: the client's max.
        assert_eq!(t.negotiate(ApiKey::Fetch), Some(12));
        // Broker older than the client: the broker's max.
        assert_eq!(t.negotiate(ApiKey::Produce), Some(7));
        // Disjoint ranges, or not advertised: nothing.
        assert_eq!(t.negotiate(ApiKey::Metadata), None);
        assert_eq!(t.negotiate(ApiKey::ListGroups), None);
        let err = t.pick(ApiKey::Metadata, "b:9092").expect_err("disjoint");
        assert!(err.to_string().contains("broker: 13..=13"), "{err}");
    }

    #[test]
    fn client_ranges_are_within_what_the_codec_knows() {
        for &(api, min, max) in CLIENT_VERSIONS {
            let codec = api.valid_versions();
            assert!(
                min <= max && min >= codec.min && max <= codec.max,
                "{api:?}"
            );
        }
    }
}

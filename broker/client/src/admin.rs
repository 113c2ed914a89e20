//! The admin API: topics, partitions, configs, records deletion, offsets lookup, cluster
//! description, consumer groups and their offsets, leader election and reassignment.
//!
//! Each call goes where Kafka's own admin client sends it: topic and partition changes to the
//! controller (KRaft brokers forward them), per-partition calls to each partition's leader,
//! broker configs to that broker, group calls to the group's coordinator. Each returns one
//! result per item, because Kafka answers per item: creating three topics can succeed for two
//! and fail for one.
//!
//! Leader election (ElectLeaders) and reassignment (Alter/ListPartitionReassignments) speak the
//! Kafka protocol and work against Kafka; a broker that does not implement them (Millrace before
//! its multi-broker release) makes them fail with [`Error::UnsupportedApi`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
        create_partitions_request::CreatePartitionsTopic,
        create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig},
        delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic},
        delete_topics_request::DeleteTopicState,
        describe_configs_request::DescribeConfigsResource,
        describe_configs_response::DescribeConfigsResourceResult,
        elect_leaders_request::TopicPartitions,
        incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        list_partition_reassignments_request::ListPartitionReassignmentsTopics,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
        offset_fetch_request::{
            OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
        },
        AlterPartitionReassignmentsRequest, BrokerId, ConsumerProtocolAssignment,
        CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
        DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
        ElectLeadersRequest, GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest,
        ListOffsetsRequest, ListPartitionReassignmentsRequest, OffsetCommitRequest,
        OffsetDeleteRequest, OffsetFetchRequest, TopicName,
    },
    protocol::{Decodable, StrBytes},
    ResponseError,
};

use crate::{
    client::{Client, Node, Target},
    error::{Error, KafkaCode, Result},
    metadata::{BrokerInfo, TopicMetadata, TopicPartition},
};

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(text(name))
}

pub(crate) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A topic to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count; -1 for the broker's `num.partitions`.
    pub partitions: i32,
    /// Replication factor; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica lists per partition (then partitions and factor must be -1).
    pub assignments: Vec<Vec<i32>>,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
}

/// What the broker reports about a topic it created.
#[derive(Debug, Clone, Default)]
pub struct CreatedTopic {
    /// Partition count (-1 if the broker's version does not say).
    pub partitions: i32,
    /// Replication factor (-1 if not reported).
    pub replication_factor: i16,
}

/// Which offset of a partition to look up (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
    /// The offset of the record with the largest timestamp (KIP-734).
    MaxTimestamp,
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset; -1 if no record has a timestamp at or after the one asked for.
    pub offset: i64,
    /// The record's timestamp, -1 for Earliest/Latest.
    pub timestamp: i64,
    /// Leader epoch of the record (-1 if unknown).
    pub leader_epoch: i32,
}

/// A config resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigResource {
    /// A topic by name.
    Topic(String),
    /// A broker by id, or the cluster-wide default for all brokers (`None`).
    Broker(Option<i32>),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(name) => (2, name.clone()),
            ConfigResource::Broker(Some(id)) => (4, id.to_string()),
            ConfigResource::Broker(None) => (4, String::new()),
        }
    }

    fn target(&self) -> Target<'static> {
        match self {
            ConfigResource::Broker(Some(id)) => Target::Broker(*id),
            _ => Target::Any,
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(name) => write!(f, "topic `{name}`"),
            ConfigResource::Broker(Some(id)) => write!(f, "broker {id}"),
            ConfigResource::Broker(None) => write!(f, "the default for all brokers"),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on this topic.
    DynamicTopic,
    /// Set dynamically on this broker.
    DynamicBroker,
    /// Set dynamically as the default of all brokers.
    DynamicDefaultBroker,
    /// From the broker's properties file or command line.
    StaticBroker,
    /// The built-in default.
    Default,
    /// Some other source (loggers, client metrics, groups, or unknown).
    Other(i8),
}

impl ConfigSource {
    fn from_wire(source: i8) -> ConfigSource {
        match source {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's name: `DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::Other(6) => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::Other(_) => "UNKNOWN",
        }
    }
}

/// One config entry.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    /// Name.
    pub name: String,
    /// Value (`None` for sensitive values and unset ones).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Cannot be changed dynamically.
    pub read_only: bool,
    /// Holds a secret; the broker does not return the value.
    pub sensitive: bool,
    /// The values this one overrides, highest precedence first: (name, value, source).
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// One change in an incremental config update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set the value.
    Set(String, String),
    /// Remove the override, returning to the default.
    Delete(String),
    /// Append to a list value.
    Append(String, String),
    /// Remove from a list value.
    Subtract(String, String),
}

impl AlterConfigOp {
    fn wire(&self) -> AlterableConfig {
        let (op, name, value) = match self {
            AlterConfigOp::Set(n, v) => (0, n, Some(v)),
            AlterConfigOp::Delete(n) => (1, n, None),
            AlterConfigOp::Append(n, v) => (2, n, Some(v)),
            AlterConfigOp::Subtract(n, v) => (3, n, Some(v)),
        };
        AlterableConfig::default()
            .with_name(text(name))
            .with_config_operation(op)
            .with_value(value.map(|v| text(v)))
    }
}

/// A description of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller id (-1 if unknown).
    pub controller_id: Option<i32>,
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups; empty for groups that only commit offsets.
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...) when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
}

/// A group member.
#[derive(Debug, Clone)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Static member id (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host as the coordinator saw it.
    pub client_host: String,
    /// Assigned partitions (decoded for consumer groups).
    pub assignment: Vec<TopicPartition>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
    /// The coordinator's address.
    pub coordinator: String,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset of the next record to consume.
    pub offset: i64,
    /// Leader epoch of the committed record (-1 if unknown).
    pub leader_epoch: i32,
    /// Metadata string committed with it.
    pub metadata: Option<String>,
}

/// Leader election type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership back to the preferred (first) replica.
    Preferred,
    /// Elect an out-of-sync replica when no in-sync one is left (may lose data).
    Unclean,
}

/// A reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// The full replica list during the move.
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
}

/// Per-item results, in request order.
pub type Results<K, T = ()> = Vec<(K, Result<T>)>;

/// The admin API over a [`Client`].
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin API on `client`.
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.client.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    // -----------------------------------------------------------------------------------------
    // Topics

    /// Every topic in the cluster, sorted by name.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicMetadata>> {
        let metadata = self
            .client
            .retrying("list topics", || self.client.refresh_metadata(None))
            .await?;
        Ok(metadata
            .topics
            .values()
            .filter(|t| include_internal || !t.internal)
            .cloned()
            .collect())
    }

    /// The named topics (each with its error, if the cluster reports one); every topic if
    /// `names` is empty.
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicMetadata>> {
        if names.is_empty() {
            return self.list_topics(true).await;
        }
        let metadata = self
            .client
            .retrying("describe topics", || {
                self.client.refresh_metadata(Some(names))
            })
            .await?;
        Ok(names
            .iter()
            .map(|n| {
                metadata.topics.get(n).cloned().unwrap_or(TopicMetadata {
                    name: n.clone(),
                    id: None,
                    internal: false,
                    partitions: Vec::new(),
                    error: Some(KafkaCode::of(ResponseError::UnknownTopicOrPartition)),
                })
            })
            .collect())
    }

    /// Creates topics; `validate_only` checks without creating.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Results<String, CreatedTopic>> {
        let creatable: Vec<CreatableTopic> = topics
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(topic_name(&t.name))
                    .with_num_partitions(t.partitions)
                    .with_replication_factor(t.replication_factor)
                    .with_assignments(
                        t.assignments
                            .iter()
                            .enumerate()
                            .map(|(i, replicas)| {
                                CreatableReplicaAssignment::default()
                                    .with_partition_index(i as i32)
                                    .with_broker_ids(
                                        replicas.iter().map(|&b| BrokerId(b)).collect(),
                                    )
                            })
                            .collect(),
                    )
                    .with_configs(
                        t.configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(text(k))
                                    .with_value(Some(text(v)))
                            })
                            .collect(),
                    )
            })
            .collect();
        let timeout_ms = self.timeout_ms();
        let response = self
            .client
            .retrying("create topics", || async {
                let node = self.client.node(Target::Controller).await?;
                let response = self
                    .client
                    .send(&node, |_| {
                        CreateTopicsRequest::default()
                            .with_topics(creatable.clone())
                            .with_timeout_ms(timeout_ms)
                            .with_validate_only(validate_only)
                    })
                    .await?;
                retry_if_not_controller(response.topics.iter().map(|t| t.error_code))?;
                Ok(response)
            })
            .await?;
        let mut results = Vec::new();
        for topic in topics {
            let answer = response
                .topics
                .iter()
                .find(|r| r.name.0.as_str() == topic.name);
            let result = match answer {
                None => Err(missing("CreateTopics", &topic.name)),
                Some(r) => Error::check_msg(r.error_code, r.error_message.as_deref(), || {
                    format!("create topic `{}`", topic.name)
                })
                .map(|()| CreatedTopic {
                    partitions: r.num_partitions,
                    replication_factor: r.replication_factor,
                }),
            };
            results.push((topic.name.clone(), result));
        }
        // The next describe must not serve the cache from before the change.
        let _ = self.client.refresh_metadata(Some(&[])).await;
        Ok(results)
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Results<String>> {
        let timeout_ms = self.timeout_ms();
        let response = self
            .client
            .retrying("delete topics", || async {
                let node = self.client.node(Target::Controller).await?;
                let response = self
                    .client
                    .send(&node, |version| {
                        let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
                        if version >= 6 {
                            request.with_topics(
                                names
                                    .iter()
                                    .map(|n| {
                                        DeleteTopicState::default().with_name(Some(topic_name(n)))
                                    })
                                    .collect(),
                            )
                        } else {
                            request.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
                        }
                    })
                    .await?;
                retry_if_not_controller(response.responses.iter().map(|t| t.error_code))?;
                Ok(response)
            })
            .await?;
        let results = names
            .iter()
            .map(|name| {
                let answer = response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name));
                let result = match answer {
                    None => Err(missing("DeleteTopics", name)),
                    Some(r) => Error::check_msg(r.error_code, r.error_message.as_deref(), || {
                        format!("delete topic `{name}`")
                    }),
                };
                (name.clone(), result)
            })
            .collect();
        let _ = self.client.refresh_metadata(None).await;
        Ok(results)
    }

    /// Raises topics' partition counts to the given totals.
    pub async fn create_partitions(
        &self,
        totals: &[(String, i32)],
        validate_only: bool,
    ) -> Result<Results<String>> {
        let timeout_ms = self.timeout_ms();
        let response = self
            .client
            .retrying("create partitions", || async {
                let node = self.client.node(Target::Controller).await?;
                let response = self
                    .client
                    .send(&node, |_| {
                        CreatePartitionsRequest::default()
                            .with_topics(
                                totals
                                    .iter()
                                    .map(|(n, count)| {
                                        CreatePartitionsTopic::default()
                                            .with_name(topic_name(n))
                                            .with_count(*count)
                                    })
                                    .collect(),
                            )
                            .with_timeout_ms(timeout_ms)
                            .with_validate_only(validate_only)
                    })
                    .await?;
                retry_if_not_controller(response.results.iter().map(|t| t.error_code))?;
                Ok(response)
            })
            .await?;
        let results = totals
            .iter()
            .map(|(name, count)| {
                let answer = response.results.iter().find(|r| r.name.0.as_str() == name);
                let result = match answer {
                    None => Err(missing("CreatePartitions", name)),
                    Some(r) => Error::check_msg(r.error_code, r.error_message.as_deref(), || {
                        format!("increase the partitions of `{name}` to {count}")
                    }),
                };
                (name.clone(), result)
            })
            .collect();
        let names: Vec<String> = totals.iter().map(|(n, _)| n.clone()).collect();
        let _ = self.client.refresh_metadata(Some(&names)).await;
        Ok(results)
    }

    // -----------------------------------------------------------------------------------------
    // Configs

    /// Describes configs; `keys` limits the entries returned (empty: all).
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
        keys: &[String],
    ) -> Result<Results<ConfigResource, Vec<ConfigEntry>>> {
        let mut results = Vec::new();
        for resource in resources {
            let (resource_type, resource_name) = resource.wire();
            let result = self
                .client
                .retrying("describe configs", || async {
                    let node = self.client.node(resource.target()).await?;
                    self.client
                        .send(&node, |_| {
                            DescribeConfigsRequest::default()
                                .with_resources(vec![DescribeConfigsResource::default()
                                    .with_resource_type(resource_type)
                                    .with_resource_name(text(&resource_name))
                                    .with_configuration_keys(
                                        (!keys.is_empty())
                                            .then(|| keys.iter().map(|k| text(k)).collect()),
                                    )])
                                .with_include_synonyms(true)
                        })
                        .await
                })
                .await
                .and_then(|response| {
                    let r = response
                        .results
                        .into_iter()
                        .next()
                        .ok_or_else(|| missing("DescribeConfigs", &resource.to_string()))?;
                    Error::check_msg(r.error_code, r.error_message.as_deref(), || {
                        format!("describe the configs of {resource}")
                    })?;
                    Ok(config_entries(r.configs))
                });
            results.push((resource.clone(), result));
        }
        Ok(results)
    }

    /// Describes the configs of many topics in one DescribeConfigs request (topic configs can be
    /// read from any broker), so a caller watching thousands of topics pays one round trip, not
    /// thousands. Each topic gets its own result: one unknown topic does not fail the rest.
    pub async fn describe_topic_configs(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, Result<Vec<ConfigEntry>>>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let response = self
            .client
            .retrying("describe topic configs", || async {
                let node = self.client.node(Target::Any).await?;
                self.client
                    .send(&node, |_| {
                        DescribeConfigsRequest::default().with_resources(
                            names
                                .iter()
                                .map(|n| {
                                    // No key list means every key (an empty list
                                    // would mean none).
                                    DescribeConfigsResource::default()
                                        .with_resource_type(2)
                                        .with_resource_name(text(n))
                                        .with_configuration_keys(None)
                                })
                                .collect(),
                        )
                    })
                    .await
            })
            .await?;
        let mut by_name: BTreeMap<String, Result<Vec<ConfigEntry>>> = response
            .results
            .into_iter()
            .map(|r| {
                let name = r.resource_name.to_string();
                let result = Error::check_msg(r.error_code, r.error_message.as_deref(), || {
                    format!("describe the configs of topic `{name}`")
                })
                .map(|()| config_entries(r.configs));
                (name, result)
            })
            .collect();
        for n in names {
            by_name
                .entry(n.clone())
                .or_insert_with(|| Err(missing("DescribeConfigs", n)));
        }
        Ok(by_name)
    }

    /// Applies incremental config changes (IncrementalAlterConfigs) to one resource.
    pub async fn alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<()> {
        let (resource_type, resource_name) = resource.wire();
        let response = self
            .client
            .retrying("alter configs", || async {
                let node = self.client.node(resource.target()).await?;
                self.client
                    .send(&node, |_| {
                        IncrementalAlterConfigsRequest::default()
                            .with_resources(vec![AlterConfigsResource::default()
                                .with_resource_type(resource_type)
                                .with_resource_name(text(&resource_name))
                                .with_configs(ops.iter().map(AlterConfigOp::wire).collect())])
                            .with_validate_only(validate_only)
                    })
                    .await
            })
            .await?;
        let r = response
            .responses
            .first()
            .ok_or_else(|| missing("IncrementalAlterConfigs", &resource.to_string()))?;
        Error::check_msg(r.error_code, r.error_message.as_deref(), || {
            format!("alter the configs of {resource}")
        })
    }

    // -----------------------------------------------------------------------------------------
    // Records and offsets

    /// Looks offsets up (ListOffsets) at each partition's leader.
    pub async fn list_offsets(
        &self,
        specs: &[(TopicPartition, OffsetSpec)],
    ) -> Results<TopicPartition, ListedOffset> {
        let wanted: BTreeMap<TopicPartition, OffsetSpec> = specs.iter().cloned().collect();
        let client = &self.client;
        let mut results = client
            .route_partitions(
                "list offsets",
                wanted.keys().cloned().collect(),
                |node, tps| list_offsets_at(client, node, tps, &wanted),
            )
            .await;
        order_like(&mut results, specs.iter().map(|(tp, _)| tp));
        results
    }

    /// Deletes records before the given offsets (-1: the high watermark); returns the new log
    /// start offsets.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Results<TopicPartition, i64> {
        let offsets: BTreeMap<TopicPartition, i64> = before.iter().cloned().collect();
        let timeout_ms = self.timeout_ms();
        let client = &self.client;
        let mut results = client
            .route_partitions(
                "delete records",
                offsets.keys().cloned().collect(),
                |node, tps| {
                    let offsets = &offsets;
                    async move {
                        let request = DeleteRecordsRequest::default()
                            .with_topics(
                                group_by_topic(&tps)
                                    .into_iter()
                                    .map(|(topic, partitions)| {
                                        DeleteRecordsTopic::default()
                                            .with_name(topic_name(&topic))
                                            .with_partitions(
                                                partitions
                                                    .into_iter()
                                                    .map(|p| {
                                                        let tp =
                                                            TopicPartition::new(topic.clone(), p);
                                                        DeleteRecordsPartition::default()
                                                            .with_partition_index(p)
                                                            .with_offset(
                                                                offsets
                                                                    .get(&tp)
                                                                    .copied()
                                                                    .unwrap_or(-1),
                                                            )
                                                    })
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )
                            .with_timeout_ms(timeout_ms);
                        let response = client.send(&node, |_| request).await?;
                        let mut out = Vec::new();
                        for topic in response.topics {
                            for p in topic.partitions {
                                let tp = TopicPartition::new(
                                    topic.name.0.to_string(),
                                    p.partition_index,
                                );
                                let result = Error::check(p.error_code, || {
                                    format!("delete records of {tp}")
                                })
                                .map(|()| p.low_watermark);
                                out.push((tp, result));
                            }
                        }
                        Ok(answered(out, &tps, "DeleteRecords"))
                    }
                },
            )
            .await;
        order_like(&mut results, before.iter().map(|(tp, _)| tp));
        results
    }

    // -----------------------------------------------------------------------------------------
    // Cluster

    /// Cluster id, controller and brokers (DescribeCluster, or Metadata on older brokers).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let node = self.client.node(Target::Any).await?;
        if node
            .versions()
            .supports(kafka_protocol::messages::ApiKey::DescribeCluster)
        {
            let response = self
                .client
                .retrying("describe cluster", || async {
                    let node = self.client.node(Target::Any).await?;
                    self.client
                        .send(&node, |_| DescribeClusterRequest::default())
                        .await
                })
                .await?;
            Error::check_msg(
                response.error_code,
                response.error_message.as_deref(),
                || "describe the cluster".into(),
            )?;
            return Ok(ClusterDescription {
                cluster_id: Some(response.cluster_id.to_string()),
                controller_id: Some(response.controller_id.0).filter(|&c| c >= 0),
                brokers: response
                    .brokers
                    .iter()
                    .map(|b| BrokerInfo {
                        id: b.broker_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    })
                    .collect(),
            });
        }
        let metadata = self.client.refresh_metadata(Some(&[])).await?;
        Ok(ClusterDescription {
            cluster_id: metadata.cluster_id.clone(),
            controller_id: metadata.controller_id,
            brokers: metadata.brokers.values().cloned().collect(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Groups

    /// Every group, from every broker (each lists the groups it coordinates).
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>> {
        let mut groups = BTreeMap::new();
        for (id, _) in self.client.all_brokers().await? {
            let response = self
                .client
                .retrying("list groups", || async {
                    let node = self.client.node(Target::Broker(id)).await?;
                    self.client
                        .send(&node, |_| ListGroupsRequest::default())
                        .await
                })
                .await?;
            Error::check(response.error_code, || {
                format!("list the groups on broker {id}")
            })?;
            for g in response.groups {
                let group = ListedGroup {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: Some(g.group_state.to_string()).filter(|s| !s.is_empty()),
                };
                groups.insert(group.group_id.clone(), group);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes groups at their coordinators.
    pub async fn describe_groups(
        &self,
        ids: &[String],
    ) -> Result<Results<String, GroupDescription>> {
        let mut results = Vec::new();
        for id in ids {
            let result = self
                .on_coordinator(id, "describe group", |node| async move {
                    let response = self
                        .client
                        .send(&node, |_| {
                            DescribeGroupsRequest::default().with_groups(vec![GroupId(text(id))])
                        })
                        .await?;
                    let g = response
                        .groups
                        .into_iter()
                        .next()
                        .ok_or_else(|| missing("DescribeGroups", id))?;
                    Error::check_msg(g.error_code, g.error_message.as_deref(), || {
                        format!("describe group `{id}`")
                    })?;
                    let consumer = g.protocol_type.as_str() == "consumer";
                    Ok(GroupDescription {
                        group_id: g.group_id.0.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        protocol: g.protocol_data.to_string(),
                        members: g
                            .members
                            .into_iter()
                            .map(|m| GroupMember {
                                member_id: m.member_id.to_string(),
                                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                                client_id: m.client_id.to_string(),
                                client_host: m.client_host.to_string(),
                                assignment: if consumer {
                                    decode_assignment(m.member_assignment)
                                } else {
                                    Vec::new()
                                },
                            })
                            .collect(),
                        coordinator: node.addr().to_string(),
                    })
                })
                .await;
            results.push((id.clone(), result));
        }
        Ok(results)
    }

    /// Deletes groups (each must be empty).
    pub async fn delete_groups(&self, ids: &[String]) -> Result<Results<String>> {
        let mut results = Vec::new();
        for id in ids {
            let result = self
                .on_coordinator(id, "delete group", |node| async move {
                    let response = self
                        .client
                        .send(&node, |_| {
                            DeleteGroupsRequest::default()
                                .with_groups_names(vec![GroupId(text(id))])
                        })
                        .await?;
                    let r = response
                        .results
                        .first()
                        .ok_or_else(|| missing("DeleteGroups", id))?;
                    Error::check(r.error_code, || format!("delete group `{id}`"))
                })
                .await;
            results.push((id.clone(), result));
        }
        Ok(results)
    }

    /// A group's committed offsets: for `partitions`, or for every partition it has committed
    /// (`None`). Partitions without a commit are left out.
    pub async fn list_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
        self.on_coordinator(group, "fetch committed offsets", |node| async move {
            let response = self
                .client
                .send(&node, |version| {
                    offset_fetch_request(version, group, partitions)
                })
                .await?;
            let context = || format!("fetch the committed offsets of group `{group}`");
            let mut out = BTreeMap::new();
            let mut add = |topic: &TopicName,
                           partition: i32,
                           offset: i64,
                           epoch: i32,
                           metadata: Option<StrBytes>,
                           code: i16| {
                let tp = TopicPartition::new(topic.0.to_string(), partition);
                Error::check(code, || {
                    format!("fetch the committed offset of {tp} in group `{group}`")
                })?;
                if offset >= 0 {
                    out.insert(
                        tp,
                        CommittedOffset {
                            offset,
                            leader_epoch: epoch,
                            metadata: metadata.map(|m| m.to_string()).filter(|m| !m.is_empty()),
                        },
                    );
                }
                Ok::<(), Error>(())
            };
            if let Some(g) = response.groups.into_iter().next() {
                Error::check(g.error_code, context)?;
                for t in g.topics {
                    for p in t.partitions {
                        add(
                            &t.name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata,
                            p.error_code,
                        )?;
                    }
                }
            } else {
                Error::check(response.error_code, context)?;
                for t in response.topics {
                    for p in t.partitions {
                        add(
                            &t.name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata,
                            p.error_code,
                        )?;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Commits offsets for a group without being a member of it, as Kafka's admin client does
    /// (generation -1): the group must have no active members.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Results<TopicPartition>> {
        self.commit_offsets(group, offsets, -1, "").await
    }

    /// Commits offsets for `group` as member `member_id` of `generation` (-1 and "" for a
    /// consumer that uses `assign`, or for an admin).
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
        generation: i32,
        member_id: &str,
    ) -> Result<Results<TopicPartition>> {
        let topics: Vec<OffsetCommitRequestTopic> = group_map_by_topic(offsets)
            .into_iter()
            .map(|(topic, partitions)| {
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(p, offset)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = self
            .on_coordinator(group, "commit offsets", |node| {
                let topics = topics.clone();
                async move {
                    let response = self
                        .client
                        .send(&node, |_| {
                            OffsetCommitRequest::default()
                                .with_group_id(GroupId(text(group)))
                                .with_generation_id_or_member_epoch(generation)
                                .with_member_id(text(member_id))
                                .with_retention_time_ms(-1)
                                .with_topics(topics)
                        })
                        .await?;
                    // A coordinator that moved fails every partition alike: retry the call.
                    let first = response.topics.first().and_then(|t| t.partitions.first());
                    if let Some(p) = first {
                        Error::check(p.error_code, || {
                            format!("commit offsets of group `{group}`")
                        })
                        .or_else(|e| {
                            if e.invalidates_metadata() {
                                Err(e)
                            } else {
                                Ok(())
                            }
                        })?;
                    }
                    Ok(response)
                }
            })
            .await?;
        let mut results = partition_results(
            response.topics.into_iter().flat_map(|t| {
                let topic = t.name.0;
                t.partitions
                    .into_iter()
                    .map(move |p| (topic.to_string(), p.partition_index, p.error_code, None))
            }),
            |tp| format!("commit the offset of {tp} for group `{group}`"),
        );
        order_like(&mut results, offsets.keys());
        Ok(results)
    }

    /// Deletes a group's committed offsets for some partitions (the group must not be
    /// consuming them).
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Results<TopicPartition>> {
        let response = self
            .on_coordinator(group, "delete committed offsets", |node| async move {
                let response = self
                    .client
                    .send(&node, |_| {
                        OffsetDeleteRequest::default()
                            .with_group_id(GroupId(text(group)))
                            .with_topics(
                                group_by_topic(partitions)
                                    .into_iter()
                                    .map(|(topic, ps)| {
                                        OffsetDeleteRequestTopic::default()
                                            .with_name(topic_name(&topic))
                                            .with_partitions(
                                                ps.into_iter()
                                                    .map(|p| {
                                                        OffsetDeleteRequestPartition::default()
                                                            .with_partition_index(p)
                                                    })
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .await?;
                Error::check(response.error_code, || {
                    format!("delete committed offsets of group `{group}`")
                })?;
                Ok(response)
            })
            .await?;
        let mut results = partition_results(
            response.topics.into_iter().flat_map(|t| {
                let topic = t.name.0;
                t.partitions
                    .into_iter()
                    .map(move |p| (topic.to_string(), p.partition_index, p.error_code, None))
            }),
            |tp| format!("delete the committed offset of {tp} in group `{group}`"),
        );
        order_like(&mut results, partitions.iter());
        Ok(results)
    }

    /// Runs `op` against the group's coordinator, finding it again if it moved.
    async fn on_coordinator<'a, T, F, Fut>(&'a self, group: &'a str, what: &str, op: F) -> Result<T>
    where
        F: Fn(Node) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        self.client
            .retrying(what, || async {
                let node = self.client.group_coordinator(group).await?;
                let result = op(node).await;
                if let Err(e) = &result {
                    if e.invalidates_metadata()
                        || matches!(e, Error::Io { .. } | Error::Connect { .. })
                    {
                        self.client.forget_coordinator(group);
                    }
                }
                result
            })
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Leader election and reassignment

    /// Elects leaders for partitions (`None`: every partition that needs it).
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Results<TopicPartition>> {
        let timeout_ms = self.timeout_ms();
        let response = self
            .client
            .retrying("elect leaders", || async {
                let node = self.client.node(Target::Controller).await?;
                self.client
                    .send(&node, |_| {
                        ElectLeadersRequest::default()
                            .with_election_type(match election {
                                ElectionType::Preferred => 0,
                                ElectionType::Unclean => 1,
                            })
                            .with_topic_partitions(partitions.map(|tps| {
                                group_by_topic(tps)
                                    .into_iter()
                                    .map(|(t, ps)| {
                                        TopicPartitions::default()
                                            .with_topic(topic_name(&t))
                                            .with_partitions(ps)
                                    })
                                    .collect()
                            }))
                            .with_timeout_ms(timeout_ms)
                    })
                    .await
            })
            .await?;
        Error::check(response.error_code, || "elect leaders".into())?;
        Ok(partition_results(
            response.replica_election_results.into_iter().flat_map(|t| {
                let topic = t.topic.0;
                t.partition_result.into_iter().map(move |p| {
                    (
                        topic.to_string(),
                        p.partition_id,
                        p.error_code,
                        p.error_message,
                    )
                })
            }),
            |tp| format!("elect a leader for {tp}"),
        ))
    }

    /// Starts (`Some(replicas)`) or cancels (`None`) partition reassignments.
    pub async fn alter_partition_reassignments(
        &self,
        changes: &[(TopicPartition, Option<Vec<i32>>)],
    ) -> Result<Results<TopicPartition>> {
        let timeout_ms = self.timeout_ms();
        let mut by_topic: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
        for (tp, replicas) in changes {
            by_topic.entry(tp.topic.clone()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(tp.partition)
                    .with_replicas(
                        replicas
                            .as_ref()
                            .map(|r| r.iter().map(|&b| BrokerId(b)).collect()),
                    ),
            );
        }
        let topics: Vec<ReassignableTopic> = by_topic
            .into_iter()
            .map(|(t, ps)| {
                ReassignableTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(ps)
            })
            .collect();
        let response = self
            .client
            .retrying("alter partition reassignments", || async {
                let node = self.client.node(Target::Controller).await?;
                self.client
                    .send(&node, |_| {
                        AlterPartitionReassignmentsRequest::default()
                            .with_timeout_ms(timeout_ms)
                            .with_topics(topics.clone())
                    })
                    .await
            })
            .await?;
        Error::check_msg(
            response.error_code,
            response.error_message.as_deref(),
            || "alter partition reassignments".into(),
        )?;
        Ok(partition_results(
            response.responses.into_iter().flat_map(|t| {
                let topic = t.name.0;
                t.partitions.into_iter().map(move |p| {
                    (
                        topic.to_string(),
                        p.partition_index,
                        p.error_code,
                        p.error_message,
                    )
                })
            }),
            |tp| format!("reassign {tp}"),
        ))
    }

    /// Reassignments in progress (`None`: all of them).
    pub async fn list_partition_reassignments(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, Reassignment>> {
        let timeout_ms = self.timeout_ms();
        let response = self
            .client
            .retrying("list partition reassignments", || async {
                let node = self.client.node(Target::Controller).await?;
                self.client
                    .send(&node, |_| {
                        ListPartitionReassignmentsRequest::default()
                            .with_timeout_ms(timeout_ms)
                            .with_topics(partitions.map(|tps| {
                                group_by_topic(tps)
                                    .into_iter()
                                    .map(|(t, ps)| {
                                        ListPartitionReassignmentsTopics::default()
                                            .with_name(topic_name(&t))
                                            .with_partition_indexes(ps)
                                    })
                                    .collect()
                            }))
                    })
                    .await
            })
            .await?;
        Error::check_msg(
            response.error_code,
            response.error_message.as_deref(),
            || "list partition reassignments".into(),
        )?;
        let ids = |v: Vec<BrokerId>| v.into_iter().map(|b| b.0).collect();
        Ok(response
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| {
                    (
                        TopicPartition::new(topic.clone(), p.partition_index),
                        Reassignment {
                            replicas: ids(p.replicas),
                            adding: ids(p.adding_replicas),
                            removing: ids(p.removing_replicas),
                        },
                    )
                })
            })
            .collect())
    }
}

/// ListOffsets for `tps` at one leader.
pub(crate) async fn list_offsets_at(
    client: &Client,
    node: Node,
    tps: Vec<TopicPartition>,
    specs: &BTreeMap<TopicPartition, OffsetSpec>,
) -> Result<Vec<(TopicPartition, Result<ListedOffset>)>> {
    let timeout_ms = i32::try_from(client.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let response = client
        .send(&node, |version| {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(
                    group_by_topic(&tps)
                        .into_iter()
                        .map(|(topic, partitions)| {
                            ListOffsetsTopic::default()
                                .with_name(topic_name(&topic))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|p| {
                                            let spec = specs
                                                .get(&TopicPartition::new(topic.clone(), p))
                                                .copied()
                                                .unwrap_or(OffsetSpec::Latest);
                                            ListOffsetsPartition::default()
                                                .with_partition_index(p)
                                                .with_current_leader_epoch(-1)
                                                .with_timestamp(spec.wire())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            if version >= 10 {
                request.with_timeout_ms(timeout_ms)
            } else {
                request
            }
        })
        .await?;
    let mut out = Vec::new();
    for topic in response.topics {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            let result = Error::check(p.error_code, || format!("list offsets of {tp}")).map(|()| {
                ListedOffset {
                    offset: p.offset,
                    timestamp: p.timestamp,
                    leader_epoch: p.leader_epoch,
                }
            });
            out.push((tp, result));
        }
    }
    Ok(answered(out, &tps, "ListOffsets"))
}

fn offset_fetch_request(
    version: i16,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> OffsetFetchRequest {
    let by_topic = partitions.map(group_by_topic);
    if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(by_topic.map(|m| {
                m.into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name(&t))
                            .with_partition_indexes(ps)
                    })
                    .collect()
            }))])
    } else {
        // Before v2 a null topic list was not allowed; v1 callers must name partitions.
        OffsetFetchRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(by_topic.map(|m| {
                m.into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(&t))
                            .with_partition_indexes(ps)
                    })
                    .collect()
            }))
    }
}

/// Decodes a consumer group member's assignment (Kafka's ConsumerProtocol: a version, then
/// the assignment at that version). Undecodable bytes give an empty assignment.
fn decode_assignment(bytes: Bytes) -> Vec<TopicPartition> {
    let mut buf = bytes;
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let mut body = buf.split_off(2);
    match ConsumerProtocolAssignment::decode(&mut body, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "undecodable consumer group assignment");
            Vec::new()
        }
    }
}

/// One result per partition answer: (topic, partition, error code, error message).
fn partition_results(
    answers: impl IntoIterator<Item = (String, i32, i16, Option<StrBytes>)>,
    what: impl Fn(&TopicPartition) -> String,
) -> Results<TopicPartition> {
    answers
        .into_iter()
        .map(|(topic, partition, code, message)| {
            let tp = TopicPartition::new(topic, partition);
            let result = Error::check_msg(code, message.as_deref(), || what(&tp));
            (tp, result)
        })
        .collect()
}

/// A retriable error if any per-topic code is NOT_CONTROLLER (the controller moved).
fn retry_if_not_controller(codes: impl Iterator<Item = i16>) -> Result<()> {
    for code in codes {
        if code == ResponseError::NotController.code() {
            return Err(Error::kafka(
                ResponseError::NotController,
                "send to the controller",
            ));
        }
    }
    Ok(())
}

fn config_entries(configs: Vec<DescribeConfigsResourceResult>) -> Vec<ConfigEntry> {
    configs
        .into_iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: ConfigSource::from_wire(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
            synonyms: c
                .synonyms
                .into_iter()
                .map(|s| {
                    (
                        s.name.to_string(),
                        s.value.map(|v| v.to_string()),
                        ConfigSource::from_wire(s.source),
                    )
                })
                .collect(),
        })
        .collect()
}

fn missing(api: &str, item: &str) -> Error {
    Error::Protocol {
        addr: String::new(),
        detail: format!("the {api} response has no entry for {item}"),
    }
}

/// Partitions grouped by topic, partitions sorted.
pub(crate) fn group_by_topic(tps: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for tp in tps {
        out.entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition);
    }
    out.into_iter()
        .map(|(t, ps)| (t, ps.into_iter().collect()))
        .collect()
}

fn group_map_by_topic(
    offsets: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<String, Vec<(i32, i64)>> {
    let mut out: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for (tp, offset) in offsets {
        out.entry(tp.topic.clone())
            .or_default()
            .push((tp.partition, *offset));
    }
    out
}

/// Adds an error for each partition asked about that the response left out.
pub(crate) fn answered<T>(
    mut out: Vec<(TopicPartition, Result<T>)>,
    asked: &[TopicPartition],
    api: &str,
) -> Vec<(TopicPartition, Result<T>)> {
    for tp in asked {
        if !out.iter().any(|(t, _)| t == tp) {
            out.push((tp.clone(), Err(missing(api, &tp.to_string()))));
        }
    }
    out
}

/// Sorts results into the order of `keys` (stable; unknown keys last).
fn order_like<'a, T>(
    results: &mut [(TopicPartition, T)],
    keys: impl Iterator<Item = &'a TopicPartition>,
) {
    let rank: BTreeMap<&TopicPartition, usize> = keys.enumerate().map(|(i, k)| (k, i)).collect();
    results.sort_by_key(|(tp, _)| rank.get(tp).copied().unwrap_or(usize::MAX));
}

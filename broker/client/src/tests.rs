//! Routing and retry tests against a scripted cluster.
//!
//! `Fake` stands behind the [`Connector`]/[`Channel`] seam: it decodes each request with the
//! same codec a broker uses and answers from a small model of a two-broker cluster (leaders,
//! per-partition logs with idempotent-producer sequence checks). Tests inject errors — "the next
//! Produce to broker 1 answers NOT_LEADER_OR_FOLLOWER and leadership moves to broker 2" — and
//! assert on what the client did. Time is paused, so backoffs cost nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
        },
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ApiKey, BrokerId, DeleteRecordsResponse, FindCoordinatorResponse, InitProducerIdResponse,
        ListOffsetsResponse, MetadataResponse, OffsetFetchResponse, ProduceResponse, ProducerId,
        RequestKind, TopicName,
    },
    protocol::{Encodable, StrBytes},
    ResponseError,
};
use tokio::sync::oneshot;

use crate::{
    client::Client,
    config::ClientConfig,
    connection::{BoxFuture, Channel, Connector, Outbound, Reply},
    error::{Error, KafkaCode},
    producer::{Acks, Producer, ProducerConfig, ProducerRecord},
    versions::{tests::advertise, CLIENT_VERSIONS},
    Admin, OffsetSpec, TopicPartition,
};

/// An error to answer instead of handling a request.
#[derive(Debug, Clone)]
struct Injected {
    api: ApiKey,
    broker: i32,
    code: ResponseError,
    /// Handle the request first (the write happens), then answer with the error: a lost answer.
    after_handling: bool,
    /// Leadership changes this causes: partition → new leader.
    moves: Vec<((String, i32), i32)>,
}

/// A written batch: (producer id, base sequence, record count, base offset).
type Written = (i64, i32, i32, i64);

#[derive(Debug, Default)]
struct Model {
    leaders: BTreeMap<(String, i32), i32>,
    injected: Vec<Injected>,
    unreachable: BTreeSet<i32>,
    /// Every request seen: (broker, api, version).
    seen: Vec<(i32, ApiKey, i16)>,
    /// Batches written per partition.
    logs: BTreeMap<(String, i32), Vec<Written>>,
    advertised: Vec<(ApiKey, i16, i16)>,
    coordinator_answers: Vec<i32>,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<Mutex<Model>>);

impl Fake {
    fn new(partitions: &[(&str, i32, i32)]) -> Fake {
        let model = Model {
            leaders: partitions
                .iter()
                .map(|&(t, p, l)| ((t.to_string(), p), l))
                .collect(),
            advertised: CLIENT_VERSIONS.to_vec(),
            ..Model::default()
        };
        Fake(Arc::new(Mutex::new(model)))
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.0.lock().expect("model lock")
    }

    fn inject(&self, api: ApiKey, broker: i32, code: ResponseError) {
        self.inject_full(api, broker, code, false, vec![]);
    }

    fn inject_full(
        &self,
        api: ApiKey,
        broker: i32,
        code: ResponseError,
        after_handling: bool,
        moves: Vec<((String, i32), i32)>,
    ) {
        self.model().injected.push(Injected {
            api,
            broker,
            code,
            after_handling,
            moves,
        });
    }

    fn count(&self, api: ApiKey) -> usize {
        self.model()
            .seen
            .iter()
            .filter(|(_, a, _)| *a == api)
            .count()
    }

    fn client(&self) -> Client {
        let mut config = ClientConfig::new("b1:9092");
        config.api_timeout = Duration::from_secs(10);
        Client::with_connector(config, Arc::new(self.clone()))
    }

    fn handle(&self, broker: i32, request: Outbound) -> Result<Bytes, Error> {
        let mut body = request.body.clone();
        let decoded = RequestKind::decode(request.api, &mut body, request.version)
            .expect("fake decodes the request");
        let mut m = self.model();
        m.seen.push((broker, request.api, request.version));
        let injected = m
            .injected
            .iter()
            .position(|i| i.api == request.api && i.broker == broker);
        let injected = injected.map(|at| m.injected.remove(at));
        if let Some(i) = &injected {
            for (tp, leader) in &i.moves {
                m.leaders.insert(tp.clone(), *leader);
            }
        }
        let error = injected.as_ref().map(|i| i.code.code());
        let error_only = injected.as_ref().is_some_and(|i| !i.after_handling);
        let v = request.version;
        let encoded = match decoded {
            RequestKind::ApiVersions(_) => encode(&advertise(&m.advertised), v),
            RequestKind::Metadata(_) => {
                let mut topics: BTreeMap<String, Vec<MetadataResponsePartition>> = BTreeMap::new();
                for ((t, p), leader) in &m.leaders {
                    topics.entry(t.clone()).or_default().push(
                        MetadataResponsePartition::default()
                            .with_partition_index(*p)
                            .with_leader_id(BrokerId(*leader))
                            .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                            .with_isr_nodes(vec![BrokerId(1), BrokerId(2)]),
                    );
                }
                encode(
                    &MetadataResponse::default()
                        .with_brokers(
                            [1, 2]
                                .iter()
                                .map(|&id| {
                                    MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(id))
                                        .with_host(StrBytes::from_string(format!("b{id}")))
                                        .with_port(9092)
                                })
                                .collect(),
                        )
                        .with_controller_id(BrokerId(1))
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    MetadataResponseTopic::default()
                                        .with_name(Some(TopicName(StrBytes::from_string(t))))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        ),
                    v,
                )
            }
            RequestKind::InitProducerId(_) => encode(
                &InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(42))
                    .with_producer_epoch(0),
                v,
            ),
            RequestKind::Produce(req) => {
                let mut responses = Vec::new();
                for topic in req.topic_data {
                    let name = topic.name.0.to_string();
                    let mut partitions = Vec::new();
                    for p in topic.partition_data {
                        let key = (name.clone(), p.index);
                        let mut answer = PartitionProduceResponse::default().with_index(p.index);
                        if error_only {
                            answer = answer.with_error_code(error.unwrap_or(0));
                        } else if m.leaders.get(&key) != Some(&broker) {
                            answer =
                                answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                        } else {
                            let batch = p.records.unwrap_or_default();
                            let pid = (&batch[43..51]).get_i64();
                            let seq = (&batch[53..57]).get_i32();
                            let count = (&batch[57..61]).get_i32();
                            let log = m.logs.entry(key).or_default();
                            let next_offset =
                                log.last().map_or(0, |&(_, _, c, o)| o + i64::from(c));
                            let next_seq = log
                                .iter()
                                .rev()
                                .find(|b| b.0 == pid)
                                .map_or(0, |&(_, s, c, _)| s + c);
                            if let Some(&(_, _, _, offset)) =
                                log.iter().find(|b| pid >= 0 && b.0 == pid && b.1 == seq)
                            {
                                answer = answer.with_base_offset(offset);
                            } else if pid >= 0 && seq != next_seq {
                                answer = answer.with_error_code(
                                    ResponseError::OutOfOrderSequenceNumber.code(),
                                );
                            } else {
                                log.push((pid, seq, count, next_offset));
                                answer = answer.with_base_offset(next_offset);
                            }
                            if let Some(code) = error {
                                answer = answer.with_error_code(code).with_base_offset(-1);
                            }
                        }
                        partitions.push(answer.with_log_append_time_ms(-1));
                    }
                    responses.push(
                        TopicProduceResponse::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partition_responses(partitions),
                    );
                }
                encode(&ProduceResponse::default().with_responses(responses), v)
            }
            RequestKind::ListOffsets(req) => {
                let topics = req
                    .topics
                    .into_iter()
                    .map(|t| {
                        let name = t.name.0.to_string();
                        let partitions = t
                            .partitions
                            .into_iter()
                            .map(|p| {
                                let key = (name.clone(), p.partition_index);
                                let code = match error {
                                    Some(c) => c,
                                    None if m.leaders.get(&key) != Some(&broker) => {
                                        ResponseError::NotLeaderOrFollower.code()
                                    }
                                    None => 0,
                                };
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                                    .with_offset(if code == 0 { 7 } else { -1 })
                            })
                            .collect();
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name)
                            .with_partitions(partitions)
                    })
                    .collect();
                encode(&ListOffsetsResponse::default().with_topics(topics), v)
            }
            RequestKind::DeleteRecords(req) => {
                let topics = req
                    .topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .into_iter()
                            .map(|p| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(error.unwrap_or(0))
                                    .with_low_watermark(p.offset)
                            })
                            .collect();
                        DeleteRecordsTopicResult::default()
                            .with_name(t.name)
                            .with_partitions(partitions)
                    })
                    .collect();
                encode(&DeleteRecordsResponse::default().with_topics(topics), v)
            }
            RequestKind::FindCoordinator(req) => {
                let node = if m.coordinator_answers.is_empty() {
                    1
                } else {
                    m.coordinator_answers.remove(0)
                };
                let response = if v >= 4 {
                    FindCoordinatorResponse::default().with_coordinators(
                        req.coordinator_keys
                            .into_iter()
                            .map(|k| {
                                kafka_protocol::messages::find_coordinator_response::Coordinator::default()
                                    .with_key(k)
                                    .with_node_id(BrokerId(node))
                                    .with_host(StrBytes::from_string(format!("b{node}")))
                                    .with_port(9092)
                            })
                            .collect(),
                    )
                } else {
                    FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(node))
                        .with_host(StrBytes::from_string(format!("b{node}")))
                        .with_port(9092)
                };
                encode(&response, v)
            }
            RequestKind::OffsetFetch(req) => {
                let group = req
                    .groups
                    .first()
                    .map(|g| g.group_id.clone())
                    .unwrap_or_default();
                encode(
                    &OffsetFetchResponse::default().with_groups(vec![
                        OffsetFetchResponseGroup::default()
                            .with_group_id(group)
                            .with_error_code(error.unwrap_or(0))
                            .with_topics(vec![OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_static_str("t")))
                                .with_partitions(vec![OffsetFetchResponsePartitions::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(5)])]),
                    ]),
                    v,
                )
            }
            RequestKind::ElectLeaders(req) => {
                use kafka_protocol::messages::{
                    elect_leaders_response::{PartitionResult, ReplicaElectionResult},
                    ElectLeadersResponse,
                };
                // The preferred leader (broker 1) already leads partition 0 only.
                let results = req
                    .topic_partitions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|&p| {
                                let leader = m.leaders.get(&(t.topic.0.to_string(), p));
                                let code = if leader == Some(&1) {
                                    ResponseError::ElectionNotNeeded.code()
                                } else {
                                    0
                                };
                                PartitionResult::default()
                                    .with_partition_id(p)
                                    .with_error_code(code)
                            })
                            .collect();
                        ReplicaElectionResult::default()
                            .with_topic(t.topic)
                            .with_partition_result(partitions)
                    })
                    .collect();
                encode(
                    &ElectLeadersResponse::default().with_replica_election_results(results),
                    v,
                )
            }
            RequestKind::ListPartitionReassignments(_) => {
                use kafka_protocol::messages::{
                    list_partition_reassignments_response::{
                        OngoingPartitionReassignment, OngoingTopicReassignment,
                    },
                    ListPartitionReassignmentsResponse,
                };
                encode(
                    &ListPartitionReassignmentsResponse::default().with_topics(vec![
                        OngoingTopicReassignment::default()
                            .with_name(TopicName(StrBytes::from_static_str("t")))
                            .with_partitions(vec![OngoingPartitionReassignment::default()
                                .with_partition_index(0)
                                .with_replicas(vec![BrokerId(1), BrokerId(2)])
                                .with_adding_replicas(vec![BrokerId(2)])]),
                    ]),
                    v,
                )
            }
            other => panic!("the fake does not serve {other:?}"),
        };
        Ok(encoded)
    }
}

fn encode<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    message
        .encode(&mut buf, version)
        .expect("fake encodes the response");
    buf.freeze()
}

#[derive(Debug)]
struct FakeChannel {
    fake: Fake,
    broker: i32,
}

impl Channel for FakeChannel {
    fn submit(&self, request: Outbound) -> crate::error::Result<Option<Reply>> {
        let expect = request.expect_response;
        let result = self.fake.handle(self.broker, request);
        if !expect {
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(result);
        Ok(Some(rx))
    }

    fn is_closed(&self) -> bool {
        self.fake.model().unreachable.contains(&self.broker)
    }

    fn close(&self) {}
}

impl Connector for Fake {
    fn connect<'a>(
        &'a self,
        addr: &'a str,
    ) -> BoxFuture<'a, crate::error::Result<Arc<dyn Channel>>> {
        Box::pin(async move {
            let broker: i32 = addr
                .trim_start_matches('b')
                .trim_end_matches(":9092")
                .parse()
                .expect("fake address");
            if self.model().unreachable.contains(&broker) {
                return Err(Error::Connect {
                    addr: addr.to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
                });
            }
            let channel: Arc<dyn Channel> = Arc::new(FakeChannel {
                fake: self.clone(),
                broker,
            });
            Ok(channel)
        })
    }
}

fn tp(topic: &str, partition: i32) -> (String, i32) {
    (topic.to_string(), partition)
}

fn producer_config(acks: Acks) -> ProducerConfig {
    ProducerConfig {
        acks,
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn produce_follows_the_new_leader_after_not_leader_or_follower() {
    let fake = Fake::new(&[("t", 0, 1)]);
    fake.inject_full(
        ApiKey::Produce,
        1,
        ResponseError::NotLeaderOrFollower,
        false,
        vec![(tp("t", 0), 2)],
    );
    let producer = Producer::new(fake.client(), producer_config(Acks::Leader))
        .await
        .expect("producer");
    let delivered = producer
        .send(ProducerRecord::new("t", "v").partition(0))
        .await
        .expect("queued")
        .await
        .expect("delivered");
    assert_eq!(delivered.offset, 0);
    let seen: Vec<(i32, ApiKey)> = fake
        .model()
        .seen
        .iter()
        .map(|&(b, a, _)| (b, a))
        .filter(|(_, a)| *a != ApiKey::ApiVersions)
        .collect();
    // Produce to the old leader, a metadata refresh, then Produce to the new leader.
    let produce_at: Vec<i32> = seen
        .iter()
        .filter(|(_, a)| *a == ApiKey::Produce)
        .map(|(b, _)| *b)
        .collect();
    assert_eq!(produce_at, [1, 2], "{seen:?}");
    let first = seen
        .iter()
        .position(|s| *s == (1, ApiKey::Produce))
        .expect("first produce");
    assert!(
        seen[first..].iter().any(|(_, a)| *a == ApiKey::Metadata),
        "metadata refreshed after the error: {seen:?}"
    );
    assert_eq!(fake.model().logs[&tp("t", 0)].len(), 1);
}

#[tokio::test(start_paused = true)]
async fn list_offsets_retries_leader_not_available_until_it_clears() {
    let fake = Fake::new(&[("t", 0, 1)]);
    fake.inject(ApiKey::ListOffsets, 1, ResponseError::LeaderNotAvailable);
    fake.inject(ApiKey::ListOffsets, 1, ResponseError::LeaderNotAvailable);
    let admin = Admin::new(fake.client());
    let results = admin
        .list_offsets(&[(TopicPartition::new("t", 0), OffsetSpec::Latest)])
        .await;
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0]
            .1
            .as_ref()
            .expect("third attempt succeeds")
            .offset,
        7
    );
    assert_eq!(fake.count(ApiKey::ListOffsets), 3);
}

#[tokio::test(start_paused = true)]
async fn a_non_retriable_error_fails_at_once() {
    let fake = Fake::new(&[("t", 0, 1)]);
    fake.inject(ApiKey::Produce, 1, ResponseError::MessageTooLarge);
    let producer = Producer::new(fake.client(), producer_config(Acks::Leader))
        .await
        .expect("producer");
    let error = producer
        .send(ProducerRecord::new("t", "v").partition(0))
        .await
        .expect("queued")
        .await
        .expect_err("refused");
    assert_eq!(error.kafka_name().as_deref(), Some("MESSAGE_TOO_LARGE"));
    assert_eq!(fake.count(ApiKey::Produce), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_api_timeout_runs_out() {
    let fake = Fake::new(&[("t", 0, 1)]);
    for _ in 0..1000 {
        fake.inject(ApiKey::DeleteRecords, 1, ResponseError::LeaderNotAvailable);
    }
    let admin = Admin::new(fake.client());
    let started = tokio::time::Instant::now();
    let results = admin
        .delete_records(&[(TopicPartition::new("t", 0), 3)])
        .await;
    let error = results[0].1.as_ref().expect_err("never succeeds");
    assert_eq!(error.kafka_name().as_deref(), Some("LEADER_NOT_AVAILABLE"));
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_secs(10), "{elapsed:?}");
    // 100 ms doubling to 1 s: about a dozen attempts in 10 s, not a busy loop.
    let attempts = fake.count(ApiKey::DeleteRecords);
    assert!((5..=20).contains(&attempts), "{attempts} attempts");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_leader_is_replaced_after_a_refresh() {
    let fake = Fake::new(&[("t", 0, 2)]);
    let admin = Admin::new(fake.client());
    admin
        .client()
        .refresh_metadata(Some(&["t".to_string()]))
        .await
        .expect("metadata");
    // Broker 2 goes away and broker 1 takes over: the next metadata says so.
    {
        let mut m = fake.model();
        m.unreachable.insert(2);
        m.leaders.insert(tp("t", 0), 1);
    }
    let results = admin
        .list_offsets(&[(TopicPartition::new("t", 0), OffsetSpec::Earliest)])
        .await;
    assert!(results[0].1.is_ok(), "{results:?}");
    let seen = fake.model().seen.clone();
    assert!(seen.contains(&(1, ApiKey::ListOffsets, 10)), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn idempotent_retry_of_a_written_batch_is_not_written_twice() {
    let fake = Fake::new(&[("t", 0, 1)]);
    // The first Produce is written, but its answer is lost (REQUEST_TIMED_OUT).
    fake.inject_full(
        ApiKey::Produce,
        1,
        ResponseError::RequestTimedOut,
        true,
        vec![],
    );
    let producer = Producer::new(fake.client(), producer_config(Acks::All))
        .await
        .expect("producer");
    assert_eq!(producer.producer_id(), Some((42, 0)));
    let first = producer
        .send(ProducerRecord::new("t", "a").partition(0))
        .await
        .expect("queued");
    let delivered = first.await.expect("delivered on retry");
    assert_eq!(delivered.offset, 0);
    let second = producer
        .send(ProducerRecord::new("t", "b").partition(0))
        .await
        .expect("queued")
        .await
        .expect("delivered");
    assert_eq!(second.offset, 1);
    let log = fake.model().logs[&tp("t", 0)].clone();
    assert_eq!(
        log,
        vec![(42, 0, 1, 0), (42, 1, 1, 1)],
        "one copy of each batch, in sequence"
    );
    assert_eq!(fake.count(ApiKey::Produce), 3);
}

#[tokio::test(start_paused = true)]
async fn versions_are_the_highest_both_sides_support() {
    let fake = Fake::new(&[("t", 0, 1)]);
    fake.model().advertised = vec![
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::Metadata, 0, 5),
        (ApiKey::Produce, 3, 7),
    ];
    let producer = Producer::new(fake.client(), producer_config(Acks::Leader))
        .await
        .expect("producer");
    producer
        .send(ProducerRecord::new("t", "v").partition(0))
        .await
        .expect("queued")
        .await
        .expect("delivered");
    let seen = fake.model().seen.clone();
    assert!(seen.contains(&(1, ApiKey::Metadata, 5)), "{seen:?}");
    assert!(seen.contains(&(1, ApiKey::Produce, 7)), "{seen:?}");
    // Not advertised at all: a clear error, and nothing sent.
    let results = Admin::new(fake.client())
        .delete_groups(&["g".into()])
        .await
        .expect("per-group results");
    assert!(
        matches!(
            results[0].1,
            Err(Error::UnsupportedApi {
                api: ApiKey::FindCoordinator,
                ..
            })
        ),
        "{results:?}"
    );
    assert_eq!(fake.count(ApiKey::FindCoordinator), 0);
}

#[tokio::test(start_paused = true)]
async fn group_calls_find_the_coordinator_again_after_not_coordinator() {
    let fake = Fake::new(&[("t", 0, 1)]);
    fake.model().coordinator_answers = vec![1, 2];
    fake.inject(ApiKey::OffsetFetch, 1, ResponseError::NotCoordinator);
    let admin = Admin::new(fake.client());
    let offsets = admin.list_group_offsets("g", None).await.expect("offsets");
    assert_eq!(offsets[&TopicPartition::new("t", 0)].offset, 5);
    let seen = fake.model().seen.clone();
    let fetches: Vec<i32> = seen
        .iter()
        .filter(|s| s.1 == ApiKey::OffsetFetch)
        .map(|s| s.0)
        .collect();
    assert_eq!(fetches, [1, 2], "{seen:?}");
    assert_eq!(fake.count(ApiKey::FindCoordinator), 2);
}

#[test]
fn kafka_codes_in_errors_keep_their_names_through_fan_out() {
    let e = Error::kafka(ResponseError::NotEnoughReplicas, "produce to t-0");
    let copy = crate::client::clone_error(&e);
    assert_eq!(
        copy.kafka_code(),
        Some(KafkaCode::of(ResponseError::NotEnoughReplicas))
    );
    assert_eq!(copy.to_string(), e.to_string());
}

#[tokio::test(start_paused = true)]
async fn leader_election_and_reassignment_listing_go_to_the_controller() {
    let fake = Fake::new(&[("t", 0, 1), ("t", 1, 2)]);
    let admin = Admin::new(fake.client());
    let tps = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    let results = admin
        .elect_leaders(crate::ElectionType::Preferred, Some(&tps))
        .await
        .expect("ElectLeaders");
    assert_eq!(results.len(), 2);
    let not_needed = results[0].1.as_ref().expect_err("already the leader");
    assert_eq!(
        not_needed.kafka_name().as_deref(),
        Some("ELECTION_NOT_NEEDED")
    );
    assert!(results[1].1.is_ok());

    let ongoing = admin
        .list_partition_reassignments(None)
        .await
        .expect("ListPartitionReassignments");
    let r = &ongoing[&TopicPartition::new("t", 0)];
    assert_eq!(
        (r.replicas.clone(), r.adding.clone()),
        (vec![1, 2], vec![2])
    );
    // The controller (broker 1, per metadata) got both.
    let seen = fake.model().seen.clone();
    assert!(seen.contains(&(1, ApiKey::ElectLeaders, 2)), "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.0 == 1 && s.1 == ApiKey::ListPartitionReassignments),
        "{seen:?}"
    );
}

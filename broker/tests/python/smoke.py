"""Smoke test of Millrace with two independent Python Kafka clients.

    python3 smoke.py HOST:PORT

kafka-python is a pure-Python implementation of the protocol; confluent-kafka wraps librdkafka.
Each client creates a topic with its admin API, produces records with keys, headers and
timestamps, and reads them back with an assigned consumer (there are no consumer groups yet, so
nothing subscribes or commits). Every value read back is compared with what was sent.

Exit status: 0 when both clients pass, 1 on a failed check, 3 when a module is missing.
It is run by broker/tests/python_clients.rs against a broker that test starts.
"""

import sys
import time
import traceback

DEADLINE_S = 30

MISSING = []
try:
    import kafka  # kafka-python
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KpTopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic as KpNewTopic
except ImportError:
    MISSING.append("kafka-python")
try:
    import confluent_kafka
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
except ImportError:
    MISSING.append("confluent-kafka")


def records(prefix, count, base_ts):
    """(key, value, headers, timestamp) for each record; headers include binary bytes."""
    out = []
    for i in range(count):
        key = f"{prefix}-key-{i}".encode()
        value = f"{prefix} value {i} ".encode() * (1 + i % 7) + bytes(range(i % 256))
        headers = [("seq", str(i).encode()), ("bin", bytes([0, 255, i % 256]))]
        out.append((key, value, headers, base_ts + i))
    return out


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def kafka_python(bootstrap):
    topic = "py-kafka-python"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="millrace-smoke")
    admin.create_topics([KpNewTopic(name=topic, num_partitions=2, replication_factor=1)])
    check(topic in admin.list_topics(), f"{topic} not listed after create_topics")
    admin.close()

    sent = records("kp", 50, 1_700_000_000_000)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip", linger_ms=5)
    futures = [
        producer.send(topic, key=k, value=v, headers=h, partition=0, timestamp_ms=ts)
        for (k, v, h, ts) in sent
    ]
    producer.flush(timeout=DEADLINE_S)
    for i, future in enumerate(futures):
        metadata = future.get(timeout=DEADLINE_S)
        check((metadata.partition, metadata.offset) == (0, i), f"record {i} acked at {metadata}")
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = KpTopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    received = []
    deadline = time.monotonic() + DEADLINE_S
    while len(received) < len(sent) and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            received.extend(batch)
    check(len(received) == len(sent), f"read {len(received)} of {len(sent)} records")
    for i, (record, (k, v, h, ts)) in enumerate(zip(received, sent)):
        check(record.offset == i, f"offset {record.offset} at position {i}")
        check(record.key == k and record.value == v, f"key/value of record {i}")
        check(list(record.headers) == h, f"headers of record {i}: {record.headers}")
        check(record.timestamp == ts, f"timestamp of record {i}: {record.timestamp}")
    check(consumer.beginning_offsets([tp])[tp] == 0, "beginning offset")
    check(consumer.end_offsets([tp])[tp] == len(sent), "end offset")
    by_time = consumer.offsets_for_times({tp: sent[10][3]})[tp]
    check(by_time is not None and by_time.offset == 10, f"offsets_for_times: {by_time}")
    consumer.close()


def confluent(bootstrap):
    topic = "py-confluent"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"retention.ms": "3600000"})]
    )
    futures[topic].result(DEADLINE_S)
    check(topic in admin.list_topics(timeout=DEADLINE_S).topics, f"{topic} not in metadata")
    described = admin.describe_configs([ConfigResource("topic", topic)])
    configs = list(described.values())[0].result(DEADLINE_S)
    check(configs["retention.ms"].value == "3600000", f"retention.ms = {configs['retention.ms'].value}")
    # An invalid value is refused with INVALID_CONFIG, and the message names the key.
    bad = ConfigResource(
        "topic",
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)],
    )
    try:
        list(admin.incremental_alter_configs([bad]).values())[0].result(DEADLINE_S)
        raise AssertionError("retention.ms=soon was accepted")
    except KafkaException as e:
        error = e.args[0]
        check(error.code() == KafkaError.INVALID_CONFIG, f"error for retention.ms=soon: {error}")
        check("retention.ms" in error.str(), f"error message does not name the key: {error.str()}")

    sent = records("ck", 50, 1_700_000_000_000)
    acked = {}

    def on_delivery(err, msg):
        check(err is None, f"delivery failed: {err}")
        acked[msg.key()] = (msg.partition(), msg.offset())

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "compression.type": "zstd",
            "linger.ms": 5,
        }
    )
    for k, v, h, ts in sent:
        producer.produce(topic, key=k, value=v, headers=h, partition=0, timestamp=ts, on_delivery=on_delivery)
    check(producer.flush(DEADLINE_S) == 0, "messages left after flush")
    for i, (k, _, _, _) in enumerate(sent):
        check(acked.get(k) == (0, i), f"record {i} acked at {acked.get(k)}")

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "smoke-never-committed", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    received = []
    deadline = time.monotonic() + DEADLINE_S
    while len(received) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        check(msg.error() is None, f"consumer error: {msg.error()}")
        received.append(msg)
    check(len(received) == len(sent), f"read {len(received)} of {len(sent)} records")
    for i, (msg, (k, v, h, ts)) in enumerate(zip(received, sent)):
        check(msg.offset() == i, f"offset {msg.offset()} at position {i}")
        check(msg.key() == k and msg.value() == v, f"key/value of record {i}")
        check(msg.headers() == h, f"headers of record {i}: {msg.headers()}")
        check(msg.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME, ts), f"timestamp of record {i}")
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=DEADLINE_S)
    check((low, high) == (0, len(sent)), f"watermarks {(low, high)}")
    consumer.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    if MISSING:
        print(
            f"missing Python modules: {', '.join(MISSING)}. "
            "Run the README's test command (.ci/run), which installs them, "
            "or `python3 -m pip install kafka-python confluent-kafka`.",
            file=sys.stderr,
        )
        return 3
    bootstrap = sys.argv[1]
    failed = False
    for name, test in [("kafka-python", kafka_python), ("confluent-kafka", confluent)]:
        try:
            test(bootstrap)
            print(f"{name}: ok")
        except Exception:
            failed = True
            print(f"{name}: FAILED", file=sys.stderr)
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The independent Kafka client of the operator's end-to-end test (confluent-kafka, i.e.
librdkafka). Prints one JSON value per call.

  kafka_check.py cluster BOOTSTRAP             -> {"clusterId", "brokers": [{"id", "host", "port",
                                                  "rack"}]}
  kafka_check.py describe BOOTSTRAP TOPIC      -> null, or {"partitions": [[replica ids]...],
                                                  "config": {the topic's own configs}}
  kafka_check.py set BOOTSTRAP TOPIC KEY VALUE -> "ok" (an incremental SET, as another tool would)
"""

import json
import sys

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

TIMEOUT = 30
DYNAMIC_TOPIC_CONFIG = 1


def main():
    cmd, bootstrap = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False})
    if cmd == "cluster":
        d = admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT)
        brokers = sorted(
            ({"id": n.id, "host": n.host, "port": n.port, "rack": n.rack} for n in d.nodes),
            key=lambda b: b["id"],
        )
        print(json.dumps({"clusterId": d.cluster_id, "brokers": brokers}))
    elif cmd == "describe":
        topic = sys.argv[3]
        md = admin.list_topics(timeout=TIMEOUT)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            print(json.dumps(None))
            return
        partitions = [t.partitions[p].replicas for p in sorted(t.partitions)]
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = admin.describe_configs([res])[res].result(TIMEOUT)
        own = {
            k: v.value
            for k, v in configs.items()
            if int(getattr(v.source, "value", v.source)) == DYNAMIC_TOPIC_CONFIG
        }
        print(json.dumps({"partitions": partitions, "config": own}))
    elif cmd == "set":
        topic, key, value = sys.argv[3:6]
        res = ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            ],
        )
        admin.incremental_alter_configs([res])[res].result(TIMEOUT)
        print(json.dumps("ok"))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

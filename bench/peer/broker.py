"""What a topic holds on the shared broker: records (sum of partition ends) and bytes on disk
(the broker's log-dir description, as `kafka-log-dirs --describe` prints it)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.peer.connect import KAFKA_HOME, LIBS


class TopicCounter:
    """Sum of a topic's partition end offsets (= records for a non-transactional producer)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-peer-count",
                                  "enable.auto.commit": False, "log_level": 3})  # fmt: skip

    def records(self, topic: str) -> int:
        try:
            meta = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException:
            return 0
        if meta is None or meta.error is not None:
            return 0  # not created yet
        total = 0
        for p in meta.partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += max(0, high)
        return total

    def close(self) -> None:
        self.consumer.close()


def parse_log_dirs(output: str, topic: str) -> int:
    """Bytes of `topic`'s partitions in LogDirsCommand's output (its JSON line), all brokers
    and directories; ValueError when the output does not describe the topic."""
    line = next((x for x in reversed(output.splitlines()) if x.lstrip().startswith("{")), "")
    if not line:
        raise ValueError(f"no log-dir description in: {output[-500:]!r}")
    doc: dict[str, Any] = json.loads(line)
    total, seen = 0, False
    for broker in doc["brokers"]:
        for log_dir in broker["logDirs"]:
            for part in log_dir["partitions"]:
                name, _, index = str(part["partition"]).rpartition("-")
                if name == topic and index.isdigit() and not part.get("isFuture", False):
                    total += int(part["size"])
                    seen = True
    if not seen:
        raise ValueError(f"topic {topic} not in the broker's log dirs")
    return total


def topic_bytes(bootstrap: str, topic: str) -> int:
    cmd = ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
           f"-Dlog4j2.configurationFile={KAFKA_HOME / 'config' / 'log4j2.properties'}",
           "-cp", f"{LIBS}/*", "org.apache.kafka.tools.LogDirsCommand",
           "--bootstrap-server", bootstrap, "--describe", "--topic-list", topic]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kafka-log-dirs exited {proc.returncode}: {proc.stderr[-2000:]}")
    return parse_log_dirs(proc.stdout, topic)


def delete(bootstrap: str, topics: Sequence[str]) -> None:
    from bench.raw import delete_topics

    delete_topics(bootstrap, topics)

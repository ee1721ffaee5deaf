"""Kafka Connect standalone from the stack's Kafka jars plus plugin jars fetched from Maven
Central by a POM. Shared by the bench's Debezium source and the Connect sink test
(tests/integration/registry/test_connect_sink.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

STACK = Path(os.environ.get("POLLER_STACK_HOME") or Path.home() / ".cache" / "poller-stack")
KAFKA_HOME = STACK / "kafka-4.1.1"
LIBS = KAFKA_HOME / "libs"
# What the worker itself already has (Kafka's own jars, its Jackson, logging, compression): a
# second copy inside the plugin clashes with it (Jackson modules found twice, "not a subtype").
SHARED = ("kafka-clients-", "connect-", "jackson-", "slf4j-", "lz4-java-", "snappy-java-", "zstd")
APICURIO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"


class PluginFetchError(RuntimeError):
    """mvn could not fetch a plugin's jars (the message carries mvn's output)."""


def fetch_plugins(pom: Path, bundle: str) -> Path:
    """The POM's runtime jars as Connect's plugin.path (one plugin folder, `bundle`), fetched
    once per POM version into the stack cache."""
    root = STACK / f"connect-plugins-{hashlib.sha256(pom.read_bytes()).hexdigest()[:12]}"
    if (root / ".complete").exists():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    jars = tmp / bundle
    proc = subprocess.run(
        ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
         "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={jars}"],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise PluginFetchError(f"mvn could not fetch the Connect plugin jars:\n"
                               f"{(proc.stdout + proc.stderr)[-3000:]}")  # fmt: skip
    for jar in jars.glob("*.jar"):
        if jar.name.startswith(SHARED):
            jar.unlink()
    # Apicurio's converter jar has no ServiceLoader entry; the worker runs with
    # plugin.discovery=service_load (no minute-long reflective scan), so give it one.
    with zipfile.ZipFile(jars / "poller-apicurio-converter-service.jar", "w") as z:
        z.writestr(
            "META-INF/services/org.apache.kafka.connect.storage.Converter",
            APICURIO_CONVERTER + "\n",
        )
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    (root / ".complete").touch()
    return root


def properties(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def converter(side: str, registry_v2: str) -> dict[str, str]:
    """Apicurio's AvroConverter in the Confluent wire format: the 4-byte id in the payload is
    the content id that the registry's Confluent API hands out."""
    c = f"{side}.converter"
    return {
        c: APICURIO_CONVERTER,
        f"{c}.apicurio.registry.url": registry_v2,
        f"{c}.apicurio.registry.headers.enabled": "false",
        f"{c}.apicurio.registry.id-handler": "io.apicurio.registry.serde.Legacy4ByteIdHandler",
        f"{c}.apicurio.registry.use-id": "contentId",
    }


def standalone_command(worker: Path, *connectors: Path, jvm: tuple[str, ...] = ()) -> list[str]:
    """`java … ConnectStandalone worker connector…` on the stack's Kafka jars."""
    if not (LIBS / "connect-runtime-4.1.1.jar").exists():
        raise FileNotFoundError(
            f"no Kafka jars in {LIBS}: start the stack with `scripts/services up`"
        )
    return ["java", *jvm,
            f"-Dlog4j2.configurationFile={KAFKA_HOME / 'config' / 'log4j2.properties'}",
            "-cp", f"{LIBS}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
            str(worker), *map(str, connectors)]  # fmt: skip

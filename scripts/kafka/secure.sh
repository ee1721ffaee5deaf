# shellcheck shell=bash
# Sourced by scripts/services: the secured Kafka broker ("kafka-secure"), a second
# Kafka 4.1.1 process beside the plain one, with its own ports and data:
#
#   127.0.0.1:9190  SASL_SSL, SCRAM-SHA-512 (clients and the broker itself)
#   127.0.0.1:9191  CONTROLLER, SSL with client certificates (only the broker's key gets in)
#
# The StandardAuthorizer is on with allow.everyone.if.no.acl.found=false, so a principal can do
# only what an ACL allows; User:admin (password below, a test stack's well-known secret like
# the databases' poller/poller) is a super user and creates the other users and their ACLs.
# A self-signed CA and the broker's certificate (SAN IP:127.0.0.1, DNS:localhost) are made at
# the first start; clients trust $KSEC_HOME/ca.pem. The broker's data is wiped at every start
# (see ksec_format). Files for clients:
#   $KSEC_HOME/ca.pem               the CA certificate (librdkafka ssl.ca.location)
#   $KSEC_HOME/admin.properties     Java client settings for kafka-acls.sh / kafka-configs.sh
#   $KSEC_HOME/admin.env            KSEC_BOOTSTRAP, KSEC_ADMIN_USER, KSEC_ADMIN_PASSWORD, KSEC_CA

KSEC_HOME="$STACK_HOME/kafka-secure"
KSEC_DATA="$KSEC_HOME/data"
KSEC_CONF="$KSEC_HOME/server.properties"
KSEC_PID_FILE="$KSEC_HOME/kafka.pid"
KSEC_LOG="$LOG_DIR/kafka-secure.log"
KSEC_HOST=127.0.0.1
KSEC_PORT=9190
KSEC_CONTROLLER_PORT=9191
KSEC_ADMIN_USER=admin
KSEC_ADMIN_PASSWORD=poller-secure-admin
KSEC_STORE_PASSWORD=poller-secure-store
KSEC_BROKER_CN=poller-secure-broker
# The 16 bytes "poller-secure-kf" as Kafka's url-safe base64 Uuid.
KSEC_CLUSTER_ID=cG9sbGVyLXNlY3VyZS1rZg
KSEC_HEAP_OPTS="${POLLER_KAFKA_SECURE_HEAP_OPTS:--Xms128m -Xmx512m}"

ksec_make_certs() {
  [ -f "$KSEC_HOME/ca.pem" ] && [ -f "$KSEC_HOME/broker.p12" ] && [ -f "$KSEC_HOME/truststore.p12" ] && return 0
  log "kafka-secure: making a self-signed CA and the broker's certificate in $KSEC_HOME"
  local t="$KSEC_HOME/certs.tmp"
  rm -rf "$t"
  mkdir -p "$t"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=poller-secure-test-ca" \
      -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null || die "openssl: CA"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$KSEC_BROKER_CN" \
      -keyout "$t/broker.key" -out "$t/broker.csr" 2>/dev/null || die "openssl: broker key"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > "$t/ext.cnf"
  openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
      -days 3650 -extfile "$t/ext.cnf" -out "$t/broker.pem" 2>/dev/null || die "openssl: broker cert"
  openssl pkcs12 -export -in "$t/broker.pem" -inkey "$t/broker.key" -certfile "$t/ca.pem" \
      -name broker -passout "pass:$KSEC_STORE_PASSWORD" -out "$t/broker.p12" || die "openssl: keystore"
  keytool -importcert -noprompt -alias ca -file "$t/ca.pem" -storetype PKCS12 \
      -keystore "$t/truststore.p12" -storepass "$KSEC_STORE_PASSWORD" >/dev/null 2>&1 \
    || die "keytool: truststore"
  chmod 600 "$t/ca.key" "$t/broker.key"
  mv -f "$t"/ca.pem "$t"/ca.key "$t"/broker.p12 "$t"/truststore.p12 "$KSEC_HOME/"
  rm -rf "$t"
  # A new CA: the old storage was formatted for the same cluster id, keep it.
}

ksec_write_config() {
  mkdir -p "$KSEC_HOME" "$KSEC_DATA" "$LOG_DIR"
  local jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$KSEC_ADMIN_USER\" password=\"$KSEC_ADMIN_PASSWORD\";"
  cat > "$KSEC_CONF.tmp" <<EOF
# Written by scripts/services (kafka-secure); edits are overwritten on every 'up kafka-secure'.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$KSEC_HOST:$KSEC_CONTROLLER_PORT
listeners=SASL_SSL://$KSEC_HOST:$KSEC_PORT,CONTROLLER://$KSEC_HOST:$KSEC_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$KSEC_HOST:$KSEC_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas
ssl.keystore.type=PKCS12
ssl.keystore.location=$KSEC_HOME/broker.p12
ssl.keystore.password=$KSEC_STORE_PASSWORD
ssl.key.password=$KSEC_STORE_PASSWORD
ssl.truststore.type=PKCS12
ssl.truststore.location=$KSEC_HOME/truststore.p12
ssl.truststore.password=$KSEC_STORE_PASSWORD
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$KSEC_ADMIN_USER;User:CN=$KSEC_BROKER_CN
log.dirs=$KSEC_DATA
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  mv "$KSEC_CONF.tmp" "$KSEC_CONF"
  cat > "$KSEC_HOME/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=$KSEC_HOME/ca.pem
EOF
  cat > "$KSEC_HOME/admin.env" <<EOF
KSEC_BOOTSTRAP=$KSEC_HOST:$KSEC_PORT
KSEC_ADMIN_USER=$KSEC_ADMIN_USER
KSEC_ADMIN_PASSWORD=$KSEC_ADMIN_PASSWORD
KSEC_CA=$KSEC_HOME/ca.pem
EOF
}

ksec_pid() {
  local pid=""
  if [ -f "$KSEC_PID_FILE" ]; then
    pid="$(cat "$KSEC_PID_FILE" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] \
       && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "kafka\.Kafka $KSEC_CONF"; then
      echo "$pid"
      return 0
    fi
  fi
  pid="$(pgrep -f "kafka\.Kafka $KSEC_CONF" 2>/dev/null | head -n1 || true)"
  if [ -n "$pid" ]; then
    echo "$pid" > "$KSEC_PID_FILE"
    echo "$pid"
  fi
}

ksec_format() {
  # Fresh storage at every start: observed with Kafka 4.1.1 in combined mode, a restarted
  # broker authenticates no SCRAM user (its credential cache stays empty although the
  # controller replays the records), so the admin could not log in again. The tests make
  # their users, ACLs and topics themselves; nothing here is meant to outlive the process.
  log "kafka-secure: formatting fresh storage in $KSEC_DATA (admin SCRAM user $KSEC_ADMIN_USER)"
  rm -rf "$KSEC_DATA"
  mkdir -p "$KSEC_DATA"
  kafka_java kafka.tools.StorageTool format --standalone -t "$KSEC_CLUSTER_ID" -c "$KSEC_CONF" \
      --add-scram "SCRAM-SHA-512=[name=$KSEC_ADMIN_USER,password=$KSEC_ADMIN_PASSWORD]" \
      >> "$KSEC_LOG" 2>&1 \
    || { tail -n 40 "$KSEC_LOG" >&2; die "kafka-secure storage format failed"; }
}

ksec_answers() {
  port_open "$KSEC_HOST" "$KSEC_PORT" || return 1
  timeout 40 java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
      -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$KSEC_HOST:$KSEC_PORT" --command-config "$KSEC_HOME/admin.properties" \
      --list >/dev/null 2>&1
}

kafka-secure_up() {
  mkdir -p "$STACK_HOME" "$LOG_DIR" "$KSEC_HOME"
  kafka_fetch_libs
  [ -f "$KAFKA_LOG4J" ] || kafka_write_config
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  ksec_make_certs
  ksec_write_config
  if [ -z "$(ksec_pid)" ]; then
    if port_open "$KSEC_HOST" "$KSEC_PORT"; then
      die "port $KSEC_PORT is taken by a process that is not this stack's secured Kafka"
    fi
    ksec_format
    if [ -f "$KSEC_LOG" ] && [ "$(stat -c %s "$KSEC_LOG")" -gt 52428800 ]; then
      mv -f "$KSEC_LOG" "$KSEC_LOG.1"
    fi
    printf '\n===== %s starting secured Kafka %s =====\n' "$(date -Is)" "$KAFKA_VERSION" >> "$KSEC_LOG"
    # shellcheck disable=SC2086
    setsid nohup java $KSEC_HEAP_OPTS -server -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KSEC_CONF" \
        < /dev/null >> "$KSEC_LOG" 2>&1 9>&- &
    echo $! > "$KSEC_PID_FILE"
    log "kafka-secure starting (pid $(cat "$KSEC_PID_FILE")), waiting up to ${KAFKA_START_TIMEOUT}s"
  fi
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  until ksec_answers; do
    if [ -z "$(ksec_pid)" ]; then
      tail -n 40 "$KSEC_LOG" >&2 || true
      die "the secured Kafka broker exited during start-up (log: $KSEC_LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$KSEC_LOG" >&2 || true
      die "secured Kafka did not answer on $KSEC_HOST:$KSEC_PORT within ${KAFKA_START_TIMEOUT}s (log: $KSEC_LOG)"
    fi
    sleep 1
  done
  log "kafka-secure up on SASL_SSL://$KSEC_HOST:$KSEC_PORT (CA $KSEC_HOME/ca.pem)"
}

kafka-secure_down() {
  local pid i
  pid="$(ksec_pid)"
  if [ -z "$pid" ]; then
    rm -f "$KSEC_PID_FILE"
    log "kafka-secure already down"
    return 0
  fi
  log "stopping kafka-secure (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((KAFKA_STOP_TIMEOUT * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$KSEC_PID_FILE"
  log "kafka-secure down"
}

kafka-secure_reset() {
  kafka-secure_down
  log "wiping the secured Kafka's data, certificates and users in $KSEC_HOME"
  rm -rf "$KSEC_HOME"
}

kafka-secure_status() {
  local pid
  pid="$(ksec_pid)"
  if [ -n "$pid" ] && port_open "$KSEC_HOST" "$KSEC_PORT"; then
    echo "kafka-secure up    SASL_SSL://$KSEC_HOST:$KSEC_PORT (pid $pid)"
  elif [ -n "$pid" ]; then
    echo "kafka-secure starting  SASL_SSL://$KSEC_HOST:$KSEC_PORT (pid $pid, not listening yet)"
  else
    echo "kafka-secure down  SASL_SSL://$KSEC_HOST:$KSEC_PORT"
  fi
}

#!/bin/bash
# kafka-run-class.sh MAIN_CLASS [ARGS...]: runs a class from /opt/kafka/libs. Brokers log to
# stdout at info (config/log4j2.properties), command-line tools at warn to stderr.
set -euo pipefail
main=${1:?usage: kafka-run-class.sh MAIN_CLASS [ARGS...]}
shift
if [[ $main == kafka.Kafka ]]; then
  log4j=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties}
  heap=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
  perf=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
else
  log4j=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties}
  heap=${KAFKA_HEAP_OPTS:--Xmx256M}
  perf=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}
fi
# shellcheck disable=SC2086 # the option strings are word lists, as in Kafka's own scripts
exec java $heap $perf $log4j ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$main" "$@"

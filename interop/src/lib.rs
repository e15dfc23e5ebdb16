//! Interop tests of this system with the request/reply clients of other ecosystems, on a real
//! broker: the original stack (Python workers on confluent-kafka, the Node dashboard on KafkaJS),
//! Spring Kafka and NestJS. The peers are in `peers/` (each with its install or build script),
//! the tests in `tests/`; this library is empty.

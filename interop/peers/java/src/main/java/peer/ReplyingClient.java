package peer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.KafkaMessageListenerContainer;
import org.springframework.kafka.requestreply.ReplyingKafkaTemplate;
import org.springframework.kafka.requestreply.RequestReplyFuture;
import org.springframework.kafka.support.KafkaHeaders;
import org.springframework.kafka.support.TopicPartitionOffset;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * Calls a request topic through Spring Kafka's {@code ReplyingKafkaTemplate}, as a Spring
 * application would: the template adds {@code kafka_correlationId} (16 raw bytes of a random
 * UUID: {@code binaryCorrelation} is left at its default) and {@code kafka_replyTopic}; with
 * {@code --reply-partition} its reply container is assigned that one partition, so the template
 * also adds {@code kafka_replyPartition} as a 4-byte big-endian int.
 *
 * <p>Sends COUNT valid requests (and INVALID invalid ones) at once, then checks each reply: the
 * correlation bytes are the ones sent, the reply came on the reply topic (and partition), and it
 * is the contract's success reply for the request's own customer. An error reply of the contract
 * ({@code {"error":...}}) is turned into an exception by the template's reply error checker, as
 * a Spring application would do it; invalid requests must end that way with
 * {@code invalid_request}. Prints one JSON line per call; exits 0 only if every check passed.
 */
final class ReplyingClient {

    private ReplyingClient() {
    }

    /** An error reply of the contract, surfaced as the exception of the call. */
    static final class ContractError extends Exception {
        private static final long serialVersionUID = 1L;

        final String code;

        ContractError(String code, String message) {
            super(code + ": " + message);
            this.code = code;
        }
    }

    record Call(String customer, ObjectNode request, boolean valid, int quantity) {
    }

    private record Pending(Call call, byte[] correlation, RequestReplyFuture<String, String, String> future) {
    }

    static int run(SpringPeer.Args args) throws Exception {
        String bootstrap = args.required("bootstrap");
        String requestTopic = args.required("request-topic");
        String replyTopic = args.required("reply-topic");
        String kind = args.required("kind");
        if (!kind.equals("invoice") && !kind.equals("score")) {
            throw new IllegalArgumentException("--kind must be invoice or score");
        }
        int replyPartition = args.integer("reply-partition", -1);
        int count = args.integer("count", 50);
        int invalid = args.integer("invalid", 0);
        // Spring's own default is 5 s; tests on a busy machine pass more.
        Duration timeout = Duration.ofMillis(args.integer("timeout-ms", 5000));

        DefaultKafkaProducerFactory<String, String> producers = new DefaultKafkaProducerFactory<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class,
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class));
        DefaultKafkaConsumerFactory<String, String> consumers = new DefaultKafkaConsumerFactory<>(Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ConsumerConfig.GROUP_ID_CONFIG, "spring-peer-" + UUID.randomUUID(),
                // The reply topic is read from its beginning, so no reply can slip past the
                // container before its first poll has resolved a starting offset.
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest",
                ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class,
                ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class));
        ContainerProperties container = replyPartition >= 0
                ? new ContainerProperties(new TopicPartitionOffset(replyTopic, replyPartition))
                : new ContainerProperties(replyTopic);
        ReplyingKafkaTemplate<String, String, String> template = new ReplyingKafkaTemplate<>(producers,
                new KafkaMessageListenerContainer<>(consumers, container));
        template.setDefaultReplyTimeout(timeout);
        template.setReplyErrorChecker(reply -> reply.value() instanceof String text ? contractError(text) : null);
        template.start();
        try {
            if (!template.waitForAssignment(Duration.ofSeconds(60))) {
                System.err.println("FAILED: the reply container was not assigned within 60 s");
                return 1;
            }
            return exchange(template, calls(kind, count, invalid), requestTopic, replyTopic, replyPartition,
                    kind, timeout);
        }
        finally {
            template.stop();
            template.destroy();
            producers.destroy();
        }
    }

    private static int exchange(ReplyingKafkaTemplate<String, String, String> template, List<Call> calls,
            String requestTopic, String replyTopic, int replyPartition, String kind, Duration timeout)
            throws InterruptedException {

        List<Pending> pending = new ArrayList<>();
        for (Call call : calls) {
            ProducerRecord<String, String> record = new ProducerRecord<>(requestTopic,
                    Json.MAPPER.writeValueAsString(call.request()));
            record.headers().add("content-type", "application/json".getBytes(StandardCharsets.UTF_8));
            RequestReplyFuture<String, String, String> future = template.sendAndReceive(record);
            // sendAndReceive added the correlation header to the record it sent.
            byte[] correlation = record.headers().lastHeader(KafkaHeaders.CORRELATION_ID).value();
            pending.add(new Pending(call, correlation, future));
        }
        List<String> problems = new ArrayList<>();
        for (Pending each : pending) {
            String problem = check(each, replyTopic, replyPartition, kind, timeout);
            if (problem != null) {
                problems.add(each.call().customer() + ": " + problem);
            }
        }
        problems.forEach(problem -> System.err.println("FAILED " + problem));
        System.err.println("calls: " + (calls.size() - problems.size()) + " as expected, " + problems.size() + " not");
        return problems.isEmpty() ? 0 : 1;
    }

    /** Why the call did not end as it must, or null. Prints the call's JSON line. */
    private static String check(Pending pending, String replyTopic, int replyPartition, String kind,
            Duration timeout) throws InterruptedException {

        Call call = pending.call();
        ObjectNode line = Json.MAPPER.createObjectNode()
                .put("correlation_id", correlationText(pending.correlation()))
                .put("correlation_bytes", pending.correlation().length)
                .put("customer", call.customer());
        ConsumerRecord<String, String> reply;
        try {
            // The template times the call out itself; this bound only guards against a hang.
            reply = pending.future().get(timeout.toMillis() + 10_000, TimeUnit.MILLISECONDS);
        }
        catch (ExecutionException failed) {
            Throwable cause = failed.getCause();
            line.put("error", String.valueOf(cause));
            System.out.println(line);
            if (call.valid()) {
                return "call failed: " + cause;
            }
            return cause instanceof ContractError error && error.code.equals("invalid_request")
                    ? null
                    : "expected an invalid_request error reply, got " + cause;
        }
        catch (java.util.concurrent.TimeoutException hung) {
            return "no outcome within " + timeout.plusSeconds(10);
        }
        JsonNode body = Json.parse(reply.value());
        line.put("topic", reply.topic()).put("partition", reply.partition()).set("reply", body);
        System.out.println(line);
        if (!call.valid()) {
            return "expected an error reply, got " + reply.value();
        }
        Header echoed = reply.headers().lastHeader(KafkaHeaders.CORRELATION_ID);
        if (echoed == null || !Arrays.equals(echoed.value(), pending.correlation())) {
            return "reply correlation " + (echoed == null ? "missing" : correlationText(echoed.value()))
                    + " is not the request's " + correlationText(pending.correlation());
        }
        if (!reply.topic().equals(replyTopic) || replyPartition >= 0 && reply.partition() != replyPartition) {
            return "reply came on " + reply.topic() + "/" + reply.partition();
        }
        JsonNode ok = body.path("ok");
        if (body.path("schema_version").asInt() != 1 || !ok.isObject()) {
            return "not a success reply of the contract: " + reply.value();
        }
        if (!Objects.equals(ok.path("customer").asString(), call.customer())) {
            return "reply is for " + ok.path("customer") + ", not " + call.customer();
        }
        if (kind.equals("invoice") && ok.path("lines").path(0).path("quantity").asInt() != call.quantity()) {
            return "reply has the lines of another request: " + ok.path("lines");
        }
        return null;
    }

    static List<Call> calls(String kind, int count, int invalid) {
        List<Call> calls = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            String customer = "Spring " + kind + " customer " + i;
            ObjectNode request = Json.MAPPER.createObjectNode().put("schema_version", 1).put("customer", customer);
            if (kind.equals("invoice")) {
                request.putArray("lines").addObject()
                        .put("description", "Gadget " + i)
                        .put("quantity", i + 1)
                        .put("unit_price_cents", 199);
            }
            calls.add(new Call(customer, request, true, i + 1));
        }
        for (int i = 0; i < invalid; i++) {
            String customer = "Spring invalid " + kind + " " + i;
            ObjectNode request = Json.MAPPER.createObjectNode().put("schema_version", 1);
            if (kind.equals("invoice")) {
                // Our workers refuse an invoice without lines...
                request.put("customer", customer).putArray("lines");
            }
            else {
                // ...and a score request for a blank customer.
                request.put("customer", " ".repeat(i + 1));
            }
            calls.add(new Call(customer, request, false, 0));
        }
        return calls;
    }

    /** The contract's error reply as an exception, for the template's reply error checker. */
    static Exception contractError(String value) {
        JsonNode error = Json.parse(value).path("error");
        if (!error.isObject()) {
            return null;
        }
        return new ContractError(error.path("code").asString(""), error.path("message").asString(""));
    }

    /** 16 bytes as the UUID they encode (Spring's binary correlation), else the bytes as text. */
    static String correlationText(byte[] bytes) {
        if (bytes.length == 16) {
            ByteBuffer buffer = ByteBuffer.wrap(bytes);
            return new UUID(buffer.getLong(), buffer.getLong()).toString();
        }
        return new String(bytes, StandardCharsets.UTF_8);
    }
}

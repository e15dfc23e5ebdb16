package peer;

import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.env.Environment;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.config.KafkaListenerEndpointRegistry;
import org.springframework.kafka.core.ConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.core.ProducerFactory;
import org.springframework.kafka.listener.KafkaListenerErrorHandler;
import org.springframework.kafka.listener.MessageListenerContainer;
import org.springframework.kafka.support.KafkaHeaders;
import org.springframework.messaging.Message;
import org.springframework.messaging.handler.annotation.Header;
import org.springframework.messaging.handler.annotation.SendTo;
import org.springframework.messaging.support.MessageBuilder;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * A Spring {@code @KafkaListener} + {@code @SendTo} responder for {@code <prefix>generate-invoice}
 * and {@code <prefix>calculate-score}, answering in the project's reply contract
 * ({@code {"schema_version":1,"ok":{...}}}, {@code content-type: application/json}).
 *
 * <p>Spring does the request/reply part: the reply goes to the request's {@code kafka_replyTopic}
 * (to the default reply topic when a request has none, through the {@code @SendTo} expression),
 * to its {@code kafka_replyPartition} when it has one, with its {@code kafka_correlationId}
 * copied unchanged. A failed request is answered by the {@code contractErrors} listener error
 * handler with the contract's error reply; Spring itself would send nothing.
 *
 * <p>Deterministic business rules: invoice number {@code (offset + 1) * 1000 + partition} of the
 * request, tax 10 % rounded half up; score {@code 100 + floorMod(customer.hashCode(), 9900)};
 * a customer whose name starts with "reject" is refused with {@code invalid_request}.
 * Prints {@code {"ready":true}} once both listeners are assigned their partitions.
 *
 * <p>Spring's and Kafka's defaults throughout, unless told otherwise for the benchmark:
 * {@code --linger-ms} sets the reply producer's {@code linger.ms} (Kafka's default is 5 ms since
 * 4.0), {@code --auto-commit true} lets the consumer commit offsets in the background
 * ({@code enable.auto.commit}) instead of the container committing each poll's batch
 * synchronously. Nothing is logged per request (slf4j-simple at {@code warn}, see
 * {@link SpringPeer}).
 */
final class Responder {

    /** The request's reply topic, or the default reply topic when it names none. */
    static final String INVOICE_REPLY_TO =
            "!{source.headers['kafka_replyTopic'] ?: '${peer.prefix}invoice-generated'}";

    static final String SCORE_REPLY_TO =
            "!{source.headers['kafka_replyTopic'] ?: '${peer.prefix}score-calculated'}";

    private Responder() {
    }

    static void run(SpringPeer.Args args) throws InterruptedException {
        String prefix = args.optional("prefix", "");
        // The listener annotations read these through the environment's ${...} placeholders.
        System.setProperty("peer.bootstrap", args.required("bootstrap"));
        System.setProperty("peer.prefix", prefix);
        System.setProperty("peer.group", args.optional("group", prefix + "spring-responder"));
        String linger = args.optional("linger-ms", null);
        if (linger != null) {
            System.setProperty("peer.linger-ms", String.valueOf(Integer.parseInt(linger)));
        }
        String autoCommit = args.optional("auto-commit", null);
        if (autoCommit != null) {
            if (!autoCommit.equals("true") && !autoCommit.equals("false")) {
                throw new IllegalArgumentException("--auto-commit must be true or false");
            }
            System.setProperty("peer.auto-commit", autoCommit);
        }
        AnnotationConfigApplicationContext context = new AnnotationConfigApplicationContext(Config.class);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            context.close();
            stopped.countDown();
        }));
        KafkaListenerEndpointRegistry registry = context.getBean(KafkaListenerEndpointRegistry.class);
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (!registry.getListenerContainers().stream().allMatch(Responder::assigned)) {
            if (System.nanoTime() > deadline) {
                System.err.println("FAILED: listeners not assigned within 60 s");
                System.exit(1);
            }
            Thread.sleep(50);
        }
        System.out.println("{\"ready\":true}");
        stopped.await();
    }

    private static boolean assigned(MessageListenerContainer container) {
        Collection<TopicPartition> partitions = container.getAssignedPartitions();
        return partitions != null && !partitions.isEmpty();
    }

    @Configuration(proxyBeanMethods = false)
    @EnableKafka
    public static class Config {

        @Bean
        public ConsumerFactory<String, String> consumerFactory(Environment environment) {
            Map<String, Object> config = new HashMap<>(Map.of(
                    ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, environment.getRequiredProperty("peer.bootstrap"),
                    // Requests sent before the group was joined are answered too.
                    ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest",
                    ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class,
                    ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class));
            String autoCommit = environment.getProperty("peer.auto-commit");
            if (autoCommit != null) {
                // Set explicitly, Spring leaves it alone (unset, the container sets it false). When
                // true the container commits nothing itself, whatever its AckMode (the default
                // BATCH is fine; only the MANUAL modes are refused with auto-commit).
                config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, Boolean.parseBoolean(autoCommit));
            }
            return new DefaultKafkaConsumerFactory<>(config);
        }

        @Bean
        public ProducerFactory<String, String> producerFactory(Environment environment) {
            Map<String, Object> config = new HashMap<>(Map.of(
                    ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, environment.getRequiredProperty("peer.bootstrap"),
                    ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class,
                    ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class));
            String linger = environment.getProperty("peer.linger-ms");
            if (linger != null) {
                config.put(ProducerConfig.LINGER_MS_CONFIG, Integer.parseInt(linger));
            }
            return new DefaultKafkaProducerFactory<>(config);
        }

        @Bean
        public KafkaTemplate<String, String> replyTemplate(ProducerFactory<String, String> producerFactory) {
            return new KafkaTemplate<>(producerFactory);
        }

        @Bean
        public ConcurrentKafkaListenerContainerFactory<String, String> kafkaListenerContainerFactory(
                ConsumerFactory<String, String> consumerFactory, KafkaTemplate<String, String> replyTemplate) {
            ConcurrentKafkaListenerContainerFactory<String, String> factory =
                    new ConcurrentKafkaListenerContainerFactory<>();
            factory.setConsumerFactory(consumerFactory);
            factory.setReplyTemplate(replyTemplate);
            return factory;
        }

        /** Answers a failed request with the contract's error reply instead of nothing. */
        @Bean
        public KafkaListenerErrorHandler contractErrors() {
            return (message, failure) -> {
                Throwable cause = failure.getCause() == null ? failure : failure.getCause();
                String code = cause instanceof Refusal refusal ? refusal.code : "malformed_request";
                ObjectNode reply = Json.MAPPER.createObjectNode().put("schema_version", 1);
                reply.putObject("error").put("code", code).put("message", String.valueOf(cause.getMessage()));
                return json(reply);
            };
        }

        @Bean
        public Handlers handlers() {
            return new Handlers();
        }
    }

    /** A request refused with one of the contract's error codes. */
    static final class Refusal extends RuntimeException {
        private static final long serialVersionUID = 1L;

        final String code;

        Refusal(String code, String message) {
            super(message);
            this.code = code;
        }
    }

    public static class Handlers {

        @KafkaListener(id = "spring-invoices", topics = "${peer.prefix}generate-invoice", groupId = "${peer.group}",
                errorHandler = "contractErrors")
        @SendTo(INVOICE_REPLY_TO)
        public Message<String> invoice(String value, @Header(KafkaHeaders.RECEIVED_PARTITION) int partition,
                @Header(KafkaHeaders.OFFSET) long offset) {

            JsonNode request = parse(value);
            String customer = customer(request);
            JsonNode lines = request.path("lines");
            if (!lines.isArray() || lines.isEmpty()) {
                throw new Refusal("invalid_request", "lines: must not be empty");
            }
            ObjectNode invoice = Json.MAPPER.createObjectNode()
                    .put("number", (offset + 1) * 1000 + partition)
                    .put("customer", customer);
            ArrayNode priced = invoice.putArray("lines");
            long subtotal = 0;
            for (JsonNode line : lines) {
                long quantity = line.path("quantity").asLong();
                long unitPrice = line.path("unit_price_cents").asLong();
                priced.addObject()
                        .put("description", line.path("description").asString(""))
                        .put("quantity", quantity)
                        .put("unit_price_cents", unitPrice)
                        .put("amount_cents", quantity * unitPrice);
                subtotal += quantity * unitPrice;
            }
            long tax = (subtotal * 1000 + 5000) / 10000;
            invoice.put("subtotal_cents", subtotal).put("tax_cents", tax).put("total_cents", subtotal + tax);
            return ok(invoice);
        }

        @KafkaListener(id = "spring-scores", topics = "${peer.prefix}calculate-score", groupId = "${peer.group}",
                errorHandler = "contractErrors")
        @SendTo(SCORE_REPLY_TO)
        public Message<String> score(String value) {
            String customer = customer(parse(value));
            int hash = customer.hashCode();
            ObjectNode score = Json.MAPPER.createObjectNode()
                    .put("customer", customer)
                    .put("score", 100 + Math.floorMod(hash, 9900))
                    .put("explanation", "Spring responder: 100 + floorMod(String.hashCode() = " + hash + ", 9900)");
            return ok(score);
        }

        private static JsonNode parse(String value) {
            JsonNode request = Json.parse(value);
            if (!request.isObject()) {
                throw new Refusal("malformed_request", "payload is not a JSON object");
            }
            return request;
        }

        private static String customer(JsonNode request) {
            String customer = request.path("customer").asString("");
            if (customer.isBlank()) {
                throw new Refusal("invalid_request", "customer: must not be empty");
            }
            if (customer.toLowerCase(java.util.Locale.ROOT).startsWith("reject")) {
                throw new Refusal("invalid_request", "customer " + customer + " is refused by the Spring responder");
            }
            return customer;
        }

        private static Message<String> ok(ObjectNode value) {
            ObjectNode reply = Json.MAPPER.createObjectNode().put("schema_version", 1);
            reply.set("ok", value);
            return json(reply);
        }
    }

    /** The reply as a message: Spring adds the topic, partition and correlation ID to it. */
    static Message<String> json(ObjectNode reply) {
        return MessageBuilder.withPayload(Json.MAPPER.writeValueAsString(reply))
                .setHeader("content-type", "application/json".getBytes(StandardCharsets.UTF_8))
                .build();
    }
}

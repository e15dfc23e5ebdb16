package peer;

import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import com.sun.management.OperatingSystemMXBean;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.KafkaMessageListenerContainer;
import org.springframework.kafka.requestreply.KafkaReplyTimeoutException;
import org.springframework.kafka.requestreply.ReplyingKafkaTemplate;
import tools.jackson.databind.node.ObjectNode;

/**
 * Closed-loop load through Spring Kafka's {@code ReplyingKafkaTemplate}, for comparing
 * request/reply stacks on one broker (scripts/bench.d/versus): CONCURRENCY calls in flight, each
 * completion letting the next call start, WARMUP seconds unmeasured, then DURATION seconds
 * measured.
 *
 * <p>The template is set up as {@link ReplyingClient}'s (string serializers, a reply container
 * of a fresh consumer group on the reply topic, {@code content-type: application/json}); the
 * producer keeps the Kafka client's defaults except {@code linger.ms} with {@code --linger-ms};
 * {@code --auto-commit true} lets the reply consumer commit offsets in the background
 * ({@code enable.auto.commit}) instead of the container committing each poll's batch
 * synchronously, as the responder's option of that name.
 * Requests are the contract's valid ones for 1000 customers in turn, keyed by customer as an
 * application would key them, so they spread over the request topic's partitions.
 *
 * <p>Calls started in the measured window give the latencies (successes only), errors (an error
 * reply of the contract, anything but a success reply, a failed send) and timeouts; successes
 * completed in the window give the throughput. Prints {@code window start} and
 * {@code window end} on stderr as the window opens and closes, so a script can sample other
 * processes' CPU over the same window, and one JSON line on stdout at the end:
 * {@code round_trips, seconds, per_second, p50_ms, p99_ms, p999_ms, errors, timeouts, cpu_ms}
 * (this JVM's CPU time over the window). Exits 0 when at least one call succeeded.
 */
final class LoadClient {

    /** Distinct customers, hence keys, the calls take in turn. */
    private static final int CUSTOMERS = 1000;

    private LoadClient() {
    }

    static int run(SpringPeer.Args args) throws Exception {
        String bootstrap = args.required("bootstrap");
        String requestTopic = args.required("request-topic");
        String replyTopic = args.required("reply-topic");
        String kind = args.required("kind");
        if (!kind.equals("invoice") && !kind.equals("score")) {
            throw new IllegalArgumentException("--kind must be invoice or score");
        }
        int concurrency = Integer.parseInt(args.required("concurrency"));
        if (concurrency < 1) {
            throw new IllegalArgumentException("--concurrency must be at least 1");
        }
        long warmupNanos = TimeUnit.SECONDS.toNanos(Integer.parseInt(args.required("warmup-s")));
        long durationNanos = TimeUnit.SECONDS.toNanos(Integer.parseInt(args.required("duration-s")));
        if (durationNanos <= 0) {
            throw new IllegalArgumentException("--duration-s must be at least 1");
        }
        Duration timeout = Duration.ofMillis(args.integer("timeout-ms", 10_000));

        Map<String, Object> producerConfig = new HashMap<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class,
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class));
        String linger = args.optional("linger-ms", null);
        if (linger != null) {
            // Kafka's client waits 5 ms by default (since 4.0) to fill batches.
            producerConfig.put(ProducerConfig.LINGER_MS_CONFIG, Integer.parseInt(linger));
        }
        DefaultKafkaProducerFactory<String, String> producers = new DefaultKafkaProducerFactory<>(producerConfig);
        Map<String, Object> consumerConfig = new HashMap<>(Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ConsumerConfig.GROUP_ID_CONFIG, "spring-load-" + UUID.randomUUID(),
                // As in ReplyingClient: no reply slips past the container before its first poll
                // has resolved a starting offset (the reply topic is a fresh one).
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest",
                ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class,
                ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class));
        String autoCommit = args.optional("auto-commit", null);
        if (autoCommit != null) {
            if (!autoCommit.equals("true") && !autoCommit.equals("false")) {
                throw new IllegalArgumentException("--auto-commit must be true or false");
            }
            // As in Responder: set explicitly, Spring leaves it alone (unset, the container sets it
            // false and commits each poll's batch synchronously). The reply container's thread
            // then waits out every commit before its next poll, and Kafka 4's group coordinator
            // holds each commit up to group.coordinator.append.linger.ms (5 ms by default), so
            // each reply waits behind the previous one's commit: p50 ~6 ms at 1 in flight. When
            // true the consumer commits in the background and the container commits nothing.
            consumerConfig.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, Boolean.parseBoolean(autoCommit));
        }
        DefaultKafkaConsumerFactory<String, String> consumers = new DefaultKafkaConsumerFactory<>(consumerConfig);
        ReplyingKafkaTemplate<String, String, String> template = new ReplyingKafkaTemplate<>(producers,
                new KafkaMessageListenerContainer<>(consumers, new ContainerProperties(replyTopic)));
        template.setDefaultReplyTimeout(timeout);
        template.setReplyErrorChecker(reply -> reply.value() instanceof String text
                ? ReplyingClient.contractError(text)
                : null);
        template.start();
        try {
            if (!template.waitForAssignment(Duration.ofSeconds(60))) {
                System.err.println("FAILED: the reply container was not assigned within 60 s");
                return 1;
            }
            List<ReplyingClient.Call> calls = ReplyingClient.calls(kind, CUSTOMERS, 0);
            long start = System.nanoTime();
            Window window = new Window(start + warmupNanos, start + warmupNanos + durationNanos);
            Tally tally = new Tally(window);
            Semaphore slots = new Semaphore(concurrency);
            Thread loop = new Thread(() -> drive(template, calls, requestTopic, window, tally, slots), "load-loop");
            loop.start();

            sleepUntil(window.from());
            long cpuFrom = processCpuNanos();
            System.err.println("window start");
            System.err.flush();
            sleepUntil(window.to());
            long cpuTo = processCpuNanos();
            System.err.println("window end");
            System.err.flush();

            loop.join();
            // Every call still in flight ends by its own timeout; the margin only guards a hang.
            if (!slots.tryAcquire(concurrency, timeout.toMillis() + 10_000, TimeUnit.MILLISECONDS)) {
                System.err.println("FAILED: calls still in flight " + timeout.plusSeconds(10) + " after the end");
                return 1;
            }
            System.out.println(tally.result(TimeUnit.NANOSECONDS.toMillis(cpuTo - cpuFrom)));
            tally.reportFirstError();
            return tally.anySucceeded() ? 0 : 1;
        }
        finally {
            template.stop();
            template.destroy();
            producers.destroy();
        }
    }

    /**
     * The closed loop: takes a slot, sends a call, and lets the call's completion (on the reply
     * container's or the producer's thread) give the slot back; stops starting calls at the end
     * of the window.
     */
    private static void drive(ReplyingKafkaTemplate<String, String, String> template, List<ReplyingClient.Call> calls,
            String requestTopic, Window window, Tally tally, Semaphore slots) {

        for (int next = 0;; next = (next + 1) % calls.size()) {
            slots.acquireUninterruptibly();
            long started = System.nanoTime();
            if (started - window.to() >= 0) {
                slots.release();
                return;
            }
            ReplyingClient.Call call = calls.get(next);
            ProducerRecord<String, String> record = new ProducerRecord<>(requestTopic, call.customer(),
                    Json.MAPPER.writeValueAsString(call.request()));
            record.headers().add("content-type", "application/json".getBytes(StandardCharsets.UTF_8));
            try {
                template.sendAndReceive(record).whenComplete((reply, failure) -> {
                    long finished = System.nanoTime();
                    tally.record(started, finished, whyFailed(reply, failure));
                    slots.release();
                });
            }
            catch (RuntimeException failed) {
                tally.record(started, System.nanoTime(), failed);
                slots.release();
            }
        }
    }

    /**
     * Why a call did not succeed, or null. The reply error checker has already turned the
     * contract's error replies into failures; anything else but a success reply is one too.
     */
    private static Throwable whyFailed(ConsumerRecord<String, String> reply, Throwable failure) {
        if (failure != null) {
            return failure instanceof CompletionException wrapped && wrapped.getCause() != null
                    ? wrapped.getCause()
                    : failure;
        }
        return Json.parse(reply.value()).path("ok").isObject()
                ? null
                : new IllegalStateException("not a success reply of the contract: " + reply.value());
    }

    private static void sleepUntil(long deadline) {
        for (long left = deadline - System.nanoTime(); left > 0; left = deadline - System.nanoTime()) {
            LockSupport.parkNanos(left);
        }
    }

    private static long processCpuNanos() {
        return ((OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    /** The measured window, as {@code System.nanoTime()} values: from inclusive, to exclusive. */
    private record Window(long from, long to) {

        boolean contains(long time) {
            return time - this.from >= 0 && time - this.to < 0;
        }
    }

    /** What the calls did; completions on several threads record into it. */
    private static final class Tally {

        private final Window window;

        /** Latencies of the measured successful calls, in microseconds; the first {@code measured} count. */
        private long[] latencies = new long[1 << 16];

        private int measured;

        private long completedInWindow;

        private long errors;

        private long timeouts;

        private String firstError;

        Tally(Window window) {
            this.window = window;
        }

        /** One call's end: {@code cause} is why it failed, null when it succeeded. */
        synchronized void record(long started, long finished, Throwable cause) {
            if (cause == null && this.window.contains(finished)) {
                this.completedInWindow++;
            }
            if (!this.window.contains(started)) {
                return;
            }
            if (cause == null) {
                if (this.measured == this.latencies.length) {
                    this.latencies = Arrays.copyOf(this.latencies, this.latencies.length * 2);
                }
                this.latencies[this.measured++] = TimeUnit.NANOSECONDS.toMicros(finished - started);
            }
            else if (cause instanceof KafkaReplyTimeoutException) {
                this.timeouts++;
            }
            else {
                this.errors++;
                if (this.firstError == null) {
                    this.firstError = String.valueOf(cause);
                }
            }
        }

        synchronized boolean anySucceeded() {
            return this.measured > 0;
        }

        synchronized void reportFirstError() {
            if (this.firstError != null) {
                System.err.println("first error: " + this.firstError);
            }
        }

        synchronized ObjectNode result(long cpuMillis) {
            long[] sorted = Arrays.copyOf(this.latencies, this.measured);
            Arrays.sort(sorted);
            double seconds = (this.window.to() - this.window.from()) / 1e9;
            return Json.MAPPER.createObjectNode()
                    .put("round_trips", this.completedInWindow)
                    .put("seconds", seconds)
                    .put("per_second", this.completedInWindow / seconds)
                    .put("p50_ms", percentileMillis(sorted, 0.50))
                    .put("p99_ms", percentileMillis(sorted, 0.99))
                    .put("p999_ms", percentileMillis(sorted, 0.999))
                    .put("errors", this.errors)
                    .put("timeouts", this.timeouts)
                    .put("cpu_ms", cpuMillis);
        }

        /** Nearest rank: the smallest latency that a fraction q of all of them do not exceed. */
        private static double percentileMillis(long[] sorted, double q) {
            if (sorted.length == 0) {
                return 0;
            }
            int rank = (int) Math.ceil(q * sorted.length);
            return sorted[Math.max(rank, 1) - 1] / 1000.0;
        }
    }
}

package peer;

import java.util.HashMap;
import java.util.Map;

/**
 * A Spring Kafka peer for the interop tests and the side-by-side benchmark, in three modes.
 *
 * <pre>
 * java -jar target/spring-peer.jar client --bootstrap HOST:PORT --request-topic T --reply-topic R
 *     --kind invoice|score [--reply-partition P] [--count 50] [--invalid 0] [--timeout-ms 5000]
 * java -jar target/spring-peer.jar load --bootstrap HOST:PORT --request-topic T --reply-topic R
 *     --kind invoice|score --concurrency N --warmup-s W --duration-s D [--linger-ms L]
 *     [--auto-commit true|false] [--timeout-ms 10000]
 * java -jar target/spring-peer.jar responder --bootstrap HOST:PORT [--prefix TOPIC_PREFIX]
 *     [--group GROUP] [--linger-ms L] [--auto-commit true|false]
 * </pre>
 *
 * <p>{@code client}: a {@code ReplyingKafkaTemplate} (see {@link ReplyingClient}).
 * {@code load}: the same template driven closed-loop, measured (see {@link LoadClient}).
 * {@code responder}: {@code @KafkaListener} + {@code @SendTo} handlers (see {@link Responder}).
 * Results go to stdout as one JSON object per line; logs go to stderr.
 */
public final class SpringPeer {

    private SpringPeer() {
    }

    public static void main(String[] argv) throws Exception {
        // slf4j-simple: stderr, warnings and errors only, unless the caller says otherwise.
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        if (argv.length == 0) {
            usage();
        }
        Args args = Args.parse(argv);
        switch (argv[0]) {
            case "client" -> System.exit(ReplyingClient.run(args));
            case "load" -> System.exit(LoadClient.run(args));
            case "responder" -> Responder.run(args);
            default -> usage();
        }
    }

    private static void usage() {
        System.err.println("usage: spring-peer client|load|responder --bootstrap HOST:PORT ... "
                + "(see peer.SpringPeer)");
        System.exit(2);
    }

    /** {@code --name value} pairs after the mode. */
    record Args(Map<String, String> values) {

        static Args parse(String[] argv) {
            Map<String, String> values = new HashMap<>();
            for (int i = 1; i < argv.length; i += 2) {
                if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                    throw new IllegalArgumentException("expected --name value pairs at " + argv[i]);
                }
                values.put(argv[i].substring(2), argv[i + 1]);
            }
            return new Args(values);
        }

        String required(String name) {
            String value = this.values.get(name);
            if (value == null || value.isEmpty()) {
                throw new IllegalArgumentException("--" + name + " is required");
            }
            return value;
        }

        String optional(String name, String fallback) {
            return this.values.getOrDefault(name, fallback);
        }

        int integer(String name, int fallback) {
            String value = this.values.get(name);
            return value == null ? fallback : Integer.parseInt(value);
        }
    }
}

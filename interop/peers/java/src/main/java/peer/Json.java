package peer;

import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.MissingNode;

/** The one JSON mapper of the peer (Jackson 3, as Spring Kafka 4 uses). */
final class Json {

    static final JsonMapper MAPPER = JsonMapper.builder().build();

    private Json() {
    }

    /** The parsed value, or a missing node when it is not JSON. */
    static JsonNode parse(String text) {
        if (text == null) {
            return MissingNode.getInstance();
        }
        try {
            return MAPPER.readTree(text);
        }
        catch (JacksonException notJson) {
            return MissingNode.getInstance();
        }
    }
}

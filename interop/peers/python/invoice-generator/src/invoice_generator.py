#!/usr/bin/env python
"""The original invoice generator, as a test peer: what it reads and what it puts on the wire.

    python src/invoice_generator.py config/config.ini [--reset]

Reads `[default]` (bootstrap.servers) and `[consumer]` (group.id, auto.offset.reset) from the
config file, consumes `generate-invoice` and, for every message whatever its content, produces one
plain-text reply with no key and no headers, `Invoice number: #N generated.` with N random in
1000..99999, to `invoice-generated`, flushing after every reply. `--reset` rewinds every assigned
partition to the beginning when it is assigned.

One deviation from the original: topic names get a namespace in front, from the environment's
`TOPIC_PREFIX` or else `[topics] prefix` in the config file (empty by default: the original
names), so that tests can run on topics of their own.
"""

import os
from argparse import ArgumentParser, FileType
from configparser import ConfigParser
from random import randint

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer

if __name__ == "__main__":
    # Parse the command line.
    parser = ArgumentParser()
    parser.add_argument("config_file", type=FileType("r"))
    parser.add_argument("--reset", action="store_true")
    args = parser.parse_args()

    # Parse the configuration.
    config_parser = ConfigParser()
    config_parser.read_file(args.config_file)
    config = dict(config_parser["default"])
    config.update(config_parser["consumer"])

    # The deviation: a namespace for the topic names.
    prefix = os.environ.get(
        "TOPIC_PREFIX", config_parser.get("topics", "prefix", fallback="")
    )
    request_topic = prefix + "generate-invoice"
    reply_topic = prefix + "invoice-generated"

    # Create the consumer and the producer.
    consumer = Consumer(config)
    producer = Producer(dict(config_parser["default"]))

    # Set up a callback to handle the '--reset' flag.
    def reset_offset(consumer, partitions):
        if args.reset:
            for p in partitions:
                p.offset = OFFSET_BEGINNING
            consumer.assign(partitions)

    # Subscribe to the request topic.
    consumer.subscribe([request_topic], on_assign=reset_offset)

    # Poll for new messages from Kafka, answer each one.
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                print("Waiting...", flush=True)
            elif msg.error():
                print("ERROR: {}".format(msg.error()), flush=True)
            else:
                request = msg.value().decode("utf-8") if msg.value() is not None else ""
                print(
                    "Consumed event from topic {topic}: value = {value}".format(
                        topic=msg.topic(), value=request
                    ),
                    flush=True,
                )
                reply = "Invoice number: #{} generated.".format(randint(1000, 99999))
                producer.produce(reply_topic, reply)
                producer.flush()
                print("Produced event to topic {}: value = {}".format(reply_topic, reply), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        # Leave group and commit final offsets.
        consumer.close()

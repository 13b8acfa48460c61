#!/usr/bin/env bash
# The kill -9 test with idempotency keys and retransmission.
KEYS=true exec bash "$(dirname "$0")/test_durable_kill.sh"

#!/usr/bin/env bash
# The whole test suite: lint, then every test (slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing mosquitto (Debian package) for the MQTT tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) >/dev/null \
      || echo "test: could not install mosquitto; MQTT tests use amqtt, outage/TLS tests will skip" >&2
  else
    echo "test: mosquitto not installed; MQTT tests use amqtt, outage/TLS tests will skip" >&2
  fi
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "test: no chromium/chromedriver: the station browser test skips" \
    "(apt-get install -y chromium chromium-driver; under .ci/run it fails)" >&2
fi
bash scripts/setup.sh all
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || echo "test: note: ruff format would reformat some files" >&2
exec .venv/bin/python -m pytest -q "$@"

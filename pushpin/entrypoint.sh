#!/bin/sh
# Writes the routes file for the backend named by RESTREAM_BACKEND (host:port), then runs
# Pushpin in the foreground.
set -eu
backend="${RESTREAM_BACKEND:-backend:5000}"
printf '* %s,over_http\n' "$backend" > /etc/pushpin/routes
exec pushpin --config /etc/pushpin/pushpin.conf

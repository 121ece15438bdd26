#!/bin/sh
# Writes the routes file for the backend named by RESTREAM_BACKEND (host:port), sets how
# Pushpin writes X-Forwarded-For (PUSHPIN_X_FORWARDED_FOR; default `truncate:0,append`: the
# peer Pushpin saw, for a Pushpin clients reach directly; empty behind a load balancer that
# appends the client's address itself), then runs Pushpin in the foreground.
set -eu
backend="${RESTREAM_BACKEND:-backend:5000}"
printf '* %s,over_http\n' "$backend" > /etc/pushpin/routes
xff="${PUSHPIN_X_FORWARDED_FOR-truncate:0,append}"
case "$xff" in
  *[!a-z0-9:,]*) echo "PUSHPIN_X_FORWARDED_FOR: unexpected value" >&2; exit 64 ;;
esac
conf=/etc/pushpin/pushpin.conf
sed "s/^x_forwarded_for=.*/x_forwarded_for=$xff/" "$conf" > /etc/pushpin/pushpin.run.conf
exec pushpin --config /etc/pushpin/pushpin.run.conf

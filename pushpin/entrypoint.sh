#!/bin/sh
# Renders /etc/pushpin/pushpin.conf from its template with the signing key, the address of
# the internal sockets and how Pushpin writes X-Forwarded-For, writes the routes file for the
# backend named by RESTREAM_BACKEND (host:port), then runs Pushpin in the foreground.
#   RESTREAM_SIG_KEY or RESTREAM_SIG_KEY_FILE  the key Pushpin signs Grip-Sig with (required;
#                                              the backend's pushpin.sig_key is the same)
#   RESTREAM_PUSHPIN_INTERNAL_ADDR             publish (ZeroMQ and HTTP) and stats bind
#                                              address (127.0.0.1; 0.0.0.0 where other
#                                              replicas publish to this Pushpin)
#   RESTREAM_PUSHPIN_LOCAL_ADDR                SUB and command sockets, which nothing outside
#                                              the task uses (127.0.0.1)
#   PUSHPIN_X_FORWARDED_FOR                    Pushpin's x_forwarded_for (default
#                                              `truncate:0,append`: the peer Pushpin saw, for a
#                                              Pushpin clients reach directly; empty behind a
#                                              load balancer that appends the client's address)
#   RESTREAM_PUSHPIN_CLIENT_ADDR               the IPv4 address the client port 7999 binds
#                                              (default: every interface)
#   RESTREAM_PUSHPIN_RUN_DIR, _LOG_DIR         Pushpin's rundir (IPC sockets) and logdir
#                                              (/var/run/pushpin, /var/log/pushpin)
# The last three (and LOCAL_ADDR) let the deploy drill (infrastructure/tests/test_deploy_drill.py) run several
# tasks' Pushpins side by side on one machine; images leave them unset.
set -eu
etc="${RESTREAM_PUSHPIN_ETC:-/etc/pushpin}"
backend="${RESTREAM_BACKEND:-backend:5000}"
internal="${RESTREAM_PUSHPIN_INTERNAL_ADDR:-127.0.0.1}"
local_addr="${RESTREAM_PUSHPIN_LOCAL_ADDR:-127.0.0.1}"
xff="${PUSHPIN_X_FORWARDED_FOR-truncate:0,append}"
client="${RESTREAM_PUSHPIN_CLIENT_ADDR:-}"
rundir="${RESTREAM_PUSHPIN_RUN_DIR:-/var/run/pushpin}"
logdir="${RESTREAM_PUSHPIN_LOG_DIR:-/var/log/pushpin}"
if [ -n "${RESTREAM_SIG_KEY_FILE:-}" ]; then
  key="$(tr -d ' \t\r\n' < "$RESTREAM_SIG_KEY_FILE")"
else
  key="${RESTREAM_SIG_KEY:-}"
fi
case "$key" in
  "" | changeme | *[!A-Za-z0-9._~+/=-]*)
    echo "restream-pushpin: set RESTREAM_SIG_KEY or RESTREAM_SIG_KEY_FILE to the backend's pushpin.sig_key (at least 16 of A-Z a-z 0-9 . _ ~ + / = -; e.g. openssl rand -hex 32)" >&2
    exit 64 ;;
esac
if [ "${#key}" -lt 16 ]; then
  echo "restream-pushpin: the signing key is shorter than 16 characters" >&2
  exit 64
fi
case "$internal" in
  *[!0-9a-fA-F.:]*) echo "restream-pushpin: RESTREAM_PUSHPIN_INTERNAL_ADDR must be an IP address" >&2; exit 64 ;;
esac
case "$local_addr" in
  *[!0-9a-fA-F.:]*) echo "restream-pushpin: RESTREAM_PUSHPIN_LOCAL_ADDR must be an IP address" >&2; exit 64 ;;
esac
case "$client" in
  *[!0-9.]*) echo "restream-pushpin: RESTREAM_PUSHPIN_CLIENT_ADDR must be an IPv4 address" >&2; exit 64 ;;
esac
case "$rundir$logdir" in
  *[!A-Za-z0-9._/-]*) echo "restream-pushpin: RESTREAM_PUSHPIN_RUN_DIR/LOG_DIR: unexpected characters" >&2; exit 64 ;;
esac
case "$xff" in
  *[!a-z0-9:,]*) echo "restream-pushpin: PUSHPIN_X_FORWARDED_FOR: unexpected value" >&2; exit 64 ;;
esac
umask 077
sed -e "s|@SIG_KEY@|$key|" -e "s|@INTERNAL_ADDR@|$internal|g" \
  -e "s|@LOCAL_ADDR@|$local_addr|g" \
  -e "s|^x_forwarded_for=.*|x_forwarded_for=$xff|" \
  -e "s|^http_port=|http_port=${client:+$client:}|" \
  -e "s|^rundir=.*|rundir=$rundir|" -e "s|^logdir=.*|logdir=$logdir|" \
  "$etc/pushpin.conf.in" > "$etc/pushpin.conf"
printf '* %s,over_http\n' "$backend" > "$etc/routes"
exec pushpin --config "$etc/pushpin.conf"

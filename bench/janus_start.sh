#!/usr/bin/env bash
# Starts Debian's Janus with a private, minimal configuration for the benchmark.
#
# usage: bench/janus_start.sh CONF_DIR HTTP_PORT [RTP_PORT_RANGE]
#
# Everything Janus reads lives in CONF_DIR, written afresh here, so the
# system's /etc/janus is never used and nothing is left behind elsewhere.
# Only two modules are loaded, by pointing the plugin and transport folders at
# directories holding one symlink each: the AudioBridge plugin and the plain
# HTTP transport, bound to 127.0.0.1. ICE runs in full mode (Janus's default)
# but gathers only on the interface bench0, with IPv6, mDNS, STUN and TURN off:
# run inside bench/netns.sh, where bench0 carries 127.0.0.2, the answer's only
# candidate is a 127.0.0.2 host candidate and no packet leaves loopback
# addresses (Janus never gathers on `lo` itself; netns.sh says why). It also writes CONF_DIR/prompt.opus (and prompt.wav),
# speech for the adapter to play into each room with --play. Janus itself stays in the foreground (exec), so whoever
# started this script holds its pid and can stop it.
set -euo pipefail

conf=${1:?usage: janus_start.sh CONF_DIR HTTP_PORT [RTP_PORT_RANGE]}
http_port=${2:?usage: janus_start.sh CONF_DIR HTTP_PORT [RTP_PORT_RANGE]}
rtp_range=${3:-20000-40000}
if ! ip -o addr show dev bench0 2>/dev/null | grep -q ' 127\.0\.0\.2/'; then
  echo "janus_start.sh: no bench0 with 127.0.0.2 here; run inside bench/netns.sh" >&2
  exit 1
fi
libdir=$(dirname "$(readlink -f "$(command -v janus)")")/../lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/janus
[ -d "$libdir" ] || libdir=$(dirname "$(dpkg -L janus | grep -m1 '/janus/plugins/libjanus_audiobridge.so$')")/..

mkdir -p "$conf/plugins" "$conf/transports" "$conf/events" "$conf/loggers"
ln -sf "$libdir/plugins/libjanus_audiobridge.so" "$conf/plugins/"
ln -sf "$libdir/transports/libjanus_http.so" "$conf/transports/"

cat > "$conf/janus.jcfg" <<JCFG
general: {
	configs_folder = "$conf"
	plugins_folder = "$conf/plugins"
	transports_folder = "$conf/transports"
	events_folder = "$conf/events"
	loggers_folder = "$conf/loggers"
	debug_level = 3
	debug_timestamps = true
	session_timeout = 60
	server_name = "tingshuo-bench"
	protected_folders = [ "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var" ]
}
certificates: {
}
media: {
	ipv6 = false
	rtp_port_range = "$rtp_range"
	no_media_timer = 5
}
nat: {
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "bench0"
}
plugins: {
}
transports: {
}
events: {
	broadcast = false
}
JCFG

cat > "$conf/janus.transport.http.jcfg" <<JCFG
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	port = $http_port
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
cors: {
}
JCFG

# Speech for the rooms to play to their caller (Ogg Opus, what play_file reads).
if [ ! -s "$conf/prompt.opus" ]; then
  text="This is the Janus audio bridge. Every twenty milliseconds it decodes the caller, mixes this recording in, and encodes a frame for the caller. The quick brown fox jumps over the lazy dog."
  if command -v flite >/dev/null; then flite -voice slt -t "$text" -o "$conf/prompt.raw.wav"
  else espeak-ng -w "$conf/prompt.raw.wav" "$text"; fi
  sox "$conf/prompt.raw.wav" -r 48000 -c 1 -b 16 "$conf/prompt.wav" pad 0.3 0.3
  opusenc --quiet --bitrate 32 "$conf/prompt.wav" "$conf/prompt.opus"
  rm -f "$conf/prompt.raw.wav"
fi

# No static rooms: the adapter creates one room per call through the API.
cat > "$conf/janus.plugin.audiobridge.jcfg" <<JCFG
general: {
	events = false
}
JCFG

exec janus --configs-folder="$conf" --config="$conf/janus.jcfg" --disable-colors

package config

// Template returns the commented tandem.toml that `tandem init` writes. It
// parses to a node that listens on 0.0.0.0:7420 with no peers and no
// folders.
func Template() string { return template }

const template = `# tandem.toml - configuration of this tandem node.
#
# tandem keeps each [[folder]] below identical on this server and on every
# [[peer]] that has a folder with the same id, in both directions.
#
# After editing, restart the daemon (tandem run --home DIR) and check with
#     tandem status --home DIR
# A mistake in this file stops tandem with a message naming the line and the
# key, for example:
#     tandem.toml:12: folder[0].path: must be an absolute path, got "srv/www"
# Durations are Go durations: "90s", "30m", "1h", "1h30m" (no "d" for days).

# Where this node accepts connections from its peers, as "host:port".
# "0.0.0.0:7420" is every IPv4 address, ":7420" every IPv4 and IPv6 address.
# Open this TCP port in the firewall for the peers' addresses.
listen = "0.0.0.0:7420"

# Optional Prometheus metrics: an HTTP listener serving /metrics on this
# "host:port". Leave it commented out (or "") to turn it off. Keep it on
# localhost or a private network: it shows folder names and peer IDs.
#metrics = "127.0.0.1:7421"


# ---------------------------------------------------------------------------
# Peers: one [[peer]] block per other server. Both servers must list each
# other: connections from node IDs that are not listed here are refused.
# ---------------------------------------------------------------------------

#[[peer]]
# The other server's node ID: run "tandem id --home DIR" over there and
# paste its output here. (This server's ID: "tandem id --home DIR" here.)
#id = "PASTE-THE-OTHER-NODE-ID-HERE"
#
# Where to reach it, as "host:port" (its listen port). Either side may dial:
# leave address out on one side (for example a server behind NAT) and that
# side only waits for the other to connect. Set on both, they agree on one
# connection.
#address = "10.0.0.2:7420"


# ---------------------------------------------------------------------------
# Folders: one [[folder]] block per directory to keep in sync.
# ---------------------------------------------------------------------------

#[[folder]]
# Name of the folder, 1 to 64 letters, digits, ".", "_" or "-". It must be
# the same on every node: that is how nodes know which folders to sync.
#id = "www"
#
# Absolute path of the folder on THIS server (it may differ between
# servers). Folders must not be inside each other.
# tandem creates a .tandem/ marker directory in the folder root the first
# time it runs the folder, and never syncs that directory. If the marker is
# missing later (say the disk is not mounted), tandem refuses to run the
# folder instead of syncing "everything was deleted" to the peers; the
# error and "tandem status" say so. Mount the disk again (or, if the folder
# really is meant to be empty now, recreate the marker with mkdir).
#path = "/srv/www"
#
# How often to rescan the whole folder, as a backstop to live change
# notifications (which can miss changes, e.g. on network file systems).
# At least "1s". Default "1h".
#rescan = "1h"
#
# What to do when a file was changed on two nodes before they could sync:
#   "keep-both"   (default) the newer version (by modification time) keeps
#                 the name; the other is kept next to it as
#                 NAME.conflict-<time>-<node>.EXT, so nothing is lost.
#   "newest-wins" the newer version keeps the name; the other is dropped
#                 (into the trash, if trash_days is not 0).
#conflict = "keep-both"
#
# Days to keep files that a sync deleted or overwrote, in the trash under
# the folder's .tandem/ directory, before purging them. 0 turns the trash
# off. Default 7.
#trash_days = 7
`

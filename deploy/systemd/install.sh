#!/bin/sh
# Install or upgrade botwatch as a systemd service on this host (the AlphaEngine host).
#
#   sudo deploy/systemd/install.sh                 # from a checkout: installs that checkout
#   sudo deploy/systemd/install.sh PATH/botwatch_exporter-X.whl
#   sudo deploy/systemd/install.sh botwatch-exporter==X.Y   # anything pip install accepts
#
# It creates the system user `botwatch`, a virtualenv in /opt/botwatch/venv, the unit and its
# drop-ins in /etc/systemd/system, and /etc/botwatch/{botwatch.yml,web.yml,botwatch.env} when
# they do not exist yet (an upgrade keeps your edits). Then it checks the config, reloads
# systemd and (re)starts botwatch. Run it again after adding or removing the groups `docker`
# or `alphaengine`: the matching drop-ins follow.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SOURCE=${1:-$REPO}
PREFIX=${BOTWATCH_PREFIX:-/opt/botwatch}
CONFDIR=/etc/botwatch
UNITDIR=/etc/systemd/system
PYTHON=${PYTHON:-python3}
USER_NAME=botwatch

say() { printf 'install.sh: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run it as root (sudo $0)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "botwatch needs Python 3.11 or later as $PYTHON (Debian 12: apt-get install python3)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
  die "$PYTHON cannot make a virtualenv (Debian: apt-get install python3-venv)"

# 1. The user: a system account with no login and no home of its own.
if ! getent passwd "$USER_NAME" >/dev/null; then
  say "creating the system user $USER_NAME"
  useradd --system --user-group --home-dir /var/lib/botwatch --no-create-home \
    --shell /usr/sbin/nologin --comment "botwatch exporter" "$USER_NAME"
fi

# 2. The program, in a virtualenv owned by root (botwatch cannot modify its own code).
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  say "creating $PREFIX/venv"
  install -d -m 0755 "$PREFIX"
  "$PYTHON" -m venv "$PREFIX/venv"
fi
say "installing $SOURCE"
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
"$PREFIX/venv/bin/pip" install --quiet --upgrade "$SOURCE"
[ -f "$REPO/README.md" ] && install -m 0644 "$REPO/README.md" "$PREFIX/README.md"

# 3. The config: readable by botwatch, writable by root only; never overwritten.
install -d -m 0750 -o root -g "$USER_NAME" "$CONFDIR"
copy_once() { # SRC DEST MODE
  if [ -e "$2" ]; then
    say "keeping $2 (compare it with $1)"
  else
    install -m "$3" -o root -g "$USER_NAME" "$1" "$2"
    say "wrote $2"
  fi
}
copy_once "$HERE/botwatch.yml" "$CONFDIR/botwatch.yml" 0640
copy_once "$HERE/web.yml" "$CONFDIR/web.yml" 0640
if [ ! -e "$CONFDIR/botwatch.env" ]; then
  # Secrets the config refers to as ${NAME}, one NAME=value a line: systemd reads the file
  # as root and hands the values to botwatch, so nobody else needs to read it.
  (umask 077 && echo "# NAME=value lines: botwatch.yml reads them as \${NAME}" >"$CONFDIR/botwatch.env")
  say "wrote $CONFDIR/botwatch.env"
fi
"$PREFIX/venv/bin/botwatch-exporter" check-config "$CONFDIR/botwatch.yml" ||
  die "fix $CONFDIR/botwatch.yml, then run $0 again"
"$PREFIX/venv/bin/botwatch-exporter" check-web-config "$CONFDIR/web.yml" ||
  die "fix $CONFDIR/web.yml, then run $0 again"

# 4. The unit, and a drop-in for each optional group that exists on this host: systemd will not
#    start a unit whose SupplementaryGroups= names a group that does not exist.
install -m 0644 "$HERE/botwatch.service" "$UNITDIR/botwatch.service"
install -d -m 0755 "$UNITDIR/botwatch.service.d"
for group in docker alphaengine; do
  dropin="$UNITDIR/botwatch.service.d/$group.conf"
  if getent group "$group" >/dev/null; then
    install -m 0644 "$HERE/botwatch.service.d/$group.conf" "$dropin"
    say "group $group exists: botwatch joins it ($dropin)"
  elif [ -e "$dropin" ]; then
    rm -f "$dropin"
    say "group $group is gone: removed $dropin"
  fi
done

# 5. Start (or restart onto the new code and unit).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable botwatch.service
  systemctl restart botwatch.service
  say "started; check it with: systemctl status botwatch; curl -s http://127.0.0.1:9877/-/healthy"
else
  say "systemd is not running here; once it is: systemctl daemon-reload && systemctl enable --now botwatch"
fi

#!/bin/sh
# Start or stop the real mail, news, file, directory, chat and database servers that
# tests/probe/test_real_servers.py checks certwatch's protocol dialogues
# against, each on a fixed loopback port with a certificate from a private CA.
#
#   sh scripts/protocol-servers.sh start   # install what is missing, start, write the manifest
#   sh scripts/protocol-servers.sh stop    # stop every server that start started
#
# Everything lives in $CERTWATCH_PROTOCOL_SERVERS_DIR (default
# /tmp/certwatch-protocol-servers). The CA and the server certificate are in
# pki/, and each server has a folder with its configuration file, data and
# log. manifest.json lists every protocol with its port, the CA file, the
# SHA-256 fingerprint of the leaf certificate and the server's name and
# version. A server that cannot be installed or started is listed with
# "running": false and the reason, and its tests are skipped with that reason.
# Each server here is a private instance that reads only its own files, so the
# packages' default configuration under /etc is not used, and the system's
# PostgreSQL and MariaDB keep running untouched.
#
# start is idempotent: servers already running are kept, and packages already
# installed are not asked for again. It exits 1 when any server is not running.
# It needs root, to install packages and to run each server as its own user.
set -u

STATE=${CERTWATCH_PROTOCOL_SERVERS_DIR:-/tmp/certwatch-protocol-servers}
PKI=$STATE/pki
MANIFEST=$STATE/manifest.json
ENTRIES=$STATE/manifest.entries
LISTEN=127.0.0.1
SERVER_NAME=localhost
# Names in the server certificate, besides the IP address 127.0.0.1.
CERTIFICATE_NAMES="localhost mail.example.test ldap.example.test ftp.example.test db.example.test"
# The leaf is reissued when it has fewer days left than this, so that a kept
# state folder never serves a certificate that certwatch would warn about.
RENEW_DAYS=45

IMAP_PORT=21143
IMAPS_PORT=21993
POP3_PORT=21110
POP3S_PORT=21995
SIEVE_PORT=21190
FTP_PORT=21021
FTPS_PORT=21990
FTP_PLAIN_PORT=21121
LDAP_PORT=21389
LDAPS_PORT=21636
XMPP_PORT=21222
XMPP_SERVER_PORT=21269
POSTGRES_PORT=21432
MYSQL_PORT=21306
NNTP_PORT=21119

# Debian packages of the servers. postgresql and mariadb-server are installed
# only when missing, because the project's machine image has both already.
PACKAGES="dovecot-imapd dovecot-pop3d dovecot-managesieved vsftpd slapd prosody inn2"

# INN's programs, its package's postinst among them, read the inn.conf that
# INNCONF names instead of /etc/news/inn.conf. The postinst of inn2
# 2.7.1-1+deb12u1 fails when the host name has no domain, as in many
# containers, unless inn.conf sets one. The private inn.conf sets one, so it
# is written before apt-get runs.
INN_DIR=$STATE/inn
INNCONF=$INN_DIR/etc/inn.conf
export INNCONF

log() {
    echo "protocol-servers: $*" >&2
}

# ---------------------------------------------------------------- packages

is_installed() {
    dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q ' installed$'
}

# Print the upstream version of an installed Debian package: no epoch, no
# Debian revision, no +dfsg suffix ("1:2.3.19.1+dfsg1-2.1+deb12u7" is 2.3.19.1).
package_version() {
    dpkg-query -W -f '${Version}' "$1" 2>/dev/null | sed 's/^[0-9]*://; s/[-+~].*$//'
}

install_packages() {
    missing=
    for package in $PACKAGES; do
        is_installed "$package" || missing="$missing $package"
    done
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        missing="$missing postgresql"
    fi
    command -v mariadbd >/dev/null 2>&1 || missing="$missing mariadb-server"
    [ -z "$missing" ] && return 0

    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get is not available, so these packages stay missing:$missing"
        return 1
    fi
    log "installing:$missing"
    started=$(date +%s)
    # A policy-rc.d that exits with 101 keeps the packages' own services from
    # starting on their default ports. The project's machine image has one.
    policy_created=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=yes
    fi
    # shellcheck disable=SC2086 # the package names are meant to split
    if apt-get update -q >"$STATE/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            $missing >>"$STATE/apt.log" 2>&1; then
        log "installed in $(($(date +%s) - started)) s"
        status=0
    else
        log "apt-get install failed after $(($(date +%s) - started)) s, see $STATE/apt.log:"
        tail -n 5 "$STATE/apt.log" >&2
        status=1
    fi
    [ -n "$policy_created" ] && rm -f /usr/sbin/policy-rc.d
    return $status
}

# ---------------------------------------------------------------- certificates

# True when the certificate FILE is missing or expires within RENEW_DAYS.
expires_soon() {
    [ ! -s "$1" ] || ! openssl x509 -in "$1" -noout -checkend $((RENEW_DAYS * 86400)) >/dev/null 2>&1
}

# Create the CA and the server certificate, or reissue them when they are
# missing or expire within RENEW_DAYS. Returns 0 when a new leaf was made.
make_certificates() {
    mkdir -p "$PKI"
    if ! expires_soon "$PKI/server.pem" && ! expires_soon "$PKI/ca.pem"; then
        return 1
    fi

    subject_names="IP:127.0.0.1"
    for name in $CERTIFICATE_NAMES; do
        subject_names="$subject_names,DNS:$name"
    done
    cat >"$PKI/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = certwatch protocol servers test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $subject_names
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    if expires_soon "$PKI/ca.pem"; then
        openssl req -x509 -config "$PKI/openssl.cnf" -extensions ca -days 3650 \
            -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null || return 2
    fi
    openssl req -new -config "$PKI/openssl.cnf" -subj "/CN=$SERVER_NAME" \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null || return 2
    openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
        -set_serial "0x$(openssl rand -hex 15)" -days 90 \
        -extfile "$PKI/openssl.cnf" -extensions leaf -out "$PKI/server.pem" 2>/dev/null || return 2
    chmod 600 "$PKI/ca.key" "$PKI/server.key"
    log "issued a new server certificate for $CERTIFICATE_NAMES and 127.0.0.1"
    return 0
}

# Print the leaf's SHA-256 fingerprint as certwatch's JSON writes it:
# lowercase hex without colons.
leaf_fingerprint() {
    openssl x509 -in "$PKI/server.pem" -noout -fingerprint -sha256 |
        sed 's/^.*=//; s/://g' | tr 'A-F' 'a-f'
}

# Copy the server certificate and key into DIR/tls, owned by USER, because
# several servers read their key after they switched to their own user.
install_certificate() {
    user=$1
    dir=$2
    mkdir -p "$dir/tls"
    cp "$PKI/server.pem" "$dir/tls/server.pem"
    cp "$PKI/server.key" "$dir/tls/server.key"
    chown "$user:" "$dir/tls/server.pem" "$dir/tls/server.key"
    chmod 644 "$dir/tls/server.pem"
    chmod 600 "$dir/tls/server.key"
}

# ---------------------------------------------------------------- processes

# True while process PID exists and has not exited. An exited server stays in
# /proc as a zombie until its new parent (PID 1) collects it.
is_alive() {
    state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

# True when PIDFILE names a live process whose command name is COMMAND, so a
# stale file whose number was reused by another process is never trusted.
is_running() {
    [ -s "$1" ] || return 1
    pid=$(head -n 1 "$1" | tr -dc '0-9')
    [ -n "$pid" ] && is_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# Wait up to 30 seconds until every PORT listens on 127.0.0.1.
wait_listening() {
    attempt=0
    while [ $attempt -lt 150 ]; do
        all=yes
        for port in "$@"; do
            ss -Hltn "sport = :$port" 2>/dev/null | grep -q "$LISTEN:$port " || all=
        done
        [ -n "$all" ] && return 0
        attempt=$((attempt + 1))
        sleep 0.2
    done
    return 1
}

# Send SIGTERM to the process in PIDFILE if its command is COMMAND, then wait
# up to 20 seconds for it to exit before sending SIGKILL.
stop_process() {
    is_running "$1" "$2" || return 0
    pid=$(head -n 1 "$1" | tr -dc '0-9')
    kill "$pid" 2>/dev/null
    attempt=0
    while [ $attempt -lt 100 ] && is_alive "$pid"; do
        attempt=$((attempt + 1))
        sleep 0.2
    done
    if is_alive "$pid"; then
        log "$2 (pid $pid) did not stop on SIGTERM, sending SIGKILL"
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$1"
}

# ---------------------------------------------------------------- manifest

# Append one protocol to the manifest: PROTOCOL PORT TLS SOFTWARE VERSION
# PACKAGE LOGFILE REASON, where TLS is true or false (a server that offers no
# TLS at all) and REASON is empty for a server that listens.
record() {
    if [ -z "$8" ]; then
        entry_running=true
        entry_reason=null
    else
        entry_running=false
        entry_reason="\"$(printf '%s' "$8" | tr -d '"\\' | tr '\n' ' ')\""
    fi
    cat >>"$ENTRIES" <<EOF
    {
      "protocol": "$1",
      "host": "$LISTEN",
      "port": $2,
      "server_name": "$SERVER_NAME",
      "tls": $3,
      "ca_file": "$PKI/ca.pem",
      "leaf_sha256": "$FINGERPRINT",
      "software": "$4",
      "version": "$5",
      "package": "$6",
      "log": "$7",
      "running": $entry_running,
      "reason": $entry_reason
    },
EOF
}

write_manifest() {
    {
        echo "{"
        echo "  \"ca_file\": \"$PKI/ca.pem\","
        echo "  \"leaf_sha256\": \"$FINGERPRINT\","
        echo "  \"servers\": ["
        sed '$ s/},$/}/' "$ENTRIES"
        echo "  ]"
        echo "}"
    } >"$MANIFEST.tmp"
    mv "$MANIFEST.tmp" "$MANIFEST"
    rm -f "$ENTRIES"
}

# ---------------------------------------------------------------- Dovecot

start_dovecot() {
    dir=$STATE/dovecot
    version=$(package_version dovecot-core)
    reason=
    protocols="imap pop3"
    sieve_reason=
    if ! command -v dovecot >/dev/null 2>&1 ||
        ! is_installed dovecot-imapd || ! is_installed dovecot-pop3d; then
        reason="Dovecot is not installed (Debian packages dovecot-imapd and dovecot-pop3d)"
    elif is_installed dovecot-managesieved; then
        protocols="$protocols sieve"
    else
        sieve_reason="ManageSieve is not installed (Debian package dovecot-managesieved)"
    fi

    if [ -z "$reason" ] && ! is_running "$dir/run/master.pid" dovecot; then
        mkdir -p "$dir/run" "$dir/state" "$dir/home"
        chown dovecot: "$dir/home"
        install_certificate root "$dir"
        cat >"$dir/dovecot.conf" <<EOF
# A private Dovecot for certwatch's tests, written by scripts/protocol-servers.sh.
protocols = $protocols
listen = $LISTEN
base_dir = $dir/run
state_dir = $dir/state
instance_name = certwatch-dovecot
log_path = $dir/dovecot.log
ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
ssl_dh = </usr/share/dovecot/dh.pem
auth_mechanisms = plain
passdb {
  driver = static
  args = password=$(openssl rand -hex 16)
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$dir/home/%u
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = $POP3S_PORT
    ssl = yes
  }
}
EOF
        if [ -z "$sieve_reason" ]; then
            cat >>"$dir/dovecot.conf" <<EOF
service managesieve-login {
  inet_listener sieve {
    port = $SIEVE_PORT
  }
}
EOF
        fi
        dovecot -c "$dir/dovecot.conf" >>"$dir/dovecot.log" 2>&1 ||
            reason="dovecot -c $dir/dovecot.conf failed"
    fi
    ports="$IMAP_PORT $IMAPS_PORT $POP3_PORT $POP3S_PORT"
    [ -z "$sieve_reason" ] && ports="$ports $SIEVE_PORT"
    if [ -z "$reason" ]; then
        # shellcheck disable=SC2086 # the ports are meant to split
        wait_listening $ports || reason="Dovecot does not listen on 127.0.0.1 ports $ports"
    fi
    [ -z "$sieve_reason" ] && sieve_reason=$reason

    record imap $IMAP_PORT true Dovecot "$version" dovecot-imapd "$dir/dovecot.log" "$reason"
    record imaps $IMAPS_PORT true Dovecot "$version" dovecot-imapd "$dir/dovecot.log" "$reason"
    record pop3 $POP3_PORT true Dovecot "$version" dovecot-pop3d "$dir/dovecot.log" "$reason"
    record pop3s $POP3S_PORT true Dovecot "$version" dovecot-pop3d "$dir/dovecot.log" "$reason"
    record sieve $SIEVE_PORT true "Dovecot with Pigeonhole ManageSieve" "$version" \
        dovecot-managesieved "$dir/dovecot.log" "$sieve_reason"
    report_start "Dovecot $version" "$dir/dovecot.log" "$reason" $ports
}

stop_dovecot() {
    stop_process "$STATE/dovecot/run/master.pid" dovecot
}

# ---------------------------------------------------------------- vsftpd

# Start the vsftpd NAME on PORT and print the reason when it does not listen.
# MODE is explicit (AUTH TLS), implicit (TLS from the first byte) or plain.
start_vsftpd_instance() {
    name=$1
    port=$2
    mode=$3
    dir=$STATE/vsftpd
    if is_running "$dir/$name.pid" vsftpd; then
        return 0
    fi
    mkdir -p "$dir/empty" "$dir/anonymous"
    chmod 755 "$dir/empty" "$dir/anonymous"
    install_certificate root "$dir"
    case $mode in
        plain) tls="ssl_enable=NO" ;;
        implicit) tls="ssl_enable=YES
implicit_ssl=YES" ;;
        *) tls="ssl_enable=YES" ;;
    esac
    # Anonymous read-only access to an empty folder is on, because vsftpd
    # rejects every session with "500 OOPS" when both anonymous and local
    # logins are off. vsftpd 3.0.3 defaults to the cipher list DES-CBC3-SHA,
    # which Debian 12's OpenSSL 3.0 does not offer, so without ssl_ciphers
    # only TLS 1.3 would be left. With seccomp_sandbox=YES, vsftpd 3.0.3
    # under gVisor sends no handshake after its 234 reply to AUTH TLS.
    cat >"$dir/$name.conf" <<EOF
# A private vsftpd for certwatch's tests, written by scripts/protocol-servers.sh.
listen=YES
listen_ipv6=NO
listen_address=$LISTEN
listen_port=$port
background=NO
anonymous_enable=YES
anon_root=$dir/anonymous
no_anon_password=YES
local_enable=NO
write_enable=NO
pasv_enable=NO
secure_chroot_dir=$dir/empty
seccomp_sandbox=NO
xferlog_enable=NO
vsftpd_log_file=$dir/$name.log
$tls
allow_anon_ssl=YES
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$dir/tls/server.pem
rsa_private_key_file=$dir/tls/server.key
EOF
    setsid vsftpd "$dir/$name.conf" </dev/null >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    wait_listening "$port" || echo "vsftpd $dir/$name.conf does not listen on 127.0.0.1 port $port"
}

start_vsftpd() {
    dir=$STATE/vsftpd
    version=$(package_version vsftpd)
    if command -v vsftpd >/dev/null 2>&1; then
        mkdir -p "$dir"
        ftp_reason=$(start_vsftpd_instance ftp $FTP_PORT explicit)
        ftps_reason=$(start_vsftpd_instance ftps $FTPS_PORT implicit)
        plain_reason=$(start_vsftpd_instance ftp-plain $FTP_PLAIN_PORT plain)
    else
        ftp_reason="vsftpd is not installed (Debian package vsftpd)"
        ftps_reason=$ftp_reason
        plain_reason=$ftp_reason
    fi
    record ftp $FTP_PORT true vsftpd "$version" vsftpd "$dir/ftp.log" "$ftp_reason"
    record ftps $FTPS_PORT true vsftpd "$version" vsftpd "$dir/ftps.log" "$ftps_reason"
    record ftp $FTP_PLAIN_PORT false vsftpd "$version" vsftpd "$dir/ftp-plain.log" "$plain_reason"
    if [ "$ftp_reason" = "$ftps_reason" ] && [ "$ftp_reason" = "$plain_reason" ]; then
        failure=$ftp_reason
    else
        failure=$(printf '%s\n' "$ftp_reason" "$ftps_reason" "$plain_reason" |
            sed '/^$/d' | paste -sd ';' -)
    fi
    report_start "vsftpd $version" "$dir/*.log" "$failure" $FTP_PORT $FTPS_PORT $FTP_PLAIN_PORT
}

stop_vsftpd() {
    for name in ftp ftps ftp-plain; do
        stop_process "$STATE/vsftpd/$name.pid" vsftpd
    done
}

# ---------------------------------------------------------------- slapd

start_slapd() {
    dir=$STATE/slapd
    version=$(package_version slapd)
    reason=
    if [ ! -x /usr/sbin/slapd ]; then
        reason="slapd is not installed (Debian package slapd)"
    elif ! is_running "$dir/slapd.pid" slapd; then
        mkdir -p "$dir/db"
        install_certificate openldap "$dir"
        cat >"$dir/slapd.conf" <<EOF
# A private slapd for certwatch's tests, written by scripts/protocol-servers.sh.
include /etc/ldap/schema/core.schema
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile $dir/tls/server.pem
TLSCertificateKeyFile $dir/tls/server.key
database mdb
maxsize 16777216
suffix "dc=example,dc=test"
directory $dir/db
EOF
        chown -R openldap: "$dir"
        /usr/sbin/slapd -f "$dir/slapd.conf" -u openldap -g openldap \
            -h "ldap://$LISTEN:$LDAP_PORT/ ldaps://$LISTEN:$LDAPS_PORT/" \
            >"$dir/slapd.log" 2>&1 || reason="slapd -f $dir/slapd.conf failed"
    fi
    if [ -z "$reason" ]; then
        wait_listening $LDAP_PORT $LDAPS_PORT ||
            reason="slapd does not listen on 127.0.0.1 ports $LDAP_PORT and $LDAPS_PORT"
    fi
    record ldap $LDAP_PORT true OpenLDAP "$version" slapd "$dir/slapd.log" "$reason"
    record ldaps $LDAPS_PORT true OpenLDAP "$version" slapd "$dir/slapd.log" "$reason"
    report_start "OpenLDAP slapd $version" "$dir/slapd.log" "$reason" $LDAP_PORT $LDAPS_PORT
}

stop_slapd() {
    stop_process "$STATE/slapd/slapd.pid" slapd
}

# ---------------------------------------------------------------- Prosody

start_prosody() {
    dir=$STATE/prosody
    version=$(package_version prosody)
    reason=
    if ! command -v prosody >/dev/null 2>&1; then
        reason="Prosody is not installed (Debian package prosody)"
    elif ! is_running "$dir/prosody.pid" lua5.4; then
        mkdir -p "$dir/data"
        install_certificate prosody "$dir"
        # Prosody 0.12 shuts down when started as root, so it runs as the
        # package's user.
        cat >"$dir/prosody.cfg.lua" <<EOF
-- A private Prosody for certwatch's tests, written by scripts/protocol-servers.sh.
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
interfaces = { "$LISTEN" }
local_interfaces = { "$LISTEN" }
c2s_ports = { $XMPP_PORT }
s2s_ports = { $XMPP_SERVER_PORT }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
modules_enabled = { "tls", "saslauth", "dialback", "disco", "ping" }
log = { { levels = { min = "info" }, to = "file", filename = "$dir/prosody.log" } }
certificates = "$dir/tls"
ssl = { certificate = "$dir/tls/server.pem", key = "$dir/tls/server.key" }
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_hashed"
storage = "internal"
VirtualHost "$SERVER_NAME"
EOF
        chown -R prosody: "$dir"
        setsid setpriv --reuid=prosody --regid=prosody --init-groups \
            prosody -F --config "$dir/prosody.cfg.lua" </dev/null >>"$dir/prosody.out" 2>&1 &
    fi
    if [ -z "$reason" ]; then
        wait_listening $XMPP_PORT $XMPP_SERVER_PORT ||
            reason="Prosody does not listen on 127.0.0.1 ports $XMPP_PORT and $XMPP_SERVER_PORT"
    fi
    record xmpp $XMPP_PORT true Prosody "$version" prosody "$dir/prosody.log" "$reason"
    record xmpp-server $XMPP_SERVER_PORT true Prosody "$version" prosody "$dir/prosody.log" "$reason"
    report_start "Prosody $version" "$dir/prosody.log" "$reason" $XMPP_PORT $XMPP_SERVER_PORT
}

stop_prosody() {
    stop_process "$STATE/prosody/prosody.pid" lua5.4
}

# ---------------------------------------------------------------- PostgreSQL

# Print the bin folder of the newest PostgreSQL installed.
postgres_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
}

start_postgres() {
    dir=$STATE/postgres
    bin=$(postgres_bin)
    reason=
    version=
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        reason="PostgreSQL is not installed (Debian package postgresql)"
    else
        version=$("$bin/postgres" --version | awk '{ print $3 }')
        mkdir -p "$dir"
        chown postgres: "$dir"
        if [ ! -s "$dir/data/PG_VERSION" ]; then
            # Only the TLS handshake is needed, so TCP logins are rejected.
            as_postgres "$bin/initdb" -D "$dir/data" -U postgres \
                --auth-local=peer --auth-host=reject --no-sync --no-instructions \
                >"$dir/initdb.log" 2>&1 ||
                reason="initdb -D $dir/data failed, see $dir/initdb.log"
        fi
        if [ -z "$reason" ] &&
            ! grep -q '^# Set by scripts/protocol-servers.sh' "$dir/data/postgresql.conf"; then
            cat >>"$dir/data/postgresql.conf" <<EOF
# Set by scripts/protocol-servers.sh for certwatch's tests.
listen_addresses = '$LISTEN'
port = $POSTGRES_PORT
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/tls/server.pem'
ssl_key_file = '$dir/tls/server.key'
EOF
        fi
    fi
    if [ -z "$reason" ] && ! as_postgres "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; then
        install_certificate postgres "$dir"
        setsid -w setpriv --reuid=postgres --regid=postgres --init-groups \
            "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            </dev/null >"$dir/pg_ctl.log" 2>&1 ||
            reason="pg_ctl start -D $dir/data failed"
    fi
    if [ -z "$reason" ]; then
        wait_listening $POSTGRES_PORT ||
            reason="PostgreSQL does not listen on 127.0.0.1 port $POSTGRES_PORT"
    fi
    record postgres $POSTGRES_PORT true PostgreSQL "$version" "postgresql-${version%%.*}" \
        "$dir/postgres.log" "$reason"
    report_start "PostgreSQL $version" "$dir/postgres.log" "$reason" $POSTGRES_PORT
}

stop_postgres() {
    dir=$STATE/postgres
    bin=$(postgres_bin)
    if [ -n "$bin" ] && [ -s "$dir/data/PG_VERSION" ]; then
        as_postgres "$bin/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------- MariaDB

# MariaDB sends an error packet in place of its handshake to a client whose
# host no account names, and mariadb-install-db makes accounts for localhost
# only. So clients from 127.0.0.1 get a locked account, which no client can
# log in to. Prints the failure reason.
create_mariadb_account() {
    dir=$STATE/mariadb
    [ -e "$dir/account-created" ] && return 0
    if mariadb --no-defaults --socket="$dir/mariadbd.sock" --user=root --execute \
        "CREATE USER IF NOT EXISTS 'certwatch'@'127.0.0.1' ACCOUNT LOCK" \
        >>"$dir/install-db.log" 2>&1; then
        touch "$dir/account-created"
    else
        echo "creating the account certwatch@127.0.0.1 failed, see $dir/install-db.log"
    fi
}

start_mariadb() {
    dir=$STATE/mariadb
    reason=
    version=$(package_version mariadb-server-core)
    if ! command -v mariadbd >/dev/null 2>&1 ||
        ! command -v mariadb-install-db >/dev/null 2>&1; then
        reason="MariaDB is not installed (Debian package mariadb-server)"
    elif ! is_running "$dir/mariadbd.pid" mariadbd; then
        mkdir -p "$dir"
        if [ ! -d "$dir/data/mysql" ]; then
            mariadb-install-db --no-defaults --datadir="$dir/data" --user=mysql \
                --skip-test-db --auth-root-authentication-method=socket \
                >"$dir/install-db.log" 2>&1 ||
                reason="mariadb-install-db --datadir=$dir/data failed, see $dir/install-db.log"
        fi
        install_certificate mysql "$dir"
        chown -R mysql: "$dir"

        if [ -z "$reason" ]; then
            # --no-defaults keeps the system's /etc/mysql settings out.
            setsid mariadbd --no-defaults --user=mysql --datadir="$dir/data" \
                --bind-address=$LISTEN --port=$MYSQL_PORT --socket="$dir/mariadbd.sock" \
                --pid-file="$dir/mariadbd.pid" --log-error="$dir/mariadbd.log" \
                --ssl-cert="$dir/tls/server.pem" --ssl-key="$dir/tls/server.key" \
                --skip-name-resolve --innodb-buffer-pool-size=16M \
                </dev/null >/dev/null 2>&1 &
        fi
    fi

    if [ -z "$reason" ]; then
        wait_listening $MYSQL_PORT ||
            reason="MariaDB does not listen on 127.0.0.1 port $MYSQL_PORT"
    fi
    [ -z "$reason" ] && reason=$(create_mariadb_account)

    record mysql $MYSQL_PORT true MariaDB "$version" mariadb-server "$dir/mariadbd.log" "$reason"
    report_start "MariaDB $version" "$dir/mariadbd.log" "$reason" $MYSQL_PORT
}

stop_mariadb() {
    stop_process "$STATE/mariadb/mariadbd.pid" mariadbd
}

# ---------------------------------------------------------------- INN

# Write the private configuration of INN's reader daemon nnrpd under INN_DIR:
# inn.conf with every path inside INN_DIR, read access for 127.0.0.1, and one
# empty group. Files that exist are kept, so a running nnrpd is not disturbed.
write_inn_config() {
    mkdir -p "$INN_DIR/etc" "$INN_DIR/db" "$INN_DIR/run" "$INN_DIR/log" \
        "$INN_DIR/tmp" "$INN_DIR/http" "$INN_DIR/spool/articles" \
        "$INN_DIR/spool/overview"
    [ -f "$INNCONF" ] || cat >"$INNCONF" <<EOF
# A private INN for certwatch's tests, written by scripts/protocol-servers.sh.
domain: example.test
pathhost: news.example.test
organization: "certwatch tests"
mta: "/bin/false %s"
ovmethod: tradindexed
hismethod: hisv6
pathnews: /usr/lib/news
pathbin: /usr/lib/news/bin
pathcontrol: /usr/lib/news/bin/control
pathfilter: /usr/lib/news/bin/filter
pathetc: $INN_DIR/etc
pathdb: $INN_DIR/db
pathrun: $INN_DIR/run
pathlog: $INN_DIR/log
pathhttp: $INN_DIR/http
pathtmp: $INN_DIR/tmp
pathspool: $INN_DIR/spool
patharticles: $INN_DIR/spool/articles
pathoverview: $INN_DIR/spool/overview
pathincoming: $INN_DIR/spool/incoming
pathoutgoing: $INN_DIR/spool/outgoing
patharchive: $INN_DIR/spool/archive
tlscertfile: $INN_DIR/tls/server.pem
tlskeyfile: $INN_DIR/tls/server.key
EOF
    [ -f "$INN_DIR/etc/readers.conf" ] || cat >"$INN_DIR/etc/readers.conf" <<EOF
auth "loopback" {
    hosts: "$LISTEN"
    default: "<loopback>"
}
access "loopback" {
    users: "<loopback>"
    newsgroups: "*"
    access: R
}
EOF
    [ -f "$INN_DIR/etc/storage.conf" ] || cat >"$INN_DIR/etc/storage.conf" <<EOF
method tradspool {
    newsgroups: *
    class: 0
}
EOF
    [ -f "$INN_DIR/db/active" ] ||
        printf 'local.test 0000000000 0000000001 y\n' >"$INN_DIR/db/active"
    [ -f "$INN_DIR/db/newsgroups" ] ||
        printf 'local.test\tA group for certwatch tests.\n' >"$INN_DIR/db/newsgroups"
    touch "$INN_DIR/db/active.times"
    # Debian's base-passwd always has the user news.
    chown -R news: "$INN_DIR"
}

# nnrpd offers STARTTLS (RFC 4642) on its plain port when inn.conf names a
# certificate and key. With -D it listens by itself and serves each
# connection in a child process, so no innd is needed.
start_inn() {
    dir=$INN_DIR
    version=$(package_version inn2)
    reason=
    if [ ! -x /usr/lib/news/bin/nnrpd ] || ! is_installed inn2; then
        reason="INN is not installed (Debian package inn2)"
    elif ! is_running "$dir/run/nnrpd-$NNTP_PORT.pid" nnrpd; then
        install_certificate news "$dir"
        # nnrpd greets every client with "400 NNTP server unavailable" while
        # the overview database is missing, so build the empty one. makehistory
        # warns that the empty spool has no tradspool.map, which is harmless.
        if [ ! -f "$dir/spool/overview/group.index" ]; then
            su news -s /bin/sh -c "INNCONF='$INNCONF' /usr/lib/news/bin/makehistory -O -x" \
                >>"$dir/log/makehistory.log" 2>&1 ||
                reason="makehistory -O could not build the overview, see $dir/log/makehistory.log"
        fi
    fi
    if [ -z "$reason" ] && ! is_running "$dir/run/nnrpd-$NNTP_PORT.pid" nnrpd; then
        # nnrpd binds its port as root, then runs as the user news.
        setsid /usr/lib/news/bin/nnrpd -D -b $LISTEN -p $NNTP_PORT \
            </dev/null >>"$dir/log/nnrpd.log" 2>&1 &
    fi
    if [ -z "$reason" ]; then
        wait_listening $NNTP_PORT ||
            reason="nnrpd does not listen on 127.0.0.1 port $NNTP_PORT"
    fi

    record nntp $NNTP_PORT true INN "$version" inn2 "$dir/log/nnrpd.log" "$reason"
    report_start "INN $version" "$dir/log/nnrpd.log" "$reason" $NNTP_PORT
}

stop_inn() {
    stop_process "$INN_DIR/run/nnrpd-$NNTP_PORT.pid" nnrpd
}

# ---------------------------------------------------------------- commands

# Print one line per server: NAME LOG REASON PORT..., where NAME may end in
# an empty version.
report_start() {
    name=${1% }
    logfile=$2
    failure=$3
    shift 3
    if [ -z "$failure" ]; then
        log "$name listens on 127.0.0.1 ports $*"
    else
        log "$name is not running: $failure (log: $logfile)"
        FAILED=yes
    fi
}

stop_all() {
    stop_dovecot
    stop_vsftpd
    stop_slapd
    stop_prosody
    stop_postgres
    stop_mariadb
    stop_inn
    rm -f "$MANIFEST"
}

start_all() {
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root, to install packages and run each server as its own user"
        exit 1
    fi
    write_inn_config
    install_packages

    make_certificates
    case $? in
        0) stop_all ;;
        2)
            log "openssl could not make the certificates in $PKI"
            exit 1
            ;;
    esac
    FINGERPRINT=$(leaf_fingerprint)
    FAILED=
    rm -f "$ENTRIES"

    start_dovecot
    start_vsftpd
    start_slapd
    start_prosody
    start_postgres
    start_mariadb
    start_inn

    write_manifest
    log "manifest: $MANIFEST"
    [ -z "$FAILED" ]
}

case ${1:-} in
    start) start_all ;;
    stop) stop_all ;;
    *)
        echo "usage: sh scripts/protocol-servers.sh start|stop" >&2
        exit 2
        ;;
esac

#!/bin/sh
# make-dev-cert.sh [DIR]
#
# A throw-away PKI for development and tests, made with openssl only:
#   DIR/ca.pem        a fresh CA certificate (EC P-256; its key is discarded)
#   DIR/dev-key.pem   the leaf's private key (EC P-256, mode 600)
#   DIR/dev-cert.pem  the leaf certificate for dns.test, then the CA (chain,
#                     leaf first); SANs DNS:dns.test, DNS:*.dns.test (the
#                     policy's client IDs in the SNI: kid-1.dns.test),
#                     DNS:localhost, IP:127.0.0.1, IP:::1; valid 90 days
#                     (browsers refuse more than 398)
# DIR defaults to the directory of this script (certs/).  Does nothing when
# dev-cert.pem and dev-key.pem already exist and the certificate has the
# wildcard name: delete them to start over.
# Never commit the results (.gitignore lists certs/*.pem).
set -eu

if [ $# -gt 1 ]; then
	echo "usage: $0 [DIR]" >&2
	exit 2
fi
dir=${1:-$(cd "$(dirname "$0")" && pwd)}
days=90

if [ -s "$dir/dev-cert.pem" ] && [ -s "$dir/dev-key.pem" ] &&
	openssl x509 -in "$dir/dev-cert.pem" -noout -ext subjectAltName \
		2>/dev/null | grep -q '\*\.dns\.test'; then
	echo "$dir/dev-cert.pem and $dir/dev-key.pem exist: nothing to do"
	exit 0
fi
if ! command -v openssl >/dev/null 2>&1; then
	echo "$0: openssl is needed (apt-get install openssl)" >&2
	exit 1
fi
mkdir -p "$dir"

umask 077
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dnsveil-cert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# --- the CA
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	-out "$tmp/ca-key.pem" 2>/dev/null
openssl req -x509 -new -sha256 -days "$days" -key "$tmp/ca-key.pem" \
	-subj "/O=dnsveil development/CN=dnsveil throw-away dev CA" \
	-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectKeyIdentifier=hash" \
	-out "$tmp/ca.pem"

# --- the leaf
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	-out "$tmp/dev-key.pem" 2>/dev/null
openssl req -new -sha256 -key "$tmp/dev-key.pem" \
	-subj "/O=dnsveil development/CN=dns.test" -out "$tmp/dev.csr"
cat >"$tmp/leaf.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:dns.test,DNS:*.dns.test,DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
openssl x509 -req -sha256 -days "$days" -in "$tmp/dev.csr" \
	-CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
	-CAserial "$tmp/ca.srl" -CAcreateserial \
	-extfile "$tmp/leaf.ext" -out "$tmp/leaf.pem" 2>/dev/null
openssl verify -CAfile "$tmp/ca.pem" "$tmp/leaf.pem" >/dev/null

cat "$tmp/leaf.pem" "$tmp/ca.pem" >"$tmp/dev-cert.pem"
chmod 600 "$tmp/dev-key.pem"
chmod 644 "$tmp/ca.pem" "$tmp/dev-cert.pem"
# the key last, so that a half-done run is redone next time
mv -f "$tmp/ca.pem" "$dir/ca.pem"
mv -f "$tmp/dev-cert.pem" "$dir/dev-cert.pem"
mv -f "$tmp/dev-key.pem" "$dir/dev-key.pem"
echo "made $dir/ca.pem, $dir/dev-cert.pem and $dir/dev-key.pem (dns.test, $days days)"

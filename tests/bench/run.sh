#!/bin/sh
# tests/bench/run.sh [--quick] [bench.py run options...]
#
# dnsveil side by side with dnsdist and Unbound as frontends of the same
# upstream Unbound, on loopback; prints a Markdown table on stdout (progress
# on stderr).  See tests/bench/README.md.  Run as root from anywhere.
set -eu

# --baseline-rev REV: also build commit REV (from `git archive`, into
# build-bench-baseline/) and measure it beside the work tree's build
baseline_rev=
if [ "${1-}" = "--baseline-rev" ]; then
	baseline_rev=${2:?"--baseline-rev needs a commit"}
	shift 2
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

for tool in cmake dnsperf dnsdist unbound taskset openssl; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
		echo "run.sh: $tool is needed (apt-get install cmake dnsperf dnsdist unbound util-linux openssl)" >&2
		exit 1
	fi
done
if ! command -v h2load >/dev/null 2>&1; then
	echo "run.sh: no h2load (apt-get install nghttp2-client): the DoH rows will print n/a" >&2
fi
if [ "$(nproc)" -lt 2 ]; then
	echo "run.sh: needs 2 CPUs (server on CPU 0, load generator on CPU 1)" >&2
	exit 1
fi

echo "run.sh: building the release binary in build-bench/" >&2
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DDV_TESTS=OFF >/dev/null
# only the server: a broken fuzz or test target must not stop the bench
cmake --build build-bench -j2 --target dnsveil >&2
# and the DoQ load generator (the DoQ rows print n/a without it)
if ! cmake --build build-bench -j2 --target dnsveil-doq >&2; then
	echo "run.sh: dnsveil-doq did not build: the DoQ rows will print n/a" >&2
	rm -f build-bench/dnsveil-doq
fi
sh certs/make-dev-cert.sh >&2

baseline=
if [ -n "$baseline_rev" ]; then
	echo "run.sh: building $baseline_rev in build-bench-baseline/" >&2
	rm -rf build-bench-baseline
	mkdir -p build-bench-baseline/src
	git archive "$baseline_rev" | tar -x -C build-bench-baseline/src
	cmake -S build-bench-baseline/src -B build-bench-baseline/build \
		-DCMAKE_BUILD_TYPE=Release -DDV_TESTS=OFF >/dev/null
	cmake --build build-bench-baseline/build -j2 --target dnsveil >&2
	baseline="--baseline $root/build-bench-baseline/build/dnsveil"
fi

# bench.py stops every process it started (by PID) on exit and on signals
exec /usr/bin/python3 "$here/bench.py" run --dnsveil "$root/build-bench/dnsveil" \
	--doq-client "$root/build-bench/dnsveil-doq" $baseline "$@"

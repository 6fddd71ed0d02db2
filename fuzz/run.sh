#!/bin/sh
# Build the libFuzzer + ASan + UBSan tree and run every fuzz target.
#
#   sh fuzz/run.sh [SECONDS]      (default 60 seconds per target)
#
# Each fuzz/fuzz_<parser>.c becomes build-fuzz/fuzz/fuzz_<parser>; each runs
# for SECONDS on a scratch copy of fuzz/corpus/<parser>/ under
# build-fuzz/runs/<parser>/ (the repository's corpus is never written), two
# at a time (two cores).  Exits non-zero when any target found a crash, a
# leak, a timeout or ran out of memory, after printing the reproducer's path
# and the start of the report.  See fuzz/README.md.
set -eu
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-60}
case $SECONDS_EACH in
'' | *[!0-9]*)
	echo "usage: sh fuzz/run.sh [SECONDS]" >&2
	exit 2
	;;
esac
BUILD=build-fuzz
JOBS=2

# -fsanitize=fuzzer-no-link instruments dv_core (and everything else) for
# coverage; the fuzz binaries themselves get -fsanitize=fuzzer from
# fuzz/CMakeLists.txt.
echo "== building $BUILD (clang, libFuzzer, ASan, UBSan)"
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	-DDV_FUZZ=ON -DDV_SANITIZE=ON -DDV_NOPOOL=ON -DDV_TESTS=OFF \
	-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link >"$BUILD.cmake.log" 2>&1 || {
	cat "$BUILD.cmake.log" >&2
	exit 1
}
rm -f "$BUILD.cmake.log"
cmake --build "$BUILD" -j "$JOBS" >"$BUILD/build.log" 2>&1 || {
	grep -E "error|Error" "$BUILD/build.log" | head -40 >&2
	echo "build failed, see $BUILD/build.log" >&2
	exit 1
}

TARGETS=""
for bin in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	t=${bin##*/fuzz_}
	# DV_FUZZ_SKIP: targets left out of this run (space-separated)
	case " ${DV_FUZZ_SKIP:-} " in
	*" $t "*)
		echo "== skipping fuzz_$t (DV_FUZZ_SKIP)"
		continue
		;;
	esac
	TARGETS="$TARGETS $t"
done
if [ -z "$TARGETS" ]; then
	echo "no fuzz targets were built" >&2
	exit 1
fi

# Run one target in the background; its directory holds the corpus copy,
# the log and any artifact.
start() {
	t=$1
	dir=$BUILD/runs/$t
	rm -rf "$dir"
	mkdir -p "$dir/corpus"
	if [ -d "fuzz/corpus/$t" ]; then
		cp -R "fuzz/corpus/$t/." "$dir/corpus/"
	fi
	(
		ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
			UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
			"$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" \
			-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1
		echo $? >"$dir/rc"
	) &
}

echo "== fuzzing${TARGETS} for ${SECONDS_EACH}s each, $JOBS at a time"
set -- $TARGETS
while [ $# -gt 0 ]; do
	start "$1"
	shift
	if [ $# -gt 0 ]; then
		start "$1"
		shift
	fi
	wait
done

failed=0
printf '\n%-10s %8s %10s %7s %8s %8s  %s\n' target runs exec/s cov ft corpus result
for t in $TARGETS; do
	dir=$BUILD/runs/$t
	rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log")
	# the last status line: "#N DONE cov: C ft: F corp: K/..."
	last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p')
	artifacts=$(ls "$dir" | grep -E '^(crash|leak|timeout|oom)-' || true)
	if [ "$rc" = 0 ] && [ -z "$artifacts" ]; then
		result=ok
	else
		result=FAILED
		failed=1
	fi
	printf '%-10s %8s %10s %7s %8s %8s  %s\n' "$t" "${runs:-?}" \
		"${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done

if [ "$failed" = 1 ]; then
	for t in $TARGETS; do
		dir=$BUILD/runs/$t
		artifacts=$(ls "$dir" | grep -E '^(crash|leak|timeout|oom)-' || true)
		rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
		[ "$rc" = 0 ] && [ -z "$artifacts" ] && continue
		echo
		echo "== fuzz_$t failed (exit $rc); log: $dir/log"
		for a in $artifacts; do
			echo "reproducer: $dir/$a"
			echo "  replay:   $BUILD/fuzz/fuzz_$t $dir/$a"
		done
		# the report: from the sanitizer's or libFuzzer's first line
		sed -n '/^==[0-9]*==\|^INFO: libFuzzer: \|runtime error\|ALARM\|^SUMMARY/,$p' \
			"$dir/log" | grep -v '^MS:\|^#[0-9]' | head -30
	done
	exit 1
fi
echo "all targets passed"

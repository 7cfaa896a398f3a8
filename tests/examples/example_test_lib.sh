# Sourced by the examples' shell tests: the preamble they share.
# example_test_setup NAME DATA_PATH HINT: skips (77) unless DATA_PATH exists (fails under CI=true,
# where the data must be there), then sets $out to a fresh directory removed on exit and defines
# fail MESSAGE (prints "NAME: FAIL: MESSAGE", exits 1).
example_test_setup() {
    local name=$1 path=$2 hint=$3
    if [ ! -e "$path" ]; then
        echo "$path not found ($hint)"
        [ "${CI:-}" = true ] && exit 1 || exit 77
    fi
    out=$(mktemp -d "${TMPDIR:-/tmp}/xgrad_$name.XXXXXX")
    trap 'rm -rf "$out"' EXIT
    eval "fail() { echo \"$name: FAIL: \$*\"; exit 1; }"
}

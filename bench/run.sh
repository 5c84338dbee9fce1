#!/usr/bin/env sh
# The benchmark in one command; every flag goes to bench/run.py (see --help).
exec python3 "$(dirname "$0")/run.py" "$@"

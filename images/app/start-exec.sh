#!/bin/sh
# The same wrapper, ending in exec: the app becomes PID 1.
echo "start.sh: starting app"
exec /app "$@"

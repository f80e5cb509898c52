#!/bin/sh
# Typical wrapper: set up, then run the app. Without exec, this shell
# stays PID 1 and SIGTERM never reaches the app.
echo "start.sh: starting app"
/app "$@"

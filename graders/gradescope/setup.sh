#!/usr/bin/env bash
# Gradescope autograder set-up: runs once, as root, when the autograder image is built, from the
# unpacked zip in /autograder/source (built by `python -m graders.gradescope bundle NN`).
# `make setup` installs the backends' Debian/Ubuntu packages, the venv and the Jupyter kernel.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends make python3 python3-venv python3-dev gcc
cd /autograder/source
make setup

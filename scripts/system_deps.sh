#!/usr/bin/env bash
# System packages the tests use when present: bubblewrap (the code sandbox's network and file
# system namespaces), libseccomp2 (the seccomp filter of the sandbox's landlock backend, usually
# there already) and SLURM with munge (the one-node cluster of the slurm tests).
# Installs them with apt-get when running as root; otherwise says what is missing and goes on.
set -uo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || need+=(libseccomp2)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || echo "system deps: apt-get failed; tests that need ${need[*]} will be skipped"
else
  echo "system deps: missing ${need[*]} (not root); tests that need them will be skipped"
fi

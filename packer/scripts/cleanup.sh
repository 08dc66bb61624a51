#!/bin/sh
# Last step of a bake, as root: nothing of the build host stays in the image. Instances
# launched from it get their own machine id, SSH host keys and authorized key at first boot.
set -eu

# systemd makes a new id at boot when the file is empty (and D-Bus follows it).
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id

# cloud-init makes new host keys and installs the instance's key pair on first boot; where
# there is no cloud-init (the local bake's container) the host keys stay so sshd can start.
if command -v cloud-init >/dev/null 2>&1; then
  rm -f /etc/ssh/ssh_host_*
  rm -f /home/*/.ssh/authorized_keys /root/.ssh/authorized_keys 2>/dev/null || true
  cloud-init clean --logs
fi

# No deployment is baked in: its node reads the deployment's settings at every boot.
rm -f /etc/tlops/deployment.env

# The bake's logs and package caches.
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
find /var/log -type f -name '*.log' -exec truncate -s 0 {} +

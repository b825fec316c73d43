#!/usr/bin/env bash
# The integration tests start a real OpenSSH server (also inside network namespaces, with
# iproute2 and nftables for the faults) and a real PostgreSQL, open the HTML report in
# headless Chromium and boot an aarch64 board under qemu; install them when missing and we
# can.
set -euo pipefail
missing=()
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)  # the fault lab
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
# the shared store's run index (tests/servers.py runs initdb/pg_ctl into a temporary folder)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# the aarch64 board of the test lab (tests/lab/image.py): without them only its tests skip
lab=()
command -v qemu-system-aarch64 >/dev/null 2>&1 || lab+=(qemu-system-arm)
command -v qemu-img >/dev/null 2>&1 || lab+=(qemu-utils)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || lab+=(debootstrap)
command -v dtc >/dev/null 2>&1 || lab+=(device-tree-compiler)
command -v cpio >/dev/null 2>&1 || lab+=(cpio)
# its second stage in a chroot through qemu-user (minutes); without it, in the VM (TCG)
[ -x /usr/bin/qemu-aarch64-static ] || lab+=(qemu-user-static)
[ ${#missing[@]} -eq 0 ] && [ ${#lab[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} ${lab[*]} (needed by the integration tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" "${lab[@]}" >/dev/null
elif [ ${#missing[@]} -eq 0 ]; then
  echo "note: without ${lab[*]} the aarch64 lab board cannot be built; its tests will skip"
else
  echo "error: the integration tests need ${missing[*]} (a real sshd, PostgreSQL, a browser)." >&2
  echo "       install it (e.g. 'sudo apt-get install ${missing[*]}') and run 'make test' again." >&2
  exit 1
fi

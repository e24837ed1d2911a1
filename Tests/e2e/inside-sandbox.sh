#!/bin/sh
# The end-to-end suite, run inside the nested-SVM sandbox by scripts/e2e.
# Fails (non-zero) on the first broken expectation; the output is shown by CI.
set -e
fail() { echo "e2e: $*"; exit 1; }

info=$(nestdbg kvm-info)
echo "$info"
echo "$info" | grep -qx 'KVM_CAP_NESTED_STATE: 4224' || fail "KVM_CAP_NESTED_STATE is not 4224 inside the sandbox"
echo "$info" | grep -q 'SVM (0x80000001 ECX\[2\]): yes' || fail "KVM inside the sandbox does not offer SVM"

# KVMControl against a nested-capable KVM; NESTDBG_REQUIRE_NESTED makes the
# nested tests fail instead of stepping aside when SVM is missing.
NESTDBG_REQUIRE_NESTED=1 nestdbgPackageTests.xctest --testing-library swift-testing --filter KVMControlTests

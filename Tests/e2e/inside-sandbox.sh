#!/bin/sh
# The end-to-end suite, run inside the nested-SVM sandbox by scripts/e2e.
# Fails (non-zero) on the first broken expectation; the output is shown by CI.
set -e
fail() { echo "e2e: FAILED: $*"; exit 1; }

info=$(nestdbg kvm-info)
echo "$info"
echo "$info" | grep -qx 'KVM_CAP_NESTED_STATE: 4224' || fail "KVM_CAP_NESTED_STATE is not 4224 inside the sandbox"
echo "$info" | grep -q 'SVM (0x80000001 ECX\[2\]): yes' || fail "KVM inside the sandbox does not offer SVM"

# KVMControl and a real L1/L2 round trip against nested KVM. NESTDBG_REQUIRE_NESTED
# makes the nested tests fail instead of stepping aside when SVM is missing; the
# nested test leaves real vmcb12 pages and a nested-state blob in /out/e2e.
NESTDBG_REQUIRE_NESTED=1 NESTDBG_E2E_OUT=/out/e2e \
    nestdbgPackageTests.xctest --testing-library swift-testing --filter 'KVMControlTests|NestedSVMTests'

# The command line on those real files.
state=$(nestdbg nested-state decode /out/e2e/nested-state-guest-mode.bin)
echo "$state" | head -5
echo "$state" | grep -q 'GUEST_MODE|GIF_SET' || fail "nested-state decode: no GUEST_MODE|GIF_SET"
echo "$state" | grep -q 'vmcb_pa: 0x10000' || fail "nested-state decode: wrong vmcb_pa"
diff=$(nestdbg vmcb diff /out/e2e/vmcb12-before-vmrun.bin /out/e2e/vmcb12-after-cpuid-exit.bin)
echo "$diff"
echo "$diff" | grep -q '^exit: CPUID' || fail "vmcb diff: the exit is not CPUID"
echo "$diff" | grep -q 'UNEXPECTED' && fail "vmcb diff: KVM changed a field it does not write"
nestdbg vmcb check /out/e2e/vmcb12-before-vmrun.bin --phys-bits 40 || fail "vmcb check rejects the vmcb12 KVM accepted"
echo "e2e: all checks passed"

#!/bin/sh
# The own VMM as a PC on the sandbox's nested KVM: the VMM-check L1
# (nestdbg write-image --scenario vmmcheck) on 2 vCPUs with a command line and
# a module, run free and stepped. This KVM has SMM: the self-SMI is taken into
# nestdbg's stub (a stop when stepping) and returns.
set -e
fail() { echo "e2e: FAILED: $*"; exit 1; }
nestdbg write-image --scenario vmmcheck /tmp/vmmcheck.elf > /dev/null
printf 'NR_CPUS=2\n' > /tmp/environ
run() { nestdbg run --image /tmp/vmmcheck.elf --append 'x y' --module /tmp/environ --smp 2 "$@"; }
run --free --timeout 300 --serial /out/e2e/vmmcheck-free.serial > /dev/null 2> /out/e2e/vmmcheck-free.err \
    || { cat /out/e2e/vmmcheck-free.err; fail "vmmcheck --free: status $?"; }
cat /out/e2e/vmmcheck-free.serial
grep -qx 'vmmcheck: PASS' /out/e2e/vmmcheck-free.serial || fail "vmmcheck --free did not pass"
grep -qx 'cmdline: /tmp/vmmcheck.elf x y' /out/e2e/vmmcheck-free.serial || fail "vmmcheck: wrong command line"
grep -qx 'aps online: 00000001' /out/e2e/vmmcheck-free.serial || fail "vmmcheck: the AP did not come up"
grep -qx 'smi: taken (state saved at SMBASE 0x30000) and returned' /out/e2e/vmmcheck-free.serial || fail "vmmcheck: the SMI was not taken"
grep -q ', 1 SMI into the SMM stub: the guest exited with status 0' /out/e2e/vmmcheck-free.err \
    || { cat /out/e2e/vmmcheck-free.err; fail "vmmcheck --free: the SMI is not reported"; }
run --batch --timeout 120 --serial /out/e2e/vmmcheck-step.serial > /out/e2e/vmmcheck-step.txt || fail "vmmcheck stepped: status $?"
grep -q 'SMI: the vCPU entered SMM (SMBASE 0x30000)' /out/e2e/vmmcheck-step.txt || fail "vmmcheck stepped: no SMI stop"
cmp /out/e2e/vmmcheck-free.serial /out/e2e/vmmcheck-step.serial || fail "vmmcheck: stepped and free serial output differ"
echo "vmmcheck: PASS free and stepped on 2 vCPUs (command line, module, fw_cfg, APIC timer, INIT/SIPI, SMI into the stub)"
# The timer scenario: L1's APIC timer interrupts L2 (INTR #VMEXITs), L1 takes each tick; stepped and free.
nestdbg run --batch --scenario timer --timeout 120 > /out/e2e/timer.txt || { cat /out/e2e/timer.txt; fail "timer scenario: status $?"; }
[ "$(grep -c 'nested #VMEXIT INTR' /out/e2e/timer.txt)" = 5 ] || { cat /out/e2e/timer.txt; fail "timer scenario: not 5 INTR #VMEXITs"; }
grep -q 'timer: 5 INTR #VMEXITs from L2, each tick taken by L1' /out/e2e/timer.txt || fail "timer scenario: no serial line"
nestdbg run --free --scenario timer --timeout 120 > /out/e2e/timer-free.txt 2>&1 || { cat /out/e2e/timer-free.txt; fail "timer --free: status $?"; }
grep -q 'exited with status 0' /out/e2e/timer-free.txt || fail "timer --free: no clean end"
echo "timer scenario: 5 INTR #VMEXITs from L2 stepped, the same end free"

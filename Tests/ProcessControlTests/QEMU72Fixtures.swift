// Real outputs of this machine's QEMU (qemu-system-x86_64 7.2.22, Debian
// 1:7.2+dfsg-7+deb12u18+b3, -accel kvm -m 64), HMP text with "\r\n" turned
// into "\n" as QMPClient.humanMonitorCommand returns it.

enum QEMU72 {
    /// The greeting line.
    static let greeting = #"""
        {"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}
        """#

    /// `query-cpus-fast`'s answer line.
    static let queryCPUsFast = #"""
        {"return": [{"thread-id": 11386, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}]}
        """#

    /// `query-status` under -S.
    static let queryStatusPrelaunch = #"""
        {"return": {"status": "prelaunch", "singlestep": false, "running": false}}
        """#

    /// The answer to an unknown command.
    static let commandNotFound = #"""
        {"error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}
        """#

    /// `info ramblock` (no HVA column in 7.2).
    static let ramblock = #"""
                      Block Name    PSize              Offset               Used              Total
                          pc.ram    4 KiB  0x0000000000000000 0x0000000004000000 0x0000000004000000
           0000:00:02.0/vga.vram    4 KiB  0x0000000004080000 0x0000000001000000 0x0000000001000000
            /rom@etc/acpi/tables    4 KiB  0x00000000050c0000 0x0000000000020000 0x0000000000200000
                         pc.bios    4 KiB  0x0000000004000000 0x0000000000040000 0x0000000000040000
                          pc.rom    4 KiB  0x0000000004040000 0x0000000000020000 0x0000000000020000
            0000:00:02.0/vga.rom    4 KiB  0x0000000005080000 0x0000000000010000 0x0000000000010000
           /rom@etc/table-loader    4 KiB  0x00000000052c0000 0x0000000000001000 0x0000000000010000
              /rom@etc/acpi/rsdp    4 KiB  0x0000000005300000 0x0000000000001000 0x0000000000001000
        """#

    /// `info mtree -f` under -S: "memory" is flat view #2.
    static let mtreePrelaunch = #"""
        FlatView #0
         AS "I/O", root: io
         Root memory region: io
          0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
          0000000000000008-000000000000000f (prio 0, i/o): dma-cont
          0000000000000010-000000000000001f (prio 0, i/o): io @0000000000000010
          0000000000000020-0000000000000021 (prio 0, i/o): kvm-pic
          0000000000000022-000000000000003f (prio 0, i/o): io @0000000000000022
          0000000000000040-0000000000000043 (prio 0, i/o): kvm-pit
          0000000000000044-000000000000005f (prio 0, i/o): io @0000000000000044
          0000000000000060-0000000000000060 (prio 0, i/o): i8042-data
          0000000000000061-0000000000000061 (prio 0, i/o): pcspk
          0000000000000062-0000000000000063 (prio 0, i/o): io @0000000000000062
          0000000000000064-0000000000000064 (prio 0, i/o): i8042-cmd
          0000000000000065-000000000000006f (prio 0, i/o): io @0000000000000065
          0000000000000070-0000000000000070 (prio 0, i/o): rtc-index
          0000000000000071-0000000000000071 (prio 0, i/o): rtc @0000000000000001
          0000000000000072-000000000000007d (prio 0, i/o): io @0000000000000072
          000000000000007e-000000000000007f (prio 0, i/o): kvmvapic
          0000000000000080-0000000000000080 (prio 0, i/o): ioport80
          0000000000000081-0000000000000083 (prio 0, i/o): dma-page
          0000000000000084-0000000000000086 (prio 0, i/o): io @0000000000000084
          0000000000000087-0000000000000087 (prio 0, i/o): dma-page
          0000000000000088-0000000000000088 (prio 0, i/o): io @0000000000000088
          0000000000000089-000000000000008b (prio 0, i/o): dma-page
          000000000000008c-000000000000008e (prio 0, i/o): io @000000000000008c
          000000000000008f-000000000000008f (prio 0, i/o): dma-page
          0000000000000090-0000000000000091 (prio 0, i/o): io @0000000000000090
          0000000000000092-0000000000000092 (prio 0, i/o): port92
          0000000000000093-000000000000009f (prio 0, i/o): io @0000000000000093
          00000000000000a0-00000000000000a1 (prio 0, i/o): kvm-pic
          00000000000000a2-00000000000000b1 (prio 0, i/o): io @00000000000000a2
          00000000000000b2-00000000000000b3 (prio 0, i/o): apm-io
          00000000000000b4-00000000000000bf (prio 0, i/o): io @00000000000000b4
          00000000000000c0-00000000000000cf (prio 0, i/o): dma-chan
          00000000000000d0-00000000000000df (prio 0, i/o): dma-cont
          00000000000000e0-00000000000000ef (prio 0, i/o): io @00000000000000e0
          00000000000000f0-00000000000000f0 (prio 0, i/o): ioportF0
          00000000000000f1-000000000000016f (prio 0, i/o): io @00000000000000f1
          0000000000000170-0000000000000177 (prio 0, i/o): ide
          0000000000000178-00000000000001cd (prio 0, i/o): io @0000000000000178
          00000000000001ce-00000000000001d1 (prio 0, i/o): vbe
          00000000000001d2-00000000000001ef (prio 0, i/o): io @00000000000001d2
          00000000000001f0-00000000000001f7 (prio 0, i/o): ide
          00000000000001f8-0000000000000375 (prio 0, i/o): io @00000000000001f8
          0000000000000376-0000000000000376 (prio 0, i/o): ide
          0000000000000377-0000000000000377 (prio 0, i/o): io @0000000000000377
          0000000000000378-000000000000037f (prio 0, i/o): parallel
          0000000000000380-00000000000003b3 (prio 0, i/o): io @0000000000000380
          00000000000003b4-00000000000003b5 (prio 0, i/o): vga
          00000000000003b6-00000000000003b9 (prio 0, i/o): io @00000000000003b6
          00000000000003ba-00000000000003ba (prio 0, i/o): vga
          00000000000003bb-00000000000003bf (prio 0, i/o): io @00000000000003bb
          00000000000003c0-00000000000003cf (prio 0, i/o): vga
          00000000000003d0-00000000000003d3 (prio 0, i/o): io @00000000000003d0
          00000000000003d4-00000000000003d5 (prio 0, i/o): vga
          00000000000003d6-00000000000003d9 (prio 0, i/o): io @00000000000003d6
          00000000000003da-00000000000003da (prio 0, i/o): vga
          00000000000003db-00000000000003f0 (prio 0, i/o): io @00000000000003db
          00000000000003f1-00000000000003f5 (prio 0, i/o): fdc
          00000000000003f6-00000000000003f6 (prio 0, i/o): ide
          00000000000003f7-00000000000003f7 (prio 0, i/o): fdc
          00000000000003f8-00000000000004cf (prio 0, i/o): io @00000000000003f8
          00000000000004d0-00000000000004d0 (prio 0, i/o): kvm-elcr
          00000000000004d1-00000000000004d1 (prio 0, i/o): kvm-elcr
          00000000000004d2-000000000000050f (prio 0, i/o): io @00000000000004d2
          0000000000000510-0000000000000511 (prio 0, i/o): fwcfg
          0000000000000512-0000000000000513 (prio 0, i/o): io @0000000000000512
          0000000000000514-000000000000051b (prio 0, i/o): fwcfg.dma
          000000000000051c-0000000000000cf7 (prio 0, i/o): io @000000000000051c
          0000000000000cf8-0000000000000cf8 (prio 0, i/o): pci-conf-idx
          0000000000000cf9-0000000000000cf9 (prio 1, i/o): piix3-reset-control
          0000000000000cfa-0000000000000cfb (prio 0, i/o): pci-conf-idx @0000000000000002
          0000000000000cfc-0000000000000cff (prio 0, i/o): pci-conf-data
          0000000000000d00-0000000000005657 (prio 0, i/o): io @0000000000000d00
          0000000000005658-0000000000005658 (prio 0, i/o): vmport
          0000000000005659-000000000000adff (prio 0, i/o): io @0000000000005659
          000000000000ae00-000000000000ae17 (prio 0, i/o): acpi-pci-hotplug
          000000000000ae18-000000000000aeff (prio 0, i/o): io @000000000000ae18
          000000000000af00-000000000000af1f (prio 0, i/o): acpi-cpu-hotplug
          000000000000af20-000000000000afdf (prio 0, i/o): io @000000000000af20
          000000000000afe0-000000000000afe3 (prio 0, i/o): acpi-gpe0
          000000000000afe4-000000000000b0ff (prio 0, i/o): io @000000000000afe4
          000000000000b100-000000000000b13f (prio 0, i/o): pm-smbus
          000000000000b140-000000000000ffff (prio 0, i/o): io @000000000000b140

        FlatView #1
         AS "i440FX", root: bus master container
         AS "PIIX3", root: bus master container
         AS "VGA", root: bus master container
         AS "piix3-ide", root: bus master container
         AS "PIIX4_PM", root: bus master container
         Root memory region: (none)
          No rendered FlatView

        FlatView #2
         AS "memory", root: system
         AS "cpu-memory-0", root: system
         Root memory region: system
          0000000000000000-000000000009ffff (prio 0, ram): pc.ram KVM
          00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
          00000000000c0000-00000000000dffff (prio 1, rom): pc.rom KVM
          00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000 KVM
          0000000000100000-0000000003ffffff (prio 0, ram): pc.ram @0000000000100000 KVM
          00000000fec00000-00000000fec00fff (prio 0, i/o): kvm-ioapic
          00000000fed00000-00000000fed003ff (prio 0, i/o): hpet
          00000000fee00000-00000000feefffff (prio 4096, i/o): kvm-apic-msi
          00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios KVM

        """#

    /// `info mtree -f` under -S with -object memory-backend-memfd,id=pc.ram,size=64M -machine memory-backend=pc.ram: "memory" is flat view #0.
    static let mtreeMemfd = #"""
        FlatView #0
         AS "memory", root: system
         AS "cpu-memory-0", root: system
         Root memory region: system
          0000000000000000-000000000009ffff (prio 0, ram): pc.ram KVM
          00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
          00000000000c0000-00000000000dffff (prio 1, rom): pc.rom KVM
          00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000 KVM
          0000000000100000-0000000003ffffff (prio 0, ram): pc.ram @0000000000100000 KVM
          00000000fec00000-00000000fec00fff (prio 0, i/o): kvm-ioapic
          00000000fed00000-00000000fed003ff (prio 0, i/o): hpet
          00000000fee00000-00000000feefffff (prio 4096, i/o): kvm-apic-msi
          00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios KVM

        FlatView #1
         AS "i440FX", root: bus master container
         AS "PIIX3", root: bus master container
         AS "VGA", root: bus master container
         AS "piix3-ide", root: bus master container
         AS "PIIX4_PM", root: bus master container
         Root memory region: (none)
          No rendered FlatView

        FlatView #2
         AS "I/O", root: io
         Root memory region: io
          0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
          0000000000000008-000000000000000f (prio 0, i/o): dma-cont
          0000000000000010-000000000000001f (prio 0, i/o): io @0000000000000010
          0000000000000020-0000000000000021 (prio 0, i/o): kvm-pic
          0000000000000022-000000000000003f (prio 0, i/o): io @0000000000000022
          0000000000000040-0000000000000043 (prio 0, i/o): kvm-pit
          0000000000000044-000000000000005f (prio 0, i/o): io @0000000000000044
          0000000000000060-0000000000000060 (prio 0, i/o): i8042-data
          0000000000000061-0000000000000061 (prio 0, i/o): pcspk
          0000000000000062-0000000000000063 (prio 0, i/o): io @0000000000000062
          0000000000000064-0000000000000064 (prio 0, i/o): i8042-cmd
          0000000000000065-000000000000006f (prio 0, i/o): io @0000000000000065
          0000000000000070-0000000000000070 (prio 0, i/o): rtc-index
          0000000000000071-0000000000000071 (prio 0, i/o): rtc @0000000000000001
          0000000000000072-000000000000007d (prio 0, i/o): io @0000000000000072
          000000000000007e-000000000000007f (prio 0, i/o): kvmvapic
          0000000000000080-0000000000000080 (prio 0, i/o): ioport80
          0000000000000081-0000000000000083 (prio 0, i/o): dma-page
          0000000000000084-0000000000000086 (prio 0, i/o): io @0000000000000084
          0000000000000087-0000000000000087 (prio 0, i/o): dma-page
          0000000000000088-0000000000000088 (prio 0, i/o): io @0000000000000088
          0000000000000089-000000000000008b (prio 0, i/o): dma-page
          000000000000008c-000000000000008e (prio 0, i/o): io @000000000000008c
          000000000000008f-000000000000008f (prio 0, i/o): dma-page
          0000000000000090-0000000000000091 (prio 0, i/o): io @0000000000000090
          0000000000000092-0000000000000092 (prio 0, i/o): port92
          0000000000000093-000000000000009f (prio 0, i/o): io @0000000000000093
          00000000000000a0-00000000000000a1 (prio 0, i/o): kvm-pic
          00000000000000a2-00000000000000b1 (prio 0, i/o): io @00000000000000a2
          00000000000000b2-00000000000000b3 (prio 0, i/o): apm-io
          00000000000000b4-00000000000000bf (prio 0, i/o): io @00000000000000b4
          00000000000000c0-00000000000000cf (prio 0, i/o): dma-chan
          00000000000000d0-00000000000000df (prio 0, i/o): dma-cont
          00000000000000e0-00000000000000ef (prio 0, i/o): io @00000000000000e0
          00000000000000f0-00000000000000f0 (prio 0, i/o): ioportF0
          00000000000000f1-000000000000016f (prio 0, i/o): io @00000000000000f1
          0000000000000170-0000000000000177 (prio 0, i/o): ide
          0000000000000178-00000000000001cd (prio 0, i/o): io @0000000000000178
          00000000000001ce-00000000000001d1 (prio 0, i/o): vbe
          00000000000001d2-00000000000001ef (prio 0, i/o): io @00000000000001d2
          00000000000001f0-00000000000001f7 (prio 0, i/o): ide
          00000000000001f8-0000000000000375 (prio 0, i/o): io @00000000000001f8
          0000000000000376-0000000000000376 (prio 0, i/o): ide
          0000000000000377-0000000000000377 (prio 0, i/o): io @0000000000000377
          0000000000000378-000000000000037f (prio 0, i/o): parallel
          0000000000000380-00000000000003b3 (prio 0, i/o): io @0000000000000380
          00000000000003b4-00000000000003b5 (prio 0, i/o): vga
          00000000000003b6-00000000000003b9 (prio 0, i/o): io @00000000000003b6
          00000000000003ba-00000000000003ba (prio 0, i/o): vga
          00000000000003bb-00000000000003bf (prio 0, i/o): io @00000000000003bb
          00000000000003c0-00000000000003cf (prio 0, i/o): vga
          00000000000003d0-00000000000003d3 (prio 0, i/o): io @00000000000003d0
          00000000000003d4-00000000000003d5 (prio 0, i/o): vga
          00000000000003d6-00000000000003d9 (prio 0, i/o): io @00000000000003d6
          00000000000003da-00000000000003da (prio 0, i/o): vga
          00000000000003db-00000000000003f0 (prio 0, i/o): io @00000000000003db
          00000000000003f1-00000000000003f5 (prio 0, i/o): fdc
          00000000000003f6-00000000000003f6 (prio 0, i/o): ide
          00000000000003f7-00000000000003f7 (prio 0, i/o): fdc
          00000000000003f8-00000000000004cf (prio 0, i/o): io @00000000000003f8
          00000000000004d0-00000000000004d0 (prio 0, i/o): kvm-elcr
          00000000000004d1-00000000000004d1 (prio 0, i/o): kvm-elcr
          00000000000004d2-000000000000050f (prio 0, i/o): io @00000000000004d2
          0000000000000510-0000000000000511 (prio 0, i/o): fwcfg
          0000000000000512-0000000000000513 (prio 0, i/o): io @0000000000000512
          0000000000000514-000000000000051b (prio 0, i/o): fwcfg.dma
          000000000000051c-0000000000000cf7 (prio 0, i/o): io @000000000000051c
          0000000000000cf8-0000000000000cf8 (prio 0, i/o): pci-conf-idx
          0000000000000cf9-0000000000000cf9 (prio 1, i/o): piix3-reset-control
          0000000000000cfa-0000000000000cfb (prio 0, i/o): pci-conf-idx @0000000000000002
          0000000000000cfc-0000000000000cff (prio 0, i/o): pci-conf-data
          0000000000000d00-0000000000005657 (prio 0, i/o): io @0000000000000d00
          0000000000005658-0000000000005658 (prio 0, i/o): vmport
          0000000000005659-000000000000adff (prio 0, i/o): io @0000000000005659
          000000000000ae00-000000000000ae17 (prio 0, i/o): acpi-pci-hotplug
          000000000000ae18-000000000000aeff (prio 0, i/o): io @000000000000ae18
          000000000000af00-000000000000af1f (prio 0, i/o): acpi-cpu-hotplug
          000000000000af20-000000000000afdf (prio 0, i/o): io @000000000000af20
          000000000000afe0-000000000000afe3 (prio 0, i/o): acpi-gpe0
          000000000000afe4-000000000000b0ff (prio 0, i/o): io @000000000000afe4
          000000000000b100-000000000000b13f (prio 0, i/o): pm-smbus
          000000000000b140-000000000000ffff (prio 0, i/o): io @000000000000b140

        """#

    /// `info mtree -f` once SeaBIOS has run: RAM shadows 0xC0000-0xFFFFF, the VGA BAR is mapped.
    static let mtreeBooted = #"""
        FlatView #0
         AS "memory", root: system
         AS "cpu-memory-0", root: system
         Root memory region: system
          0000000000000000-000000000009ffff (prio 0, ram): pc.ram KVM
          00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
          00000000000c0000-0000000003ffffff (prio 0, ram): pc.ram @00000000000c0000 KVM
          00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram KVM
          00000000febf0000-00000000febf017f (prio 0, i/o): edid
          00000000febf0180-00000000febf03ff (prio 1, i/o): vga.mmio @0000000000000180
          00000000febf0400-00000000febf041f (prio 0, i/o): vga ioports remapped
          00000000febf0420-00000000febf04ff (prio 1, i/o): vga.mmio @0000000000000420
          00000000febf0500-00000000febf0515 (prio 0, i/o): bochs dispi interface
          00000000febf0516-00000000febf05ff (prio 1, i/o): vga.mmio @0000000000000516
          00000000febf0600-00000000febf0607 (prio 0, i/o): qemu extended regs
          00000000febf0608-00000000febf0fff (prio 1, i/o): vga.mmio @0000000000000608
          00000000fec00000-00000000fec00fff (prio 0, i/o): kvm-ioapic
          00000000fed00000-00000000fed003ff (prio 0, i/o): hpet
          00000000fee00000-00000000feefffff (prio 4096, i/o): kvm-apic-msi
          00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios KVM

        FlatView #1
         AS "I/O", root: io
         Root memory region: io
          0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
          0000000000000008-000000000000000f (prio 0, i/o): dma-cont
          0000000000000010-000000000000001f (prio 0, i/o): io @0000000000000010
          0000000000000020-0000000000000021 (prio 0, i/o): kvm-pic
          0000000000000022-000000000000003f (prio 0, i/o): io @0000000000000022
          0000000000000040-0000000000000043 (prio 0, i/o): kvm-pit
          0000000000000044-000000000000005f (prio 0, i/o): io @0000000000000044
          0000000000000060-0000000000000060 (prio 0, i/o): i8042-data
          0000000000000061-0000000000000061 (prio 0, i/o): pcspk
          0000000000000062-0000000000000063 (prio 0, i/o): io @0000000000000062
          0000000000000064-0000000000000064 (prio 0, i/o): i8042-cmd
          0000000000000065-000000000000006f (prio 0, i/o): io @0000000000000065
          0000000000000070-0000000000000070 (prio 0, i/o): rtc-index
          0000000000000071-0000000000000071 (prio 0, i/o): rtc @0000000000000001
          0000000000000072-000000000000007d (prio 0, i/o): io @0000000000000072
          000000000000007e-000000000000007f (prio 0, i/o): kvmvapic
          0000000000000080-0000000000000080 (prio 0, i/o): ioport80
          0000000000000081-0000000000000083 (prio 0, i/o): dma-page
          0000000000000084-0000000000000086 (prio 0, i/o): io @0000000000000084
          0000000000000087-0000000000000087 (prio 0, i/o): dma-page
          0000000000000088-0000000000000088 (prio 0, i/o): io @0000000000000088
          0000000000000089-000000000000008b (prio 0, i/o): dma-page
          000000000000008c-000000000000008e (prio 0, i/o): io @000000000000008c
          000000000000008f-000000000000008f (prio 0, i/o): dma-page
          0000000000000090-0000000000000091 (prio 0, i/o): io @0000000000000090
          0000000000000092-0000000000000092 (prio 0, i/o): port92
          0000000000000093-000000000000009f (prio 0, i/o): io @0000000000000093
          00000000000000a0-00000000000000a1 (prio 0, i/o): kvm-pic
          00000000000000a2-00000000000000b1 (prio 0, i/o): io @00000000000000a2
          00000000000000b2-00000000000000b3 (prio 0, i/o): apm-io
          00000000000000b4-00000000000000bf (prio 0, i/o): io @00000000000000b4
          00000000000000c0-00000000000000cf (prio 0, i/o): dma-chan
          00000000000000d0-00000000000000df (prio 0, i/o): dma-cont
          00000000000000e0-00000000000000ef (prio 0, i/o): io @00000000000000e0
          00000000000000f0-00000000000000f0 (prio 0, i/o): ioportF0
          00000000000000f1-000000000000016f (prio 0, i/o): io @00000000000000f1
          0000000000000170-0000000000000177 (prio 0, i/o): ide
          0000000000000178-00000000000001cd (prio 0, i/o): io @0000000000000178
          00000000000001ce-00000000000001d1 (prio 0, i/o): vbe
          00000000000001d2-00000000000001ef (prio 0, i/o): io @00000000000001d2
          00000000000001f0-00000000000001f7 (prio 0, i/o): ide
          00000000000001f8-0000000000000375 (prio 0, i/o): io @00000000000001f8
          0000000000000376-0000000000000376 (prio 0, i/o): ide
          0000000000000377-0000000000000377 (prio 0, i/o): io @0000000000000377
          0000000000000378-000000000000037f (prio 0, i/o): parallel
          0000000000000380-00000000000003b3 (prio 0, i/o): io @0000000000000380
          00000000000003b4-00000000000003b5 (prio 0, i/o): vga
          00000000000003b6-00000000000003b9 (prio 0, i/o): io @00000000000003b6
          00000000000003ba-00000000000003ba (prio 0, i/o): vga
          00000000000003bb-00000000000003bf (prio 0, i/o): io @00000000000003bb
          00000000000003c0-00000000000003cf (prio 0, i/o): vga
          00000000000003d0-00000000000003d3 (prio 0, i/o): io @00000000000003d0
          00000000000003d4-00000000000003d5 (prio 0, i/o): vga
          00000000000003d6-00000000000003d9 (prio 0, i/o): io @00000000000003d6
          00000000000003da-00000000000003da (prio 0, i/o): vga
          00000000000003db-00000000000003f0 (prio 0, i/o): io @00000000000003db
          00000000000003f1-00000000000003f5 (prio 0, i/o): fdc
          00000000000003f6-00000000000003f6 (prio 0, i/o): ide
          00000000000003f7-00000000000003f7 (prio 0, i/o): fdc
          00000000000003f8-00000000000004cf (prio 0, i/o): io @00000000000003f8
          00000000000004d0-00000000000004d0 (prio 0, i/o): kvm-elcr
          00000000000004d1-00000000000004d1 (prio 0, i/o): kvm-elcr
          00000000000004d2-000000000000050f (prio 0, i/o): io @00000000000004d2
          0000000000000510-0000000000000511 (prio 0, i/o): fwcfg
          0000000000000512-0000000000000513 (prio 0, i/o): io @0000000000000512
          0000000000000514-000000000000051b (prio 0, i/o): fwcfg.dma
          000000000000051c-00000000000005ff (prio 0, i/o): io @000000000000051c
          0000000000000600-0000000000000603 (prio 0, i/o): acpi-evt
          0000000000000604-0000000000000605 (prio 0, i/o): acpi-cnt
          0000000000000606-0000000000000607 (prio 0, i/o): io @0000000000000606
          0000000000000608-000000000000060b (prio 0, i/o): acpi-tmr
          000000000000060c-00000000000006ff (prio 0, i/o): io @000000000000060c
          0000000000000700-000000000000073f (prio 0, i/o): pm-smbus
          0000000000000740-0000000000000cf7 (prio 0, i/o): io @0000000000000740
          0000000000000cf8-0000000000000cf8 (prio 0, i/o): pci-conf-idx
          0000000000000cf9-0000000000000cf9 (prio 1, i/o): piix3-reset-control
          0000000000000cfa-0000000000000cfb (prio 0, i/o): pci-conf-idx @0000000000000002
          0000000000000cfc-0000000000000cff (prio 0, i/o): pci-conf-data
          0000000000000d00-0000000000005657 (prio 0, i/o): io @0000000000000d00
          0000000000005658-0000000000005658 (prio 0, i/o): vmport
          0000000000005659-000000000000adff (prio 0, i/o): io @0000000000005659
          000000000000ae00-000000000000ae17 (prio 0, i/o): acpi-pci-hotplug
          000000000000ae18-000000000000aeff (prio 0, i/o): io @000000000000ae18
          000000000000af00-000000000000af1f (prio 0, i/o): acpi-cpu-hotplug
          000000000000af20-000000000000afdf (prio 0, i/o): io @000000000000af20
          000000000000afe0-000000000000afe3 (prio 0, i/o): acpi-gpe0
          000000000000afe4-000000000000bfff (prio 0, i/o): io @000000000000afe4
          000000000000c000-000000000000c003 (prio 0, i/o): piix-bmdma
          000000000000c004-000000000000c007 (prio 0, i/o): bmdma
          000000000000c008-000000000000c00b (prio 0, i/o): piix-bmdma
          000000000000c00c-000000000000c00f (prio 0, i/o): bmdma
          000000000000c010-000000000000ffff (prio 0, i/o): io @000000000000c010

        FlatView #2
         AS "i440FX", root: bus master container
         AS "PIIX3", root: bus master container
         AS "VGA", root: bus master container
         AS "piix3-ide", root: bus master container
         AS "PIIX4_PM", root: bus master container
         Root memory region: (none)
          No rendered FlatView

        """#

    /// `gpa2hva 0xfd000000` once SeaBIOS has run.
    static let gpa2hvaVRAM = #"""
        Host virtual address for 0xfd000000 (vga.vram) is 0x7facda200000
        """#

    /// `gpa2hva 0xa0000`.
    static let gpa2hvaNotRAM = #"""
        Memory at address 0xa0000 is not RAM
        """#

    /// `gpa2hva 0x10000000` (past the 64 MiB of RAM).
    static let gpa2hvaUnmapped = #"""
        No memory is mapped at address 0x10000000
        """#

    /// `gpa2hva 0x100000` with the memfd backend.
    static let gpa2hvaMemfd = #"""
        Host virtual address for 0x100000 (pc.ram) is 0x7f5f280ff000
        """#

    /// The memfd backend's line of /proc/PID/maps.
    static let memfdMapping = #"""
        7f5f27fff000-7f5f2bfff000 rw-s 00000000 00:01 126                        /memfd:memory-backend-memfd (deleted)
        """#
}

// Pins every ioctl number, capability and struct layout in abi.ts to the
// system's own <linux/kvm.h>, compiled here with gcc.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as abi from './abi.js';

const structs: [string, { size: number; offsets: Record<string, number> }][] = [
  ['kvm_regs', abi.kvmRegs],
  ['kvm_segment', abi.kvmSegment],
  ['kvm_dtable', abi.kvmDtable],
  ['kvm_sregs', abi.kvmSregs],
  ['kvm_cpuid_entry2', abi.kvmCpuidEntry2],
  ['kvm_cpuid2', abi.kvmCpuid2Header],
  ['kvm_userspace_memory_region', abi.kvmUserspaceMemoryRegion],
  ['kvm_msi', abi.kvmMsi],
  ['kvm_enable_cap', abi.kvmEnableCap],
  ['kvm_irq_level', abi.kvmIrqLevel],
  ['kvm_pit_config', abi.kvmPitConfig],
  ['kvm_irq_routing', abi.kvmIrqRouting],
  ['kvm_irq_routing_entry', abi.kvmIrqRoutingEntry],
  ['kvm_irq_routing_irqchip', abi.kvmIrqRoutingIrqchip],
  ['kvm_msr_filter_range', abi.kvmMsrFilterRange],
  ['kvm_msr_filter', abi.kvmMsrFilter],
  ['kvm_msrs', abi.kvmMsrsHeader],
  ['kvm_msr_entry', abi.kvmMsrEntry],
  ['kvm_clock_data', abi.kvmClockData],
  ['kvm_xen_hvm_config', abi.kvmXenHvmConfig],
  ['kvm_xen_hvm_attr', abi.kvmXenHvmAttr],
  ['kvm_xen_vcpu_attr', abi.kvmXenVcpuAttr],
  ['kvm_irq_routing_xen_evtchn', abi.kvmIrqRoutingXenEvtchn],
  // Another view of the same struct, its union read as the evtchn member: `struct#view`.
  ['kvm_xen_hvm_attr#evtchn', abi.kvmXenHvmAttrEvtchn],
  ['kvm_irqfd', abi.kvmIrqfd],
  ['kvm_stats_header', abi.kvmStatsHeader],
  ['kvm_stats_desc', abi.kvmStatsDesc],
];

// Fields whose C name differs from the flattened TS name.
const cField: Record<string, Record<string, string>> = {
  kvm_xen_hvm_attr: { value: 'u.shared_info.gfn', rest: 'u.pad[1]' },
  kvm_xen_vcpu_attr: { value: 'u.gpa', value2: 'u.timer.expires_ns', rest: 'u.pad[2]' },
  'kvm_xen_hvm_attr#evtchn': {
    send_port: 'u.evtchn.send_port', evtchn_type: 'u.evtchn.type', flags: 'u.evtchn.flags', deliver_port: 'u.evtchn.deliver.port.port',
    deliver_vcpu: 'u.evtchn.deliver.port.vcpu', deliver_priority: 'u.evtchn.deliver.port.priority', rest: 'u.pad[3]',
  },
  kvm_vcpu_events: {
    exception_injected: 'exception.injected', exception_nr: 'exception.nr', exception_has_error_code: 'exception.has_error_code',
    exception_pending: 'exception.pending', exception_error_code: 'exception.error_code', interrupt_injected: 'interrupt.injected',
    interrupt_nr: 'interrupt.nr', interrupt_soft: 'interrupt.soft', interrupt_shadow: 'interrupt.shadow', nmi_injected: 'nmi.injected',
    nmi_pending: 'nmi.pending', nmi_masked: 'nmi.masked', nmi_pad: 'nmi.pad', smi: 'smi', triple_fault_pending: 'triple_fault.pending',
  },
};

// kvm_run members whose C path differs from the flattened TS name.
const cRunField: Record<string, string> = {
  'xen.longmode': 'xen.u.hcall.longmode', 'xen.cpl': 'xen.u.hcall.cpl', 'xen.input': 'xen.u.hcall.input',
  'xen.result': 'xen.u.hcall.result', 'xen.params': 'xen.u.hcall.params',
};

function kvmRunOffsets(): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, v] of Object.entries(abi.kvmRun)) {
    if (k === 'size' || k === 'exit' || k === 'sync_regs') continue;
    if (typeof v === 'number') out.push([k, v]);
    else for (const [f, off] of Object.entries(v)) out.push([`${k}.${f}`, off]);
  }
  return out;
}

function systemValues(): Map<string, number> {
  const lines: string[] = [];
  for (const name of Object.keys(abi.ioctls)) lines.push(`P("${name}", ${name});`);
  for (const name of Object.keys(abi.caps)) lines.push(`P("${name}", ${name});`);
  for (const name of Object.keys(abi.kvmClockFlags)) lines.push(`P("KVM_CLOCK_${name}", KVM_CLOCK_${name});`);
  // The installed headers may predate the running kernel: values they lack are not checked.
  for (const name of Object.keys(abi.exitReasons)) lines.push(`#ifdef KVM_EXIT_${name}\nP("exit.${name}", KVM_EXIT_${name});\n#endif`);
  for (const [name, t] of [...structs, ['kvm_vcpu_events', abi.kvmVcpuEvents] as const]) {
    const cName = name.split('#')[0];
    lines.push(`P("size.${name}", sizeof(struct ${cName}));`);
    for (const f of Object.keys(t.offsets)) {
      lines.push(`P("off.${name}.${f}", offsetof(struct ${cName}, ${cField[name]?.[f] ?? f}));`);
    }
  }
  lines.push('P("size.kvm_run", sizeof(struct kvm_run));');
  for (const [f] of kvmRunOffsets()) lines.push(`P("run.${f}", offsetof(struct kvm_run, ${cRunField[f] ?? f}));`);
  for (const name of Object.keys(abi.xenHvmConfig)) lines.push(`#ifdef KVM_XEN_HVM_CONFIG_${name}\nP("KVM_XEN_HVM_CONFIG_${name}", KVM_XEN_HVM_CONFIG_${name});\n#endif`);
  for (const name of Object.keys(abi.irqfdFlags)) lines.push(`P("KVM_IRQFD_FLAG_${name}", KVM_IRQFD_FLAG_${name});`);
  for (const name of Object.keys(abi.xenEvtchnFlags)) lines.push(`P("KVM_XEN_EVTCHN_${name}", KVM_XEN_EVTCHN_${name});`);
  for (const name of Object.keys(abi.xenHvmAttrTypes)) lines.push(`#ifdef KVM_XEN_ATTR_TYPE_${name}\nP("KVM_XEN_ATTR_TYPE_${name}", KVM_XEN_ATTR_TYPE_${name});\n#endif`);
  for (const name of Object.keys(abi.xenVcpuAttrTypes)) lines.push(`#ifdef KVM_XEN_VCPU_ATTR_TYPE_${name}\nP("KVM_XEN_VCPU_ATTR_TYPE_${name}", KVM_XEN_VCPU_ATTR_TYPE_${name});\n#endif`);
  lines.push('P("KVM_EXIT_XEN_HCALL", KVM_EXIT_XEN_HCALL);');
  lines.push('P("KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL", KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL);');
  lines.push('P("KVM_IRQ_ROUTING_IRQCHIP", KVM_IRQ_ROUTING_IRQCHIP);');
  lines.push('P("KVM_PIT_SPEAKER_DUMMY", KVM_PIT_SPEAKER_DUMMY);');
  lines.push('P("KVM_IOAPIC_NUM_PINS", KVM_IOAPIC_NUM_PINS);');
  for (const name of Object.keys(abi.irqchips)) lines.push(`P("KVM_IRQCHIP_${name}", KVM_IRQCHIP_${name});`);
  lines.push('P("run.sync_regs", offsetof(struct kvm_run, s));');
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\n#define P(n, v) printf("%s %lu\\n", n, (unsigned long)(v))\nint main(void) {\n${lines.join('\n')}\nreturn 0; }\n`;
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-abi-'));
  let out: string;
  try {
    writeFileSync(join(dir, 'abi.c'), src);
    execFileSync('gcc', ['-o', join(dir, 'abi'), join(dir, 'abi.c')]);
    out = execFileSync(join(dir, 'abi'), { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return new Map(out.trim().split('\n').map((l) => { const [k, v] = l.split(' '); return [k, Number(v)]; }));
}

/**
 * KVM's Xen uAPI of Linux 6.9 and later, which the host's headers (Debian 12's are 6.1's) may lack. Where
 * they do, KVM itself checks them: the kvm-xen nested VM's tests use them, and KVM refuses a wrong one.
 */
const NEWER_THAN_HEADERS = new Set(['KVM_XEN_HVM_CONFIG_SHARED_INFO_HVA', 'KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA', 'KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA']);

/** `name` has `value` in the headers, or the headers lack it and it is one of NEWER_THAN_HEADERS. */
function checkXenValue(c: Map<string, number>, name: string, value: number): void {
  if (c.has(name) || !NEWER_THAN_HEADERS.has(name)) assert.equal(value, c.get(name), name);
}

test('KVM ABI values match <linux/kvm.h>', () => {
  const c = systemValues();
  for (const [name, v] of Object.entries(abi.ioctls)) assert.equal(v, c.get(name), name);
  for (const [name, v] of Object.entries(abi.caps)) assert.equal(v, c.get(name), name);
  for (const [name, v] of Object.entries(abi.kvmClockFlags)) assert.equal(v, c.get(`KVM_CLOCK_${name}`), `KVM_CLOCK_${name}`);
  for (const [name, v] of Object.entries(abi.exitReasons)) if (c.has(`exit.${name}`)) assert.equal(v, c.get(`exit.${name}`), `KVM_EXIT_${name}`);
  assert.ok([...c.keys()].filter((k) => k.startsWith('exit.')).length >= 15, 'most exit reasons are checked');
  for (const [name, t] of [...structs, ['kvm_vcpu_events', abi.kvmVcpuEvents] as const]) {
    assert.equal(t.size, c.get(`size.${name}`), `sizeof(struct ${name})`);
    for (const [f, off] of Object.entries(t.offsets)) assert.equal(off, c.get(`off.${name}.${f}`), `${name}.${f}`);
  }
  assert.equal(abi.kvmRun.size, c.get('size.kvm_run'));
  for (const [f, off] of kvmRunOffsets()) assert.equal(off, c.get(`run.${f}`), `kvm_run.${f}`);
  assert.equal(abi.kvmRun.sync_regs, c.get('run.sync_regs'));
  for (const [name, v] of Object.entries(abi.xenHvmConfig)) checkXenValue(c, `KVM_XEN_HVM_CONFIG_${name}`, v);
  for (const [name, v] of Object.entries(abi.irqfdFlags)) assert.equal(v, c.get(`KVM_IRQFD_FLAG_${name}`), `KVM_IRQFD_FLAG_${name}`);
  for (const [name, v] of Object.entries(abi.xenEvtchnFlags)) assert.equal(v, c.get(`KVM_XEN_EVTCHN_${name}`), `KVM_XEN_EVTCHN_${name}`);
  for (const [name, v] of Object.entries(abi.xenHvmAttrTypes)) checkXenValue(c, `KVM_XEN_ATTR_TYPE_${name}`, v);
  for (const [name, v] of Object.entries(abi.xenVcpuAttrTypes)) checkXenValue(c, `KVM_XEN_VCPU_ATTR_TYPE_${name}`, v);
  assert.equal(abi.KVM_EXIT_XEN_HCALL, c.get('KVM_EXIT_XEN_HCALL'));
  assert.equal(abi.KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, c.get('KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL'));
  assert.equal(abi.KVM_IRQ_ROUTING_IRQCHIP, c.get('KVM_IRQ_ROUTING_IRQCHIP'));
  assert.equal(abi.KVM_PIT_SPEAKER_DUMMY, c.get('KVM_PIT_SPEAKER_DUMMY'));
  assert.equal(abi.KVM_IOAPIC_NUM_PINS, c.get('KVM_IOAPIC_NUM_PINS'));
  for (const [name, v] of Object.entries(abi.irqchips)) assert.equal(v, c.get(`KVM_IRQCHIP_${name}`), `KVM_IRQCHIP_${name}`);
});

// Pins every Xen struct layout and constant in src/xen/abi to literal numbers,
// and checks both against Xen's public headers compiled by gcc: -m64 for the
// native ABI, -m32 for compat. Neither object is run (no 32-bit libc needed):
// the values sit in a data section that objcopy extracts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { StructDef, type FieldType } from '../../common/struct.js';
import * as abi from './index.js';
import type { Abi, PerAbi } from './layout.js';

type AnyDef = StructDef<Record<string, FieldType>>;

// ---------------------------------------------------------------------------
// What the modules export, classified.

const isDef = (v: unknown): v is AnyDef => v instanceof StructDef;
const isDefPair = (v: unknown): v is PerAbi<AnyDef> =>
  typeof v === 'object' && v !== null && isDef((v as PerAbi<unknown>).native) && isDef((v as PerAbi<unknown>).compat);
const isNumPair = (v: unknown): v is PerAbi<number> =>
  typeof v === 'object' && v !== null && Object.keys(v).join() === 'native,compat' &&
  typeof (v as PerAbi<unknown>).native === 'number' && typeof (v as PerAbi<unknown>).compat === 'number';
const isGroup = (v: unknown): v is Record<string, number> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).length > 0 &&
  Object.values(v).every((x) => typeof x === 'number');

const structs = new Map<string, PerAbi<AnyDef>>();
const groups = new Map<string, Record<string, number>>();
const scalars = new Map<string, number | bigint>();
const perAbiScalars = new Map<string, PerAbi<number>>();
const others: string[] = [];
for (const [name, v] of Object.entries(abi)) {
  if (isDefPair(v)) structs.set(name, v);
  else if (isNumPair(v)) perAbiScalars.set(name, v);
  else if (isGroup(v)) groups.set(name, v);
  else if (typeof v === 'number' || typeof v === 'bigint') scalars.set(name, v);
  else if (typeof v === 'object' && v !== null && Object.values(v).length > 0 && Object.values(v).every(isDefPair)) {
    for (const [k, d] of Object.entries(v)) structs.set(`${name}.${k}`, d as PerAbi<AnyDef>);
  } else others.push(name);
}

test('every export is a struct pair, a constant, or one of the known helpers', () => {
  assert.deepEqual(others.sort(), [
    'ABIS', 'XEN_CPUID_SIGNATURE', 'XEN_ERRNO_INTERNAL', 'XSD_ERRORS', 'both', 'decodeCallbackIrq', 'encodeCallbackIrq',
    'handle', 'hypercallName', 'nameOf', 'pfn', 'sharedInfoLayout', 'ulong', 'virqIsGlobal', 'xenError', 'xenmemfGetAddressBits',
    'xenmemfGetNode', 'xstruct',
  ]);
});

// ---------------------------------------------------------------------------
// 1. Layouts written out literally: "size/align: field@offset ...".

const pinned: Record<string, PerAbi<string>> = {
  xenDmOpBuf: { native: '16/8: h@0 size@8', compat: '8/4: h@0 size@4' },
  archSharedInfo: {
    native: '48/8: max_pfn@0 pfn_to_mfn_frame_list_list@8 nmi_reason@16 p2m_cr3@24 p2m_vaddr@32 p2m_generation@40',
    compat: '28/4: max_pfn@0 pfn_to_mfn_frame_list_list@4 nmi_reason@8 p2m_cr3@12 p2m_vaddr@16 p2m_generation@20 wc_sec_hi@24',
  },
  archVcpuInfo: { native: '16/8: cr2@0 pad@8', compat: '24/4: cr2@0 pad@4' },
  e820Entry: { native: '20/1: addr@0 size@8 type@16', compat: '20/1: addr@0 size@8 type@16' },
  evtchnAllocUnbound: { native: '8/4: dom@0 remote_dom@2 port@4', compat: '8/4: dom@0 remote_dom@2 port@4' },
  evtchnBindInterdomain: {
    native: '12/4: remote_dom@0 remote_port@4 local_port@8',
    compat: '12/4: remote_dom@0 remote_port@4 local_port@8',
  },
  evtchnBindIpi: { native: '8/4: vcpu@0 port@4', compat: '8/4: vcpu@0 port@4' },
  evtchnBindPirq: { native: '12/4: pirq@0 flags@4 port@8', compat: '12/4: pirq@0 flags@4 port@8' },
  evtchnBindVcpu: { native: '8/4: port@0 vcpu@4', compat: '8/4: port@0 vcpu@4' },
  evtchnBindVirq: { native: '12/4: virq@0 vcpu@4 port@8', compat: '12/4: virq@0 vcpu@4 port@8' },
  evtchnClose: { native: '4/4: port@0', compat: '4/4: port@0' },
  evtchnExpandArray: { native: '8/8: array_gfn@0', compat: '8/4: array_gfn@0' },
  evtchnFifoControlBlock: { native: '72/4: ready@0 _rsvd@4 head@8', compat: '72/4: ready@0 _rsvd@4 head@8' },
  evtchnInitControl: {
    native: '24/8: control_gfn@0 offset@8 vcpu@12 link_bits@16 _pad@17',
    compat: '24/4: control_gfn@0 offset@8 vcpu@12 link_bits@16 _pad@17',
  },
  evtchnReset: { native: '2/2: dom@0', compat: '2/2: dom@0' },
  evtchnSend: { native: '4/4: port@0', compat: '4/4: port@0' },
  evtchnSetPriority: { native: '8/4: port@0 priority@4', compat: '8/4: port@0 priority@4' },
  evtchnStatus: { native: '24/4: dom@0 port@4 status@8 vcpu@12 u@16', compat: '24/4: dom@0 port@4 status@8 vcpu@12 u@16' },
  'evtchnStatusU.unbound': { native: '2/2: dom@0', compat: '2/2: dom@0' },
  'evtchnStatusU.interdomain': { native: '8/4: dom@0 port@4', compat: '8/4: dom@0 port@4' },
  evtchnUnmask: { native: '4/4: port@0', compat: '4/4: port@0' },
  gnttabCacheFlush: { native: '16/8: a@0 offset@8 length@10 op@12', compat: '16/4: a@0 offset@8 length@10 op@12' },
  gnttabCopy: { native: '40/8: source@0 dest@16 len@32 flags@34 status@36', compat: '24/4: source@0 dest@8 len@16 flags@18 status@20' },
  gnttabCopyPtr: { native: '16/8: u@0 domid@8 offset@10', compat: '8/4: u@0 domid@4 offset@6' },
  gnttabDumpTable: { native: '4/2: dom@0 status@2', compat: '4/2: dom@0 status@2' },
  gnttabGetStatusFrames: {
    native: '16/8: nr_frames@0 dom@4 status@6 frame_list@8',
    compat: '12/4: nr_frames@0 dom@4 status@6 frame_list@8',
  },
  gnttabGetVersion: { native: '8/4: dom@0 pad@2 version@4', compat: '8/4: dom@0 pad@2 version@4' },
  gnttabMapGrantRef: {
    native: '32/8: host_addr@0 flags@8 ref@12 dom@16 status@18 handle@20 dev_bus_addr@24',
    compat: '32/4: host_addr@0 flags@8 ref@12 dom@16 status@18 handle@20 dev_bus_addr@24',
  },
  gnttabQuerySize: {
    native: '16/4: dom@0 nr_frames@4 max_nr_frames@8 status@12',
    compat: '16/4: dom@0 nr_frames@4 max_nr_frames@8 status@12',
  },
  gnttabSetVersion: { native: '4/4: version@0', compat: '4/4: version@0' },
  gnttabSetupTable: { native: '24/8: dom@0 nr_frames@4 status@8 frame_list@16', compat: '16/4: dom@0 nr_frames@4 status@8 frame_list@12' },
  gnttabSwapGrantRef: { native: '12/4: ref_a@0 ref_b@4 status@8', compat: '12/4: ref_a@0 ref_b@4 status@8' },
  gnttabTransfer: { native: '24/8: mfn@0 domid@8 ref@12 status@16', compat: '16/4: mfn@0 domid@4 ref@8 status@12' },
  gnttabUnmapAndReplace: {
    native: '24/8: host_addr@0 new_addr@8 handle@16 status@20',
    compat: '24/4: host_addr@0 new_addr@8 handle@16 status@20',
  },
  gnttabUnmapGrantRef: {
    native: '24/8: host_addr@0 dev_bus_addr@8 handle@16 status@20',
    compat: '24/4: host_addr@0 dev_bus_addr@8 handle@16 status@20',
  },
  grantEntryHeader: { native: '4/2: flags@0 domid@2', compat: '4/2: flags@0 domid@2' },
  grantEntryV1: { native: '8/4: flags@0 domid@2 frame@4', compat: '8/4: flags@0 domid@2 frame@4' },
  'grantEntryV2.fullPage': { native: '16/8: hdr@0 pad0@4 frame@8', compat: '16/4: hdr@0 pad0@4 frame@8' },
  'grantEntryV2.subPage': { native: '16/8: hdr@0 page_off@4 length@6 frame@8', compat: '16/4: hdr@0 page_off@4 length@6 frame@8' },
  'grantEntryV2.transitive': { native: '12/4: hdr@0 trans_domid@4 pad0@6 gref@8', compat: '12/4: hdr@0 trans_domid@4 pad0@6 gref@8' },
  multicallEntry: { native: '64/8: op@0 result@8 args@16', compat: '32/4: op@0 result@4 args@8' },
  schedPinOverride: { native: '4/4: pcpu@0', compat: '4/4: pcpu@0' },
  schedPoll: { native: '24/8: ports@0 nr_ports@8 timeout@16', compat: '16/4: ports@0 nr_ports@4 timeout@8' },
  schedRemoteShutdown: { native: '8/4: domain_id@0 reason@4', compat: '8/4: domain_id@0 reason@4' },
  schedShutdown: { native: '4/4: reason@0', compat: '4/4: reason@0' },
  schedWatchdog: { native: '8/4: id@0 timeout@4', compat: '8/4: id@0 timeout@4' },
  sharedInfo: {
    native: '3136/8: vcpu_info@0 evtchn_pending@2048 evtchn_mask@2560 wc_version@3072 wc_sec@3076 wc_nsec@3080 wc_sec_hi@3084 arch@3088',
    compat: '2344/4: vcpu_info@0 evtchn_pending@2048 evtchn_mask@2176 wc_version@2304 wc_sec@2308 wc_nsec@2312 arch@2316',
  },
  vcpuGetPhysid: { native: '8/8: phys_id@0', compat: '8/4: phys_id@0' },
  vcpuHvmContext: { native: '128/8: mode@0 pad@4 cpu_regs@8', compat: '128/4: mode@0 pad@4 cpu_regs@8' },
  vcpuHvmX86_32: {
    native: '120/8: eax@0 ecx@4 edx@8 ebx@12 esp@16 ebp@20 esi@24 edi@28 eip@32 eflags@36 cr0@40 cr3@44 cr4@48 pad1@52 efer@56 cs_base@64 ds_base@68 ss_base@72 es_base@76 tr_base@80 cs_limit@84 ds_limit@88 ss_limit@92 es_limit@96 tr_limit@100 cs_ar@104 ds_ar@106 ss_ar@108 es_ar@110 tr_ar@112 pad2@114',
    compat: '120/4: eax@0 ecx@4 edx@8 ebx@12 esp@16 ebp@20 esi@24 edi@28 eip@32 eflags@36 cr0@40 cr3@44 cr4@48 pad1@52 efer@56 cs_base@64 ds_base@68 ss_base@72 es_base@76 tr_base@80 cs_limit@84 ds_limit@88 ss_limit@92 es_limit@96 tr_limit@100 cs_ar@104 ds_ar@106 ss_ar@108 es_ar@110 tr_ar@112 pad2@114',
  },
  vcpuHvmX86_64: {
    native: '112/8: rax@0 rcx@8 rdx@16 rbx@24 rsp@32 rbp@40 rsi@48 rdi@56 rip@64 rflags@72 cr0@80 cr3@88 cr4@96 efer@104',
    compat: '112/4: rax@0 rcx@8 rdx@16 rbx@24 rsp@32 rbp@40 rsi@48 rdi@56 rip@64 rflags@72 cr0@80 cr3@88 cr4@96 efer@104',
  },
  vcpuInfo: {
    native: '64/8: evtchn_upcall_pending@0 evtchn_upcall_mask@1 evtchn_pending_sel@8 arch@16 time@32',
    compat: '64/4: evtchn_upcall_pending@0 evtchn_upcall_mask@1 evtchn_pending_sel@4 arch@8 time@32',
  },
  vcpuRegisterRunstateMemoryArea: { native: '8/8: addr@0', compat: '8/4: addr@0' },
  vcpuRegisterTimeMemoryArea: { native: '8/8: addr@0', compat: '8/4: addr@0' },
  vcpuRegisterVcpuInfo: { native: '16/8: mfn@0 offset@8 rsvd@12', compat: '16/4: mfn@0 offset@8 rsvd@12' },
  vcpuRunstateInfo: { native: '48/8: state@0 state_entry_time@8 time@16', compat: '44/4: state@0 state_entry_time@4 time@12' },
  vcpuSetPeriodicTimer: { native: '8/8: period_ns@0', compat: '8/4: period_ns@0' },
  vcpuSetSingleshotTimer: { native: '16/8: timeout_abs_ns@0 flags@8', compat: '12/4: timeout_abs_ns@0 flags@8' },
  vcpuTimeInfo: {
    native: '32/8: version@0 pad0@4 tsc_timestamp@8 system_time@16 tsc_to_system_mul@24 tsc_shift@28 flags@29 pad1@30',
    compat: '32/4: version@0 pad0@4 tsc_timestamp@8 system_time@16 tsc_to_system_mul@24 tsc_shift@28 flags@29 pad1@30',
  },
  xenAddToPhysmap: { native: '24/8: domid@0 size@2 space@4 idx@8 gpfn@16', compat: '16/4: domid@0 size@2 space@4 idx@8 gpfn@12' },
  xenAddToPhysmapBatch: {
    native: '32/8: domid@0 space@2 size@4 foreign_domid@6 idxs@8 gpfns@16 errs@24',
    compat: '20/4: domid@0 space@2 size@4 foreign_domid@6 idxs@8 gpfns@12 errs@16',
  },
  xenBuildId: { native: '4/4: len@0', compat: '4/4: len@0' },
  xenCompileInfo: {
    native: '144/1: compiler@0 compile_by@64 compile_domain@80 compile_date@112',
    compat: '144/1: compiler@0 compile_by@64 compile_domain@80 compile_date@112',
  },
  xenFeatureInfo: { native: '8/4: submap_idx@0 submap@4', compat: '8/4: submap_idx@0 submap@4' },
  xenForeignMemoryMap: { native: '24/8: domid@0 map@8', compat: '12/4: domid@0 map@4' },
  xenHvmEvtchnUpcallVector: { native: '8/4: vcpu@0 vector@4', compat: '8/4: vcpu@0 vector@4' },
  xenHvmGetMemType: { native: '16/8: domid@0 mem_type@2 pad@4 pfn@8', compat: '16/4: domid@0 mem_type@2 pad@4 pfn@8' },
  xenHvmGetTime: { native: '8/8: now@0', compat: '8/4: now@0' },
  xenHvmPagetableDying: { native: '16/8: domid@0 pad@2 gpa@8', compat: '16/4: domid@0 pad@2 gpa@8' },
  xenHvmParam: { native: '16/8: domid@0 pad@2 index@4 value@8', compat: '16/4: domid@0 pad@2 index@4 value@8' },
  xenMemAcquireResource: {
    native: '32/8: domid@0 type@2 id@4 nr_frames@8 pad@12 frame@16 frame_list@24',
    compat: '28/4: domid@0 type@2 id@4 nr_frames@8 pad@12 frame@16 frame_list@24',
  },
  xenMemoryDomain: { native: '2/2: domid@0', compat: '2/2: domid@0' },
  xenMemoryExchange: { native: '72/8: in@0 out@32 nr_exchanged@64', compat: '44/4: in@0 out@20 nr_exchanged@40' },
  xenMemoryMap: { native: '16/8: nr_entries@0 buffer@8', compat: '8/4: nr_entries@0 buffer@4' },
  xenMemoryReservation: {
    native: '32/8: extent_start@0 nr_extents@8 extent_order@16 mem_flags@20 domid@24',
    compat: '20/4: extent_start@0 nr_extents@4 extent_order@8 mem_flags@12 domid@16',
  },
  xenPlatformParameters: { native: '8/8: virt_start@0', compat: '4/4: virt_start@0' },
  xenRemoveFromPhysmap: { native: '16/8: domid@0 gpfn@8', compat: '8/4: domid@0 gpfn@4' },
  xenconsInterface: {
    native: '3088/4: in@0 out@1024 in_cons@3072 in_prod@3076 out_cons@3080 out_prod@3084',
    compat: '3088/4: in@0 out@1024 in_cons@3072 in_prod@3076 out_cons@3080 out_prod@3084',
  },
  xenstoreDomainInterface: {
    native: '2076/4: req@0 rsp@1024 req_cons@2048 req_prod@2052 rsp_cons@2056 rsp_prod@2060 server_features@2064 connection@2068 error@2072',
    compat: '2076/4: req@0 rsp@1024 req_cons@2048 req_prod@2052 rsp_cons@2056 rsp_prod@2060 server_features@2064 connection@2068 error@2072',
  },
  xsdSockmsg: { native: '16/4: type@0 req_id@4 tx_id@8 len@12', compat: '16/4: type@0 req_id@4 tx_id@8 len@12' },
  blkifRequest: {
    native: '112/8: operation@0 nr_segments@1 handle@2 id@8 sector_number@16 seg@24',
    compat: '108/4: operation@0 nr_segments@1 handle@2 id@4 sector_number@12 seg@20',
  },
  blkifRequestDiscard: {
    native: '32/8: operation@0 flag@1 handle@2 id@8 sector_number@16 nr_sectors@24',
    compat: '28/4: operation@0 flag@1 handle@2 id@4 sector_number@12 nr_sectors@20',
  },
  blkifRequestIndirect: {
    native: '64/8: operation@0 indirect_op@1 nr_segments@2 id@8 sector_number@16 handle@24 indirect_grefs@28',
    compat: '64/4: operation@0 indirect_op@1 nr_segments@2 id@4 sector_number@12 handle@20 indirect_grefs@24 pad@56',
  },
  blkifRequestSegment: { native: '8/4: gref@0 first_sect@4 last_sect@5', compat: '8/4: gref@0 first_sect@4 last_sect@5' },
  blkifResponse: { native: '16/8: id@0 operation@8 status@10', compat: '12/4: id@0 operation@8 status@10' },
  netifTxRequest: { native: '12/4: gref@0 offset@4 flags@6 id@8 size@10', compat: '12/4: gref@0 offset@4 flags@6 id@8 size@10' },
  netifTxResponse: { native: '4/2: id@0 status@2', compat: '4/2: id@0 status@2' },
  netifRxRequest: { native: '8/4: id@0 pad@2 gref@4', compat: '8/4: id@0 pad@2 gref@4' },
  netifRxResponse: { native: '8/2: id@0 offset@2 flags@4 status@6', compat: '8/2: id@0 offset@2 flags@4 status@6' },
  netifExtraInfo: { native: '8/2: type@0 flags@1 u@2', compat: '8/2: type@0 flags@1 u@2' },
  xenNetifCtrlRequest: { native: '16/4: id@0 type@2 data@4', compat: '16/4: id@0 type@2 data@4' },
  xenNetifCtrlResponse: { native: '12/4: id@0 type@2 status@4 data@8', compat: '12/4: id@0 type@2 status@4 data@8' },
};

function describe(def: AnyDef): string {
  return `${def.size}/${def.align}: ` + Object.entries(def.offsets).map(([f, o]) => `${f}@${o}`).join(' ');
}

test('every struct layout is pinned, in both ABIs', () => {
  const actual: Record<string, PerAbi<string>> = {};
  for (const [name, pair] of structs) actual[name] = { native: describe(pair.native), compat: describe(pair.compat) };
  if (process.env.XENKVM_PRINT_LAYOUTS) console.log(JSON.stringify(actual, null, 2));
  assert.deepEqual(actual, pinned);
});

test('shared_info offsets the VMM writes', () => {
  const n = abi.sharedInfoLayout.native;
  const c = abi.sharedInfoLayout.compat;
  assert.deepEqual(
    [n.vcpuInfo(0), n.vcpuInfo(1), n.vcpuInfo(31), n.evtchnPending, n.evtchnMask, n.wcVersion, n.wcSec, n.wcNsec, n.wcSecHi, n.wordBits],
    [0, 64, 1984, 2048, 2560, 3072, 3076, 3080, 3084, 64],
  );
  assert.deepEqual(
    [c.vcpuInfo(0), c.vcpuInfo(1), c.vcpuInfo(31), c.evtchnPending, c.evtchnMask, c.wcVersion, c.wcSec, c.wcNsec, c.wcSecHi, c.wordBits],
    [0, 64, 1984, 2048, 2176, 2304, 2308, 2312, 2340, 32],
  );
  assert.throws(() => n.vcpuInfo(32), RangeError);
});

// ---------------------------------------------------------------------------
// Behaviour of the helpers.

test('compat structs read and write at i386 offsets', () => {
  const def = abi.vcpuRunstateInfo.compat;
  const bytes = def.encode({ state: abi.RUNSTATE.blocked, state_entry_time: abi.XEN_RUNSTATE_UPDATE | 5n, time: [1n, 2n, 3n, 4n] });
  assert.equal(bytes.length, 44);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getBigUint64(4, true), (1n << 63n) | 5n);
  assert.equal(view.getBigUint64(36, true), 4n);
  assert.deepEqual(def.decode(bytes), { state: 2, state_entry_time: (1n << 63n) | 5n, time: [1n, 2n, 3n, 4n] });

  const vi = abi.vcpuInfo.compat;
  const info = vi.encode({ evtchn_upcall_pending: 1, evtchn_pending_sel: 0x80000001, time: { ...abi.vcpuTimeInfo.compat.decode(new Uint8Array(32)), version: 2, system_time: 7n } });
  const iv = new DataView(info.buffer);
  assert.equal(iv.getUint32(4, true), 0x80000001);
  assert.equal(iv.getUint32(32, true), 2);
  assert.equal(iv.getBigUint64(48, true), 7n);
});

test('HVM_PARAM_CALLBACK_IRQ encodings', () => {
  assert.deepEqual(abi.decodeCallbackIrq(0n), { type: 'none' });
  assert.deepEqual(abi.decodeCallbackIrq(0x0200_0000_0000_00f3n), { type: 'vector', vector: 0xf3 });
  assert.deepEqual(abi.decodeCallbackIrq(28n), { type: 'gsi', gsi: 28 });
  assert.deepEqual(abi.decodeCallbackIrq(0x0100_0001_0002_1802n), { type: 'pci_intx', domain: 1, bus: 2, devfn: 0x18, intx: 2 });
  assert.deepEqual(abi.decodeCallbackIrq(0x0300_0000_0000_0001n), { type: 'unknown', typeCode: 3, value: 0x0300_0000_0000_0001n });
  for (const v of [0n, 0x0200_0000_0000_00f3n, 28n, 0x0100_0001_0002_1802n]) assert.equal(abi.encodeCallbackIrq(abi.decodeCallbackIrq(v)), v);
});

test('names for logs, errors for guests, the CPUID signature', () => {
  assert.equal(abi.hypercallName(12), 'memory_op');
  assert.equal(abi.hypercallName(48), 'arch_0');
  assert.equal(abi.hypercallName(44), 'hypercall#44');
  assert.equal(abi.nameOf(abi.XENMEM, 7), 'add_to_physmap');
  assert.equal(abi.nameOf(abi.HVMOP, 99), undefined);
  assert.equal(abi.xenError('ENOSYS'), -38);
  assert.equal(abi.xenError('EFAULT'), -14);
  const sig = Buffer.alloc(12);
  sig.writeUInt32LE(abi.XEN_CPUID_SIGNATURE_EBX, 0);
  sig.writeUInt32LE(abi.XEN_CPUID_SIGNATURE_ECX, 4);
  sig.writeUInt32LE(abi.XEN_CPUID_SIGNATURE_EDX, 8);
  assert.equal(sig.toString('latin1'), abi.XEN_CPUID_SIGNATURE);
  assert.equal(abi.xenmemfGetAddressBits(0x0302_20), 0x20);
  assert.equal(abi.xenmemfGetNode(0x0302_20), 1);
  assert.equal(abi.xenmemfGetNode(0), 0xff);
});

// ---------------------------------------------------------------------------
// 2. The same numbers from the headers themselves.

const XEN_H = '/usr/include/xen/xen.h';

/** C macro prefix of each constant group. */
const prefix: Record<string, string> = {
  HYPERCALL: '__HYPERVISOR_',
  XEN_ERRNO: 'XENKVM_', // the errno.h list, re-expanded below (with the __XEN__-only entries)
  DOMID: 'DOMID_',
  VMASST_CMD: 'VMASST_CMD_',
  VMASST_TYPE: 'VMASST_TYPE_',
  CONSOLEIO: 'CONSOLEIO_',
  XEN_HVM_CPUID: 'XEN_HVM_CPUID_',
  XENVER: 'XENVER_',
  XENFEAT: 'XENFEAT_',
  XENMEM: 'XENMEM_',
  XENMEMF: 'XENMEMF_',
  XENMAPSPACE: 'XENMAPSPACE_',
  XENMEM_resource: 'XENMEM_resource_',
  XENMEM_resource_grant_table_id: 'XENMEM_resource_grant_table_id_',
  HVMOP: 'HVMOP_',
  HVMMEM: 'HVMMEM_',
  HVM_PARAM: 'HVM_PARAM_',
  HVMPTM: 'HVMPTM_',
  HVM_PARAM_CALLBACK_TYPE: 'HVM_PARAM_CALLBACK_TYPE_',
  VCPUOP: 'VCPUOP_',
  RUNSTATE: 'RUNSTATE_',
  VCPU_HVM_MODE: 'VCPU_HVM_MODE_',
  SCHEDOP: 'SCHEDOP_',
  SHUTDOWN: 'SHUTDOWN_',
  EVTCHNOP: 'EVTCHNOP_',
  VIRQ: 'VIRQ_',
  EVTCHNSTAT: 'EVTCHNSTAT_',
  EVTCHN_FIFO: 'EVTCHN_FIFO_',
  GNTTABOP: 'GNTTABOP_',
  GNTTAB_RESERVED: 'GNTTAB_RESERVED_',
  GTF: 'GTF_',
  GNTMAP: 'GNTMAP_',
  GNTCOPY: 'GNTCOPY_',
  GNTTAB_CACHE: 'GNTTAB_CACHE_',
  GNTST: 'GNTST_',
  BLKIF_OP: 'BLKIF_OP_',
  BLKIF_RSP: 'BLKIF_RSP_',
  VDISK: 'VDISK_',
  NETTXF: 'NETTXF_',
  NETRXF: 'NETRXF_',
  XEN_NETIF_EXTRA_TYPE: 'XEN_NETIF_EXTRA_TYPE_',
  XEN_NETIF_EXTRA_FLAG: 'XEN_NETIF_EXTRA_FLAG_',
  XEN_NETIF_GSO_TYPE: 'XEN_NETIF_GSO_TYPE_',
  NETIF_RSP: 'NETIF_RSP_',
  XEN_NETIF_CTRL_TYPE: 'XEN_NETIF_CTRL_TYPE_',
  XEN_NETIF_CTRL_STATUS: 'XEN_NETIF_CTRL_STATUS_',
  XEN_NETIF_CTRL_HASH_TYPE: 'XEN_NETIF_CTRL_HASH_TYPE_',
  XEN_NETIF_CTRL_HASH_TYPE_BIT: '_XEN_NETIF_CTRL_HASH_TYPE_',
  XEN_NETIF_CTRL_HASH_ALGORITHM: 'XEN_NETIF_CTRL_HASH_ALGORITHM_',
  SRING_INDEX: 'XENKVM_SRING_',
  XS: 'XS_',
  XS_WATCH: 'XS_WATCH_',
  XENSTORE_SERVER_FEATURE: 'XENSTORE_SERVER_FEATURE_',
  XENSTORE_CONNECTION: 'XENSTORE_',
  XENSTORE_ERROR: 'XENSTORE_ERROR_',
  XenbusState: 'XenbusState',
  XEN_DOMCTL: 'XEN_DOMCTL_',
};

/** Constants whose C spelling is an expression rather than their own name. */
const cExpr: Record<string, string | PerAbi<string>> = {
  XEN_COMMANDLINE_LEN: 'sizeof(xen_commandline_t)',
  XEN_GUEST_HANDLE_LEN: 'sizeof(xen_domain_handle_t)',
  HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: '__builtin_ctzll(HVM_PARAM_CALLBACK_IRQ_TYPE_MASK)',
  GRANT_ENTRY_V2_SIZE: 'sizeof(union grant_entry_v2)',
  GRANT_STATUS_SIZE: 'sizeof(grant_status_t)',
  ULONG_BYTES: 'sizeof(xen_ulong_t)',
  EVTCHN_2L_WORDS: 'sizeof(((struct shared_info *)0)->evtchn_pending) / sizeof(xen_ulong_t)',
  XEN_SYSCTL_SIZE: 'sizeof(struct xen_sysctl)',
  XEN_DOMCTL_SIZE: 'sizeof(struct xen_domctl)',
  XEN_PLATFORM_OP_SIZE: 'sizeof(struct xen_platform_op)',
  TOOLSTACK_INTERFACE_VERSION_OFFSET: 'offsetof(struct xen_domctl, interface_version) == offsetof(struct xen_sysctl, interface_version) && offsetof(struct xen_sysctl, interface_version) == offsetof(struct xen_platform_op, interface_version) ? offsetof(struct xen_domctl, interface_version) : -1',
  XEN_DOMCTL_DOMAIN_OFFSET: 'offsetof(struct xen_domctl, domain)',
  BLKIF_RING_ENTRY_SIZE: 'sizeof(union blkif_sring_entry)',
  SRING_RING_OFFSET: 'offsetof(struct blkif_sring, ring)',
  NETIF_TX_RING_ENTRY_SIZE: 'sizeof(union netif_tx_sring_entry)',
  NETIF_RX_RING_ENTRY_SIZE: 'sizeof(union netif_rx_sring_entry)',
  NETIF_CTRL_RING_ENTRY_SIZE: 'sizeof(union xen_netif_ctrl_sring_entry)',
};

/** Facts the headers state only in comments, or Xen-internal conventions: pinned by their own definitions. */
const notInHeaders = new Set([
  'XEN_CPUID_LEAF', 'XEN_CPUID_TIME_FLAG', 'XEN_CPUID_TSC_MODE', 'E820_TYPE', 'E820_MAX',
  'HYPERCALL_ENTRY_SIZE', 'HYPERCALL_PAGE_ENTRIES', 'e820Entry', 'DM_OP_MAX_BUFS', 'MEMOP_EXTENT_SHIFT', 'MEMOP_CMD_MASK',
]);

/** C members behind flattened unions. */
const cMember: Record<string, Record<string, string>> = {
  xen_add_to_physmap_batch: { foreign_domid: 'u.foreign_domid' },
  vcpu_register_runstate_memory_area: { addr: 'addr.p' },
  vcpu_register_time_memory_area: { addr: 'addr.p' },
  gnttab_copy_ptr: { u: 'u.gmfn' },
  gnttab_cache_flush: { a: 'a.dev_bus_addr' },
};

const SCALAR_BYTES: Record<string, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };
function fieldBytes(t: FieldType): number {
  if (typeof t === 'string') return SCALAR_BYTES[t];
  if ('bytes' in t) return t.bytes;
  if ('struct' in t) return t.struct.size;
  return SCALAR_BYTES[t.array] * t.count;
}

/** C expressions for a def's size, alignment, and its fields' offsets and sizes. */
function cOf(defName: string) {
  const [outer, ...path] = defName.split('.');
  const tag = outer === 'grant_entry_v2' ? 'union' : 'struct';
  const T = `${tag} ${outer}`;
  if (path.length === 0) {
    return {
      size: `sizeof(${T})`,
      align: `_Alignof(${T})`,
      offset: (f: string) => `offsetof(${T}, ${f})`,
      fieldSize: (f: string) => `sizeof(((${T} *)0)->${f})`,
    };
  }
  const P = path.join('.');
  return {
    size: `sizeof(((${T} *)0)->${P})`,
    align: `_Alignof(__typeof__(((${T} *)0)->${P}))`,
    offset: (f: string) => `(offsetof(${T}, ${P}.${f}) - offsetof(${T}, ${P}))`,
    fieldSize: (f: string) => `sizeof(((${T} *)0)->${P}.${f})`,
  };
}

interface Check {
  what: string;
  expr: string | PerAbi<string>;
  want: PerAbi<number | bigint>;
}

function checks(): Check[] {
  const out: Check[] = [];
  const same = (v: number | bigint) => ({ native: v, compat: v });
  for (const [gname, group] of groups) {
    if (notInHeaders.has(gname)) continue;
    const p = prefix[gname];
    assert.ok(p !== undefined, `constant group ${gname} has no C prefix in abi.test.ts`);
    for (const [k, v] of Object.entries(group)) out.push({ what: `${gname}.${k}`, expr: `${p}${k}`, want: same(v) });
  }
  for (const [name, v] of scalars) if (!notInHeaders.has(name)) out.push({ what: name, expr: cExpr[name] ?? name, want: same(v) });
  for (const [name, v] of perAbiScalars) out.push({ what: name, expr: cExpr[name] ?? name, want: v });
  for (const [name, pair] of structs) {
    if (notInHeaders.has(name)) continue;
    for (const a of ['native', 'compat'] as const) {
      const def = pair[a];
      const c = cOf(def.name);
      const member = (f: string) => cMember[def.name]?.[f] ?? f;
      const one = (what: string, expr: string, want: number) =>
        out.push({ what, expr: a === 'native' ? { native: expr, compat: '0' } : { native: '0', compat: expr }, want: a === 'native' ? { native: want, compat: 0 } : { native: 0, compat: want } });
      one(`sizeof ${def.name}`, c.size, def.size);
      one(`alignof ${def.name}`, c.align, def.align);
      for (const [f, t] of Object.entries(def.fields)) {
        one(`offsetof ${def.name}.${f}`, c.offset(member(f)), def.offsets[f]);
        one(`sizeof ${def.name}.${f}`, c.fieldSize(member(f)), fieldBytes(t));
      }
    }
  }
  // The offsets the VMM writes into shared_info.
  for (const a of ['native', 'compat'] as const) {
    const l = abi.sharedInfoLayout[a];
    const at = (f: string) => (a === 'native' ? { native: `offsetof(struct shared_info, ${f})`, compat: '0' } : { native: '0', compat: `offsetof(struct shared_info, ${f})` });
    const want = (v: number) => (a === 'native' ? { native: v, compat: 0 } : { native: 0, compat: v });
    for (const i of [0, 1, 31]) out.push({ what: `sharedInfoLayout.vcpuInfo(${i})`, expr: at(`vcpu_info[${i}]`), want: want(l.vcpuInfo(i)) });
    out.push({ what: `sharedInfoLayout.evtchnPending`, expr: at('evtchn_pending'), want: want(l.evtchnPending) });
    out.push({ what: `sharedInfoLayout.evtchnMask`, expr: at('evtchn_mask'), want: want(l.evtchnMask) });
    out.push({ what: `sharedInfoLayout.wcVersion`, expr: at('wc_version'), want: want(l.wcVersion) });
    out.push({ what: `sharedInfoLayout.wcSec`, expr: at('wc_sec'), want: want(l.wcSec) });
    out.push({ what: `sharedInfoLayout.wcNsec`, expr: at('wc_nsec'), want: want(l.wcNsec) });
    out.push({ what: `sharedInfoLayout.wcSecHi`, expr: at(a === 'native' ? 'wc_sec_hi' : 'arch.wc_sec_hi'), want: want(l.wcSecHi) });
    out.push({ what: `sharedInfoLayout.wordBits`, expr: a === 'native' ? { native: 'sizeof(xen_ulong_t) * 8', compat: '0' } : { native: '0', compat: 'sizeof(xen_ulong_t) * 8' }, want: want(l.wordBits) });
  }
  // Helpers that mirror header macros.
  for (const f of [0, 0x20, 0x0302_20, 0x1ff]) {
    out.push({ what: `xenmemfGetAddressBits(${f})`, expr: `XENMEMF_get_address_bits(${f}u)`, want: same(abi.xenmemfGetAddressBits(f)) });
    out.push({ what: `xenmemfGetNode(${f})`, expr: `XENMEMF_get_node(${f}u)`, want: same(abi.xenmemfGetNode(f)) });
  }
  out.push({ what: 'errno.h entries', expr: 'XENKVM_ERRNO_COUNT', want: same(Object.keys(abi.XEN_ERRNO).length) });
  return out;
}

const HEADERS = [
  'xen.h', 'version.h', 'features.h', 'memory.h', 'vcpu.h', 'sched.h', 'event_channel.h', 'grant_table.h',
  'hvm/hvm_op.h', 'hvm/params.h', 'hvm/hvm_vcpu.h', 'arch-x86/cpuid.h', 'arch-x86/xen-mca.h', 'io/xs_wire.h', 'io/console.h', 'io/xenbus.h',
  'sysctl.h', 'domctl.h', 'platform.h', 'hvm/dm_op.h', 'io/blkif.h', 'io/netif.h',
];

function cSource(list: Check[], a: Abi): string {
  const lines = ['#include <stdint.h>', '#include <stddef.h>', ...HEADERS.map((h) => `#include <xen/${h}>`)];
  // errno.h is an X-macro list; expanding it again with __XEN__ also yields the hypervisor-internal values.
  lines.push(
    '#define XEN_ERRNO(name, value) enum { XENKVM_##name = value };',
    '#define __XEN__',
    '#include <xen/errno.h>',
    '#define XEN_ERRNO(name, value) + 1',
    'enum { XENKVM_ERRNO_COUNT = 0',
    '#include <xen/errno.h>',
    '};',
    '#undef __XEN__',
    // The shared ring's indexes, which ring.h names only as members.
    ...Object.keys(abi.SRING_INDEX).map((k) => `#define XENKVM_SRING_${k} offsetof(struct blkif_sring, ${k})`),
  );
  lines.push('unsigned long long xenkvm_vals[] __attribute__((section(".data.xenkvm"), used)) = {');
  for (const c of list) lines.push(`  (unsigned long long)(${typeof c.expr === 'string' ? c.expr : c.expr[a]}), /* ${c.what} */`);
  lines.push('};');
  return lines.join('\n') + '\n';
}

function compileValues(list: Check[]): PerAbi<bigint[]> {
  const dir = mkdtempSync(join(tmpdir(), 'xen-abi-'));
  try {
    const values = {} as Record<Abi, bigint[]>;
    for (const [a, m] of [['native', '-m64'], ['compat', '-m32']] as const) {
      const src = join(dir, `${a}.c`);
      writeFileSync(src, cSource(list, a));
      // __XEN_TOOLS__ selects the newest interface version and shows the toolstack-only numbers.
      execFileSync('gcc', [m, '-ffreestanding', '-D__XEN_TOOLS__', '-c', src, '-o', join(dir, `${a}.o`)], { stdio: ['ignore', 'ignore', 'pipe'] });
      execFileSync('objcopy', ['-O', 'binary', '--only-section=.data.xenkvm', join(dir, `${a}.o`), join(dir, `${a}.bin`)]);
      const bin = readFileSync(join(dir, `${a}.bin`));
      assert.equal(bin.length, list.length * 8, `${a}: extracted ${bin.length} bytes for ${list.length} values`);
      values[a] = list.map((_, i) => bin.readBigUInt64LE(i * 8));
    }
    return values;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('every constant and layout matches the Xen public headers (gcc -m64 and -m32)', () => {
  assert.ok(existsSync(XEN_H), 'Xen public headers missing: install libxen-dev (scripts/setup does this)');
  const list = checks();
  const got = compileValues(list);
  const wrong: string[] = [];
  list.forEach((c, i) => {
    for (const a of ['native', 'compat'] as const) {
      const want = BigInt(c.want[a]);
      const have = want < 0n ? BigInt.asIntN(64, got[a][i]) : got[a][i];
      if (have !== want) wrong.push(`${a}: ${c.what} is ${have} in the headers, ${want} here`);
    }
  });
  assert.deepEqual(wrong, []);
});

/** Header #defines a group must cover, minus names that are not numbers of that group. */
const coverage: [group: string, header: string, skip: RegExp | null][] = [
  ['HYPERCALL', 'xen.h', /^__HYPERVISOR_(dom0_op|VIRT_.*)$/],
  ['XENVER', 'version.h', null],
  // grant_map_identity (12) is deprecated and commented out in the header.
  ['XENFEAT', 'features.h', /^XENFEAT_(NR_SUBMAPS|grant_map_identity)$/],
  ['VCPUOP', 'vcpu.h', null],
  ['SCHEDOP', 'sched.h', null],
  ['SHUTDOWN', 'sched.h', null],
  ['EVTCHNOP', 'event_channel.h', /^EVTCHNOP_reset_cont$/],
  ['EVTCHNSTAT', 'event_channel.h', null],
  ['VIRQ', 'xen.h', null],
  ['GNTTABOP', 'grant_table.h', /^GNTTABOP_error_msgs$/],
  ['GNTST', 'grant_table.h', null],
  ['XENMAPSPACE', 'memory.h', null],
  ['HVM_PARAM', 'hvm/params.h', /^HVM_PARAM_CALLBACK_(IRQ_TYPE_MASK|TYPE_.*)$/],
  ['HVMOP', 'hvm/hvm_op.h', /^HVMOP_(ALTP2M_INTERFACE_VERSION|altp2m_.+|set_pci_intx_level|set_isa_irq_level|set_pci_link_route)$/],
  ['XEN_HVM_CPUID', 'arch-x86/cpuid.h', null],
  ['EVTCHN_FIFO', 'event_channel.h', null],
  ['BLKIF_OP', 'io/blkif.h', null],
  ['BLKIF_RSP', 'io/blkif.h', null],
  ['VDISK', 'io/blkif.h', null],
  ['NETTXF', 'io/netif.h', null],
  ['NETRXF', 'io/netif.h', null],
  ['XEN_NETIF_EXTRA_TYPE', 'io/netif.h', null],
  ['XEN_NETIF_EXTRA_FLAG', 'io/netif.h', null],
  ['XEN_NETIF_GSO_TYPE', 'io/netif.h', null],
  ['NETIF_RSP', 'io/netif.h', null],
  ['XEN_NETIF_CTRL_TYPE', 'io/netif.h', null],
  ['XEN_NETIF_CTRL_STATUS', 'io/netif.h', null],
  ['XEN_NETIF_CTRL_HASH_TYPE', 'io/netif.h', null],
  ['XEN_NETIF_CTRL_HASH_ALGORITHM', 'io/netif.h', null],
];

test('constant groups cover every #define of their kind in the headers', () => {
  assert.ok(existsSync(XEN_H), 'Xen public headers missing: install libxen-dev (scripts/setup does this)');
  const missing: string[] = [];
  for (const [gname, header, skip] of coverage) {
    const group = groups.get(gname);
    assert.ok(group, `no constant group ${gname}`);
    const p = prefix[gname];
    const text = readFileSync(`/usr/include/xen/${header}`, 'utf8');
    for (const m of text.matchAll(/^#\s*define\s+(\w+)/gm)) {
      const name = m[1];
      if (!name.startsWith(p) || skip?.test(name)) continue;
      if (!(name.slice(p.length) in group)) missing.push(`${header}: ${name}`);
    }
  }
  assert.deepEqual(missing, []);
});

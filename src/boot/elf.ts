// ELF parsing and PVH kernel loading. The kernel file is untrusted input: every
// offset and size is checked against the file before it is read, and every
// failure is a BootError whose message says what is wrong with the kernel.

import { struct } from '../common/struct.js';

export class BootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootError';
  }
}

export const EM_386 = 3;
export const EM_X86_64 = 62;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const SHT_NOTE = 7;
export const SHT_NOBITS = 8;
/** Xen's elfnote.h: physical 32-bit entry point of a PVH kernel. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** Xen's elfnote.h: the guest OS's name, a string ("linux"). */
export const XEN_ELFNOTE_GUEST_OS = 6;

export const Elf32Ehdr = struct('Elf32_Ehdr', {
  e_ident: { bytes: 16 },
  e_type: 'u16', e_machine: 'u16', e_version: 'u32',
  e_entry: 'u32', e_phoff: 'u32', e_shoff: 'u32', e_flags: 'u32',
  e_ehsize: 'u16', e_phentsize: 'u16', e_phnum: 'u16',
  e_shentsize: 'u16', e_shnum: 'u16', e_shstrndx: 'u16',
});

export const Elf64Ehdr = struct('Elf64_Ehdr', {
  e_ident: { bytes: 16 },
  e_type: 'u16', e_machine: 'u16', e_version: 'u32',
  e_entry: 'u64', e_phoff: 'u64', e_shoff: 'u64', e_flags: 'u32',
  e_ehsize: 'u16', e_phentsize: 'u16', e_phnum: 'u16',
  e_shentsize: 'u16', e_shnum: 'u16', e_shstrndx: 'u16',
});

export const Elf32Phdr = struct('Elf32_Phdr', {
  p_type: 'u32', p_offset: 'u32', p_vaddr: 'u32', p_paddr: 'u32',
  p_filesz: 'u32', p_memsz: 'u32', p_flags: 'u32', p_align: 'u32',
});

export const Elf64Phdr = struct('Elf64_Phdr', {
  p_type: 'u32', p_flags: 'u32', p_offset: 'u64', p_vaddr: 'u64', p_paddr: 'u64',
  p_filesz: 'u64', p_memsz: 'u64', p_align: 'u64',
});

export const Elf32Shdr = struct('Elf32_Shdr', {
  sh_name: 'u32', sh_type: 'u32', sh_flags: 'u32', sh_addr: 'u32', sh_offset: 'u32',
  sh_size: 'u32', sh_link: 'u32', sh_info: 'u32', sh_addralign: 'u32', sh_entsize: 'u32',
});

export const Elf64Shdr = struct('Elf64_Shdr', {
  sh_name: 'u32', sh_type: 'u32', sh_flags: 'u64', sh_addr: 'u64', sh_offset: 'u64',
  sh_size: 'u64', sh_link: 'u32', sh_info: 'u32', sh_addralign: 'u64', sh_entsize: 'u64',
});

/** Note header; 4-byte words in both ELF classes. */
export const ElfNhdr = struct('Elf_Nhdr', { n_namesz: 'u32', n_descsz: 'u32', n_type: 'u32' });

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  paddr: number;
  /** Informational: high-half kernel addresses above 2^53 are rounded. */
  vaddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

export interface ElfSection {
  name: string;
  type: number;
  offset: number;
  size: number;
  addralign: number;
}

export interface ElfImage {
  class: 32 | 64;
  /** e_type: ET_EXEC, ET_DYN, ... */
  type: number;
  machine: number;
  /** e_entry; informational (PVH uses the note), may be a rounded high-half address. */
  entry: number;
  segments: ElfSegment[];
  sections: ElfSection[];
}

const hex = (n: number) => '0x' + n.toString(16);

function toSafe(v: number | bigint, what: string): number {
  if (typeof v === 'number') return v;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BootError(`kernel ELF is corrupt: ${what} 0x${v.toString(16)} is too large`);
  }
  return Number(v);
}

const toLossy = (v: number | bigint): number => Number(v);

function viewOf(file: Uint8Array): DataView {
  return new DataView(file.buffer, file.byteOffset, file.byteLength);
}

/** True when [offset, offset+size) lies inside the file. */
function inFile(file: Uint8Array, offset: number, size: number): boolean {
  return offset >= 0 && size >= 0 && offset <= file.length && size <= file.length - offset;
}

export function parseElf(file: Uint8Array): ElfImage {
  if (file.length < 16 || file[0] !== 0x7f || file[1] !== 0x45 || file[2] !== 0x4c || file[3] !== 0x46) {
    throw new BootError('kernel is not an ELF file (bad magic)');
  }
  const cls = file[4];
  if (cls !== 1 && cls !== 2) throw new BootError(`kernel ELF has an unknown class ${cls} (expected 32- or 64-bit)`);
  const data = file[5];
  if (data === 2) throw new BootError('kernel ELF is big-endian; only little-endian x86 kernels are supported');
  if (data !== 1) throw new BootError(`kernel ELF has an unknown data encoding ${data}`);
  if (file[6] !== 1) throw new BootError(`kernel ELF has an unknown version ${file[6]}`);

  const is64 = cls === 2;
  const Ehdr = is64 ? Elf64Ehdr : Elf32Ehdr;
  if (file.length < Ehdr.size) {
    throw new BootError(`kernel ELF is truncated: the ${Ehdr.size}-byte ELF header does not fit in the ${file.length}-byte file`);
  }
  const view = viewOf(file);
  const eh = Ehdr.read(view, 0);
  if (eh.e_machine !== EM_386 && eh.e_machine !== EM_X86_64) {
    throw new BootError(`kernel ELF is for machine ${eh.e_machine}, not x86 (EM_386 or EM_X86_64)`);
  }
  const phoff = toSafe(eh.e_phoff, 'program header offset');
  const shoff = toSafe(eh.e_shoff, 'section header offset');

  const Shdr = is64 ? Elf64Shdr : Elf32Shdr;
  // Section 0 carries the real counts when they overflow the ELF header (extended numbering).
  let shnum = eh.e_shnum;
  let shstrndx = eh.e_shstrndx;
  let phnum = eh.e_phnum;
  if (shoff !== 0) {
    if (eh.e_shentsize < Shdr.size) {
      throw new BootError(`kernel ELF is corrupt: section header size ${eh.e_shentsize} is smaller than ${Shdr.size}`);
    }
    if (!inFile(file, shoff, Shdr.size)) {
      throw new BootError('kernel ELF is truncated: section header 0 lies past the end of the file');
    }
    const sh0 = Shdr.read(view, shoff);
    if (shnum === 0) shnum = toSafe(sh0.sh_size, 'section count');
    if (shstrndx === 0xffff) shstrndx = sh0.sh_link;
    if (phnum === 0xffff) phnum = sh0.sh_info;
  } else {
    shnum = 0;
  }

  const Phdr = is64 ? Elf64Phdr : Elf32Phdr;
  if (phnum > 0 && eh.e_phentsize < Phdr.size) {
    throw new BootError(`kernel ELF is corrupt: program header size ${eh.e_phentsize} is smaller than ${Phdr.size}`);
  }
  for (let i = 0; i < phnum; i++) {
    if (!inFile(file, phoff + i * eh.e_phentsize, Phdr.size)) {
      throw new BootError(`kernel ELF is truncated: program header ${i} lies past the end of the file`);
    }
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = Phdr.read(view, phoff + i * eh.e_phentsize);
    const seg: ElfSegment = {
      type: ph.p_type,
      flags: ph.p_flags,
      offset: toSafe(ph.p_offset, `segment ${i} file offset`),
      paddr: toSafe(ph.p_paddr, `segment ${i} physical address`),
      vaddr: toLossy(ph.p_vaddr),
      filesz: toSafe(ph.p_filesz, `segment ${i} file size`),
      memsz: toSafe(ph.p_memsz, `segment ${i} memory size`),
      align: toLossy(ph.p_align),
    };
    if (seg.filesz > 0 && !inFile(file, seg.offset, seg.filesz)) {
      throw new BootError(
        `kernel ELF is truncated: segment ${i} (file offset ${hex(seg.offset)}, ${seg.filesz} bytes) lies past the end of the file`,
      );
    }
    segments.push(seg);
  }

  const raw: { nameOff: number; type: number; offset: number; size: number; addralign: number }[] = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * eh.e_shentsize;
    if (!inFile(file, at, Shdr.size)) {
      throw new BootError(`kernel ELF is truncated: section header ${i} lies past the end of the file`);
    }
    const sh = Shdr.read(view, at);
    raw.push({
      nameOff: sh.sh_name,
      type: sh.sh_type,
      offset: toSafe(sh.sh_offset, `section ${i} file offset`),
      size: toSafe(sh.sh_size, `section ${i} size`),
      addralign: toLossy(sh.sh_addralign),
    });
  }

  // Names are a convenience: a missing or damaged string table leaves them empty.
  const strtab = shstrndx !== 0 && shstrndx < raw.length ? raw[shstrndx] : undefined;
  const strOk = strtab !== undefined && strtab.type !== SHT_NOBITS && inFile(file, strtab.offset, strtab.size);
  const sections: ElfSection[] = raw.map((s) => ({
    name: strOk ? readCString(file, strtab.offset + s.nameOff, strtab.offset + strtab.size) : '',
    type: s.type,
    offset: s.offset,
    size: s.size,
    addralign: s.addralign,
  }));

  return { class: is64 ? 64 : 32, type: eh.e_type, machine: eh.e_machine, entry: toLossy(eh.e_entry), segments, sections };
}

function readCString(file: Uint8Array, start: number, limit: number): string {
  if (start >= limit) return '';
  let end = start;
  while (end < limit && file[end] !== 0) end++;
  return new TextDecoder('latin1').decode(file.subarray(start, end));
}

interface Note { name: string; type: number; desc: Uint8Array }

/** Parses the notes of one PT_NOTE segment or SHT_NOTE section. */
function parseNotes(data: Uint8Array, align: number, where: string): Note[] {
  const a = align === 8 ? 8 : 4;
  const pad = (n: number) => Math.ceil(n / a) * a;
  const view = viewOf(data);
  const notes: Note[] = [];
  let off = 0;
  while (off + ElfNhdr.size <= data.length) {
    const nh = ElfNhdr.read(view, off);
    const nameAt = off + ElfNhdr.size;
    // Header plus name is padded to the container's alignment (4, or 8 for e.g. GNU property notes).
    if (nh.n_namesz > data.length - nameAt) {
      throw new BootError(`kernel ELF is corrupt: a note in ${where} runs past its end`);
    }
    const descAt = pad(nameAt + nh.n_namesz);
    if (descAt > data.length || nh.n_descsz > data.length - descAt) {
      throw new BootError(`kernel ELF is corrupt: a note in ${where} runs past its end`);
    }
    let nameEnd = nameAt + nh.n_namesz;
    while (nameEnd > nameAt && data[nameEnd - 1] === 0) nameEnd--;
    notes.push({
      name: new TextDecoder('latin1').decode(data.subarray(nameAt, nameEnd)),
      type: nh.n_type,
      desc: data.subarray(descAt, descAt + nh.n_descsz),
    });
    off = pad(descAt + nh.n_descsz);
  }
  return notes;
}

/** The kernel's Xen notes, each with where it lies: PT_NOTE segments first, then SHT_NOTE sections. */
function xenNotes(file: Uint8Array, image: ElfImage): { note: Note; where: string }[] {
  const found: { note: Note; where: string }[] = [];
  const containers = [
    ...image.segments.flatMap((seg, i) => (seg.type === PT_NOTE ? [{ offset: seg.offset, size: seg.filesz, align: seg.align, where: `segment ${i}` }] : [])),
    ...image.sections.flatMap((sec, i) => (sec.type === SHT_NOTE ? [{ offset: sec.offset, size: sec.size, align: sec.addralign, where: `section ${i}${sec.name ? ` (${sec.name})` : ''}` }] : [])),
  ];
  for (const c of containers) {
    if (!inFile(file, c.offset, c.size)) throw new BootError(`kernel ELF is truncated: note ${c.where} lies past the end of the file`);
    for (const note of parseNotes(file.subarray(c.offset, c.offset + c.size), c.align, c.where)) if (note.name === 'Xen') found.push({ note, where: c.where });
  }
  return found;
}

/** The XEN_ELFNOTE_PHYS32_ENTRY value. */
export function findPvhEntry(file: Uint8Array, image: ElfImage): number | undefined {
  const found = xenNotes(file, image).find(({ note }) => note.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (!found) return undefined;
  const { note: n, where } = found;
  const v = viewOf(n.desc);
  if (n.desc.length === 4) return v.getUint32(0, true);
  if (n.desc.length === 8) {
    const value = v.getBigUint64(0, true);
    if (value >= 1n << 32n) {
      throw new BootError(`kernel PVH entry point 0x${value.toString(16)} (in ${where}) lies above 4 GiB`);
    }
    return Number(value);
  }
  throw new BootError(
    `kernel ELF is corrupt: the XEN_ELFNOTE_PHYS32_ENTRY note in ${where} has a ${n.desc.length}-byte value (expected 4 or 8)`,
  );
}

/** The XEN_ELFNOTE_GUEST_OS string ("linux" for Linux), if the kernel has one. */
export function findGuestOs(file: Uint8Array, image: ElfImage): string | undefined {
  const found = xenNotes(file, image).find(({ note }) => note.type === XEN_ELFNOTE_GUEST_OS);
  if (!found) return undefined;
  const end = found.note.desc.indexOf(0);
  return new TextDecoder().decode(found.note.desc.subarray(0, end < 0 ? undefined : end));
}

export interface KernelChunk {
  /** Guest-physical address of the first byte. */
  gpa: number;
  /** File bytes to copy (a view into the kernel file, not a copy). */
  bytes: Uint8Array;
  /** Bytes to zero right after `bytes` (bss). */
  zeroFill: number;
}

export interface LoadedKernel {
  entry: number;
  chunks: KernelChunk[];
  /** Lowest guest-physical address loaded. */
  lowest: number;
  /** End (exclusive) of the highest loaded segment. */
  highest: number;
  /** What the kernel says it is (XEN_ELFNOTE_GUEST_OS), if it says. */
  guestOs: string | undefined;
}

/**
 * Plans the load of a PVH kernel: PT_LOAD segments go to their physical
 * addresses. `ram` ranges are [start, end). Writes nothing.
 */
export function loadPvhKernel(file: Uint8Array, ram: { start: number; end: number }[]): LoadedKernel {
  const image = parseElf(file);
  if (image.type !== ET_EXEC && image.type !== ET_DYN) {
    throw new BootError(`kernel ELF is not an executable (e_type ${image.type}); link it into an executable first`);
  }
  const entry = findPvhEntry(file, image);
  if (entry === undefined) {
    throw new BootError('kernel has no PVH entry point (no XEN_ELFNOTE_PHYS32_ENTRY note)');
  }

  const loads: { index: number; seg: ElfSegment }[] = [];
  for (const [index, seg] of image.segments.entries()) {
    if (seg.type !== PT_LOAD || seg.memsz === 0) continue;
    if (seg.filesz > seg.memsz) {
      throw new BootError(
        `kernel ELF is corrupt: segment ${index} has more file bytes (${seg.filesz}) than memory bytes (${seg.memsz})`,
      );
    }
    const end = seg.paddr + seg.memsz;
    if (!ram.some((r) => seg.paddr >= r.start && end <= r.end)) {
      throw new BootError(
        `kernel segment at ${hex(seg.paddr)} (${seg.memsz} bytes) lies outside guest RAM`,
      );
    }
    loads.push({ index, seg });
  }
  if (loads.length === 0) throw new BootError('kernel ELF has no loadable segments');

  const sorted = [...loads].sort((a, b) => a.seg.paddr - b.seg.paddr);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (cur.seg.paddr < prev.seg.paddr + prev.seg.memsz) {
      throw new BootError(
        `kernel segments ${prev.index} (${hex(prev.seg.paddr)}, ${prev.seg.memsz} bytes) and ${cur.index} (${hex(cur.seg.paddr)}, ${cur.seg.memsz} bytes) overlap`,
      );
    }
  }

  if (!loads.some(({ seg }) => entry >= seg.paddr && entry < seg.paddr + seg.memsz)) {
    throw new BootError(`kernel PVH entry point ${hex(entry)} is not inside any loaded segment`);
  }

  const chunks = loads.map(({ seg }) => ({
    gpa: seg.paddr,
    bytes: file.subarray(seg.offset, seg.offset + seg.filesz),
    zeroFill: seg.memsz - seg.filesz,
  }));
  return {
    entry,
    chunks,
    lowest: sorted[0].seg.paddr,
    highest: loads.reduce((m, { seg }) => Math.max(m, seg.paddr + seg.memsz), 0),
    guestOs: findGuestOs(file, image),
  };
}
